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

/// A store that goes away mid-flight: calls fail as UNAVAILABLE with RetryInfo (so callers
/// retry instead of dropping work) and the health service takes the replica out of rotation.
#[tokio::test]
async fn a_store_that_goes_away_is_unavailable_and_unhealthy() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_types::StatusExt;

    require_emulator();
    let table = unique_table();
    let url = format!("dynamodb://{table}");
    let out = migrate(&url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut s = settings(&url);
    s.health_interval = std::time::Duration::from_millis(100);
    let mut app = spawn_app_with_settings(s).await;

    aws_sdk_dynamodb::Client::new(&aws_setup::load().await)
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .expect("delete the table under the running service");

    let err = app
        .client
        .get_recipe(pb::GetRecipeRequest {
            recipe_id: "101".into(),
            version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(err.get_error_details().retry_info().is_some());
    assert!(err.message().contains("migrate"), "{}", err.message());

    let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let mut status = ServingStatus::Serving;
    // The watchdog pings every 100 ms; give it a generous number of chances.
    for _ in 0..100 {
        status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "recipe.v1.ComparisonService".into(),
            })
            .await
            .expect("health")
            .into_inner()
            .status();
        if status == ServingStatus::NotServing {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, ServingStatus::NotServing);

    // The admin port's readiness follows the same ping, with the reason; liveness does not.
    let mut ready = admin_http::scrape::get(app.admin, "/readyz")
        .await
        .expect("GET /readyz");
    for _ in 0..100 {
        if ready.status == 503 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        ready = admin_http::scrape::get(app.admin, "/readyz")
            .await
            .expect("GET /readyz");
    }
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(
        ready.body.starts_with("not ready: store ping failed: "),
        "{}",
        ready.body
    );
    let live = admin_http::scrape::get(app.admin, "/livez")
        .await
        .expect("GET /livez");
    assert_eq!(live.status, 200);
    let text = app.metrics().await;
    assert_eq!(
        admin_http::scrape::value(&text, "recipe_mesh_comparison_store_up", &[]),
        Some(0.0),
        "{text}"
    );
    let errors = "recipe_mesh_comparison_store_errors_total";
    assert!(
        admin_http::scrape::sum(&text, errors, &[("operation", "ping")]) >= 1.0,
        "{text}"
    );
    assert!(
        admin_http::scrape::sum(&text, errors, &[("operation", "get_recipe")]) >= 1.0,
        "{text}"
    );
}

/// Two replicas on one table. Replica A has compared makes with version 1 and remembers it;
/// replica B writes version 2. A's next make is compared with version 2: a make is never
/// compared with an outdated original, whatever a replica remembers.
#[tokio::test]
async fn a_replica_compares_with_a_version_written_by_another() {
    require_emulator();
    let url = format!("dynamodb://{}", unique_table());
    let out = migrate(&url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut a = spawn_app_with_settings(settings(&url)).await;
    let mut b = spawn_app_with_settings(settings(&url)).await;
    a.client
        .create_recipe(pb::CreateRecipeRequest {
            recipe: Some(pancakes()),
            idempotency_key: String::new(),
        })
        .await
        .expect("create");
    let record = |key: &str| pb::RecordMakeRequest {
        make: Some(double_batch()),
        idempotency_key: key.into(),
        ..Default::default()
    };
    let first = a.client.record_make(record("k1")).await.expect("make 1");
    assert_eq!(first.into_inner().make.expect("make").recipe_version, 1);

    let mut changed = pancakes();
    changed.recipe_name = "Pancakes, revised".into();
    let written = b
        .client
        .update_recipe(pb::UpdateRecipeRequest {
            recipe: Some(changed),
            ..Default::default()
        })
        .await
        .expect("update on the other replica")
        .into_inner();
    assert_eq!(written.recipe.expect("recipe").version, 2);

    let second = a.client.record_make(record("k2")).await.expect("make 2");
    let second = second.into_inner().make.expect("make");
    assert_eq!(second.recipe_version, 2);
    let renamed = second.diff.expect("diff").name.expect("name differs");
    assert_eq!(renamed.from, "Pancakes, revised", "compared with version 2");
    let stats = b
        .client
        .get_recipe_stats(pb::GetRecipeStatsRequest {
            recipe_id: "101".into(),
            top: 0,
        })
        .await
        .expect("stats")
        .into_inner();
    assert_eq!(stats.makes, 2);
    a.stop().await.expect("stop a");
    b.stop().await.expect("stop b");
}
