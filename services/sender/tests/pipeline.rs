//! The sender against a real queue, folder and comparison service: jobs get processed once,
//! in any order, and bad input ends in the dead letters with a reason while good input around it
//! goes through.

mod support;

use pipeline_job::JobKind;
use recipe_proto::recipe::v1 as pb;
use std::collections::BTreeMap;
use support::{Pipeline, eventually, example, make_json, recipe_json, spawn_sender};

#[tokio::test]
async fn a_recipe_and_its_make_are_processed_and_their_messages_deleted() {
    let p = Pipeline::new().await;
    let cmp = p.start_comparison().await;
    let sender = spawn_sender(p.settings(cmp.addr)).await;

    p.submit(
        JobKind::Recipe,
        "recipes/pancakes.json",
        example("recipes/pancakes.json"),
    )
    .await;
    eventually("the recipe is stored", || async {
        cmp.recipe("101").await.filter(|r| r.version == 1)
    })
    .await;
    let make = p
        .submit(
            JobKind::Make,
            "makes/pancakes-double-batch.json",
            example("makes/pancakes-double-batch.json"),
        )
        .await;
    let makes = eventually("the make is stored", || async {
        Some(cmp.makes("101").await).filter(|m| !m.is_empty())
    })
    .await;
    assert_eq!(makes.len(), 1);
    let stored = &makes[0];
    assert_eq!(stored.source, make.source());
    assert_eq!(stored.idempotency_key, make.idempotency_key(&make.etag));
    assert_eq!(stored.recipe_version, 1);
    let fetched = cmp
        .client
        .clone()
        .get_make(pb::GetMakeRequest {
            make_id: stored.make_id.clone(),
        })
        .await
        .expect("GetMake finds the make")
        .into_inner();
    assert_eq!(fetched.make_id, stored.make_id);
    assert!(
        fetched.diff.is_some_and(|d| !d.summary.is_empty()),
        "the make was compared with its recipe"
    );

    eventually("both jobs are counted", || async {
        let s = sender.snapshot();
        (s.recipes_processed == 1 && s.makes_processed == 1).then_some(())
    })
    .await;
    let s = sender.snapshot();
    assert_eq!((s.received, s.retried, s.duplicates), (2, 0, 0), "{s:?}");
    sender.stop().await.expect("sender stops cleanly");
    // Not handed back for later (nothing was retried) and not waiting: deleted.
    assert_eq!(p.depth().await, 0, "both messages were deleted");
    assert!(p.dead_letters().await.is_empty());
    cmp.stop().await;
}

#[tokio::test]
async fn a_make_before_its_recipe_is_retried_until_the_recipe_arrives() {
    let p = Pipeline::new().await;
    let cmp = p.start_comparison().await;
    let mut settings = p.settings(cmp.addr);
    // Enough attempts that the recipe surely arrives in time (backoff 0.1 s doubling to 1 s).
    settings.unknown_recipe_attempts = 8;
    let sender = spawn_sender(settings).await;

    p.submit(JobKind::Make, "makes/m1.json", make_json("r1", 5))
        .await;
    eventually("the make is retried for want of its recipe", || async {
        (sender.snapshot().retried >= 1).then_some(())
    })
    .await;
    assert!(cmp.makes("r1").await.is_empty());
    p.submit(JobKind::Recipe, "recipes/r1.json", recipe_json("r1"))
        .await;

    let makes = eventually("the make is stored", || async {
        Some(cmp.makes("r1").await).filter(|m| !m.is_empty())
    })
    .await;
    assert_eq!(makes.len(), 1);
    let diff = makes[0].diff.as_ref().expect("diff");
    assert!(
        diff.scaling.as_ref().is_some_and(|s| s.factor == 2.0),
        "compared with the recipe: {diff:?}"
    );
    eventually("the make job is counted once", || async {
        (sender.snapshot().makes_processed == 1).then_some(())
    })
    .await;
    sender.stop().await.expect("sender stops cleanly");
    assert!(p.dead_letters().await.is_empty());
    assert_eq!(p.depth().await, 0);
    cmp.stop().await;
}

#[tokio::test]
async fn the_same_file_version_sent_twice_is_recorded_once() {
    let p = Pipeline::new().await;
    let cmp = p.start_comparison().await;
    let sender = spawn_sender(p.settings(cmp.addr)).await;
    p.submit(JobKind::Recipe, "recipes/r2.json", recipe_json("r2"))
        .await;
    eventually("the recipe is stored", || async { cmp.recipe("r2").await }).await;

    let make = p
        .submit(JobKind::Make, "makes/twice.json", make_json("r2", 3))
        .await;
    p.enqueue(&make).await; // the watcher noticed the same file version again
    eventually("both make jobs are processed", || async {
        (sender.snapshot().makes_processed == 2).then_some(())
    })
    .await;
    let s = sender.snapshot();
    assert_eq!(s.duplicates, 1, "the second call was a duplicate: {s:?}");
    assert_eq!(cmp.makes("r2").await.len(), 1, "one make stored");
    sender.stop().await.expect("sender stops cleanly");
    assert!(p.dead_letters().await.is_empty());
    assert_eq!(p.depth().await, 0);
    cmp.stop().await;
}

#[tokio::test]
async fn poison_files_are_dead_lettered_with_reasons_and_good_files_go_through() {
    let p = Pipeline::new().await;
    let cmp = p.start_comparison().await;
    let mut settings = p.settings(cmp.addr);
    settings.max_file_bytes = 4096;
    let sender = spawn_sender(settings).await;

    let good = recipe_json("good");
    p.submit(JobKind::Recipe, "recipes/good.json", good.clone())
        .await;
    p.submit(JobKind::Recipe, "recipes/broken.json", "{ \"recipeName\": ")
        .await;
    let wrong_type = good.replacen(r#""quantity": 2"#, r#""quantity": "2""#, 1);
    p.submit(JobKind::Recipe, "recipes/wrong-type.json", wrong_type)
        .await;
    let negative = make_json("good", 4).replacen(r#""quantity": 4"#, r#""quantity": -4"#, 1);
    p.submit(JobKind::Make, "makes/negative.json", negative)
        .await;
    let huge = format!("{good}{}", " ".repeat(5000));
    p.submit(JobKind::Recipe, "recipes/huge.json", huge).await;
    p.submit(JobKind::Make, "makes/orphan.json", make_json("nope", 4))
        .await;
    let gone = p
        .put(JobKind::Make, "makes/gone.json", make_json("good", 2))
        .await;
    std::fs::remove_file(p.inbox().join("makes/gone.json")).expect("remove file");
    p.enqueue(&gone).await;
    p.send_raw("hello, I am not a job").await;
    let mut elsewhere = p
        .put(JobKind::Make, "makes/elsewhere.json", make_json("good", 2))
        .await;
    elsewhere.bucket = "some-other-bucket".into();
    p.enqueue(&elsewhere).await;
    p.submit(JobKind::Make, "makes/good.json", make_json("good", 5))
        .await;

    let letters = eventually("every poison message is dead-lettered", || async {
        Some(p.dead_letters().await).filter(|l| l.len() >= 8)
    })
    .await;
    let by_key: BTreeMap<String, (String, u32)> = letters
        .iter()
        .map(|l| {
            let key = pipeline_job::Job::from_json(&l.body)
                .map(|j| j.key)
                .unwrap_or_else(|_| l.body.clone());
            (key, (l.reason.clone(), l.receive_count))
        })
        .collect();
    let reason = |key: &str| {
        by_key
            .get(key)
            .unwrap_or_else(|| panic!("no dead letter for {key}: {by_key:#?}"))
            .0
            .clone()
    };
    let expect = |key: &str, fragments: &[&str]| {
        let r = reason(key);
        for f in fragments {
            assert!(r.contains(f), "reason for {key} lacks {f:?}: {r}");
        }
    };
    expect("recipes/broken.json", &["not a valid recipe document"]);
    expect(
        "recipes/wrong-type.json",
        &["ingredients[0].quantity: invalid type: string \"2\""],
    );
    expect(
        "makes/negative.json",
        &["ingredients[0].quantity: must be a number from 0", "got -4"],
    );
    expect(
        "recipes/huge.json",
        &["bytes, over the 4096-byte limit", "recipes/huge.json"],
    );
    expect(
        "makes/orphan.json",
        &[
            "make of unknown recipe \"nope\" after 3 attempts",
            "NOT_FOUND",
        ],
    );
    assert_eq!(
        by_key["makes/orphan.json"].1, 3,
        "dead-lettered at attempt 3"
    );
    expect("makes/gone.json", &["object no longer exists"]);
    expect("hello, I am not a job", &["not a job"]);
    expect(
        "makes/elsewhere.json",
        &["job is for bucket \"some-other-bucket\" (dir), but this sender reads bucket \"inbox\""],
    );
    assert_eq!(
        letters.len(),
        8,
        "nothing else was dead-lettered: {by_key:#?}"
    );

    let makes = eventually("the good make is stored", || async {
        Some(cmp.makes("good").await).filter(|m| !m.is_empty())
    })
    .await;
    assert_eq!(makes.len(), 1);
    assert_eq!(makes[0].make.as_ref().and_then(|m| m.rating), Some(5.0));
    eventually("the good jobs are counted", || async {
        let s = sender.snapshot();
        (s.recipes_processed == 1 && s.makes_processed == 1 && s.dead_lettered == 8).then_some(())
    })
    .await;
    sender.stop().await.expect("sender stops cleanly");
    assert_eq!(p.depth().await, 0);
    cmp.stop().await;
}
