//! The watcher's admin port after real passes over a folder: /metrics reports the objects seen
//! and ignored and the jobs sent, and /readyz is 200 while passes succeed, 503 with the reason
//! while they fail (the folder gone), and 200 again once a pass succeeds.

mod support;

use admin_http::scrape::value;
use std::time::{Duration, Instant};
use support::*;

const DEADLINE: Duration = Duration::from_secs(30);

/// Polls the admin port's `/readyz` until its status is `want`; returns the body.
async fn wait_for_readyz(w: &RunningWatcher, want: u16) -> String {
    let start = Instant::now();
    loop {
        let (status, body) = w.get("/readyz").await;
        if status == want {
            return body;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "/readyz still says {status} {body:?}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_port_reports_jobs_sent_and_readiness_follows_the_passes() {
    let p = LocalPipeline::new().await;
    for key in [
        "recipes/r1.json",
        "recipes/r2.json",
        "makes/m1.json",
        "makes/m2.json",
        "makes/m3.json",
        "makes/notes.txt",
    ] {
        p.source.put(key, document("1")).await.unwrap();
    }
    let w = spawn_watcher(p.settings()).await;
    let jobs = wait_for_jobs(p.queue.as_ref(), 5, DEADLINE).await;
    assert_eq!(jobs.len(), 5);
    assert_eq!(wait_for_readyz(&w, 200).await, "ready\n");

    let (status, text) = w.get("/metrics").await;
    assert_eq!(status, 200);
    let series = |name: &str, labels: &[(&str, &str)]| {
        value(&text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
    };
    assert_eq!(
        series("recipe_mesh_watcher_jobs_sent_total", &[("kind", "make")]),
        3.0
    );
    assert_eq!(
        series("recipe_mesh_watcher_jobs_sent_total", &[("kind", "recipe")]),
        2.0
    );
    assert_eq!(
        series(
            "recipe_mesh_watcher_objects_ignored_total",
            &[("mode", "poll")]
        ),
        1.0
    );
    assert!(
        series(
            "recipe_mesh_watcher_objects_seen_total",
            &[("mode", "poll")]
        ) >= 6.0
    );
    assert!(series("recipe_mesh_watcher_passes_total", &[("mode", "poll")]) >= 1.0);
    assert_eq!(
        series(
            "recipe_mesh_watcher_pass_failures_total",
            &[("mode", "poll")]
        ),
        0.0
    );
    assert!(series("recipe_mesh_watcher_last_success_timestamp_seconds", &[]) > 1.7e9);

    // The folder goes away: passes fail, and the watcher says why it is not ready.
    let inbox = p.dir.path().join("inbox");
    let moved = p.dir.path().join("inbox-away");
    std::fs::rename(&inbox, &moved).expect("move the folder away");
    let why = wait_for_readyz(&w, 503).await;
    assert!(
        why.starts_with("not ready: last pass failed: listing"),
        "{why}"
    );
    assert!(why.contains("does not exist"), "{why}");
    assert_eq!(w.get("/livez").await.0, 200, "alive all the same");
    let (_, text) = w.get("/metrics").await;
    assert!(
        value(
            &text,
            "recipe_mesh_watcher_pass_failures_total",
            &[("mode", "poll")]
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );

    std::fs::rename(&moved, &inbox).expect("bring the folder back");
    wait_for_readyz(&w, 200).await;
    w.stop().await;
}
