//! How many queue calls the sender makes per job: a receive collects several jobs, the deletes of
//! jobs that finish together share one call, and a lease is extended only when its job outlives
//! half of its visibility timeout (then in batches). The sender runs on a wrapper that counts its
//! calls to the real embedded queue; the assertions are on those counts, not on timings.

mod support;

use message_queue::OutgoingMessage;
use pipeline_job::JobKind;
use sender::config::Settings;
use sender::stats::StatsSnapshot;
use std::time::Duration;
use support::{
    CallCounter, CountingQueue, Pipeline, QueueCalls, RunningSender, delaying_proxy, eventually,
    recipe_json, spawn_sender_with_queue,
};

/// Writes `count` recipe files and queues their jobs in one call, before any sender runs.
async fn queue_recipes(p: &Pipeline, prefix: &str, count: usize) {
    let mut messages = Vec::with_capacity(count);
    for i in 0..count {
        let id = format!("{prefix}{i}");
        let job = p
            .put(
                JobKind::Recipe,
                &format!("recipes/{id}.json"),
                recipe_json(&id),
            )
            .await;
        messages.push(OutgoingMessage::new(job.to_json()));
    }
    p.queue.send_batch(messages).await.expect("send jobs");
}

/// A sender with `settings` on its own handle of the queue, counting its queue calls.
async fn start_counted(p: &Pipeline, settings: Settings) -> (RunningSender, CallCounter) {
    let (queue, calls) = CountingQueue::open(&p.queue_url).await;
    (spawn_sender_with_queue(settings, queue).await, calls)
}

/// Waits until the sender has processed `jobs` recipes, stops it (which waits for the last
/// deletes, so the counts are final) and returns its statistics and queue calls.
async fn finish_counted(
    sender: RunningSender,
    calls: CallCounter,
    jobs: u64,
) -> (StatsSnapshot, QueueCalls) {
    let stats = sender.stats.clone();
    eventually("every job is processed", || async {
        (stats.snapshot().recipes_processed >= jobs).then_some(())
    })
    .await;
    stop_counted(sender, calls).await
}

async fn stop_counted(sender: RunningSender, calls: CallCounter) -> (StatsSnapshot, QueueCalls) {
    let stats = sender.stats.clone();
    sender.stop().await.expect("sender stops cleanly");
    (stats.snapshot(), calls.snapshot())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quick_jobs_share_receives_and_deletes() {
    const JOBS: u64 = 100;
    let p = Pipeline::new().await;
    let cmp = p.start_comparison().await;
    queue_recipes(&p, "q", JOBS as usize).await;
    let mut settings = p.settings(cmp.addr);
    settings.concurrency = 10;
    let (sender, calls) = start_counted(&p, settings).await;
    let (s, c) = finish_counted(sender, calls, JOBS).await;

    // Exactly once: one delivery per job, each deleted after it was accepted.
    assert_eq!((s.received, s.recipes_processed), (JOBS, JOBS), "{s:?}");
    assert_eq!((s.duplicates, s.retried, s.stale), (0, 0, 0), "{s:?}");
    assert_eq!(c.received, JOBS, "{c:?}");
    assert_eq!(c.deleted, JOBS, "{c:?}");
    assert_eq!(c.release + c.dead_letter, 0, "{c:?}");
    for i in 0..JOBS {
        let version = cmp.recipe(&format!("q{i}")).await.map(|r| r.version);
        assert_eq!(version, Some(1), "recipe q{i}");
    }
    assert_eq!(p.depth().await, 0);
    // Deletes go in batches: far fewer calls than jobs, and no single deletes.
    assert_eq!(c.delete, 0, "single deletes: {c:?}");
    assert!(
        c.delete_batch <= JOBS / 3,
        "{} delete calls: {c:?}",
        c.delete_batch
    );
    assert!(c.largest_delete_batch > 1, "{c:?}");
    // Receives are full: at most a few per 10 jobs.
    assert!(
        c.receive_with_messages <= JOBS * 3 / 10,
        "{} receives brought jobs: {c:?}",
        c.receive_with_messages
    );
    // Quick jobs need no extension of their leases.
    assert_eq!(c.extend_calls(), 0, "{c:?}");
    cmp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_busy_sender_receives_several_jobs_per_call() {
    const JOBS: u64 = 100;
    let p = Pipeline::new().await;
    let cmp = p.start_comparison().await;
    queue_recipes(&p, "r", JOBS as usize).await;
    let mut settings = p.settings(cmp.addr);
    settings.concurrency = 10;
    // Deletes one by one, so jobs free their slots one at a time rather than in groups (as
    // batched deletes would): only the receive linger then gathers slots for a full receive.
    settings.delete_linger = Duration::ZERO;
    let (sender, calls) = start_counted(&p, settings).await;
    let (s, c) = finish_counted(sender, calls, JOBS).await;
    assert_eq!((s.received, s.recipes_processed), (JOBS, JOBS), "{s:?}");
    assert_eq!((c.received, c.deleted), (JOBS, JOBS), "{c:?}");
    // About one receive per 10 jobs; receiving for whatever slot was free at the moment makes
    // one for every two or three jobs.
    assert!(
        c.receive_with_messages <= JOBS / 5,
        "{} receives brought jobs: {c:?}",
        c.receive_with_messages
    );
    cmp.stop().await;
}

/// Jobs that started at different times finish at different times: with a slow comparison
/// service, receiving for the slots free at the moment would then take one job per call for
/// good. Up to one receive's worth of jobs is prefetched instead: the slots stay busy while the
/// sender waits for room for ten.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sender_with_a_backlog_receives_full_batches() {
    const STAGGERED: u64 = 10;
    const BACKLOG: u64 = 30;
    const JOBS: u64 = STAGGERED + BACKLOG;
    let p = Pipeline::new().await;
    let cmp = p.start_comparison().await;
    let proxy = delaying_proxy(cmp.addr, Duration::from_secs(1)).await;
    let mut settings = p.settings(proxy);
    settings.concurrency = 10;
    settings.rpc_timeout = Duration::from_secs(30);
    let (sender, calls) = start_counted(&p, settings).await;
    // The first ten jobs come 150 ms apart (three receive lingers), so they finish apart.
    for i in 0..STAGGERED {
        queue_recipes(&p, &format!("a{i}-"), 1).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    queue_recipes(&p, "b", BACKLOG as usize).await;
    let (s, c) = finish_counted(sender, calls, JOBS).await;
    assert_eq!((s.received, s.recipes_processed), (JOBS, JOBS), "{s:?}");
    assert_eq!((s.stale, s.retried, s.duplicates), (0, 0, 0), "{s:?}");
    assert_eq!((c.received, c.deleted), (JOBS, JOBS), "{c:?}");
    // One receive per staggered job, then three full ones for the backlog; receiving for the
    // free slots takes one per job (about 40).
    assert!(
        c.receive_with_messages <= STAGGERED + BACKLOG / 10 + 3,
        "{} receives brought jobs: {c:?}",
        c.receive_with_messages
    );
    cmp.stop().await;
}

/// Prefetched jobs wait for a slot with their leases kept; at shutdown those still waiting are
/// handed back at once, to be taken by another sender, rather than started.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prefetched_jobs_are_handed_back_at_shutdown() {
    let p = Pipeline::new().await;
    let cmp = p.start_comparison().await;
    let proxy = delaying_proxy(cmp.addr, Duration::from_secs(2)).await;
    queue_recipes(&p, "w", 6).await;
    let mut settings = p.settings(proxy);
    settings.concurrency = 1;
    settings.rpc_timeout = Duration::from_secs(30);
    // Long enough for the working job to finish: only the waiting one is handed back.
    settings.shutdown_grace = Duration::from_secs(20);
    let (sender, calls) = start_counted(&p, settings).await;
    // One job works (for about 4 s through the proxy); one more is prefetched.
    eventually("two jobs are received", || async {
        (sender.snapshot().received == 2).then_some(())
    })
    .await;
    let (s, c) = stop_counted(sender, calls).await;
    assert_eq!(s.received, 2, "{s:?}");
    assert_eq!(
        s.recipes_processed, 1,
        "the working job finished within the grace: {s:?}"
    );
    assert_eq!(
        s.released_at_shutdown, 1,
        "the waiting one went back: {s:?}"
    );
    assert_eq!((c.deleted, c.release), (1, 1), "{c:?}");
    // Handed back with no delay: the other five are there, and so is the prefetched one.
    assert_eq!(p.depth().await, 5);
    cmp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_done_within_half_their_visibility_cost_no_extend_call() {
    let p = Pipeline::new().await;
    let cmp = p.start_comparison().await;
    // Each call takes about 3.3 s of an 8 s visibility: past the third of it at which a
    // heartbeat every visibility/3 would extend, before the half at which the keeper does.
    let proxy = delaying_proxy(cmp.addr, Duration::from_millis(3_300)).await;
    queue_recipes(&p, "h", 3).await;
    let mut settings = p.settings(proxy);
    settings.visibility = Duration::from_secs(8);
    settings.rpc_timeout = Duration::from_secs(30);
    let (sender, calls) = start_counted(&p, settings).await;
    let (_, c) = finish_counted(sender, calls, 3).await;
    assert_eq!((c.received, c.deleted), (3, 3), "{c:?}");
    assert_eq!(c.extend_calls(), 0, "{c:?}");
    cmp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_jobs_have_their_leases_extended_together_and_are_delivered_once() {
    let p = Pipeline::new().await;
    let cmp = p.start_comparison().await;
    // Each call takes three visibility timeouts.
    let proxy = delaying_proxy(cmp.addr, Duration::from_secs(3)).await;
    queue_recipes(&p, "s", 3).await;
    let mut settings = p.settings(proxy);
    settings.visibility = Duration::from_secs(1);
    settings.rpc_timeout = Duration::from_secs(30);
    let (sender, calls) = start_counted(&p, settings).await;
    let (s, c) = finish_counted(sender, calls, 3).await;
    // Not redelivered while worked on, even though each job outlived its first lease 3 times.
    assert_eq!(s.received, 3, "{s:?}");
    assert_eq!((s.stale, s.retried, s.duplicates), (0, 0, 0), "{s:?}");
    assert_eq!((c.received, c.deleted), (3, 3), "{c:?}");
    // The three leases, received together, are extended together, in one call per round, and
    // only when half the visibility is left (a heartbeat every visibility/3 per job would make
    // about 27 calls).
    assert_eq!(c.extend, 0, "single extends: {c:?}");
    assert!(c.extend_batch >= 2, "{c:?}");
    assert_eq!(c.largest_extend_batch, 3, "{c:?}");
    assert!(
        c.extend_batch <= 10,
        "{} extend calls: {c:?}",
        c.extend_batch
    );
    for i in 0..3 {
        let version = cmp.recipe(&format!("s{i}")).await.map(|r| r.version);
        assert_eq!(version, Some(1), "recipe s{i}");
    }
    assert!(p.dead_letters().await.is_empty());
    cmp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_sends_the_pending_deletes_before_returning() {
    let p = Pipeline::new().await;
    let cmp = p.start_comparison().await;
    queue_recipes(&p, "d", 1).await;
    let mut settings = p.settings(cmp.addr);
    // Far longer than the job: its delete is still lingering when the sender is stopped.
    settings.delete_linger = Duration::from_secs(1);
    let (sender, calls) = start_counted(&p, settings).await;
    // Counted as processed just before its delete is handed to the batcher.
    let (s, c) = finish_counted(sender, calls, 1).await;
    assert_eq!((c.delete_batch, c.deleted), (1, 1), "{c:?}");
    assert_eq!((s.released_at_shutdown, s.stale), (0, 0), "{s:?}");
    cmp.stop().await;
}

/// A finished job gives its slot back before its delete is confirmed: with one slot and a long
/// delete linger, the next jobs still run meanwhile and their deletes share calls. (Holding
/// the slot through the linger would make every delete go alone, one per linger.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiting_for_a_delete_does_not_hold_a_slot() {
    const JOBS: u64 = 12;
    let p = Pipeline::new().await;
    let cmp = p.start_comparison().await;
    queue_recipes(&p, "s", JOBS as usize).await;
    let mut settings = p.settings(cmp.addr);
    settings.concurrency = 1;
    settings.delete_linger = Duration::from_millis(500);
    let (sender, calls) = start_counted(&p, settings).await;
    let (_, c) = finish_counted(sender, calls, JOBS).await;
    assert_eq!((c.received, c.deleted), (JOBS, JOBS), "{c:?}");
    assert!(
        c.delete_batch <= JOBS / 3,
        "{} delete calls for {JOBS} jobs: {c:?}",
        c.delete_batch
    );
    cmp.stop().await;
}
