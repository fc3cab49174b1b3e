//! Every method of recipe.v1.ComparisonService through a tonic client against a running server
//! on the embedded store, including every error class a caller can get.

mod support;

use recipe_proto::recipe::v1 as pb;
use support::{double_batch, ingredient, pancakes, recipe, spawn_app};
use tonic::Code;
use tonic_types::StatusExt;

fn violations(status: &tonic::Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

fn create(r: pb::Recipe) -> pb::CreateRecipeRequest {
    pb::CreateRecipeRequest {
        recipe: Some(r),
        idempotency_key: String::new(),
    }
}

fn record(make: pb::Recipe, key: &str) -> pb::RecordMakeRequest {
    pb::RecordMakeRequest {
        make: Some(make),
        idempotency_key: key.into(),
        source: format!("test://{key}"),
        recipe_version: 0,
    }
}

#[tokio::test]
async fn recipes_are_created_versioned_and_old_versions_stay_readable() {
    let mut app = spawn_app().await;
    let c = &mut app.client;

    let created = c
        .create_recipe(create(recipe("r1")))
        .await
        .expect("create")
        .into_inner();
    assert!(created.created);
    assert_eq!(created.recipe.as_ref().map(|r| r.version), Some(1));

    let err = c.create_recipe(create(recipe("r1"))).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let info = err.get_error_details();
    let info = info.resource_info().expect("resource info");
    assert_eq!(
        (info.resource_type.as_str(), info.resource_name.as_str()),
        ("recipe", "r1")
    );

    let mut v2 = recipe("r1");
    v2.ingredients[0].quantity = 250.0;
    let updated = c
        .update_recipe(pb::UpdateRecipeRequest {
            recipe: Some(v2.clone()),
            expected_version: 1,
            ..Default::default()
        })
        .await
        .expect("update")
        .into_inner();
    assert!(updated.changed);
    assert_eq!(updated.recipe.as_ref().map(|r| r.version), Some(2));

    // Same content again: nothing written, still version 2.
    let same = c
        .update_recipe(pb::UpdateRecipeRequest {
            recipe: Some(v2),
            ..Default::default()
        })
        .await
        .expect("no-op update")
        .into_inner();
    assert!(!same.changed);
    assert_eq!(same.recipe.map(|r| r.version), Some(2));

    let v1 = c
        .get_recipe(pb::GetRecipeRequest {
            recipe_id: "r1".into(),
            version: 1,
        })
        .await
        .expect("old version")
        .into_inner();
    assert_eq!(v1.recipe.expect("recipe").ingredients[0].quantity, 200.0);
    let latest = c
        .get_recipe(pb::GetRecipeRequest {
            recipe_id: "r1".into(),
            version: 0,
        })
        .await
        .expect("latest")
        .into_inner();
    assert_eq!(latest.version, 2);

    let err = c
        .get_recipe(pb::GetRecipeRequest {
            recipe_id: "r1".into(),
            version: 3,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let stale = c
        .update_recipe(pb::UpdateRecipeRequest {
            recipe: Some(recipe("r1")),
            expected_version: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::FailedPrecondition);
    assert!(stale.get_error_details().precondition_failure().is_some());

    let missing = c
        .update_recipe(pb::UpdateRecipeRequest {
            recipe: Some(recipe("nope")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let upserted = c
        .update_recipe(pb::UpdateRecipeRequest {
            recipe: Some(recipe("nope")),
            allow_missing: true,
            ..Default::default()
        })
        .await
        .expect("allow_missing creates")
        .into_inner();
    assert_eq!(upserted.recipe.map(|r| r.version), Some(1));
}

#[tokio::test]
async fn recipe_writes_with_an_idempotency_key_are_replayed_not_repeated() {
    let mut app = spawn_app().await;
    let c = &mut app.client;
    let req = pb::CreateRecipeRequest {
        recipe: Some(recipe("r1")),
        idempotency_key: "s3://b/recipes/r1.json#e1".into(),
    };
    assert!(
        c.create_recipe(req.clone())
            .await
            .expect("first")
            .into_inner()
            .created
    );
    let replay = c.create_recipe(req).await.expect("replay").into_inner();
    assert!(!replay.created);
    assert_eq!(replay.recipe.map(|r| r.version), Some(1));
}

#[tokio::test]
async fn recipes_are_listed_in_pages_by_id() {
    let mut app = spawn_app().await;
    let c = &mut app.client;
    for id in ["e", "a", "d", "b", "c"] {
        c.create_recipe(create(recipe(id))).await.expect("create");
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = c
            .list_recipes(pb::ListRecipesRequest {
                page_size: 2,
                page_token: token,
            })
            .await
            .expect("page")
            .into_inner();
        pages += 1;
        assert!(page.recipes.len() <= 2);
        seen.extend(page.recipes.into_iter().map(|r| r.recipe_id));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    assert_eq!(pages, 3);

    let err = c
        .list_recipes(pb::ListRecipesRequest {
            page_size: 2,
            page_token: "not-a-token".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(violations(&err), ["pageToken"]);
}

#[tokio::test]
async fn a_make_is_compared_recorded_once_and_counted_once() {
    let mut app = spawn_app().await;
    let c = &mut app.client;
    c.create_recipe(create(pancakes())).await.expect("create");

    let first = c
        .record_make(record(double_batch(), "s3://bucket/makes/1.json#etag1"))
        .await
        .expect("record")
        .into_inner();
    assert!(!first.duplicate);
    let make = first.make.expect("make");
    assert!(make.make_id.starts_with("mk_"));
    assert_eq!((make.recipe_id.as_str(), make.recipe_version), ("101", 1));
    let diff = make.diff.expect("diff");

    // A double batch: one factor, and only the deviations listed.
    assert_eq!(diff.scaling.as_ref().map(|s| s.factor), Some(2.0));
    let by_id = |id: &str| {
        diff.ingredients
            .iter()
            .find(|i| {
                i.original.as_ref().map(|o| o.ingredient_id.as_str()) == Some(id)
                    || i.made.as_ref().map(|m| m.ingredient_id.as_str()) == Some(id)
            })
            .cloned()
    };
    let butter = by_id("6").expect("butter changed");
    assert!(butter.substituted);
    let q = butter.quantity.expect("quantity");
    assert_eq!(q.kind(), pb::QuantityChangeKind::Changed);
    assert_eq!((q.expected, q.actual), (120.0, 150.0));
    assert_eq!(
        by_id("7").map(|i| i.kind()),
        Some(pb::IngredientChangeKind::Added)
    );
    // 0.25 cup of sugar is exactly twice 2 tbsp: not a quantity change.
    if let Some(sugar) = by_id("2") {
        assert_eq!(
            sugar.quantity.map(|q| q.kind()),
            Some(pb::QuantityChangeKind::Equivalent)
        );
    }
    assert!(by_id("1").is_none(), "flour followed the scaling factor");
    let kinds: Vec<_> = diff.steps.iter().map(|s| s.kind()).collect();
    assert!(kinds.contains(&pb::StepChangeKind::Moved), "{kinds:?}");
    assert!(kinds.contains(&pb::StepChangeKind::Inserted), "{kinds:?}");
    assert_eq!(
        diff.rating.map(|r| (r.from, r.to)),
        Some((Some(4.0), Some(5.0)))
    );
    assert!(diff.similarity > 0.0 && diff.similarity < 1.0);
    assert!(!diff.summary.is_empty());

    // The same key again: the first result, nothing written.
    let again = c
        .record_make(record(double_batch(), "s3://bucket/makes/1.json#etag1"))
        .await
        .expect("replay")
        .into_inner();
    assert!(again.duplicate);
    assert_eq!(again.make.map(|m| m.make_id), Some(make.make_id.clone()));

    // The same key for a different make is refused.
    let mut other = double_batch();
    other.rating = Some(1.0);
    let err = c
        .record_make(record(other, "s3://bucket/makes/1.json#etag1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    let stats = c
        .get_recipe_stats(pb::GetRecipeStatsRequest {
            recipe_id: "101".into(),
            top: 0,
        })
        .await
        .expect("stats")
        .into_inner();
    assert_eq!(stats.makes, 1);
    assert_eq!(stats.scaled_makes, 1);
    assert_eq!(stats.mean_scale_factor, 2.0);
    let butter = stats
        .ingredients
        .iter()
        .find(|i| i.key == "6")
        .expect("butter stats");
    assert_eq!((butter.substituted, butter.quantity_changed), (1, 1));
    assert_eq!(butter.substitutes[0].name, "margarine");

    let got = c
        .get_make(pb::GetMakeRequest {
            make_id: make.make_id.clone(),
        })
        .await
        .expect("get make")
        .into_inner();
    assert_eq!(got.make_id, make.make_id);
    assert_eq!(got.source, "test://s3://bucket/makes/1.json#etag1");
}

#[tokio::test]
async fn concurrent_duplicate_makes_are_stored_once() {
    let app = spawn_app().await;
    let mut c = app.client.clone();
    c.create_recipe(create(pancakes())).await.expect("create");
    let calls = (0..16).map(|_| {
        let mut c = app.client.clone();
        async move {
            c.record_make(record(double_batch(), "same-key"))
                .await
                .map(|r| r.into_inner().duplicate)
        }
    });
    let results = futures::future::join_all(calls).await;
    let fresh = results.iter().filter(|r| matches!(r, Ok(false))).count();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(fresh, 1);
    let stats = c
        .get_recipe_stats(pb::GetRecipeStatsRequest {
            recipe_id: "101".into(),
            top: 5,
        })
        .await
        .expect("stats")
        .into_inner();
    assert_eq!(stats.makes, 1);
}

#[tokio::test]
async fn makes_are_listed_newest_first_in_pages() {
    let mut app = spawn_app().await;
    let c = &mut app.client;
    c.create_recipe(create(recipe("r1"))).await.expect("create");
    let mut ids = Vec::new();
    for n in 0..5 {
        let mut make = recipe("r1");
        make.ingredients[0].quantity = 200.0 + f64::from(n);
        let r = c
            .record_make(record(make, &format!("k{n}")))
            .await
            .expect("record")
            .into_inner();
        ids.push(r.make.expect("make").make_id);
        // Distinct record times, so "newest first" is observable.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_makes(pb::ListMakesRequest {
                recipe_id: "r1".into(),
                page_size: 2,
                page_token: token,
            })
            .await
            .expect("page")
            .into_inner();
        seen.extend(page.makes.into_iter().map(|m| m.make_id));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen, ids);

    let err = c
        .list_makes(pb::ListMakesRequest {
            recipe_id: "ghost".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .get_make(pb::GetMakeRequest {
            make_id: "mk_missing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn invalid_requests_get_field_violations_a_caller_can_act_on() {
    let mut app = spawn_app().await;
    let c = &mut app.client;
    c.create_recipe(create(recipe("r1"))).await.expect("create");

    let mut bad = recipe("r1");
    bad.ingredients[0].quantity = -1.0;
    bad.rating = Some(11.0);
    let err = c.record_make(record(bad, "")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        violations(&err),
        [
            "make.rating",
            "make.ingredients[0].quantity",
            "idempotencyKey"
        ]
    );

    let err = c
        .record_make(pb::RecordMakeRequest {
            idempotency_key: "k".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["make"]);

    let mut dup = recipe("r1");
    dup.ingredients.push(ingredient("1", 1.0, "g", "salt"));
    let err = c.create_recipe(create(dup)).await.unwrap_err();
    assert_eq!(violations(&err), ["recipe.ingredients[2].ingredientId"]);

    let err = c
        .record_make(record(recipe("unknown"), "k2"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let details = err.get_error_details();
    assert_eq!(
        details.resource_info().map(|r| r.resource_name.as_str()),
        Some("unknown")
    );

    let err = c
        .get_recipe(pb::GetRecipeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["recipeId"]);
    let err = c
        .get_recipe_stats(pb::GetRecipeStatsRequest {
            recipe_id: "r1".into(),
            top: 1000,
        })
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["top"]);
    let err = c
        .get_recipe_stats(pb::GetRecipeStatsRequest {
            recipe_id: "ghost".into(),
            top: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn compare_stores_nothing() {
    let mut app = spawn_app().await;
    let c = &mut app.client;
    let diff = c
        .compare_recipes(pb::CompareRecipesRequest {
            original: Some(pancakes()),
            made: Some(double_batch()),
        })
        .await
        .expect("compare")
        .into_inner()
        .diff
        .expect("diff");
    assert_eq!(diff.scaling.map(|s| s.factor), Some(2.0));
    let same = c
        .compare_recipes(pb::CompareRecipesRequest {
            original: Some(pancakes()),
            made: Some(pancakes()),
        })
        .await
        .expect("compare")
        .into_inner()
        .diff
        .expect("diff");
    assert!(same.ingredients.is_empty() && same.steps.is_empty());
    assert_eq!(same.similarity, 1.0);

    let listed = c
        .list_recipes(pb::ListRecipesRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert!(listed.recipes.is_empty());

    let mut bad = pancakes();
    bad.recipe_name.clear();
    let err = c
        .compare_recipes(pb::CompareRecipesRequest {
            original: Some(bad),
            made: None,
        })
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["original.recipeName", "made"]);
}

#[tokio::test]
async fn oversized_messages_are_refused_and_the_server_keeps_serving() {
    let mut app = spawn_app().await;
    let c = &mut app.client;
    let mut huge = recipe("big");
    huge.steps[0].step_text = "x".repeat(5 * 1024 * 1024);
    let err = c.create_recipe(create(huge)).await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    c.create_recipe(create(recipe("ok")))
        .await
        .expect("still serving");
}

#[tokio::test]
async fn health_reports_serving_and_the_server_stops_gracefully() {
    let app = spawn_app().await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    for service in ["", "recipe.v1.ComparisonService"] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health")
            .into_inner()
            .status();
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving
        );
    }
    app.stop().await.expect("graceful stop");
}

/// grpcurl 1.8 only speaks v1alpha; this checks that v1, which newer clients use, answers too.
#[tokio::test]
async fn reflection_v1_lists_the_services() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let app = spawn_app().await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection v1")
        .into_inner();
    let reply = replies.message().await.expect("reply").expect("one reply");
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply: {reply:?}");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for service in [
        "recipe.v1.ComparisonService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(
            names.iter().any(|n| n == service),
            "{service} missing: {names:?}"
        );
    }
}
