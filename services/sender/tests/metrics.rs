//! The sender's admin port after real work against a real queue, folder and comparison service:
//! /metrics reports what was processed, retried and dead-lettered, the queue lag and the RPC
//! latencies; /readyz turns 503 while the comparison service is down and back to 200 after.

mod support;

use admin_http::scrape::{sum, value};
use pipeline_job::{Job, JobKind};
use std::time::{SystemTime, UNIX_EPOCH};
use support::{Pipeline, eventually, free_port, make_json, recipe_json, spawn_sender};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .expect("clock after 1970")
}

/// Writes the file and sends its job stamped as detected now, as the watcher does.
async fn submit_now(p: &Pipeline, kind: JobKind, key: &str, bytes: String) -> Job {
    let mut job = p.put(kind, key, bytes).await;
    job.detected_at_ms = now_ms();
    p.enqueue(&job).await;
    job
}

const PROCESSED: &str = "recipe_mesh_sender_jobs_processed_total";

#[tokio::test]
async fn the_metrics_report_the_jobs_processed_their_lag_and_the_rpc_latency() {
    let p = Pipeline::new().await;
    let cmp = p.start_comparison().await;
    let sender = spawn_sender(p.settings(cmp.addr)).await;
    assert_eq!(sender.readyz().await, (200, "ready\n".to_string()));

    submit_now(&p, JobKind::Recipe, "recipes/m.json", recipe_json("m")).await;
    eventually("the recipe is stored", || async { cmp.recipe("m").await }).await;
    let first = submit_now(&p, JobKind::Make, "makes/m1.json", make_json("m", 4)).await;
    submit_now(&p, JobKind::Make, "makes/m2.json", make_json("m", 5)).await;
    submit_now(&p, JobKind::Make, "makes/m3.json", make_json("m", 3)).await;
    // The same file version again: accepted as a duplicate.
    p.enqueue(&first).await;
    // Two that can never work.
    p.send_raw("not a job").await;
    submit_now(&p, JobKind::Make, "makes/bad.json", "{not json".to_string()).await;

    eventually("every job is settled", || async {
        let s = sender.snapshot();
        (s.makes_processed == 4 && s.dead_lettered == 2).then_some(())
    })
    .await;
    let text = sender.metrics().await;
    let series = |name: &str, labels: &[(&str, &str)]| {
        value(&text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
    };
    assert_eq!(
        series(PROCESSED, &[("kind", "make"), ("outcome", "recorded")]),
        3.0
    );
    assert_eq!(
        series(PROCESSED, &[("kind", "make"), ("outcome", "duplicate")]),
        1.0
    );
    assert_eq!(
        series(PROCESSED, &[("kind", "recipe"), ("outcome", "recorded")]),
        1.0
    );
    assert_eq!(series("recipe_mesh_sender_jobs_received_total", &[]), 7.0);
    assert_eq!(
        series(
            "recipe_mesh_sender_jobs_dead_lettered_total",
            &[("kind", "unknown"), ("reason", "not_a_job")]
        ),
        1.0
    );
    assert_eq!(
        series(
            "recipe_mesh_sender_jobs_dead_lettered_total",
            &[("kind", "make"), ("reason", "invalid_document")]
        ),
        1.0
    );
    assert_eq!(
        sum(&text, "recipe_mesh_sender_jobs_retried_total", &[]),
        0.0
    );
    assert_eq!(
        series(
            "recipe_mesh_sender_rpc_duration_seconds_count",
            &[("method", "RecordMake"), ("code", "OK")]
        ),
        4.0
    );
    assert_eq!(
        series(
            "recipe_mesh_sender_rpc_duration_seconds_count",
            &[("method", "UpdateRecipe"), ("code", "OK")]
        ),
        1.0
    );
    // Every delivery that was a job: the recipe, four makes and the invalid one.
    assert_eq!(
        series("recipe_mesh_sender_queue_lag_seconds_count", &[]),
        6.0
    );
    let lag = series("recipe_mesh_sender_queue_lag_seconds_sum", &[]);
    assert!((0.0..60.0).contains(&lag), "lag sum {lag}");
    assert!(
        value(&text, "recipe_mesh_sender_queue_depth_messages", &[]).is_some(),
        "{text}"
    );
    assert_eq!(series("recipe_mesh_sender_receiving_paused", &[]), 0.0);

    sender.stop().await.expect("sender stops cleanly");
    cmp.stop().await;
}

#[tokio::test]
async fn the_sender_is_not_ready_while_the_comparison_service_is_down() {
    let p = Pipeline::new().await;
    let addr = free_port();
    let sender = spawn_sender(p.settings(addr)).await;
    assert_eq!(sender.readyz().await.0, 200);

    p.submit(JobKind::Recipe, "recipes/d.json", recipe_json("d"))
        .await;
    let (_, why) = eventually("the sender reports not ready", || async {
        let (status, body) = sender.readyz().await;
        (status == 503).then_some((status, body))
    })
    .await;
    assert!(
        why.starts_with("not ready: receiving paused: UNAVAILABLE"),
        "{why}"
    );
    let text = sender.metrics().await;
    assert_eq!(
        value(&text, "recipe_mesh_sender_receiving_paused", &[]),
        Some(1.0),
        "{text}"
    );
    assert!(
        value(
            &text,
            "recipe_mesh_sender_rpc_duration_seconds_count",
            &[("method", "UpdateRecipe"), ("code", "UNAVAILABLE")]
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    let live = admin_http::scrape::get(sender.admin, "/livez")
        .await
        .expect("GET /livez");
    assert_eq!(live.status, 200, "alive all the same");

    let cmp = p.start_comparison_on(addr).await;
    eventually(
        "the job goes through and the sender is ready again",
        || async {
            let ready = sender.readyz().await.0 == 200;
            (ready && sender.snapshot().recipes_processed == 1).then_some(())
        },
    )
    .await;
    let text = sender.metrics().await;
    assert!(
        value(
            &text,
            "recipe_mesh_sender_jobs_retried_total",
            &[("reason", "comparison_unavailable")]
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "recipe_mesh_sender_receiving_paused", &[]),
        Some(0.0)
    );
    sender.stop().await.expect("sender stops cleanly");
    cmp.stop().await;
}
