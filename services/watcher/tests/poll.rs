//! Poll mode on the embedded backends: every file becomes exactly one job, across restarts,
//! rewrites, pages and two replicas.

mod support;

use pipeline_job::JobKind;
use std::collections::HashMap;
use std::time::Duration;
use support::*;
use watcher::config::StartFrom;

const DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_already_there_are_sent_once_and_a_restart_sends_nothing_again() {
    let p = LocalPipeline::new().await;
    for i in 0..20 {
        p.source
            .put(&format!("makes/m{i:02}.json"), document("1"))
            .await
            .unwrap();
    }
    p.source.put("recipes/r.json", document("1")).await.unwrap();
    let w = spawn_watcher(p.settings()).await;
    let jobs = wait_for_jobs(p.queue.as_ref(), 21, DEADLINE).await;
    w.stop().await;
    assert_eq!(jobs.len(), 21, "{jobs:?}");
    assert_eq!(jobs.iter().filter(|j| j.kind == JobKind::Recipe).count(), 1);
    let recipe = jobs.iter().find(|j| j.kind == JobKind::Recipe).unwrap();
    assert_eq!(recipe.key, "recipes/r.json");
    assert_eq!(recipe.scheme, "dir");
    assert_eq!(recipe.bucket, "inbox");
    assert_eq!(
        recipe.etag,
        p.source.head("recipes/r.json").await.unwrap().etag
    );

    // A restart remembers (the original re-sent everything here).
    let w = spawn_watcher(p.settings()).await;
    p.source.put("makes/new.json", document("1")).await.unwrap();
    let jobs = wait_for_jobs(p.queue.as_ref(), 1, DEADLINE).await;
    w.stop().await;
    assert_eq!(
        jobs.iter().map(|j| j.key.as_str()).collect::<Vec<_>>(),
        ["makes/new.json"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_file_is_a_new_job() {
    let p = LocalPipeline::new().await;
    p.source.put("makes/a.json", document("1")).await.unwrap();
    let w = spawn_watcher(p.settings()).await;
    let first = wait_for_jobs(p.queue.as_ref(), 1, DEADLINE).await;
    p.source.put("makes/a.json", document("2")).await.unwrap();
    let second = wait_for_jobs(p.queue.as_ref(), 1, DEADLINE).await;
    w.stop().await;
    assert_eq!(first.len(), 1);
    assert_eq!(second.len(), 1);
    assert_ne!(first[0].etag, second[0].etag);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_from_now_skips_old_files_and_remembers_its_start_across_restarts() {
    let p = LocalPipeline::new().await;
    p.source.put("makes/old.json", document("1")).await.unwrap();
    // Older than the start by more than the margin given to other clocks.
    tokio::time::sleep(Duration::from_millis(
        watcher::poll::START_MARGIN_MS as u64 + 500,
    ))
    .await;
    let mut settings = p.settings();
    settings.start_from = StartFrom::Now;
    let w = spawn_watcher(settings.clone()).await;
    p.source.put("makes/new.json", document("1")).await.unwrap();
    let jobs = wait_for_jobs(p.queue.as_ref(), 1, DEADLINE).await;
    w.stop().await;
    assert_eq!(
        jobs.iter().map(|j| j.key.as_str()).collect::<Vec<_>>(),
        ["makes/new.json"]
    );

    // Uploaded while the watcher was down: after the first start, so it is sent.
    p.source
        .put("makes/while-down.json", document("1"))
        .await
        .unwrap();
    let w = spawn_watcher(settings).await;
    let jobs = wait_for_jobs(p.queue.as_ref(), 1, DEADLINE).await;
    w.stop().await;
    assert_eq!(
        jobs.iter().map(|j| j.key.as_str()).collect::<Vec<_>>(),
        ["makes/while-down.json"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_outside_the_layout_are_ignored() {
    let p = LocalPipeline::new().await;
    for key in [
        "notes/a.json",
        "makes/a.txt",
        "recipes/readme.md",
        "makes/deep/b.JSON",
    ] {
        p.source.put(key, document("1")).await.unwrap();
    }
    let w = spawn_watcher(p.settings()).await;
    let jobs = wait_for_jobs(p.queue.as_ref(), 1, DEADLINE).await;
    let stats = w.stats.clone();
    w.stop().await;
    assert_eq!(
        jobs.iter().map(|j| j.key.as_str()).collect::<Vec<_>>(),
        ["makes/deep/b.JSON"]
    );
    // Only the prefixes are listed, so notes/ is never seen; the other two are ignored.
    assert_eq!(stats.ignored(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_are_read_page_by_page() {
    let p = LocalPipeline::new().await;
    for i in 0..53 {
        p.source
            .put(&format!("makes/{i:03}.json"), document("1"))
            .await
            .unwrap();
    }
    let mut settings = p.settings();
    settings.page_size = 7;
    let w = spawn_watcher(settings).await;
    let jobs = wait_for_jobs(p.queue.as_ref(), 53, DEADLINE).await;
    w.stop().await;
    assert_eq!(jobs.len(), 53);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_one_ledger_send_each_file_once() {
    let p = LocalPipeline::new().await;
    for i in 0..300 {
        p.source
            .put(&format!("makes/{i:03}.json"), document("1"))
            .await
            .unwrap();
    }
    let mut a = p.settings();
    a.replica_id = Some("replica-a".into());
    a.page_size = 50;
    let mut b = a.clone();
    b.replica_id = Some("replica-b".into());
    let (wa, wb) = tokio::join!(spawn_watcher(a), spawn_watcher(b));
    let jobs = wait_for_jobs(p.queue.as_ref(), 300, DEADLINE).await;
    let (sa, sb) = (wa.stats.clone(), wb.stats.clone());
    wa.stop().await;
    wb.stop().await;
    let mut per_key: HashMap<&str, usize> = HashMap::new();
    for j in &jobs {
        *per_key.entry(j.key.as_str()).or_default() += 1;
    }
    assert_eq!(per_key.len(), 300);
    assert!(per_key.values().all(|&n| n == 1), "a file was sent twice");
    assert_eq!(sa.jobs() + sb.jobs(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_still_being_written_wait_for_the_settle_time() {
    let p = LocalPipeline::new().await;
    p.source
        .put("makes/fresh.json", document("1"))
        .await
        .unwrap();
    let mut settings = p.settings();
    settings.settle = Some(Duration::from_secs(3600));
    let w = spawn_watcher(settings).await;
    // Several passes happen (every 100 ms) but the file is too fresh for all of them.
    while w.stats.passes() < 5 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let jobs = drain_jobs(p.queue.as_ref(), Duration::from_millis(300)).await;
    w.stop().await;
    assert!(jobs.is_empty(), "{jobs:?}");
    let w = spawn_watcher(p.settings()).await;
    assert_eq!(wait_for_jobs(p.queue.as_ref(), 1, DEADLINE).await.len(), 1);
    w.stop().await;
}
