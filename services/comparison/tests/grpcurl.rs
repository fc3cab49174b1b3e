//! The service as an operator sees it: the real grpcurl binary, no .proto files at hand, only
//! server reflection. Needs `grpcurl` on PATH (scripts/test.sh installs it) or `GRPCURL` set.

mod support;

use serde_json::{Value, json};
use std::net::SocketAddr;
use std::process::Command;
use support::spawn_app;

struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn grpcurl(args: &[&str]) -> Output {
    let bin = std::env::var("GRPCURL").unwrap_or_else(|_| "grpcurl".into());
    let out = Command::new(&bin)
        .arg("-plaintext")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {bin:?} ({e}): run the tests with scripts/test.sh, which installs \
                 grpcurl, or set GRPCURL to a grpcurl binary"
            )
        });
    Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Calls `method` with the JSON body and returns the parsed reply.
fn call(addr: SocketAddr, method: &str, body: Value) -> Value {
    let target = addr.to_string();
    let data = body.to_string();
    let out = grpcurl(&["-d", &data, &target, method]);
    assert!(out.ok, "{method} failed: {}{}", out.stdout, out.stderr);
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{method} printed non-JSON ({e}): {}", out.stdout))
}

/// Calls `method` expecting a failure; returns grpcurl's error report (stdout + stderr).
fn call_err(addr: SocketAddr, method: &str, body: Value) -> String {
    let target = addr.to_string();
    let data = body.to_string();
    let out = grpcurl(&["-d", &data, &target, method]);
    assert!(!out.ok, "{method} unexpectedly succeeded: {}", out.stdout);
    format!("{}{}", out.stdout, out.stderr)
}

const SVC: &str = "recipe.v1.ComparisonService";

fn example(path: &str) -> Value {
    let full = format!("{}/../../examples/{path}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(full).expect("example")).expect("example JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn reflection_lists_and_describes_every_service() {
    let app = spawn_app().await;
    let target = app.addr.to_string();
    let out = grpcurl(&[&target, "list"]);
    assert!(out.ok, "list failed: {}", out.stderr);
    for service in [
        SVC,
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(
            out.stdout.lines().any(|l| l == service),
            "{service} missing from {}",
            out.stdout
        );
    }
    let out = grpcurl(&[&target, "describe", SVC]);
    assert!(out.ok, "describe failed: {}", out.stderr);
    for method in [
        "CreateRecipe",
        "GetRecipe",
        "UpdateRecipe",
        "ListRecipes",
        "RecordMake",
        "GetMake",
        "ListMakes",
        "CompareRecipes",
        "GetRecipeStats",
    ] {
        assert!(
            out.stdout.contains(&format!("rpc {method} (")),
            "{method} not described: {}",
            out.stdout
        );
    }
    let out = grpcurl(&[&target, "describe", "recipe.v1.Ingredient"]);
    assert!(out.stdout.contains("ingredient_name"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_method_answers_through_grpcurl() {
    let app = spawn_app().await;
    let a = app.addr;
    let recipe = example("recipes/pancakes.json");
    let make = example("makes/pancakes-double-batch.json");

    // The original file format is the request body, as it is.
    let created = call(
        a,
        &format!("{SVC}/CreateRecipe"),
        json!({ "recipe": recipe }),
    );
    assert_eq!(created["created"], true);
    assert_eq!(created["recipe"]["version"], 1);

    let mut changed = recipe.clone();
    changed["rating"] = json!(5);
    let updated = call(
        a,
        &format!("{SVC}/UpdateRecipe"),
        json!({ "recipe": changed, "expectedVersion": 1 }),
    );
    assert_eq!(updated["changed"], true);
    assert_eq!(updated["recipe"]["version"], 2);

    let got = call(
        a,
        &format!("{SVC}/GetRecipe"),
        json!({ "recipeId": "101", "version": 1 }),
    );
    assert_eq!(got["recipe"]["rating"], 4.0);

    let listed = call(a, &format!("{SVC}/ListRecipes"), json!({}));
    assert_eq!(listed["recipes"][0]["recipeId"], "101");
    assert_eq!(listed["recipes"][0]["latestVersion"], 2);

    let recorded = call(
        a,
        &format!("{SVC}/RecordMake"),
        json!({ "make": make, "idempotencyKey": "s3://b/makes/1.json#e1", "recipeVersion": 1 }),
    );
    let make_id = recorded["make"]["makeId"]
        .as_str()
        .expect("makeId")
        .to_string();
    assert_eq!(recorded["make"]["diff"]["scaling"]["factor"], 2.0);
    assert!(
        recorded["make"]["diff"]["summary"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );

    let replay = call(
        a,
        &format!("{SVC}/RecordMake"),
        json!({ "make": make, "idempotencyKey": "s3://b/makes/1.json#e1", "recipeVersion": 1 }),
    );
    assert_eq!(replay["duplicate"], true);
    assert_eq!(replay["make"]["makeId"], make_id.as_str());

    let got = call(a, &format!("{SVC}/GetMake"), json!({ "makeId": make_id }));
    assert_eq!(got["recipeId"], "101");

    let makes = call(a, &format!("{SVC}/ListMakes"), json!({ "recipeId": "101" }));
    assert_eq!(makes["makes"].as_array().map(Vec::len), Some(1));

    let compared = call(
        a,
        &format!("{SVC}/CompareRecipes"),
        json!({ "original": recipe, "made": make }),
    );
    assert!(
        compared["diff"]["ingredients"]
            .as_array()
            .is_some_and(|v| !v.is_empty())
    );

    let stats = call(
        a,
        &format!("{SVC}/GetRecipeStats"),
        json!({ "recipeId": "101" }),
    );
    assert_eq!(
        stats["makes"], "1",
        "uint64 prints as a JSON string: {stats}"
    );

    let health = call(a, "grpc.health.v1.Health/Check", json!({}));
    assert_eq!(health["status"], "SERVING");
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_show_their_code_and_readable_details() {
    let app = spawn_app().await;
    let a = app.addr;
    let mut bad = example("makes/pancakes-double-batch.json");
    bad["ingredients"][0]["quantity"] = json!(-3);
    let out = call_err(
        a,
        &format!("{SVC}/RecordMake"),
        json!({ "make": bad, "idempotencyKey": "k" }),
    );
    assert!(out.contains("Code: InvalidArgument"), "{out}");
    // The BadRequest detail is decoded (its descriptor is served by reflection), not raw bytes.
    assert!(out.contains("google.rpc.BadRequest"), "{out}");
    assert!(out.contains("make.ingredients[0].quantity"), "{out}");

    let out = call_err(
        a,
        &format!("{SVC}/GetRecipe"),
        json!({ "recipeId": "ghost" }),
    );
    assert!(out.contains("Code: NotFound"), "{out}");
    assert!(out.contains("google.rpc.ResourceInfo"), "{out}");

    call(
        a,
        &format!("{SVC}/CreateRecipe"),
        json!({ "recipe": example("recipes/pancakes.json") }),
    );
    let out = call_err(
        a,
        &format!("{SVC}/CreateRecipe"),
        json!({ "recipe": example("recipes/pancakes.json") }),
    );
    assert!(out.contains("Code: AlreadyExists"), "{out}");

    let out = call_err(
        a,
        &format!("{SVC}/UpdateRecipe"),
        json!({ "recipe": example("recipes/pancakes.json"), "expectedVersion": 7 }),
    );
    assert!(out.contains("Code: FailedPrecondition"), "{out}");
    assert!(out.contains("google.rpc.PreconditionFailure"), "{out}");
}
