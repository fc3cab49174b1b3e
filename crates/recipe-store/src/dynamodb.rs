//! The DynamoDB backend: one table, string keys `pk`/`sk`, and one global secondary index
//! `gsi1` for listing recipes. `docs/storage.md` describes the items and access patterns.
//!
//! Writes that must be atomic (a recipe version with its head and idempotency key; a make with
//! its idempotency pointer and the recipe's statistics) are single `TransactWriteItems` calls
//! whose conditions carry the checks. Statistics use optimistic concurrency on a `rev` number:
//! a make that loses the race re-reads and retries a bounded number of times.
//!
//! Reads are strongly consistent except `list_recipes`, which queries the GSI and is therefore
//! eventually consistent (a recipe created a moment ago may be missing from the list).

use crate::cache::{self, ReadCache, Shard};
use crate::common::{
    check_new_make, decode_page_token, encode_page_token, from_json, make_fingerprint,
    recipe_fingerprint, stale, to_json,
};
use crate::{
    DiffBasis, NewMake, Page, RecipeStore, RecipeSummary, RecipeWrite, RecordOutcome, Result,
    StoreError, StoredMake, StoredRecipe, WriteOptions, effective_page_size,
};
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept};
use aws_sdk_dynamodb::error::{BoxError, BuildError, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, GlobalSecondaryIndex,
    IndexStatus, KeySchemaElement, KeyType, KeysAndAttributes, Projection, ProjectionType, Put,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TableStatus, TransactWriteItem,
};
use aws_setup::dynamodb::{self, FailureKind, full_jitter};
use recipe_diff::RecipeStats;
use recipe_model::Recipe;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

type Item = HashMap<String, AttributeValue>;

/// Name of the global secondary index that lists recipe heads.
pub const GSI1: &str = "gsi1";
/// DynamoDB's item size limit. Items are checked against it before writing.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// Attempts of one optimistic write (statistics revision, recipe head) before giving up with
/// `Unavailable`.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 16;
/// Between attempts of an optimistic write, a random wait up to 10 ms, 20 ms, 40 ms, …, 1 s.
const RETRY_FIRST_WAIT: Duration = Duration::from_millis(10);
const RETRY_MAX_WAIT: Duration = Duration::from_secs(1);
/// How long `create_table` waits for the table and its index to become ACTIVE.
const CREATE_TIMEOUT: Duration = Duration::from_secs(300);

const HEAD_SK: &str = "HEAD";
/// The statistics of a recipe are split over this many items (`STATS#00`..`STATS#15`), so
/// concurrent makes of one recipe (on one replica or several) need not race for one item; each
/// make updates one (`ReadCache::claim_shard`), and `get_stats` reads them all in one batch and
/// merges them.
const STATS_SHARDS: u8 = 16;
const MAKE_POINTER_SK: &str = "MAKE";
const WRITE_KEY_SK: &str = "RWRITE";
const RECIPES_GSI_PK: &str = "RECIPES";

const TOKEN_RECIPES: &str = "dynamodb.recipes";
const TOKEN_MAKES: &str = "dynamodb.makes";

// Positions of the actions in the transactions, to read cancellation reasons by index.
const TX_MAKE: usize = 0;
const TX_POINTER: usize = 1;
const TX_STATS: usize = 2;
const TX_HEAD_CHECK: usize = 3;
const TX_VERSION: usize = 0;
const TX_HEAD: usize = 1;
const TX_WRITE_KEY: usize = 2;

fn recipe_pk(recipe_id: &str) -> String {
    format!("RECIPE#{recipe_id}")
}

fn version_sk(version: u32) -> String {
    format!("V#{version:010}")
}

fn make_sk(recorded_at_ms: i64, make_id: &str) -> String {
    format!("MAKE#{recorded_at_ms:020}#{make_id}")
}

fn stats_sk(shard: u8) -> String {
    format!("STATS#{shard:02}")
}

/// Where a make starts looking for a statistics shard to update: spread evenly over makes, so
/// replicas that know nothing of each other's makes start apart.
fn preferred_shard(make_id: &str) -> u8 {
    Sha256::digest(make_id.as_bytes())[0] % STATS_SHARDS
}

fn make_pointer_pk(make_id: &str) -> String {
    format!("MAKE#{make_id}")
}

fn write_key_pk(key: &str) -> String {
    format!("RWRITE#{key}")
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn key(pk: String, sk: &str) -> Item {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

fn get_s<'a>(item: &'a Item, name: &str, what: &str) -> Result<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(StoreError::Internal(format!(
            "stored {what} has no string attribute {name:?}"
        ))),
    }
}

fn get_n<T: std::str::FromStr>(item: &Item, name: &str, what: &str) -> Result<T> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().map_err(|_| {
            StoreError::Internal(format!(
                "stored {what}: attribute {name:?} = {v:?} is out of range"
            ))
        }),
        _ => Err(StoreError::Internal(format!(
            "stored {what} has no number attribute {name:?}"
        ))),
    }
}

/// Upper bound of an item's stored size (attribute names + values; numbers at their maximum).
fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    AttributeValue::S(v) => v.len(),
                    AttributeValue::N(_) => 21,
                    AttributeValue::B(b) => b.as_ref().len(),
                    _ => 64,
                }
        })
        .sum()
}

fn check_item_size(what: &str, item: &Item) -> Result<()> {
    let size = item_size(item);
    if size > MAX_ITEM_BYTES {
        return Err(StoreError::Internal(format!(
            "{what} would be a {size}-byte DynamoDB item, over the {MAX_ITEM_BYTES}-byte item \
             limit; the DynamoDB store cannot keep documents this large (the sqlite store can)"
        )));
    }
    Ok(())
}

fn build_error(e: BuildError) -> StoreError {
    StoreError::Internal(format!("building a DynamoDB request: {e}"))
}

/// What a `TransactWriteItems` call came to.
enum TxOutcome {
    Committed,
    /// Cancelled; one reason code per action, in order (`None` when that action was fine or the
    /// service gave no reasons), and the item as it was for each action whose condition failed
    /// and asked for it (`ReturnValuesOnConditionCheckFailure`).
    Cancelled(Vec<Option<String>>, Vec<Option<Item>>),
}

impl TxOutcome {
    fn failed(reasons: &[Option<String>], index: usize) -> bool {
        matches!(reasons.get(index), Some(Some(code)) if code == "ConditionalCheckFailed")
    }
}

/// Recipes, makes and statistics in one DynamoDB table.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    max_attempts: u32,
    cache: Arc<ReadCache>,
    calls: Arc<AtomicU64>,
}

/// Counts the DynamoDB operations a store sends (not the SDK's retries of one), for the
/// benchmarks' calls per make and the tests that hold the store to its budget.
#[derive(Debug)]
struct CountCalls(Arc<AtomicU64>);

impl Intercept for CountCalls {
    fn name(&self) -> &'static str {
        "recipe-store.count-calls"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl DynamoStore {
    /// A store on `table` using the shared SDK configuration. Makes no network call; the table
    /// is created by [`DynamoStore::create_table`] (`comparison migrate`).
    pub fn new(config: &SdkConfig, table: &str) -> Result<Self> {
        let valid = (3..=255).contains(&table.len())
            && table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !valid {
            return Err(StoreError::NotReady(format!(
                "{table:?} is not a valid DynamoDB table name (3 to 255 characters of \
                 a-z, A-Z, 0-9, '_', '.', '-')"
            )));
        }
        // `Client::new` panics on a configuration without a behaviour version; default it.
        let mut client_config = aws_sdk_dynamodb::config::Builder::from(config);
        if config.behavior_version().is_none() {
            client_config = client_config.behavior_version_latest();
        }
        let calls = Arc::new(AtomicU64::new(0));
        client_config = client_config
            .interceptor(CountCalls(calls.clone()))
            .interceptor(aws_setup::TraceCalls);
        Ok(Self {
            client: Client::from_conf(client_config.build()),
            calls,
            table: table.to_string(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            cache: Arc::new(ReadCache::new(
                cache::DEFAULT_RECIPE_ENTRIES,
                cache::DEFAULT_SHARD_ENTRIES,
            )),
        })
    }

    /// Changes how many times an optimistic write is attempted before `Unavailable`.
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// DynamoDB operations this store has sent so far (each retry by the store counts, the
    /// SDK's own retries of one operation do not).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Waits before attempt `attempt + 1`; no wait after the last attempt.
    async fn pause_before_retry(&self, attempt: u32) {
        if attempt + 1 < self.max_attempts {
            tokio::time::sleep(full_jitter(RETRY_FIRST_WAIT, attempt, RETRY_MAX_WAIT)).await;
        }
    }

    /// Creates the table and its index (on-demand capacity) and waits until both are ACTIVE.
    /// Safe to run again: an existing table is fine, as long as it has the index.
    pub async fn create_table(&self) -> Result<()> {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(build_error)
        };
        let key_elem = |name: &str, key_type: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(key_type)
                .build()
                .map_err(build_error)
        };
        let gsi = GlobalSecondaryIndex::builder()
            .index_name(GSI1)
            .key_schema(key_elem("gsi1pk", KeyType::Hash)?)
            .key_schema(key_elem("gsi1sk", KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
            .map_err(build_error)?;
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk")?)
            .attribute_definitions(attr("sk")?)
            .attribute_definitions(attr("gsi1pk")?)
            .attribute_definitions(attr("gsi1sk")?)
            .key_schema(key_elem("pk", KeyType::Hash)?)
            .key_schema(key_elem("sk", KeyType::Range)?)
            .global_secondary_indexes(gsi)
            .send()
            .await;
        match created {
            Ok(_) => tracing::info!(table = %self.table, "created DynamoDB table"),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(CreateTableError::ResourceInUseException(_))
                ) =>
            {
                tracing::info!(table = %self.table, "DynamoDB table exists already");
            }
            Err(e) => return Err(self.sdk_error("CreateTable", e)),
        }
        self.wait_until_active().await
    }

    async fn wait_until_active(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + CREATE_TIMEOUT;
        loop {
            let described = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| self.sdk_error("DescribeTable", e))?;
            let table = described.table.ok_or_else(|| {
                StoreError::Internal(format!("DescribeTable {}: no description", self.table))
            })?;
            let gsi = table
                .global_secondary_indexes()
                .iter()
                .find(|g| g.index_name() == Some(GSI1));
            let Some(gsi) = gsi else {
                return Err(StoreError::NotReady(format!(
                    "table {} exists but has no index {GSI1}; it was not created by this program",
                    self.table
                )));
            };
            let table_active = table.table_status() == Some(&TableStatus::Active);
            // Emulators may leave the index status out; treat that as active.
            let gsi_active = gsi
                .index_status()
                .is_none_or(|status| *status == IndexStatus::Active);
            if table_active && gsi_active {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::Unavailable(format!(
                    "table {} did not become ACTIVE within {}s",
                    self.table,
                    CREATE_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Maps an SDK error onto the store's error kinds.
    fn sdk_error<E>(&self, op: &str, err: SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let table = &self.table;
        let failure = dynamodb::failure(op, table, &err);
        match failure.kind {
            FailureKind::Unavailable => StoreError::Unavailable(failure.message),
            FailureKind::MissingTable => StoreError::NotReady(format!(
                "table {table} does not exist; run `comparison migrate --store dynamodb://{table}`"
            )),
            FailureKind::Denied => StoreError::NotReady(failure.message),
            FailureKind::Invalid | FailureKind::Other => StoreError::Internal(failure.message),
        }
    }

    async fn get_item(&self, op: &str, key: Item) -> Result<Option<Item>> {
        self.client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map(|out| out.item)
            .map_err(|e| self.sdk_error(op, e))
    }

    /// Strongly consistent reads of several items in one call. Returns them keyed by (pk, sk).
    async fn batch_get(
        &self,
        op: &str,
        keys: Vec<Item>,
    ) -> Result<HashMap<(String, String), Item>> {
        let mut found = HashMap::new();
        let mut pending = keys;
        for attempt in 0..self.max_attempts {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(pending))
                .consistent_read(true)
                .build()
                .map_err(build_error)?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| self.sdk_error(op, e))?;
            for item in out
                .responses
                .and_then(|mut r| r.remove(&self.table))
                .unwrap_or_default()
            {
                let pk = get_s(&item, "pk", "item")?.to_string();
                let sk = get_s(&item, "sk", "item")?.to_string();
                found.insert((pk, sk), item);
            }
            pending = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .map(|k| k.keys)
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(found);
            }
            self.pause_before_retry(attempt).await;
        }
        Err(StoreError::Unavailable(format!(
            "DynamoDB {op} on {}: keys still unprocessed after {} attempts",
            self.table, self.max_attempts
        )))
    }

    async fn transact(&self, op: &str, items: Vec<TransactWriteItem>) -> Result<TxOutcome> {
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(TxOutcome::Committed),
            Err(e) => match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                    let reasons = c.cancellation_reasons();
                    Ok(TxOutcome::Cancelled(
                        reasons
                            .iter()
                            .map(|r| r.code().filter(|c| *c != "None").map(str::to_string))
                            .collect(),
                        reasons.iter().map(|r| r.item().cloned()).collect(),
                    ))
                }
                _ => Err(self.sdk_error(op, e)),
            },
        }
    }

    fn put(&self, item: Item, condition: &str) -> Result<TransactWriteItem> {
        Ok(TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression(condition)
                    .build()
                    .map_err(build_error)?,
            )
            .build())
    }

    // ---- recipes ----

    /// The first result of an earlier recipe write whose write-key item is `item`, or a
    /// conflict if that write had other content.
    async fn replay_from(&self, key: &str, item: &Item, fingerprint: &str) -> Result<RecipeWrite> {
        let what = format!("write key {key:?}");
        if get_s(item, "fingerprint", &what)? != fingerprint {
            return Err(StoreError::Conflict(format!(
                "idempotency key {key:?} was already used for a different recipe write"
            )));
        }
        let recipe_id = get_s(item, "recipe_id", &what)?;
        let version: u32 = get_n(item, "version", &what)?;
        let stored = self.load_version(recipe_id, version).await?.ok_or_else(|| {
            StoreError::Internal(format!(
                "idempotency key {key:?} points at recipe {recipe_id} v{version}, which is missing"
            ))
        })?;
        Ok(RecipeWrite {
            stored,
            written: false,
        })
    }

    async fn load_version(&self, recipe_id: &str, version: u32) -> Result<Option<StoredRecipe>> {
        self.get_item(
            "GetItem recipe version",
            key(recipe_pk(recipe_id), &version_sk(version)),
        )
        .await?
        .map(|item| version_from_item(&item))
        .transpose()
    }

    /// Writes `recipe` as `version` with its head and write key in one transaction. The head
    /// must not exist when `expected_latest` is None (creation), else its `latest_version`
    /// must equal it.
    async fn write_version(
        &self,
        recipe: &Recipe,
        version: u32,
        expected_latest: Option<u32>,
        opts: &WriteOptions,
        fingerprint: &str,
    ) -> Result<TxOutcome> {
        let pk = recipe_pk(&recipe.recipe_id);
        let mut version_item = key(pk.clone(), &version_sk(version));
        version_item.extend([
            ("recipe_id".to_string(), s(&recipe.recipe_id)),
            ("version".to_string(), n(version)),
            ("name".to_string(), s(&recipe.recipe_name)),
            ("body".to_string(), s(to_json("recipe", recipe)?)),
            ("created_at_ms".to_string(), n(opts.now_ms)),
        ]);
        if let Some(k) = &opts.idempotency_key {
            version_item.insert("write_key".to_string(), s(k));
        }
        check_item_size(
            &format!("recipe {} v{version}", recipe.recipe_id),
            &version_item,
        )?;
        let mut head = key(pk, HEAD_SK);
        head.extend([
            ("recipe_id".to_string(), s(&recipe.recipe_id)),
            ("latest_version".to_string(), n(version)),
            ("name".to_string(), s(&recipe.recipe_name)),
            ("updated_at_ms".to_string(), n(opts.now_ms)),
            ("fingerprint".to_string(), s(fingerprint)),
            ("gsi1pk".to_string(), s(RECIPES_GSI_PK)),
            ("gsi1sk".to_string(), s(&recipe.recipe_id)),
        ]);
        let head_put = match expected_latest {
            None => Put::builder()
                .table_name(&self.table)
                .set_item(Some(head))
                .condition_expression("attribute_not_exists(pk)"),
            Some(latest) => Put::builder()
                .table_name(&self.table)
                .set_item(Some(head))
                .condition_expression("#v = :expected")
                .expression_attribute_names("#v", "latest_version")
                .expression_attribute_values(":expected", n(latest)),
        };
        let mut items = vec![
            self.put(version_item, "attribute_not_exists(pk)")?,
            TransactWriteItem::builder()
                .put(head_put.build().map_err(build_error)?)
                .build(),
        ];
        if let Some(k) = &opts.idempotency_key {
            let mut key_item = key(write_key_pk(k), WRITE_KEY_SK);
            key_item.extend([
                ("recipe_id".to_string(), s(&recipe.recipe_id)),
                ("version".to_string(), n(version)),
                ("fingerprint".to_string(), s(fingerprint)),
            ]);
            items.push(self.put(key_item, "attribute_not_exists(pk)")?);
        }
        self.transact("TransactWriteItems recipe", items).await
    }

    /// Create (`update == None`) or update (`Some((expected_version, allow_missing))`).
    async fn write_recipe(
        &self,
        recipe: Recipe,
        update: Option<(Option<u32>, bool)>,
        opts: WriteOptions,
    ) -> Result<RecipeWrite> {
        let fingerprint = recipe_fingerprint(&recipe);
        let id = recipe.recipe_id.clone();
        let idem = opts.idempotency_key.clone();
        for attempt in 0..self.max_attempts {
            // Read the idempotency key (if any) and, for an update, the head, in one call.
            let mut keys = Vec::new();
            if let Some(k) = &idem {
                keys.push(key(write_key_pk(k), WRITE_KEY_SK));
            }
            if update.is_some() {
                keys.push(key(recipe_pk(&id), HEAD_SK));
            }
            let mut found = if keys.is_empty() {
                HashMap::new()
            } else {
                self.batch_get("BatchGetItem recipe write", keys).await?
            };
            if let Some(k) = &idem
                && let Some(item) = found.remove(&(write_key_pk(k), WRITE_KEY_SK.to_string()))
            {
                return self.replay_from(k, &item, &fingerprint).await;
            }
            let head = found.remove(&(recipe_pk(&id), HEAD_SK.to_string()));
            let (version, expected_latest) = match (update, head) {
                (None, _) => (1, None),
                (Some((expected, allow_missing)), None) => {
                    if !allow_missing {
                        return Err(StoreError::NotFound(format!("recipe {id}")));
                    }
                    if let Some(expected) = expected.filter(|v| *v != 0) {
                        return Err(StoreError::Conflict(format!(
                            "recipe {id}: expected version {expected}, but the recipe does not exist"
                        )));
                    }
                    (1, None)
                }
                (Some((expected, _)), Some(head)) => {
                    let what = format!("head of recipe {id}");
                    let latest: u32 = get_n(&head, "latest_version", &what)?;
                    if let Some(expected) = expected.filter(|v| *v != latest) {
                        return Err(StoreError::Conflict(format!(
                            "recipe {id}: expected version {expected}, latest is {latest}"
                        )));
                    }
                    if get_s(&head, "fingerprint", &what)? == fingerprint {
                        // Same content as the latest version: nothing to write.
                        let stored = StoredRecipe {
                            recipe,
                            version: latest,
                            created_at_ms: get_n(&head, "updated_at_ms", &what)?,
                        };
                        self.cache.put_latest(&stored);
                        return Ok(RecipeWrite {
                            stored,
                            written: false,
                        });
                    }
                    let next = latest.checked_add(1).ok_or_else(|| {
                        StoreError::Internal(format!("recipe {id}: version counter exhausted"))
                    })?;
                    (next, Some(latest))
                }
            };
            match self
                .write_version(&recipe, version, expected_latest, &opts, &fingerprint)
                .await?
            {
                TxOutcome::Committed => {
                    let stored = StoredRecipe {
                        recipe,
                        version,
                        created_at_ms: opts.now_ms,
                    };
                    self.cache.put_latest(&stored);
                    return Ok(RecipeWrite {
                        stored,
                        written: true,
                    });
                }
                TxOutcome::Cancelled(reasons, _) => {
                    let key_taken = idem.is_some()
                        && (TxOutcome::failed(&reasons, TX_WRITE_KEY) || reasons.is_empty());
                    if key_taken {
                        // A concurrent write with the same key won: the next read replays it.
                        continue;
                    }
                    let head_moved = TxOutcome::failed(&reasons, TX_HEAD)
                        || TxOutcome::failed(&reasons, TX_VERSION);
                    match update {
                        None if head_moved => {
                            return Err(StoreError::AlreadyExists(format!("recipe {id}")));
                        }
                        Some((Some(expected), _)) if head_moved => {
                            return Err(StoreError::Conflict(format!(
                                "recipe {id}: expected version {expected}, but it was updated \
                                 concurrently"
                            )));
                        }
                        // A concurrent write moved the head, or the transaction collided with
                        // another one: read again and retry.
                        _ => self.pause_before_retry(attempt).await,
                    }
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "recipe {id}: too many concurrent writes, gave up after {} attempts",
            self.max_attempts
        )))
    }

    // ---- makes ----

    /// Resolves a make whose idempotency pointer exists: the first make, or a conflict.
    async fn existing_make(
        &self,
        pointer: &Item,
        make: &NewMake,
        fingerprint: &str,
    ) -> Result<RecordOutcome> {
        let what = format!("make pointer {}", make.make_id);
        if get_s(pointer, "fingerprint", &what)? != fingerprint {
            return Err(StoreError::Conflict(format!(
                "idempotency key {:?} was already used for a different make",
                make.idempotency_key
            )));
        }
        let first = self.make_from_pointer(pointer, &make.make_id).await?;
        Ok(RecordOutcome::Duplicate(first))
    }

    async fn make_from_pointer(&self, pointer: &Item, make_id: &str) -> Result<StoredMake> {
        let what = format!("make pointer {make_id}");
        let pk = recipe_pk(get_s(pointer, "recipe_id", &what)?);
        let sk = get_s(pointer, "make_sk", &what)?;
        let item = self
            .get_item("GetItem make", key(pk, sk))
            .await?
            .ok_or_else(|| {
                StoreError::Internal(format!(
                    "make {make_id}: pointer exists but the make is missing"
                ))
            })?;
        make_from_item(&item)
    }

    fn make_items(&self, make: &NewMake, fingerprint: &str) -> Result<(Item, Item)> {
        let sk = make_sk(make.recorded_at_ms, &make.make_id);
        let mut item = key(recipe_pk(&make.recipe_id), &sk);
        item.extend([
            ("make_id".to_string(), s(&make.make_id)),
            ("idempotency_key".to_string(), s(&make.idempotency_key)),
            ("recipe_id".to_string(), s(&make.recipe_id)),
            ("recipe_version".to_string(), n(make.recipe_version)),
            ("recorded_at_ms".to_string(), n(make.recorded_at_ms)),
            ("source".to_string(), s(&make.source)),
            ("body".to_string(), s(to_json("make", &make.make)?)),
            ("diff".to_string(), s(to_json("diff", &make.diff)?)),
            ("fingerprint".to_string(), s(fingerprint)),
        ]);
        check_item_size(&format!("make {}", make.make_id), &item)?;
        let mut pointer = key(make_pointer_pk(&make.make_id), MAKE_POINTER_SK);
        pointer.extend([
            ("recipe_id".to_string(), s(&make.recipe_id)),
            ("make_sk".to_string(), s(sk)),
            ("fingerprint".to_string(), s(fingerprint)),
        ]);
        Ok((item, pointer))
    }

    /// Query with `Limit = page + 1`, following LastEvaluatedKey across the 1 MB response limit,
    /// so that a next-page token is only issued when there is a next item.
    async fn query_page(
        &self,
        op: &str,
        build: impl Fn() -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
        limit: u32,
        start: Option<Item>,
    ) -> Result<(Vec<Item>, bool)> {
        let want = limit as usize + 1;
        let mut items = Vec::new();
        let mut start = start;
        loop {
            let out = build()
                .limit((want - items.len()).min(i32::MAX as usize) as i32)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| self.sdk_error(op, e))?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key.filter(|k| !k.is_empty());
            if items.len() >= want || start.is_none() {
                break;
            }
        }
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        Ok((items, more))
    }

    async fn recipe_exists(&self, recipe_id: &str) -> Result<bool> {
        Ok(self
            .get_item("GetItem recipe head", key(recipe_pk(recipe_id), HEAD_SK))
            .await?
            .is_some())
    }
}

fn shard_from_item(item: &Item, what: &str) -> Result<Shard> {
    Ok(Shard {
        stats: from_json(what, get_s(item, "stats", what)?)?,
        rev: Some(get_n::<u64>(item, "rev", what)?),
    })
}

fn version_from_item(item: &Item) -> Result<StoredRecipe> {
    let what = "recipe version";
    Ok(StoredRecipe {
        recipe: from_json(what, get_s(item, "body", what)?)?,
        version: get_n(item, "version", what)?,
        created_at_ms: get_n(item, "created_at_ms", what)?,
    })
}

fn make_from_item(item: &Item) -> Result<StoredMake> {
    let what = "make";
    let make_id = get_s(item, "make_id", what)?.to_string();
    let what = format!("make {make_id}");
    Ok(StoredMake {
        make: from_json(&what, get_s(item, "body", &what)?)?,
        diff: from_json(&format!("diff of {what}"), get_s(item, "diff", &what)?)?,
        idempotency_key: get_s(item, "idempotency_key", &what)?.to_string(),
        recipe_id: get_s(item, "recipe_id", &what)?.to_string(),
        recipe_version: get_n(item, "recipe_version", &what)?,
        recorded_at_ms: get_n(item, "recorded_at_ms", &what)?,
        source: get_s(item, "source", &what)?.to_string(),
        make_id,
    })
}

/// Turns the key attributes of the last item of a page into a token.
fn key_token(kind: &str, item: &Item, names: &[&str]) -> Result<String> {
    let mut key = BTreeMap::new();
    for name in names {
        key.insert(
            name.to_string(),
            get_s(item, name, "listed item")?.to_string(),
        );
    }
    encode_page_token(kind, &key)
}

/// Decodes a token into an ExclusiveStartKey with exactly the attributes `names`, checked by
/// `valid`.
fn start_key(
    kind: &str,
    token: Option<&str>,
    names: &[&str],
    valid: impl Fn(&BTreeMap<String, String>) -> bool,
) -> Result<Option<Item>> {
    let Some(key) = decode_page_token::<BTreeMap<String, String>>(kind, token)? else {
        return Ok(None);
    };
    let shape_ok = key.len() == names.len() && names.iter().all(|n| key.contains_key(*n));
    if !shape_ok || !valid(&key) {
        return Err(StoreError::InvalidPageToken(
            "the token does not belong to this list".into(),
        ));
    }
    Ok(Some(key.into_iter().map(|(k, v)| (k, s(v))).collect()))
}

#[async_trait]
impl RecipeStore for DynamoStore {
    async fn create_recipe(&self, recipe: Recipe, opts: WriteOptions) -> Result<RecipeWrite> {
        self.write_recipe(recipe, None, opts).await
    }

    async fn update_recipe(
        &self,
        recipe: Recipe,
        expected_version: Option<u32>,
        allow_missing: bool,
        opts: WriteOptions,
    ) -> Result<RecipeWrite> {
        self.write_recipe(recipe, Some((expected_version, allow_missing)), opts)
            .await
    }

    async fn get_recipe(&self, recipe_id: &str, version: Option<u32>) -> Result<StoredRecipe> {
        let found = match version {
            Some(v) => self.load_version(recipe_id, v).await?,
            None => {
                // The newest version item is the latest: versions and head are written together.
                let out = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("pk = :pk AND begins_with(sk, :v)")
                    .expression_attribute_values(":pk", s(recipe_pk(recipe_id)))
                    .expression_attribute_values(":v", s("V#"))
                    .scan_index_forward(false)
                    .limit(1)
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| self.sdk_error("Query latest version", e))?;
                out.items
                    .unwrap_or_default()
                    .first()
                    .map(version_from_item)
                    .transpose()?
            }
        };
        if let (Some(latest), None) = (&found, version) {
            self.cache.put_latest(latest);
        }
        found.ok_or_else(|| {
            StoreError::NotFound(match version {
                Some(v) => format!("recipe {recipe_id} version {v}"),
                None => format!("recipe {recipe_id}"),
            })
        })
    }

    async fn list_recipes(
        &self,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<Page<RecipeSummary>> {
        const NAMES: [&str; 4] = ["pk", "sk", "gsi1pk", "gsi1sk"];
        let start = start_key(TOKEN_RECIPES, page_token, &NAMES, |k| {
            k["gsi1pk"] == RECIPES_GSI_PK
                && k["sk"] == HEAD_SK
                && k["pk"] == recipe_pk(&k["gsi1sk"])
        })?;
        let limit = effective_page_size(page_size);
        let build = || {
            self.client
                .query()
                .table_name(&self.table)
                .index_name(GSI1)
                .key_condition_expression("gsi1pk = :p")
                .expression_attribute_values(":p", s(RECIPES_GSI_PK))
        };
        let (items, more) = self
            .query_page("Query recipes", build, limit, start)
            .await?;
        let next_page_token = match items.last() {
            Some(last) if more => Some(key_token(TOKEN_RECIPES, last, &NAMES)?),
            _ => None,
        };
        let items = items
            .iter()
            .map(|item| {
                let what = "recipe head";
                Ok(RecipeSummary {
                    recipe_id: get_s(item, "recipe_id", what)?.to_string(),
                    recipe_name: get_s(item, "name", what)?.to_string(),
                    latest_version: get_n(item, "latest_version", what)?,
                    updated_at_ms: get_n(item, "updated_at_ms", what)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Page {
            items,
            next_page_token,
        })
    }

    async fn recipe_for_make(&self, recipe_id: &str, version: Option<u32>) -> Result<StoredRecipe> {
        if let Some(latest) = self.cache.latest(recipe_id)
            && version.is_none_or(|v| v == latest.version)
        {
            return Ok(latest);
        }
        self.get_recipe(recipe_id, version).await
    }

    async fn record_make_on(&self, make: NewMake, basis: DiffBasis) -> Result<RecordOutcome> {
        check_new_make(&make)?;
        let fingerprint = make_fingerprint(&make);
        let (make_item, pointer_item) = self.make_items(&make, &fingerprint)?;
        let id = make.recipe_id.as_str();
        let pk = recipe_pk(id);
        let claim = self
            .cache
            .claim_shard(id, preferred_shard(&make.make_id), STATS_SHARDS);
        let shard = claim.shard;
        let shard_sk = stats_sk(shard);
        let what = format!("statistics of recipe {id}");
        // Set when a failed write did not say what the shard holds: read it then.
        let mut read_shard = false;
        for attempt in 0..self.max_attempts {
            // The shard as this process last wrote or saw it. One it does not know is most
            // likely new (a new recipe, or a shard no make used yet), so it is written as new
            // without reading it first; if it does exist, the write's condition fails and
            // DynamoDB returns the item (`ALL_OLD`), which the next attempt builds on. The
            // `rev` condition likewise catches a cached shard another replica has moved on.
            let current = match self.cache.shard(id, shard) {
                Some(known) => known,
                None if read_shard => match self
                    .get_item("GetItem statistics shard", key(pk.clone(), &shard_sk))
                    .await?
                {
                    Some(item) => shard_from_item(&item, &what)?,
                    None => Shard {
                        stats: RecipeStats::default(),
                        rev: None,
                    },
                },
                None => Shard {
                    stats: RecipeStats::default(),
                    rev: None,
                },
            };
            let mut stats = current.stats;
            stats.apply(&make.make, &make.diff);
            let next_rev = current.rev.map_or(1, |r| r + 1);
            let mut stats_item = key(pk.clone(), &shard_sk);
            stats_item.extend([
                ("stats".to_string(), s(to_json("statistics", &stats)?)),
                ("rev".to_string(), n(next_rev)),
            ]);
            check_item_size(&what, &stats_item)?;
            let stats_put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(stats_item))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                );
            let stats_put = match current.rev {
                None => stats_put.condition_expression("attribute_not_exists(pk)"),
                Some(rev) => stats_put
                    .condition_expression("#rev = :expected")
                    .expression_attribute_names("#rev", "rev")
                    .expression_attribute_values(":expected", n(rev)),
            };
            // The recipe must exist; on the latest basis it must still be at the version the
            // make was compared with.
            let head_check = ConditionCheck::builder()
                .table_name(&self.table)
                .set_key(Some(key(pk.clone(), HEAD_SK)));
            let head_check = match basis {
                DiffBasis::Named => head_check.condition_expression("attribute_exists(pk)"),
                DiffBasis::Latest => head_check
                    .condition_expression("#v = :v")
                    .expression_attribute_names("#v", "latest_version")
                    .expression_attribute_values(":v", n(make.recipe_version)),
            };
            let items = vec![
                self.put(make_item.clone(), "attribute_not_exists(pk)")?,
                self.put(pointer_item.clone(), "attribute_not_exists(pk)")?,
                TransactWriteItem::builder()
                    .put(stats_put.build().map_err(build_error)?)
                    .build(),
                TransactWriteItem::builder()
                    .condition_check(head_check.build().map_err(build_error)?)
                    .build(),
            ];
            let (reasons, old_items) = match self.transact("TransactWriteItems make", items).await {
                Ok(TxOutcome::Committed) => {
                    self.cache.put_shard(
                        id,
                        shard,
                        Shard {
                            stats,
                            rev: Some(next_rev),
                        },
                    );
                    return Ok(RecordOutcome::Recorded(make));
                }
                Ok(TxOutcome::Cancelled(reasons, old_items)) => (reasons, old_items),
                Err(e) => {
                    // The write may have happened: the cached shard can no longer be trusted.
                    self.cache.forget_shard(id, shard);
                    return Err(e);
                }
            };
            if TxOutcome::failed(&reasons, TX_POINTER) || TxOutcome::failed(&reasons, TX_MAKE) {
                // Recorded before (a replay), or a concurrent duplicate won just now.
                let pointer = self
                    .get_item(
                        "GetItem make pointer",
                        key(make_pointer_pk(&make.make_id), MAKE_POINTER_SK),
                    )
                    .await?;
                match pointer {
                    Some(pointer) => {
                        return self.existing_make(&pointer, &make, &fingerprint).await;
                    }
                    None => continue,
                }
            }
            if TxOutcome::failed(&reasons, TX_STATS) {
                match old_items.get(TX_STATS).and_then(Option::as_ref) {
                    Some(item) => self
                        .cache
                        .put_shard(id, shard, shard_from_item(item, &what)?),
                    None => {
                        self.cache.forget_shard(id, shard);
                        read_shard = true;
                    }
                }
            }
            if TxOutcome::failed(&reasons, TX_HEAD_CHECK) {
                self.cache.forget_latest(id);
                let head = self
                    .get_item("GetItem recipe head", key(pk.clone(), HEAD_SK))
                    .await?;
                let Some(head) = head else {
                    return Err(StoreError::NotFound(format!("recipe {id}")));
                };
                let latest: u32 = get_n(&head, "latest_version", &format!("head of recipe {id}"))?;
                if basis == DiffBasis::Latest && latest != make.recipe_version {
                    return Err(stale(&make, latest));
                }
                // The head changed back under us (or was created meanwhile): try again.
            }
            // The statistics moved on (another make of this recipe, perhaps on another
            // replica), or the transaction collided with another one: retry.
            tracing::debug!(
                make_id = %make.make_id,
                attempt,
                stats_moved = TxOutcome::failed(&reasons, TX_STATS),
                ?reasons,
                "make transaction cancelled, retrying"
            );
            self.pause_before_retry(attempt).await;
        }
        Err(StoreError::Unavailable(format!(
            "recipe {id}: statistics are contended by concurrent makes; gave up after {} attempts",
            self.max_attempts
        )))
    }

    async fn get_make(&self, make_id: &str) -> Result<StoredMake> {
        let pointer = self
            .get_item(
                "GetItem make pointer",
                key(make_pointer_pk(make_id), MAKE_POINTER_SK),
            )
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("make {make_id}")))?;
        self.make_from_pointer(&pointer, make_id).await
    }

    async fn list_makes(
        &self,
        recipe_id: &str,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<Page<StoredMake>> {
        const NAMES: [&str; 2] = ["pk", "sk"];
        let pk = recipe_pk(recipe_id);
        let start = start_key(TOKEN_MAKES, page_token, &NAMES, |k| {
            k["pk"] == pk && k["sk"].starts_with("MAKE#")
        })?;
        let limit = effective_page_size(page_size);
        let build = || {
            self.client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :m)")
                .expression_attribute_values(":pk", s(pk.clone()))
                .expression_attribute_values(":m", s("MAKE#"))
                .scan_index_forward(false)
                .consistent_read(true)
        };
        let (items, more) = self.query_page("Query makes", build, limit, start).await?;
        if items.is_empty() && !self.recipe_exists(recipe_id).await? {
            return Err(StoreError::NotFound(format!("recipe {recipe_id}")));
        }
        let next_page_token = match items.last() {
            Some(last) if more => Some(key_token(TOKEN_MAKES, last, &NAMES)?),
            _ => None,
        };
        let items = items
            .iter()
            .map(make_from_item)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page {
            items,
            next_page_token,
        })
    }

    async fn get_stats(&self, recipe_id: &str) -> Result<RecipeStats> {
        let pk = recipe_pk(recipe_id);
        let keys = std::iter::once(key(pk.clone(), HEAD_SK))
            .chain((0..STATS_SHARDS).map(|shard| key(pk.clone(), &stats_sk(shard))))
            .collect();
        let mut found = self.batch_get("BatchGetItem stats", keys).await?;
        if found.remove(&(pk.clone(), HEAD_SK.to_string())).is_none() {
            return Err(StoreError::NotFound(format!("recipe {recipe_id}")));
        }
        let what = format!("statistics of recipe {recipe_id}");
        let mut stats = RecipeStats::default();
        for shard in (0..STATS_SHARDS).map(stats_sk) {
            if let Some(item) = found.remove(&(pk.clone(), shard)) {
                let part: RecipeStats = from_json(&what, get_s(&item, "stats", &what)?)?;
                stats.merge(&part);
            }
        }
        Ok(stats)
    }

    async fn ping(&self) -> Result<()> {
        let out = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| self.sdk_error("DescribeTable", e))?;
        match out.table.as_ref().and_then(|t| t.table_status()) {
            Some(TableStatus::Active | TableStatus::Updating) | None => Ok(()),
            Some(status) => Err(StoreError::NotReady(format!(
                "table {} is {}",
                self.table,
                status.as_str()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_like_the_values_they_encode() {
        assert!(version_sk(9) < version_sk(10));
        assert_eq!(version_sk(u32::MAX).len(), "V#".len() + 10);
        assert!(make_sk(999, "b") < make_sk(1000, "a"));
        assert!(make_sk(1000, "a") < make_sk(1000, "b"));
        assert_eq!(make_sk(i64::MAX, "x"), format!("MAKE#0{}#x", i64::MAX));
    }

    #[test]
    fn table_names_are_validated() {
        let config = SdkConfig::builder().build();
        for bad in ["ab", "has space", "semi;colon", &"x".repeat(256)] {
            assert!(
                matches!(DynamoStore::new(&config, bad), Err(StoreError::NotReady(_))),
                "{bad:?} accepted"
            );
        }
        for good in ["abc", "recipes.prod-1_x", &"x".repeat(255)] {
            assert!(DynamoStore::new(&config, good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn page_tokens_must_match_the_listed_key() {
        let item: Item = key(recipe_pk("r1"), "MAKE#00000000000000000001#mk_1");
        let token = key_token(TOKEN_MAKES, &item, &["pk", "sk"]).unwrap();
        let check = |recipe: &str, token: &str| {
            let pk = recipe_pk(recipe);
            start_key(TOKEN_MAKES, Some(token), &["pk", "sk"], |k| {
                k["pk"] == pk && k["sk"].starts_with("MAKE#")
            })
        };
        assert_eq!(check("r1", &token).unwrap(), Some(item));
        assert!(matches!(
            check("r2", &token),
            Err(StoreError::InvalidPageToken(_))
        ));
        let extra = encode_page_token(
            TOKEN_MAKES,
            &BTreeMap::from([("pk", "RECIPE#r1"), ("sk", "MAKE#1"), ("other", "x")]),
        )
        .unwrap();
        assert!(matches!(
            check("r1", &extra),
            Err(StoreError::InvalidPageToken(_))
        ));
        let number = encode_page_token(
            TOKEN_MAKES,
            &serde_json::json!({"pk": "RECIPE#r1", "sk": 5}),
        )
        .unwrap();
        assert!(matches!(
            check("r1", &number),
            Err(StoreError::InvalidPageToken(_))
        ));
    }

    #[test]
    fn oversized_items_are_refused_with_a_clear_error() {
        let mut item = key(recipe_pk("r"), HEAD_SK);
        item.insert("body".into(), s("x".repeat(MAX_ITEM_BYTES)));
        let err = check_item_size("recipe r v1", &item).unwrap_err();
        assert!(err.to_string().contains("item limit"), "{err}");
    }
}
