//! The service on DynamoDB (a moto server): table creation is the `migrate` command, not a side
//! effect of serving, and the API behaves as on the embedded store.
//! Needs AWS_ENDPOINT_URL pointing at moto; scripts/test.sh starts one and sets it.

mod support;

use recipe_proto::recipe::v1 as pb;
use std::process::Command;
use support::{double_batch, pancakes, settings, spawn_app_with_settings};

fn require_emulator() {
    assert!(
        std::env::var_os("AWS_ENDPOINT_URL").is_some(),
        "AWS_ENDPOINT_URL is not set: run the tests with scripts/test.sh, which starts a moto \
         server, or point AWS_ENDPOINT_URL at one"
    );
}

fn unique_table() -> String {
    format!("recipe-mesh-test-{}", uuid::Uuid::new_v4().simple())
}

fn migrate(url: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_comparison"))
        .args(["migrate", "--store", url])
        .output()
        .expect("run comparison migrate")
}

#[tokio::test]
async fn serving_needs_the_table_that_migrate_creates() {
    require_emulator();
    let url = format!("dynamodb://{}", unique_table());

    let err = comparison::startup::Application::build(settings(&url))
        .await
        .err()
        .expect("no table yet: serving must refuse to start");
    let chain = format!("{err:#}");
    assert!(
        chain.contains("migrate"),
        "the error should say how to fix it: {chain}"
    );

    let out = migrate(&url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Running it again is harmless.
    let out = migrate(&url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut app = spawn_app_with_settings(settings(&url)).await;
    let c = &mut app.client;
    c.create_recipe(pb::CreateRecipeRequest {
        recipe: Some(pancakes()),
        idempotency_key: String::new(),
    })
    .await
    .expect("create");
    let first = c
        .record_make(pb::RecordMakeRequest {
            make: Some(double_batch()),
            idempotency_key: "s3://b/makes/1.json#e".into(),
            ..Default::default()
        })
        .await
        .expect("record")
        .into_inner();
    assert!(!first.duplicate);
    let again = c
        .record_make(pb::RecordMakeRequest {
            make: Some(double_batch()),
            idempotency_key: "s3://b/makes/1.json#e".into(),
            ..Default::default()
        })
        .await
        .expect("replay")
        .into_inner();
    assert!(again.duplicate);
    let stats = c
        .get_recipe_stats(pb::GetRecipeStatsRequest {
            recipe_id: "101".into(),
            top: 0,
        })
        .await
        .expect("stats")
        .into_inner();
    assert_eq!(stats.makes, 1);
    assert_eq!(stats.mean_scale_factor, 2.0);
    app.stop().await.expect("stop");
}
