//! The sender when the comparison service is down, slow or hanging, and when it is told to stop:
//! jobs wait (they are never dead-lettered or lost), a slow job keeps its message, and shutdown
//! hands unfinished jobs back at once.

mod support;

use pipeline_job::JobKind;
use std::net::SocketAddr;
use std::time::Duration;
use support::{
    Pipeline, delaying_proxy, eventually, free_port, make_json, recipe_json, spawn_sender,
};
use tokio::net::TcpListener;
use tokio::time::Instant;

#[tokio::test]
async fn a_comparison_outage_delays_jobs_but_never_dead_letters_them() {
    // The queue itself dead-letters a message on its 6th receive. Without the circuit breaker,
    // four seconds of retries (backoff 0.1 s doubling to 1 s) would receive each job about 7
    // times.
    let p = Pipeline::with_max_receive_count(5).await;
    let addr = free_port();
    let mut settings = p.settings(addr);
    settings.unknown_recipe_attempts = 5;
    let sender = spawn_sender(settings).await;

    p.submit(JobKind::Recipe, "recipes/o1.json", recipe_json("o1"))
        .await;
    p.submit(JobKind::Recipe, "recipes/o2.json", recipe_json("o2"))
        .await;
    p.submit(JobKind::Make, "makes/o1.json", make_json("o1", 4))
        .await;
    eventually("the jobs are tried and handed back", || async {
        (sender.snapshot().retried >= 1).then_some(())
    })
    .await;
    // The outage lasts a while: check that nothing happens to the jobs meanwhile.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(p.dead_letters().await.is_empty(), "nothing dead-lettered");
    eventually("all three jobs are back in the queue, waiting", || async {
        (p.depth().await == 3).then_some(())
    })
    .await;
    let s = sender.snapshot();
    assert_eq!(s.dead_lettered, 0, "{s:?}");
    assert!(s.received <= 3, "receiving paused during the outage: {s:?}");

    let cmp = p.start_comparison_on(addr).await;
    let makes = eventually(
        "everything is processed once the service is back",
        || async {
            let makes = cmp.makes("o1").await;
            let both = cmp.recipe("o1").await.is_some() && cmp.recipe("o2").await.is_some();
            (both && !makes.is_empty()).then_some(makes)
        },
    )
    .await;
    assert_eq!(makes.len(), 1);
    eventually("the queue is empty", || async {
        (p.depth().await == 0 && sender.snapshot().makes_processed == 1).then_some(())
    })
    .await;
    sender.stop().await.expect("sender stops cleanly");
    assert!(p.dead_letters().await.is_empty(), "nothing dead-lettered");
    cmp.stop().await;
}

#[tokio::test]
async fn a_slow_job_keeps_its_message_hidden_and_is_delivered_once() {
    let p = Pipeline::new().await;
    let cmp = p.start_comparison().await;
    // Every byte to the service arrives 3 s late: the call takes three visibility timeouts.
    let proxy = delaying_proxy(cmp.addr, Duration::from_secs(3)).await;
    let mut settings = p.settings(proxy);
    settings.visibility = Duration::from_secs(1);
    settings.rpc_timeout = Duration::from_secs(30);
    let sender = spawn_sender(settings).await;
    let stats = sender.stats.clone();

    p.submit(JobKind::Recipe, "recipes/slow.json", recipe_json("slow"))
        .await;
    eventually("the slow job is done", || async {
        (stats.snapshot().recipes_processed == 1).then_some(())
    })
    .await;
    sender.stop().await.expect("sender stops cleanly");
    let s = stats.snapshot();
    // Without the lease keeper the message would have been visible again after 1 s and
    // received a second time by this very sender.
    assert_eq!(s.received, 1, "no second delivery: {s:?}");
    assert_eq!((s.stale, s.retried, s.duplicates), (0, 0, 0), "{s:?}");
    assert_eq!(cmp.recipe("slow").await.map(|r| r.version), Some(1));
    assert_eq!(p.depth().await, 0);
    assert!(p.dead_letters().await.is_empty());
    cmp.stop().await;
}

#[tokio::test]
async fn shutdown_hands_unfinished_jobs_back_at_once() {
    let p = Pipeline::new().await;
    // A "service" that accepts connections and never answers: calls hang until their deadline.
    let hole = black_hole().await;
    let mut settings = p.settings(hole);
    settings.rpc_timeout = Duration::from_secs(60);
    settings.connect_timeout = Duration::from_secs(60);
    settings.visibility = Duration::from_secs(60);
    settings.shutdown_grace = Duration::from_secs(1);
    let sender = spawn_sender(settings).await;
    let stats = sender.stats.clone();

    p.submit(JobKind::Recipe, "recipes/w1.json", recipe_json("w1"))
        .await;
    p.submit(JobKind::Recipe, "recipes/w2.json", recipe_json("w2"))
        .await;
    eventually("both jobs are in flight", || async {
        (stats.snapshot().received == 2).then_some(())
    })
    .await;
    assert_eq!(p.depth().await, 0, "held by the sender");

    let asked = Instant::now();
    sender.stop().await.expect("sender stops cleanly");
    let took = asked.elapsed();
    // Far below the 60 s deadline and visibility timeout the jobs would otherwise wait for.
    assert!(took < Duration::from_secs(20), "shutdown took {took:?}");
    let s = stats.snapshot();
    assert_eq!(s.released_at_shutdown, 2, "{s:?}");

    // Another consumer gets them now, not after the 60 s visibility timeout.
    let again = p
        .queue
        .receive(10, Duration::ZERO, Duration::from_secs(30))
        .await
        .expect("receive");
    assert_eq!(again.len(), 2, "both jobs are visible again at once");
    assert!(p.dead_letters().await.is_empty());
}

/// A listener that accepts connections and never reads or answers, held open for the test.
async fn black_hole() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}
