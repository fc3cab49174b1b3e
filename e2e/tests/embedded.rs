//! The whole pipeline on the embedded backends (no AWS): three processes, a folder, SQLite
//! queue, ledger and store. 500 files end up stored exactly once — undisturbed, with each
//! service SIGKILLed and restarted mid-run, and with the comparison service down for 20 s;
//! poison files end in the dead letters with a reason while the files around them go through.

use admin_http::scrape::{sum, value};
use e2e::workload::{makes, poison, recipes};
use e2e::{Backend, Pipeline, Service};
use std::collections::BTreeMap;
use std::time::Duration;

const RECIPES: usize = 50;
/// 50 recipes + 9 × 50 makes = 500 files.
const MAKES_PER_RECIPE: usize = 9;
const DEADLINE: Duration = Duration::from_secs(240);

fn expected(tag: &str, makes_per_recipe: u64) -> BTreeMap<String, u64> {
    (0..RECIPES)
        .map(|r| (format!("{tag}-r{r:03}"), makes_per_recipe))
        .collect()
}

/// Also with the trace collector down: every service exports to an endpoint where nothing
/// listens, and the pipeline must neither fail nor lose anything because of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_files_are_stored_exactly_once() {
    let dead_collector = {
        let unused = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        format!("http://{}", unused.local_addr().expect("address"))
    };
    let mut p = Pipeline::new(
        Backend::Embedded,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &dead_collector),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    p.start_all().await;
    p.upload_recipes(&recipes("a", RECIPES), DEADLINE).await;
    p.upload_all(&makes("a", RECIPES, 0, MAKES_PER_RECIPE))
        .await;
    let want = expected("a", MAKES_PER_RECIPE as u64);
    p.wait_until("all makes stored", DEADLINE, |m| m == &want)
        .await;
    // Nothing more arrives later (no duplicates in flight).
    tokio::time::sleep(Duration::from_secs(2)).await;
    p.assert_exactly(&want).await;

    // Each service's admin port tells the same story: 500 jobs sent, 450 makes (and 50
    // recipes) processed by the sender, 450 makes recorded by the comparison service.
    let makes = (RECIPES * MAKES_PER_RECIPE) as f64;
    let metric_wait = Duration::from_secs(30);
    let watcher = p
        .wait_for_metric(
            Service::Watcher,
            "recipe_mesh_watcher_jobs_sent_total",
            &[],
            (RECIPES + RECIPES * MAKES_PER_RECIPE) as f64,
            metric_wait,
        )
        .await;
    assert_eq!(
        value(
            &watcher,
            "recipe_mesh_watcher_jobs_sent_total",
            &[("kind", "make")]
        ),
        Some(makes),
        "{watcher}"
    );
    let sender = p
        .wait_for_metric(
            Service::Sender,
            "recipe_mesh_sender_jobs_processed_total",
            &[("kind", "make"), ("outcome", "recorded")],
            makes,
            metric_wait,
        )
        .await;
    assert_eq!(
        value(
            &sender,
            "recipe_mesh_sender_jobs_processed_total",
            &[("kind", "recipe"), ("outcome", "recorded")]
        ),
        Some(RECIPES as f64),
        "{sender}"
    );
    assert_eq!(
        sum(&sender, "recipe_mesh_sender_jobs_dead_lettered_total", &[]),
        0.0,
        "{sender}"
    );
    p.wait_for_metric(
        Service::Comparison,
        "recipe_mesh_comparison_makes_recorded_total",
        &[("outcome", "recorded")],
        makes,
        metric_wait,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_killed_mid_run_loses_and_repeats_nothing() {
    let mut p = Pipeline::new(Backend::Embedded, &[]).await;
    p.start_all().await;
    p.upload_recipes(&recipes("k", RECIPES), DEADLINE).await;
    // Three waves of three makes per recipe; during each, one service dies and comes back.
    let mut uploaded = 0u64;
    for (wave, victim) in [Service::Watcher, Service::Sender, Service::Comparison]
        .into_iter()
        .enumerate()
    {
        let files = makes("k", RECIPES, wave * 3, 3);
        let before = uploaded;
        uploaded += files.len() as u64;
        p.upload_all(&files).await;
        // Kill while this wave is in progress: some of it stored, not all.
        p.wait_until("the wave under way", DEADLINE, |m| {
            m.values().sum::<u64>() > before
        })
        .await;
        p.kill(victim);
        tokio::time::sleep(Duration::from_millis(500)).await;
        p.start(victim).await;
    }
    let want = expected("k", MAKES_PER_RECIPE as u64);
    p.wait_until("all makes stored after the kills", DEADLINE, |m| m == &want)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    p.assert_exactly(&want).await;
    assert_eq!(uploaded, (RECIPES * MAKES_PER_RECIPE) as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comparison_down_for_twenty_seconds_delays_but_loses_nothing() {
    let mut p = Pipeline::new(Backend::Embedded, &[]).await;
    p.start_all().await;
    p.upload_recipes(&recipes("d", RECIPES), DEADLINE).await;
    p.upload_all(&makes("d", RECIPES, 0, 4)).await;
    p.wait_until("the run under way", DEADLINE, |m| {
        m.values().sum::<u64>() > 0
    })
    .await;
    p.terminate(Service::Comparison);
    p.upload_all(&makes("d", RECIPES, 4, 5)).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    p.start(Service::Comparison).await;
    let want = expected("d", MAKES_PER_RECIPE as u64);
    p.wait_until("all makes stored after the outage", DEADLINE, |m| {
        m == &want
    })
    .await;
    p.assert_exactly(&want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_files_are_dead_lettered_with_a_reason_and_the_rest_goes_through() {
    let mut p = Pipeline::new(
        Backend::Embedded,
        &[
            ("SENDER_UNKNOWN_RECIPE_ATTEMPTS", "3"),
            ("SENDER_BACKOFF_MAX", "500ms"),
        ],
    )
    .await;
    p.start_all().await;
    p.upload_recipes(&recipes("p", 3), DEADLINE).await;
    let good = makes("p", 3, 0, 2);
    let poison = poison("p");
    let mut files = good.clone();
    for (i, (bad, _)) in poison.iter().enumerate() {
        files.insert(i * 2, bad.clone());
    }
    p.upload_all(&files).await;
    let want: BTreeMap<String, u64> = (0..3).map(|r| (format!("p-r{r:03}"), 2)).collect();
    p.wait_until("the good makes stored", DEADLINE, |m| m == &want)
        .await;
    p.assert_dead_lettered(&poison, DEADLINE).await;
    assert_eq!(p.makes_per_recipe().await.expect("answers"), want);
}
