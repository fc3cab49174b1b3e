//! The whole pipeline on S3, SQS and DynamoDB (the emulator `AWS_ENDPOINT_URL` points at;
//! scripts/test.sh starts moto), in both detection modes: 500 files stored exactly once with
//! each service SIGKILLed mid-run (polling), and with the comparison service down for 20 s and
//! poison files among them (S3 event notifications).

use e2e::workload::{makes, poison, recipes};
use e2e::{Backend, Pipeline, Service};
use std::collections::BTreeMap;
use std::time::Duration;

const RECIPES: usize = 50;
const MAKES_PER_RECIPE: usize = 9;
const DEADLINE: Duration = Duration::from_secs(420);

fn expected(tag: &str) -> BTreeMap<String, u64> {
    (0..RECIPES)
        .map(|r| (format!("{tag}-r{r:03}"), MAKES_PER_RECIPE as u64))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_five_hundred_files_with_each_service_killed_mid_run() {
    let mut p = Pipeline::new(Backend::AwsPoll, &[]).await;
    p.start_all().await;
    p.upload_recipes(&recipes("ap", RECIPES), DEADLINE).await;
    for (wave, victim) in [Service::Watcher, Service::Sender, Service::Comparison]
        .into_iter()
        .enumerate()
    {
        let before = p.stored_makes().await;
        p.upload_all(&makes("ap", RECIPES, wave * 3, 3)).await;
        p.wait_until("the wave under way", DEADLINE, |m| {
            m.values().sum::<u64>() > before
        })
        .await;
        p.kill(victim);
        tokio::time::sleep(Duration::from_millis(500)).await;
        p.start(victim).await;
    }
    let want = expected("ap");
    p.wait_until("all makes stored after the kills", DEADLINE, |m| m == &want)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    p.assert_exactly(&want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_events_with_comparison_down_for_twenty_seconds_and_poison_files() {
    let mut p = Pipeline::new(
        Backend::AwsEvents,
        &[
            ("SENDER_UNKNOWN_RECIPE_ATTEMPTS", "3"),
            ("SENDER_BACKOFF_MAX", "1s"),
        ],
    )
    .await;
    p.start_all().await;
    p.upload_recipes(&recipes("ae", RECIPES), DEADLINE).await;
    p.upload_all(&makes("ae", RECIPES, 0, 4)).await;
    p.wait_until("the run under way", DEADLINE, |m| {
        m.values().sum::<u64>() > 0
    })
    .await;
    p.terminate(Service::Comparison);
    let poison = poison("ae");
    let bad: Vec<_> = poison.iter().map(|(f, _)| f.clone()).collect();
    p.upload_all(&bad).await;
    p.upload_all(&makes("ae", RECIPES, 4, 5)).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    p.start(Service::Comparison).await;
    let want = expected("ae");
    p.wait_until("all makes stored after the outage", DEADLINE, |m| {
        m == &want
    })
    .await;
    p.assert_dead_lettered(&poison, DEADLINE).await;
    assert_eq!(p.makes_per_recipe().await.expect("answers"), want);
}

/// The trace of one make on AWS: the context crosses SQS as message attributes, and the
/// store's DynamoDB write is a client span under the comparison service's store span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_make_is_one_trace_across_sqs_and_dynamodb() {
    let trace =
        e2e::traces::trace_one_make(Backend::AwsPoll, "tr", Some("DynamoDB.TransactWriteItems"))
            .await;
    // The file was read from S3 inside the job's span.
    assert!(
        trace
            .spans
            .iter()
            .any(|s| s.service == "sender" && s.name == "S3.GetObject"),
        "{:#?}",
        trace.spans
    );
}
