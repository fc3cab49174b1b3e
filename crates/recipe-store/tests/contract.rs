//! The storage contract, written once and run against both backends.
//!
//! Every test is a generic `async fn(Arc<dyn RecipeStore>)`; the `contract!` macro instantiates
//! each one in `sqlite::` (a temporary database file) and `dynamodb::` (a fresh, uniquely named
//! table on the emulator `AWS_ENDPOINT_URL` points at). Without `AWS_ENDPOINT_URL` the DynamoDB
//! tests fail on purpose: run `scripts/test.sh`, which starts moto through
//! `scripts/lib/moto_server.py`. Plain `moto_server` serves DynamoDB requests in parallel, and
//! its transactions are then not atomic (see that file), which breaks the concurrency tests
//! through no fault of the store.

use aws_config::SdkConfig;
use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};
use recipe_diff::{
    IngredientChange, IngredientChangeKind, MatchedBy, QuantityChange, RatingChange, RecipeDiff,
    RecipeStats, StepChange, StepChangeKind, WordEdit, WordOp,
};
use recipe_model::{Ingredient, Recipe, Step};
use recipe_store::dynamodb::DynamoStore;
use recipe_store::sqlite::SqliteStore;
use recipe_store::{
    DiffBasis, NewMake, RecipeStore, RecordOutcome, StoreError, WriteOptions, make_id_for_key,
};
use std::ops::Range;
use std::sync::Arc;

// ---------------------------------------------------------------------------------------------
// Backends

struct Backend {
    store: Arc<dyn RecipeStore>,
    /// A second store on the same database or table, as another replica of the service would
    /// open it: same data, its own connections and caches.
    replica: Arc<dyn RecipeStore>,
    _dir: Option<tempfile::TempDir>,
    /// DynamoDB client and table to drop after a passing test.
    table: Option<(aws_sdk_dynamodb::Client, String)>,
}

impl Backend {
    async fn finish(self) {
        if let Some((client, table)) = self.table {
            // Best effort: the emulator is thrown away after the run anyway.
            let _ = client.delete_table().table_name(table).send().await;
        }
    }
}

async fn sqlite_backend() -> Backend {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}/store/contract.db", dir.path().display());
    let store = SqliteStore::open(&url).await.expect("open sqlite store");
    let replica = SqliteStore::open(&url).await.expect("open sqlite replica");
    Backend {
        store: Arc::new(store),
        replica: Arc::new(replica),
        _dir: Some(dir),
        table: None,
    }
}

/// The SDK configuration for the emulator; fails the test when there is none.
async fn emulator_config() -> SdkConfig {
    if std::env::var_os("AWS_ENDPOINT_URL").is_none_or(|v| v.is_empty()) {
        panic!(
            "AWS_ENDPOINT_URL is not set, so the DynamoDB contract tests have nothing to run \
             against. Run scripts/test.sh (it starts moto), or start \
             `python scripts/lib/moto_server.py -p 5055 &` (see that file for why not plain \
             `moto_server`) and set AWS_ENDPOINT_URL=http://127.0.0.1:5055"
        );
    }
    let config = aws_setup::load().await;
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
        config
    } else {
        // The emulator accepts any credentials; do not let the chain go looking for real ones.
        config
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "contract-tests",
            )))
            .build()
    }
}

fn unique_table() -> String {
    format!("contract-{}", uuid::Uuid::new_v4().simple())
}

async fn dynamodb_backend() -> Backend {
    let config = emulator_config().await;
    let table = unique_table();
    let store = DynamoStore::new(&config, &table).expect("valid table name");
    store.create_table().await.expect("create table");
    let replica = DynamoStore::new(&config, &table).expect("valid table name");
    Backend {
        store: Arc::new(store),
        replica: Arc::new(replica),
        _dir: None,
        table: Some((aws_sdk_dynamodb::Client::new(&config), table)),
    }
}

/// `contract!(single: [tests on one store], replicas: [tests on two stores sharing the data])`
/// instantiates every test for both backends.
macro_rules! contract {
    (single: [$($name:ident),* $(,)?], replicas: [$($rname:ident),* $(,)?] $(,)?) => {
        contract!(@backend sqlite, sqlite_backend, [$($name),*], [$($rname),*]);
        contract!(@backend dynamodb, dynamodb_backend, [$($name),*], [$($rname),*]);
    };
    (@backend $module:ident, $open:ident, [$($name:ident),*], [$($rname:ident),*]) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let backend = super::$open().await;
                    super::$name(backend.store.clone()).await;
                    backend.finish().await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $rname() {
                    let backend = super::$open().await;
                    super::$rname(backend.store.clone(), backend.replica.clone()).await;
                    backend.finish().await;
                }
            )*
        }
    };
}

contract!(
    single: [
        create_then_get_returns_version_one,
        update_writes_a_new_version_and_keeps_old_ones,
        update_with_equal_content_writes_nothing,
        stale_expected_version_conflicts,
        update_of_missing_recipe_needs_allow_missing,
        create_of_existing_id_already_exists,
        recipe_write_replay_returns_the_first_result,
        recipe_write_key_reuse_with_other_content_conflicts,
        list_recipes_pages_through_every_recipe_in_order,
        record_make_updates_stats,
        same_key_again_is_a_duplicate_and_stats_are_unchanged,
        same_key_with_other_content_conflicts,
        concurrent_duplicates_record_once,
        concurrent_distinct_makes_are_all_counted,
        make_of_unknown_recipe_is_not_found,
        make_id_must_come_from_the_key,
        get_make_returns_the_stored_make,
        list_makes_is_newest_first_and_paged,
        bad_page_tokens_are_refused,
        stats_of_unknown_recipe_or_without_makes,
        ping_answers,
    ],
    replicas: [
        a_make_compared_with_an_outdated_latest_is_stale,
        replicas_count_every_make_of_a_shared_recipe,
    ],
);

// ---------------------------------------------------------------------------------------------
// Fixtures

fn recipe(id: &str, name: &str) -> Recipe {
    Recipe {
        recipe_id: id.to_string(),
        recipe_name: name.to_string(),
        rating: Some(4.0),
        ingredients: vec![
            ingredient("1", 1.0, "cup", "flour"),
            ingredient("2", 2.0, "", "eggs"),
        ],
        steps: vec![
            step("1", "Mix the flour and eggs."),
            step("2", "Fry in butter."),
        ],
    }
}

fn ingredient(id: &str, quantity: f64, measurement: &str, name: &str) -> Ingredient {
    Ingredient {
        ingredient_id: id.to_string(),
        quantity,
        measurement: measurement.to_string(),
        ingredient_name: name.to_string(),
    }
}

fn step(id: &str, text: &str) -> Step {
    Step {
        step_id: id.to_string(),
        step_text: text.to_string(),
    }
}

fn opts(key: Option<&str>, now_ms: i64) -> WriteOptions {
    WriteOptions {
        idempotency_key: key.map(str::to_string),
        now_ms,
    }
}

/// A diff with one substituted-and-doubled ingredient, one modified step and a new rating, so
/// that every fold into the statistics is visible.
fn diff() -> RecipeDiff {
    RecipeDiff {
        name: None,
        rating: Some(RatingChange {
            from: Some(4.0),
            to: Some(5.0),
        }),
        scaling: None,
        ingredients: vec![IngredientChange {
            kind: IngredientChangeKind::Modified,
            original: Some(ingredient("1", 1.0, "cup", "flour")),
            made: Some(ingredient("1", 2.0, "cup", "spelt flour")),
            matched_by: Some(MatchedBy::Id),
            substituted: true,
            quantity: QuantityChange::Changed {
                expected: 1.0,
                actual: 2.0,
                unit: "cup".into(),
                ratio: 2.0,
            },
        }],
        steps: vec![StepChange {
            kind: StepChangeKind::Modified,
            original_index: Some(1),
            made_index: Some(1),
            original: Some(step("2", "Fry in butter.")),
            made: Some(step("2", "Fry in oil.")),
            text_changed: true,
            words: vec![
                WordEdit {
                    op: WordOp::Equal,
                    text: "Fry in ".into(),
                },
                WordEdit {
                    op: WordOp::Delete,
                    text: "butter.".into(),
                },
                WordEdit {
                    op: WordOp::Insert,
                    text: "oil.".into(),
                },
            ],
            similarity: 0.5,
        }],
        summary: "flour substituted by spelt flour, x2; step 2 modified".into(),
        similarity: 0.8,
    }
}

fn make_doc(recipe_id: &str, oil: &str) -> Recipe {
    let mut made = recipe(recipe_id, "Pancakes");
    made.rating = Some(5.0);
    made.ingredients[0] = ingredient("1", 2.0, "cup", "spelt flour");
    made.steps[1] = step("2", &format!("Fry in {oil}."));
    made
}

fn new_make(recipe_id: &str, key: &str, recorded_at_ms: i64) -> NewMake {
    NewMake {
        make_id: make_id_for_key(key),
        idempotency_key: key.to_string(),
        recipe_id: recipe_id.to_string(),
        recipe_version: 1,
        make: make_doc(recipe_id, "oil"),
        diff: diff(),
        recorded_at_ms,
        source: if recorded_at_ms % 2 == 0 {
            format!("s3://makes/{key}.json")
        } else {
            String::new()
        },
    }
}

async fn seed(store: &Arc<dyn RecipeStore>, id: &str) {
    store
        .create_recipe(recipe(id, "Pancakes"), opts(None, 1_000))
        .await
        .expect("create recipe");
}

fn assert_stats_of(stats: &RecipeStats, makes: u64) {
    assert_eq!(stats.makes, makes, "makes");
    assert_eq!(stats.rated_makes, makes, "rated makes");
    assert_eq!(stats.rating_sum, 5.0 * makes as f64, "rating sum");
    let flour = stats.ingredients.get("1").expect("flour tracked");
    assert_eq!(flour.substituted, makes);
    assert_eq!(flour.quantity_changed, makes);
    assert_eq!(flour.quantity_ratio_sum, 2.0 * makes as f64);
    assert_eq!(flour.substitutes.get("spelt flour"), Some(&makes));
    assert_eq!(stats.steps.get("2").map(|s| s.modified), Some(makes));
}

// ---------------------------------------------------------------------------------------------
// Recipes

async fn create_then_get_returns_version_one(store: Arc<dyn RecipeStore>) {
    let r = recipe("r1", "Pancakes");
    let w = store
        .create_recipe(r.clone(), opts(None, 1_000))
        .await
        .unwrap();
    assert!(w.written);
    assert_eq!(w.stored.version, 1);
    assert_eq!(w.stored.created_at_ms, 1_000);
    assert_eq!(w.stored.recipe, r);

    assert_eq!(store.get_recipe("r1", None).await.unwrap(), w.stored);
    assert_eq!(store.get_recipe("r1", Some(1)).await.unwrap(), w.stored);
    assert!(matches!(
        store.get_recipe("r1", Some(2)).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.get_recipe("nope", None).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn update_writes_a_new_version_and_keeps_old_ones(store: Arc<dyn RecipeStore>) {
    let v1 = recipe("r1", "Pancakes");
    store
        .create_recipe(v1.clone(), opts(None, 1_000))
        .await
        .unwrap();
    let mut v2 = v1.clone();
    v2.recipe_name = "Fluffy pancakes".into();
    v2.steps.push(step("3", "Serve."));

    let w = store
        .update_recipe(v2.clone(), None, false, opts(None, 2_000))
        .await
        .unwrap();
    assert!(w.written);
    assert_eq!(w.stored.version, 2);
    assert_eq!(w.stored.created_at_ms, 2_000);

    let latest = store.get_recipe("r1", None).await.unwrap();
    assert_eq!((latest.version, &latest.recipe), (2, &v2));
    let old = store.get_recipe("r1", Some(1)).await.unwrap();
    assert_eq!(
        (old.version, &old.recipe, old.created_at_ms),
        (1, &v1, 1_000)
    );

    let listed = store.list_recipes(10, None).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    let summary = &listed.items[0];
    assert_eq!(summary.recipe_name, "Fluffy pancakes");
    assert_eq!(summary.latest_version, 2);
    assert_eq!(summary.updated_at_ms, 2_000);
}

async fn update_with_equal_content_writes_nothing(store: Arc<dyn RecipeStore>) {
    let r = recipe("r1", "Pancakes");
    store
        .create_recipe(r.clone(), opts(None, 1_000))
        .await
        .unwrap();
    let w = store
        .update_recipe(r.clone(), Some(1), false, opts(None, 5_000))
        .await
        .unwrap();
    assert!(!w.written);
    assert_eq!(w.stored.version, 1);
    assert_eq!(w.stored.created_at_ms, 1_000);
    assert_eq!(w.stored.recipe, r);
    assert!(matches!(
        store.get_recipe("r1", Some(2)).await,
        Err(StoreError::NotFound(_))
    ));
    let listed = store.list_recipes(10, None).await.unwrap();
    assert_eq!(listed.items[0].latest_version, 1);
    assert_eq!(listed.items[0].updated_at_ms, 1_000);
}

async fn stale_expected_version_conflicts(store: Arc<dyn RecipeStore>) {
    let r = recipe("r1", "Pancakes");
    store
        .create_recipe(r.clone(), opts(None, 1_000))
        .await
        .unwrap();
    let mut changed = r.clone();
    changed.rating = Some(3.0);
    assert!(matches!(
        store
            .update_recipe(changed.clone(), Some(5), false, opts(None, 2_000))
            .await,
        Err(StoreError::Conflict(_))
    ));
    let w = store
        .update_recipe(changed.clone(), Some(1), false, opts(None, 2_000))
        .await
        .unwrap();
    assert_eq!((w.written, w.stored.version), (true, 2));
    changed.rating = Some(2.0);
    assert!(matches!(
        store
            .update_recipe(changed, Some(1), false, opts(None, 3_000))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.get_recipe("r1", None).await.unwrap().version, 2);
}

async fn update_of_missing_recipe_needs_allow_missing(store: Arc<dyn RecipeStore>) {
    let r = recipe("r9", "Waffles");
    assert!(matches!(
        store
            .update_recipe(r.clone(), None, false, opts(None, 1_000))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.get_recipe("r9", None).await,
        Err(StoreError::NotFound(_))
    ));
    let w = store
        .update_recipe(r.clone(), None, true, opts(None, 1_000))
        .await
        .unwrap();
    assert_eq!((w.written, w.stored.version), (true, 1));
    assert_eq!(store.get_recipe("r9", None).await.unwrap().recipe, r);
}

async fn create_of_existing_id_already_exists(store: Arc<dyn RecipeStore>) {
    store
        .create_recipe(recipe("r1", "Pancakes"), opts(None, 1_000))
        .await
        .unwrap();
    for key in [None, Some("another-key")] {
        let err = store
            .create_recipe(recipe("r1", "Crepes"), opts(key, 2_000))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
    }
    assert_eq!(
        store
            .get_recipe("r1", None)
            .await
            .unwrap()
            .recipe
            .recipe_name,
        "Pancakes"
    );
}

async fn recipe_write_replay_returns_the_first_result(store: Arc<dyn RecipeStore>) {
    let v1 = recipe("r1", "Pancakes");
    let first = store
        .create_recipe(v1.clone(), opts(Some("create-1"), 1_000))
        .await
        .unwrap();
    assert!(first.written);
    let again = store
        .create_recipe(v1.clone(), opts(Some("create-1"), 9_000))
        .await
        .unwrap();
    assert!(!again.written);
    assert_eq!(again.stored, first.stored);

    let mut v2 = v1.clone();
    v2.recipe_name = "Pancakes II".into();
    let upd = store
        .update_recipe(v2.clone(), Some(1), false, opts(Some("update-2"), 2_000))
        .await
        .unwrap();
    assert_eq!((upd.written, upd.stored.version), (true, 2));
    let mut v3 = v2.clone();
    v3.recipe_name = "Pancakes III".into();
    store
        .update_recipe(v3.clone(), Some(2), false, opts(Some("update-3"), 3_000))
        .await
        .unwrap();

    // The replay of the v2 update returns v2 even though v3 is latest now (and its expected
    // version is stale), and writes nothing.
    let replay = store
        .update_recipe(v2.clone(), Some(1), false, opts(Some("update-2"), 4_000))
        .await
        .unwrap();
    assert!(!replay.written);
    assert_eq!(replay.stored, upd.stored);
    let latest = store.get_recipe("r1", None).await.unwrap();
    assert_eq!((latest.version, &latest.recipe), (3, &v3));
}

async fn recipe_write_key_reuse_with_other_content_conflicts(store: Arc<dyn RecipeStore>) {
    store
        .create_recipe(recipe("r1", "Pancakes"), opts(Some("k"), 1_000))
        .await
        .unwrap();
    let err = store
        .create_recipe(recipe("r2", "Waffles"), opts(Some("k"), 2_000))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(matches!(
        store.get_recipe("r2", None).await,
        Err(StoreError::NotFound(_))
    ));
    let mut changed = recipe("r1", "Pancakes");
    changed.rating = Some(1.0);
    let err = store
        .update_recipe(changed, None, false, opts(Some("k"), 3_000))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.get_recipe("r1", None).await.unwrap().version, 1);
}

async fn list_recipes_pages_through_every_recipe_in_order(store: Arc<dyn RecipeStore>) {
    let ids = ["r-c", "r-a", "r-e", "r-b", "r-d"];
    for id in ids {
        seed(&store, id).await;
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store.list_recipes(2, token.as_deref()).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 2, "page too large: {:?}", page.items);
        seen.extend(page.items.iter().map(|s| s.recipe_id.clone()));
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(seen, ["r-a", "r-b", "r-c", "r-d", "r-e"]);
    assert_eq!(pages, 3);

    let all = store.list_recipes(0, None).await.unwrap();
    assert_eq!(all.items.len(), 5);
    assert_eq!(all.next_page_token, None);
}

// ---------------------------------------------------------------------------------------------
// Makes and statistics

async fn record_make_updates_stats(store: Arc<dyn RecipeStore>) {
    seed(&store, "r1").await;
    let make = new_make("r1", "make-1", 10_000);
    let outcome = store.record_make(make.clone()).await.unwrap();
    assert_eq!(outcome, RecordOutcome::Recorded(make.clone()));
    assert_stats_of(&store.get_stats("r1").await.unwrap(), 1);

    store
        .record_make(new_make("r1", "make-2", 10_001))
        .await
        .unwrap();
    assert_stats_of(&store.get_stats("r1").await.unwrap(), 2);
}

async fn same_key_again_is_a_duplicate_and_stats_are_unchanged(store: Arc<dyn RecipeStore>) {
    seed(&store, "r1").await;
    let first = new_make("r1", "make-1", 10_000);
    store.record_make(first.clone()).await.unwrap();
    // A retry later: same key and document, new timestamp and source.
    let mut retry = first.clone();
    retry.recorded_at_ms = 20_000;
    retry.source = "retry".into();
    let outcome = store.record_make(retry).await.unwrap();
    assert_eq!(outcome, RecordOutcome::Duplicate(first.clone()));
    assert_stats_of(&store.get_stats("r1").await.unwrap(), 1);
    let listed = store.list_makes("r1", 10, None).await.unwrap();
    assert_eq!(listed.items, vec![first]);
}

async fn same_key_with_other_content_conflicts(store: Arc<dyn RecipeStore>) {
    seed(&store, "r1").await;
    seed(&store, "r2").await;
    let first = new_make("r1", "make-1", 10_000);
    store.record_make(first.clone()).await.unwrap();

    let mut other_doc = first.clone();
    other_doc.make = make_doc("r1", "ghee");
    let err = store.record_make(other_doc).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    let mut other_recipe = first.clone();
    other_recipe.recipe_id = "r2".into();
    let err = store.record_make(other_recipe).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    assert_stats_of(&store.get_stats("r1").await.unwrap(), 1);
    assert_eq!(store.get_stats("r2").await.unwrap(), RecipeStats::default());
    assert_eq!(store.get_make(&first.make_id).await.unwrap(), first);
}

async fn concurrent_duplicates_record_once(store: Arc<dyn RecipeStore>) {
    seed(&store, "r1").await;
    let make = new_make("r1", "the-one-key", 10_000);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = Arc::clone(&store);
            let make = make.clone();
            tokio::spawn(async move { store.record_make(make).await })
        })
        .collect();
    let mut recorded = 0;
    let mut duplicates = 0;
    for outcome in futures::future::join_all(tasks).await {
        match outcome.expect("task").expect("record_make") {
            RecordOutcome::Recorded(m) => {
                assert_eq!(m, make);
                recorded += 1;
            }
            RecordOutcome::Duplicate(m) => {
                assert_eq!(m, make);
                duplicates += 1;
            }
        }
    }
    assert_eq!((recorded, duplicates), (1, 19));
    assert_stats_of(&store.get_stats("r1").await.unwrap(), 1);
    assert_eq!(
        store.list_makes("r1", 100, None).await.unwrap().items.len(),
        1
    );
}

async fn concurrent_distinct_makes_are_all_counted(store: Arc<dyn RecipeStore>) {
    seed(&store, "r1").await;
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let store = Arc::clone(&store);
            let make = new_make("r1", &format!("make-{i}"), 10_000 + i);
            tokio::spawn(async move { store.record_make(make).await })
        })
        .collect();
    for outcome in futures::future::join_all(tasks).await {
        let outcome = outcome.expect("task").expect("record_make");
        assert!(matches!(outcome, RecordOutcome::Recorded(_)), "{outcome:?}");
    }
    assert_stats_of(&store.get_stats("r1").await.unwrap(), 30);
    let listed = store.list_makes("r1", 100, None).await.unwrap();
    assert_eq!(listed.items.len(), 30);
}

/// A replica may compare a make with the version it last knew; recording on the latest basis
/// refuses that once another replica wrote a newer version, and the next read sees the newer one.
async fn a_make_compared_with_an_outdated_latest_is_stale(
    store: Arc<dyn RecipeStore>,
    replica: Arc<dyn RecipeStore>,
) {
    seed(&store, "r1").await;
    assert_eq!(store.recipe_for_make("r1", None).await.unwrap().version, 1);
    let mut changed = recipe("r1", "Pancakes");
    changed.steps[1] = step("2", "Fry in ghee.");
    let v2 = replica
        .update_recipe(changed.clone(), None, false, opts(None, 2_000))
        .await
        .unwrap();
    assert_eq!(v2.stored.version, 2);

    let on_v1 = new_make("r1", "make-1", 10_000);
    let err = store
        .record_make_on(on_v1.clone(), DiffBasis::Latest)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Stale(msg) if msg.contains("version 2")),
        "{err:?}"
    );
    assert!(matches!(
        store.get_make(&on_v1.make_id).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.get_stats("r1").await.unwrap().makes, 0);

    // Refused once, the store no longer offers the outdated version as the latest.
    let latest = store.recipe_for_make("r1", None).await.unwrap();
    assert_eq!((latest.version, &latest.recipe), (2, &changed));
    assert_eq!(
        store.recipe_for_make("r1", Some(1)).await.unwrap().version,
        1
    );
    let on_v2 = NewMake {
        recipe_version: 2,
        ..new_make("r1", "make-2", 10_001)
    };
    let recorded = store
        .record_make_on(on_v2.clone(), DiffBasis::Latest)
        .await
        .unwrap();
    assert!(
        matches!(recorded, RecordOutcome::Recorded(_)),
        "{recorded:?}"
    );
    // A make that names its version is recorded against it, old or not.
    let named = store
        .record_make_on(new_make("r1", "make-3", 10_002), DiffBasis::Named)
        .await
        .unwrap();
    assert!(matches!(named, RecordOutcome::Recorded(_)), "{named:?}");

    // A replay returns the first result even after the recipe moved on again.
    changed.steps[1] = step("2", "Fry in butter.");
    replica
        .update_recipe(changed, None, false, opts(None, 3_000))
        .await
        .unwrap();
    let replay = store
        .record_make_on(on_v2.clone(), DiffBasis::Latest)
        .await
        .unwrap();
    assert_eq!(replay, RecordOutcome::Duplicate(on_v2));
    assert_stats_of(&store.get_stats("r1").await.unwrap(), 2);
}

/// Two replicas recording makes of one recipe, in turns and at once: every make is counted
/// once, whatever each replica remembered of the statistics.
async fn replicas_count_every_make_of_a_shared_recipe(
    store: Arc<dyn RecipeStore>,
    replica: Arc<dyn RecipeStore>,
) {
    seed(&store, "r1").await;
    for i in 0..24 {
        let by = if i % 2 == 0 { &store } else { &replica };
        let make = new_make("r1", &format!("turn-{i}"), 10_000 + i);
        let outcome = by.record_make_on(make, DiffBasis::Latest).await.unwrap();
        assert!(matches!(outcome, RecordOutcome::Recorded(_)), "{outcome:?}");
    }
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let by = Arc::clone(if i % 2 == 0 { &store } else { &replica });
            let make = new_make("r1", &format!("together-{i}"), 20_000 + i);
            tokio::spawn(async move { by.record_make_on(make, DiffBasis::Latest).await })
        })
        .collect();
    for outcome in futures::future::join_all(tasks).await {
        let outcome = outcome.expect("task").expect("record_make");
        assert!(matches!(outcome, RecordOutcome::Recorded(_)), "{outcome:?}");
    }
    assert_stats_of(&store.get_stats("r1").await.unwrap(), 40);
    assert_stats_of(&replica.get_stats("r1").await.unwrap(), 40);
}

async fn make_of_unknown_recipe_is_not_found(store: Arc<dyn RecipeStore>) {
    let make = new_make("ghost", "make-1", 10_000);
    let err = store.record_make(make.clone()).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert!(matches!(
        store.get_make(&make.make_id).await,
        Err(StoreError::NotFound(_))
    ));
    // Nothing was left behind: once the recipe exists, the same key records normally.
    seed(&store, "ghost").await;
    let outcome = store.record_make(make).await.unwrap();
    assert!(matches!(outcome, RecordOutcome::Recorded(_)));
}

async fn make_id_must_come_from_the_key(store: Arc<dyn RecipeStore>) {
    seed(&store, "r1").await;
    let mut make = new_make("r1", "make-1", 10_000);
    make.make_id = "mk_made_up".into();
    assert!(store.record_make(make).await.is_err());
    assert_eq!(store.get_stats("r1").await.unwrap().makes, 0);
}

async fn get_make_returns_the_stored_make(store: Arc<dyn RecipeStore>) {
    seed(&store, "r1").await;
    let even = new_make("r1", "make-even", 10_000);
    let odd = new_make("r1", "make-odd", 10_001);
    store.record_make(even.clone()).await.unwrap();
    store.record_make(odd.clone()).await.unwrap();
    assert_eq!(store.get_make(&even.make_id).await.unwrap(), even);
    assert_eq!(store.get_make(&odd.make_id).await.unwrap(), odd);
    assert!(odd.source.is_empty());
    assert!(matches!(
        store.get_make(&make_id_for_key("never")).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn list_makes_is_newest_first_and_paged(store: Arc<dyn RecipeStore>) {
    seed(&store, "r1").await;
    seed(&store, "r2").await;
    let mut makes = Vec::new();
    for (i, at) in [300, 100, 300, 200, 50].into_iter().enumerate() {
        let make = new_make("r1", &format!("make-{i}"), at);
        store.record_make(make.clone()).await.unwrap();
        makes.push(make);
    }
    store
        .record_make(new_make("r2", "other-recipe", 1_000))
        .await
        .unwrap();
    makes.sort_by(|a, b| (b.recorded_at_ms, &b.make_id).cmp(&(a.recorded_at_ms, &a.make_id)));

    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store.list_makes("r1", 2, token.as_deref()).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 2);
        seen.extend(page.items);
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, makes);

    assert!(matches!(
        store.list_makes("ghost", 2, None).await,
        Err(StoreError::NotFound(_))
    ));
    seed(&store, "r3").await;
    let empty = store.list_makes("r3", 2, None).await.unwrap();
    assert!(empty.items.is_empty());
    assert_eq!(empty.next_page_token, None);
}

async fn bad_page_tokens_are_refused(store: Arc<dyn RecipeStore>) {
    for id in ["a", "b", "c"] {
        seed(&store, id).await;
    }
    for i in 0..3 {
        store
            .record_make(new_make("a", &format!("a-{i}"), 100 + i))
            .await
            .unwrap();
        store
            .record_make(new_make("b", &format!("b-{i}"), 100 + i))
            .await
            .unwrap();
    }
    let recipes_token = store
        .list_recipes(1, None)
        .await
        .unwrap()
        .next_page_token
        .expect("more recipes");
    let makes_token = store
        .list_makes("a", 1, None)
        .await
        .unwrap()
        .next_page_token
        .expect("more makes");
    // Both tokens work where they belong.
    assert_eq!(
        store
            .list_recipes(1, Some(&recipes_token))
            .await
            .unwrap()
            .items[0]
            .recipe_id,
        "b"
    );
    assert_eq!(
        store
            .list_makes("a", 1, Some(&makes_token))
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    let is_invalid = |r: Result<(), StoreError>| matches!(r, Err(StoreError::InvalidPageToken(_)));
    for garbage in ["not a token!", "e30", "eyJrIjoieCJ9", "%%%%"] {
        assert!(
            is_invalid(store.list_recipes(1, Some(garbage)).await.map(|_| ())),
            "{garbage:?} accepted by list_recipes"
        );
        assert!(
            is_invalid(store.list_makes("a", 1, Some(garbage)).await.map(|_| ())),
            "{garbage:?} accepted by list_makes"
        );
    }
    assert!(is_invalid(
        store
            .list_makes("a", 1, Some(&recipes_token))
            .await
            .map(|_| ())
    ));
    assert!(is_invalid(
        store.list_recipes(1, Some(&makes_token)).await.map(|_| ())
    ));
    assert!(is_invalid(
        store
            .list_makes("b", 1, Some(&makes_token))
            .await
            .map(|_| ())
    ));
}

async fn stats_of_unknown_recipe_or_without_makes(store: Arc<dyn RecipeStore>) {
    assert!(matches!(
        store.get_stats("ghost").await,
        Err(StoreError::NotFound(_))
    ));
    seed(&store, "r1").await;
    assert_eq!(store.get_stats("r1").await.unwrap(), RecipeStats::default());
}

async fn ping_answers(store: Arc<dyn RecipeStore>) {
    store.ping().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Backend-specific behaviour

mod dynamodb_only {
    use super::*;

    #[tokio::test]
    async fn a_missing_table_is_not_ready() {
        let config = emulator_config().await;
        let table = unique_table();
        let store = DynamoStore::new(&config, &table).unwrap();
        let expect_not_ready = |r: Result<(), StoreError>| match r {
            Err(StoreError::NotReady(msg)) => {
                assert!(msg.contains(&table), "{msg}");
                assert!(msg.contains("comparison migrate"), "{msg}");
            }
            other => panic!("expected NotReady, got {other:?}"),
        };
        expect_not_ready(store.ping().await);
        expect_not_ready(store.get_recipe("r1", None).await.map(|_| ()));
        expect_not_ready(store.list_recipes(10, None).await.map(|_| ()));
        expect_not_ready(
            store
                .create_recipe(recipe("r1", "Pancakes"), opts(None, 1))
                .await
                .map(|_| ()),
        );
        expect_not_ready(store.record_make(new_make("r1", "k", 1)).await.map(|_| ()));
    }

    #[tokio::test]
    async fn create_table_is_idempotent() {
        let config = emulator_config().await;
        let table = unique_table();
        let store = DynamoStore::new(&config, &table).unwrap();
        store.create_table().await.unwrap();
        store.create_table().await.unwrap();
        store.ping().await.unwrap();
        drop_table(&config, table).await;
    }

    /// A fresh table with recipe `r1`, for the tests that count a store's DynamoDB calls.
    struct Counted {
        config: SdkConfig,
        table: String,
        store: Arc<DynamoStore>,
        dyn_store: Arc<dyn RecipeStore>,
        version: u32,
    }

    impl Counted {
        async fn new() -> Self {
            let config = emulator_config().await;
            let table = unique_table();
            let store = DynamoStore::new(&config, &table).unwrap();
            store.create_table().await.unwrap();
            let store = Arc::new(store);
            let dyn_store: Arc<dyn RecipeStore> = store.clone();
            seed(&dyn_store, "r1").await;
            let version = dyn_store.recipe_for_make("r1", None).await.unwrap().version;
            Self {
                config,
                table,
                store,
                dyn_store,
                version,
            }
        }

        /// Another replica on the same table, knowing nothing yet.
        fn cold_replica(&self) -> Arc<DynamoStore> {
            Arc::new(DynamoStore::new(&self.config, &self.table).unwrap())
        }

        /// Records makes of r1 with the given numbers all at once on `store`.
        async fn record_together(&self, store: &Arc<DynamoStore>, numbers: Range<i64>) {
            let makes = numbers.map(|n| {
                let store: Arc<dyn RecipeStore> = store.clone();
                let make = NewMake {
                    recipe_version: self.version,
                    ..new_make("r1", &format!("make-{n}"), 10_000 + n)
                };
                async move { store.record_make_on(make, DiffBasis::Latest).await }
            });
            for outcome in futures::future::join_all(makes).await {
                assert!(
                    matches!(outcome, Ok(RecordOutcome::Recorded(_))),
                    "{outcome:?}"
                );
            }
        }

        async fn finish(self) {
            drop_table(&self.config, self.table).await;
        }
    }

    async fn drop_table(config: &SdkConfig, table: String) {
        let _ = aws_sdk_dynamodb::Client::new(config)
            .delete_table()
            .table_name(table)
            .send()
            .await;
    }

    /// The floor the pipeline is measured against: once a replica knows a recipe, a make costs
    /// one transactional write and reading the original costs nothing.
    #[tokio::test]
    async fn a_warm_make_costs_one_write() {
        let t = Counted::new().await;
        const MAKES: i64 = 48;
        let before = t.store.calls();
        for j in 0..MAKES {
            let known = t.store.calls();
            let original = t.dyn_store.recipe_for_make("r1", None).await.unwrap();
            assert_eq!(t.store.calls(), known, "the original came from the cache");
            assert_eq!(original.version, t.version);
            t.record_together(&t.store, j..j + 1).await;
        }
        // One TransactWriteItems per make and no read: the first make writes its statistics
        // shard as new (the recipe has none yet), and the next ones keep to that warm shard.
        let spent = (t.store.calls() - before) as i64;
        assert_eq!(spent, MAKES, "{spent} calls for {MAKES} makes");
        assert_stats_of(&t.dyn_store.get_stats("r1").await.unwrap(), MAKES as u64);
        t.finish().await;
    }

    /// Makes of one recipe in flight together each write a statistics shard of their own, so
    /// none loses a race (a lost race costs a second write), and no shard is read.
    #[tokio::test]
    async fn concurrent_makes_of_one_recipe_do_not_race_for_a_shard() {
        let t = Counted::new().await;
        const WAVES: i64 = 4;
        const IN_FLIGHT: i64 = 8;
        let before = t.store.calls();
        for wave in 0..WAVES {
            let first = wave * IN_FLIGHT;
            t.record_together(&t.store, first..first + IN_FLIGHT).await;
        }
        // One write per make. Without a shard per make in flight, 8 makes over 16 shards
        // collide in most waves.
        let spent = (t.store.calls() - before) as i64;
        assert_eq!(
            spent,
            WAVES * IN_FLIGHT,
            "{spent} calls for {} makes, {IN_FLIGHT} at a time",
            WAVES * IN_FLIGHT
        );
        assert_stats_of(
            &t.dyn_store.get_stats("r1").await.unwrap(),
            (WAVES * IN_FLIGHT) as u64,
        );
        t.finish().await;
    }

    /// A replica that has not seen a recipe's statistics shard writes it as new; when it exists,
    /// the failed condition returns the item, so the make costs two writes and no read, and
    /// nothing the other replica counted is lost.
    #[tokio::test]
    async fn a_cold_replica_learns_a_shard_from_its_failed_write() {
        let t = Counted::new().await;
        // Sixteen makes at once: every statistics shard of r1 exists afterwards.
        t.record_together(&t.store, 0..16).await;
        let cold = t.cold_replica();
        let before = cold.calls();
        t.record_together(&cold, 16..17).await;
        assert_eq!(cold.calls() - before, 2, "a refused write, then the write");
        let before = cold.calls();
        t.record_together(&cold, 17..18).await;
        assert_eq!(cold.calls() - before, 1, "the shard is warm now");
        assert_stats_of(&cold.get_stats("r1").await.unwrap(), 18);
        t.finish().await;
    }

    #[tokio::test]
    async fn documents_over_the_item_limit_are_refused_clearly() {
        let backend = dynamodb_backend().await;
        let store = &backend.store;
        let mut big = recipe("big", "Big");
        big.steps = (0..120)
            .map(|i| step(&i.to_string(), &"knead ".repeat(600)))
            .collect();
        let err = store.create_recipe(big, opts(None, 1)).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Internal(msg) if msg.contains("item limit")),
            "{err:?}"
        );
        assert!(matches!(
            store.get_recipe("big", None).await,
            Err(StoreError::NotFound(_))
        ));
        backend.finish().await;
    }
}
