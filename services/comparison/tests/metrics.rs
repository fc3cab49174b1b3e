//! The admin port of a running comparison service: after real calls through a tonic client,
//! /metrics counts them by method and code, the makes by outcome, the diffs and the store's
//! errors; /livez and /readyz answer; health checks are not counted; stopping closes the port.

mod support;

use admin_http::scrape::{self, sum, value};
use recipe_proto::recipe::v1 as pb;
use support::{double_batch, pancakes, spawn_app};

fn record(key: &str) -> pb::RecordMakeRequest {
    pb::RecordMakeRequest {
        make: Some(double_batch()),
        idempotency_key: key.into(),
        source: format!("test://{key}"),
        recipe_version: 0,
    }
}

const REQUESTS: &str = "recipe_mesh_comparison_requests_total";

#[tokio::test]
async fn the_admin_port_counts_requests_makes_diffs_and_store_errors() {
    let mut app = spawn_app().await;
    let c = &mut app.client;
    c.create_recipe(pb::CreateRecipeRequest {
        recipe: Some(pancakes()),
        idempotency_key: String::new(),
    })
    .await
    .expect("create");
    c.record_make(record("m1")).await.expect("first make");
    c.record_make(record("m2")).await.expect("second make");
    let replay = c.record_make(record("m1")).await.expect("replay");
    assert!(replay.into_inner().duplicate);
    let missing = c
        .get_recipe(pb::GetRecipeRequest {
            recipe_id: "nope".into(),
            version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    c.compare_recipes(pb::CompareRecipesRequest {
        original: Some(pancakes()),
        made: Some(double_batch()),
    })
    .await
    .expect("compare");
    // A probe's health check: not an API request.
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health");

    let text = app.metrics().await;
    let series = |name: &str, labels: &[(&str, &str)]| {
        value(&text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
    };
    assert_eq!(
        series(REQUESTS, &[("method", "RecordMake"), ("code", "OK")]),
        3.0
    );
    assert_eq!(
        series(REQUESTS, &[("method", "GetRecipe"), ("code", "NOT_FOUND")]),
        1.0
    );
    assert_eq!(
        sum(&text, REQUESTS, &[]),
        6.0,
        "create, three makes, the missing recipe and the compare; no health check\n{text}"
    );
    assert!(!text.contains("grpc.health"), "{text}");
    assert_eq!(
        series(
            "recipe_mesh_comparison_request_duration_seconds_count",
            &[("method", "RecordMake")]
        ),
        3.0
    );
    assert_eq!(
        series(
            "recipe_mesh_comparison_makes_recorded_total",
            &[("outcome", "recorded")]
        ),
        2.0
    );
    assert_eq!(
        series(
            "recipe_mesh_comparison_makes_recorded_total",
            &[("outcome", "duplicate")]
        ),
        1.0
    );
    // Each RecordMake compares (the replay too, before the store recognises it), and so does
    // CompareRecipes.
    assert_eq!(
        series("recipe_mesh_comparison_diff_duration_seconds_count", &[]),
        4.0
    );
    assert_eq!(
        series(
            "recipe_mesh_comparison_store_errors_total",
            &[("operation", "get_recipe"), ("kind", "not_found")]
        ),
        1.0
    );
    assert_eq!(
        series(
            "recipe_mesh_comparison_store_duration_seconds_count",
            &[("operation", "record_make")]
        ),
        3.0
    );
    assert_eq!(series("recipe_mesh_comparison_store_up", &[]), 1.0);

    let ready = scrape::get(app.admin, "/readyz")
        .await
        .expect("GET /readyz");
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    let live = scrape::get(app.admin, "/livez").await.expect("GET /livez");
    assert_eq!(live.status, 200);

    let admin = app.admin;
    app.stop().await.expect("graceful stop");
    assert!(
        scrape::get(admin, "/livez").await.is_err(),
        "the admin port closes with the service"
    );
}
