//! The DynamoDB backend: one table with string keys `pk` (the scope) and `sk` (the object
//! key), on-demand capacity. `docs/ledger.md` describes the items and what each call costs.
//!
//! What matters is the number of AWS calls per object, because the watcher asks about every
//! object it lists. So nothing is done per item unless it has to be:
//!
//! - `settled` is `BatchGetItem`, 100 keys a call (strongly consistent: a version marked sent a
//!   moment ago must not look unsettled, or it costs a failed claim);
//! - `claim`, `mark_sent` and `release` are `TransactWriteItems` of up to 100 conditional
//!   writes, each item's condition being the protocol's rule for that item. A transaction is
//!   all or nothing, so when some conditions fail DynamoDB cancels it and says, per item, why
//!   (`CancellationReasons`): items with `ConditionalCheckFailed` lost, the rest (`None`) go
//!   again in a new transaction. Only when the reasons are missing or name something else
//!   (`TransactionConflict` with a concurrent transaction, even after a couple of retries;
//!   a validation error) does the chunk fall back to one conditional write per item, which gives
//!   an exact answer per item. moto (the test endpoint) returns `CancellationReasons` like
//!   DynamoDB does, so the contract tests exercise the transaction path; they run a second time
//!   with [`DynamoLedger::item_by_item`], which makes the fallback the only path, so that one is
//!   checked against the same contract. Conditional writes make `mark_sent` safe too: it never
//!   regresses a key that has since been claimed with a newer ETag;
//! - `marker_or_insert` is one `UpdateItem` with `if_not_exists` that returns the stored value:
//!   atomic, so two replicas starting together agree, and one call instead of a conditional put
//!   followed by a read.
//!
//! Markers of scope `S` live in partition `marker#S`, which no scope can be (scopes may not
//! start with [`crate::RESERVED_SCOPE_PREFIX`]), so object keys, which may contain any
//! character, never collide with marker names. Every request sent is counted ([`DynamoLedger::
//! calls`]); the SDK's own retries of a request are not.

use crate::common::{
    check_lease, check_marker, check_owner, check_scope, check_versions, first_occurrences, millis,
    now_ms, rounds,
};
use crate::{LedgerError, ObjectVersion, RESERVED_SCOPE_PREFIX, Result, SeenLedger};
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{BuildError, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, KeySchemaElement, KeyType,
    KeysAndAttributes, Put, ReturnValue, ScalarAttributeType, TableDescription, TableStatus,
    TransactWriteItem, Update,
};
use aws_setup::dynamodb::{self, FailureKind, full_jitter};
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

type Item = HashMap<String, AttributeValue>;

/// Most actions in one `TransactWriteItems` (the DynamoDB limit).
pub const MAX_TRANSACT_ITEMS: usize = 100;
/// Most keys in one `BatchGetItem` (the DynamoDB limit).
pub const MAX_BATCH_GET_KEYS: usize = 100;
/// Attempts of a `BatchGetItem` with unprocessed keys, or of one fallback write that failed for
/// a transient reason, before giving up with `Unavailable`.
pub const MAX_ATTEMPTS: u32 = 8;
/// How often a chunk's transaction is retried after colliding with concurrent transactions
/// before the chunk falls back to one write per item.
const TX_CONFLICT_RETRIES: u32 = 2;
/// Fallback writes of one chunk in flight at once.
const FALLBACK_CONCURRENCY: usize = 8;
/// How long `create_table` waits for the table to become ACTIVE.
const CREATE_TIMEOUT: Duration = Duration::from_secs(300);

const CLAIMED: &str = "claimed";
const SENT: &str = "sent";

/// Claims the item unless it holds this ETag as sent, or as claimed by another owner whose
/// lease is live (the same rule as the embedded ledger's upsert).
const CLAIM_CONDITION: &str = "attribute_not_exists(pk) OR #etag <> :etag \
     OR (#state = :claimed AND (#lease < :now OR #owner = :owner))";
/// Marks sent only a key that is absent or still at this ETag.
const MARK_SENT_CONDITION: &str = "attribute_not_exists(pk) OR #etag = :etag";
const MARK_SENT_UPDATE: &str = "SET #etag = :etag, #state = :sent, #updated = :now REMOVE #lease";
/// Forgets only this owner's claim of this ETag.
const RELEASE_CONDITION: &str = "#state = :claimed AND #owner = :owner AND #etag = :etag";
const MARKER_UPDATE: &str =
    "SET #value = if_not_exists(#value, :value), #created = if_not_exists(#created, :now)";

/// The table a `dynamodb://TABLE` URL names.
pub fn parse_url(url: &str) -> Result<String> {
    let table = url.strip_prefix("dynamodb://").ok_or_else(|| {
        LedgerError::Invalid(format!("{url:?} is not a DynamoDB URL (dynamodb://TABLE)"))
    })?;
    check_table_name(table).map_err(|e| LedgerError::Invalid(format!("{url:?}: {e}")))?;
    Ok(table.to_string())
}

fn check_table_name(table: &str) -> std::result::Result<(), String> {
    let valid = (3..=255).contains(&table.len())
        && table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{table:?} is not a valid DynamoDB table name (3 to 255 characters of a-z, A-Z, \
             0-9, '_', '.', '-')"
        ))
    }
}

fn setup_hint(table: &str) -> String {
    format!(
        "DynamoDB table {table} does not exist; create it with `watcher setup`, which runs \
         seen_ledger::migrate(\"dynamodb://{table}\") (see docs/ledger.md)"
    )
}

fn client(config: &SdkConfig) -> Client {
    // `Client::new` panics on a configuration without a behaviour version; default it.
    let mut client_config = aws_sdk_dynamodb::config::Builder::from(config);
    if config.behavior_version().is_none() {
        client_config = client_config.behavior_version_latest();
    }
    Client::from_conf(client_config.interceptor(aws_setup::TraceCalls).build())
}

/// Maps an SDK error onto the ledger's error kinds.
fn sdk_error<E>(op: &str, table: &str, err: SdkError<E, HttpResponse>) -> LedgerError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let failure = dynamodb::failure(op, table, &err);
    match failure.kind {
        FailureKind::Unavailable => LedgerError::Unavailable(failure.message),
        FailureKind::MissingTable => LedgerError::NotReady(setup_hint(table)),
        FailureKind::Denied => LedgerError::NotReady(failure.message),
        FailureKind::Invalid => LedgerError::Invalid(failure.message),
        FailureKind::Other => LedgerError::Internal(failure.message),
    }
}

fn build_error(e: BuildError) -> LedgerError {
    LedgerError::Internal(format!("building a DynamoDB request: {e}"))
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn key(pk: &str, sk: &str) -> Item {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(LedgerError::Internal(format!(
            "a stored ledger item has no string attribute {name:?}"
        ))),
    }
}

/// `#name` placeholders for the attribute names an expression uses (`state`, `owner` and
/// `value` are DynamoDB reserved words; the rest go the same way for uniformity).
fn names(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(p, a)| (p.to_string(), a.to_string()))
        .collect()
}

fn values(pairs: Vec<(&str, AttributeValue)>) -> HashMap<String, AttributeValue> {
    pairs.into_iter().map(|(p, v)| (p.to_string(), v)).collect()
}

/// Waits before trying a conflicting or throttled write again: a random wait up to 20 ms,
/// 40 ms, 80 ms, … capped at 1 s.
async fn backoff(attempt: u32) {
    let wait = full_jitter(Duration::from_millis(20), attempt, Duration::from_secs(1));
    tokio::time::sleep(wait).await;
}

/// One conditional write of one item, which can travel in a transaction or on its own.
struct CondWrite {
    kind: WriteKind,
    condition: &'static str,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

enum WriteKind {
    Put(Item),
    Update { key: Item, expression: &'static str },
    Delete { key: Item },
}

impl CondWrite {
    fn transact_item(&self, table: &str) -> Result<TransactWriteItem> {
        let names = Some(self.names.clone());
        let values = Some(self.values.clone());
        let item = match &self.kind {
            WriteKind::Put(item) => TransactWriteItem::builder().put(
                Put::builder()
                    .table_name(table)
                    .set_item(Some(item.clone()))
                    .condition_expression(self.condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(build_error)?,
            ),
            WriteKind::Update { key, expression } => TransactWriteItem::builder().update(
                Update::builder()
                    .table_name(table)
                    .set_key(Some(key.clone()))
                    .update_expression(*expression)
                    .condition_expression(self.condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(build_error)?,
            ),
            WriteKind::Delete { key } => TransactWriteItem::builder().delete(
                Delete::builder()
                    .table_name(table)
                    .set_key(Some(key.clone()))
                    .condition_expression(self.condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(build_error)?,
            ),
        };
        Ok(item.build())
    }
}

/// What to do after a chunk's transaction was cancelled, from its `CancellationReasons`.
#[derive(Debug, PartialEq, Eq)]
enum Cancelled {
    /// These positions failed their conditions (they lost); the others may go again at once.
    Lost(Vec<usize>),
    /// Some positions collided with concurrent transactions (or were throttled); `lost` failed
    /// their conditions. Worth another transaction after a pause.
    Conflict { lost: Vec<usize> },
    /// No usable reasons: write the chunk item by item.
    Fallback(String),
}

/// Reads the reasons of a cancelled transaction of `len` actions (`None` = that action was
/// fine).
fn classify(reasons: &[Option<String>], len: usize) -> Cancelled {
    if reasons.len() != len {
        return Cancelled::Fallback(format!(
            "{} cancellation reasons for {len} actions",
            reasons.len()
        ));
    }
    let mut lost = Vec::new();
    let mut conflict = false;
    for (i, reason) in reasons.iter().enumerate() {
        match reason.as_deref() {
            None => {}
            Some("ConditionalCheckFailed") => lost.push(i),
            Some("TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded") => {
                conflict = true
            }
            Some(other) => return Cancelled::Fallback(format!("cancellation reason {other}")),
        }
    }
    if conflict {
        Cancelled::Conflict { lost }
    } else if lost.is_empty() {
        Cancelled::Fallback("cancelled without a reason".into())
    } else {
        Cancelled::Lost(lost)
    }
}

/// What a `TransactWriteItems` call came to.
enum TxOutcome {
    Committed,
    /// Cancelled; one reason code per action, in order (empty when the service gave none).
    Cancelled(Vec<Option<String>>),
}

/// The table's key schema is the ledger's: `pk` hash key, `sk` range key.
fn has_ledger_keys(table: &TableDescription) -> bool {
    let schema = table.key_schema();
    schema.len() == 2
        && schema
            .iter()
            .any(|k| k.attribute_name() == "pk" && *k.key_type() == KeyType::Hash)
        && schema
            .iter()
            .any(|k| k.attribute_name() == "sk" && *k.key_type() == KeyType::Range)
}

/// Creates the ledger table (on-demand capacity) and waits until it is ACTIVE. Safe to run
/// again: an existing table is fine if it has the ledger's keys.
pub async fn create_table(config: &SdkConfig, table: &str) -> Result<()> {
    check_table_name(table).map_err(LedgerError::Invalid)?;
    let client = client(config);
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
    let created = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk")?)
        .attribute_definitions(attr("sk")?)
        .key_schema(key_elem("pk", KeyType::Hash)?)
        .key_schema(key_elem("sk", KeyType::Range)?)
        .send()
        .await;
    match created {
        Ok(_) => tracing::info!(table, "created DynamoDB ledger table"),
        Err(e)
            if matches!(
                e.as_service_error(),
                Some(CreateTableError::ResourceInUseException(_))
            ) =>
        {
            tracing::info!(table, "DynamoDB ledger table exists already");
        }
        Err(e) => return Err(sdk_error("CreateTable", table, e)),
    }
    let deadline = tokio::time::Instant::now() + CREATE_TIMEOUT;
    loop {
        let description = describe(&client, table).await?;
        if !has_ledger_keys(&description) {
            return Err(not_a_ledger(table));
        }
        if description.table_status() == Some(&TableStatus::Active) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(LedgerError::Unavailable(format!(
                "table {table} did not become ACTIVE within {}s",
                CREATE_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn describe(client: &Client, table: &str) -> Result<TableDescription> {
    client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| sdk_error("DescribeTable", table, e))?
        .table
        .ok_or_else(|| LedgerError::Internal(format!("DescribeTable {table}: no description")))
}

fn not_a_ledger(table: &str) -> LedgerError {
    LedgerError::NotReady(format!(
        "table {table} exists but its keys are not pk (hash) and sk (range); it was not created \
         by the ledger's migrate command"
    ))
}

/// One scope of a ledger in a DynamoDB table.
pub struct DynamoLedger {
    client: Client,
    table: String,
    scope: String,
    marker_pk: String,
    calls: AtomicU64,
    /// Skip transactions and write every item with its own conditional request.
    item_by_item: bool,
}

impl DynamoLedger {
    /// A ledger for `scope` on `table`, using the shared SDK configuration. Checks with one
    /// `DescribeTable` that the table exists (`NotReady` with how to create it otherwise).
    pub async fn connect(config: &SdkConfig, table: &str, scope: &str) -> Result<Self> {
        check_table_name(table).map_err(LedgerError::Invalid)?;
        check_scope(scope)?;
        let ledger = Self {
            client: client(config),
            table: table.to_string(),
            scope: scope.to_string(),
            marker_pk: format!("{RESERVED_SCOPE_PREFIX}{scope}"),
            calls: AtomicU64::new(0),
            item_by_item: false,
        };
        ledger.count();
        let description = describe(&ledger.client, table).await?;
        if !has_ledger_keys(&description) {
            return Err(not_a_ledger(table));
        }
        match description.table_status() {
            Some(TableStatus::Active | TableStatus::Updating) | None => Ok(ledger),
            Some(status) => Err(LedgerError::NotReady(format!(
                "table {table} is {}",
                status.as_str()
            ))),
        }
    }

    /// Writes every item with its own conditional request instead of transactions of 100:
    /// the path a chunk falls back to when a transaction cannot tell per item what happened,
    /// made the only one. About 100 times the calls; for testing that path, and for
    /// DynamoDB-compatible stores without `TransactWriteItems`.
    pub fn item_by_item(mut self) -> Self {
        self.item_by_item = true;
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// DynamoDB requests this handle has sent so far (the SDK's own retries not counted), for
    /// reporting calls per object.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    fn error<E>(&self, op: &str, err: SdkError<E, HttpResponse>) -> LedgerError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        sdk_error(op, &self.table, err)
    }

    /// Reads `keys` (distinct, at most [`MAX_BATCH_GET_KEYS`]) of this scope: key → (ETag,
    /// whether sent).
    async fn batch_get(
        &self,
        keys: &[&str],
        found: &mut HashMap<String, (String, bool)>,
    ) -> Result<()> {
        let mut pending: Vec<Item> = keys.iter().map(|k| key(&self.scope, k)).collect();
        for attempt in 0..MAX_ATTEMPTS {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(pending))
                .consistent_read(true)
                .projection_expression("#sk, #etag, #state")
                .set_expression_attribute_names(Some(names(&[
                    ("#sk", "sk"),
                    ("#etag", "etag"),
                    ("#state", "state"),
                ])))
                .build()
                .map_err(build_error)?;
            self.count();
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| self.error("BatchGetItem", e))?;
            for item in out
                .responses
                .and_then(|mut r| r.remove(&self.table))
                .unwrap_or_default()
            {
                let etag = get_s(&item, "etag")?.to_string();
                let sent = get_s(&item, "state")? == SENT;
                found.insert(get_s(&item, "sk")?.to_string(), (etag, sent));
            }
            // Keys DynamoDB did not get to (throughput, response size) go again.
            pending = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .map(|rest| rest.keys)
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(());
            }
            if attempt + 1 < MAX_ATTEMPTS {
                backoff(attempt).await;
            }
        }
        Err(LedgerError::Unavailable(format!(
            "DynamoDB BatchGetItem on {}: keys still unprocessed after {MAX_ATTEMPTS} attempts",
            self.table
        )))
    }

    async fn transact(&self, op: &str, items: Vec<TransactWriteItem>) -> Result<TxOutcome> {
        self.count();
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
                    Ok(TxOutcome::Cancelled(
                        c.cancellation_reasons()
                            .iter()
                            .map(|r| r.code().filter(|c| *c != "None").map(str::to_string))
                            .collect(),
                    ))
                }
                _ => Err(self.error(&format!("TransactWriteItems {op}"), e)),
            },
        }
    }

    /// Applies conditional writes of distinct items, [`MAX_TRANSACT_ITEMS`] per transaction.
    /// For each, whether its condition held and it was written.
    async fn write_all(&self, op: &str, writes: &[CondWrite]) -> Result<Vec<bool>> {
        let mut written = Vec::with_capacity(writes.len());
        for chunk in writes.chunks(MAX_TRANSACT_ITEMS) {
            written.extend(self.write_chunk(op, chunk).await?);
        }
        Ok(written)
    }

    async fn write_chunk(&self, op: &str, chunk: &[CondWrite]) -> Result<Vec<bool>> {
        let mut written = vec![false; chunk.len()];
        let mut pending: Vec<usize> = (0..chunk.len()).collect();
        if self.item_by_item {
            let why = "transactions are switched off".to_string();
            return self.write_each(op, chunk, &pending, why, written).await;
        }
        let mut conflicts = 0;
        // Every round commits, drops at least one lost item, or counts a conflict: it ends.
        while !pending.is_empty() {
            let items = pending
                .iter()
                .map(|&i| chunk[i].transact_item(&self.table))
                .collect::<Result<Vec<_>>>()?;
            let reasons = match self.transact(op, items).await? {
                TxOutcome::Committed => {
                    for &i in &pending {
                        written[i] = true;
                    }
                    return Ok(written);
                }
                TxOutcome::Cancelled(reasons) => reasons,
            };
            let lost = match classify(&reasons, pending.len()) {
                Cancelled::Lost(lost) => lost,
                Cancelled::Conflict { lost } if conflicts < TX_CONFLICT_RETRIES => {
                    conflicts += 1;
                    backoff(conflicts).await;
                    lost
                }
                Cancelled::Conflict { .. } => {
                    let why = "transactions kept colliding with concurrent ones".to_string();
                    return self.write_each(op, chunk, &pending, why, written).await;
                }
                Cancelled::Fallback(why) => {
                    return self.write_each(op, chunk, &pending, why, written).await;
                }
            };
            let lost: HashSet<usize> = lost.into_iter().map(|p| pending[p]).collect();
            pending.retain(|i| !lost.contains(i));
        }
        Ok(written)
    }

    /// The fallback: one conditional request per pending item of a chunk.
    async fn write_each(
        &self,
        op: &str,
        chunk: &[CondWrite],
        pending: &[usize],
        why: String,
        mut written: Vec<bool>,
    ) -> Result<Vec<bool>> {
        tracing::debug!(
            op,
            items = pending.len(),
            reason = %why,
            "writing a chunk item by item"
        );
        let results: Vec<(usize, Result<bool>)> = futures::stream::iter(pending.iter().copied())
            .map(|i| async move { (i, self.write_one_retrying(op, &chunk[i]).await) })
            .buffer_unordered(FALLBACK_CONCURRENCY)
            .collect()
            .await;
        for (i, result) in results {
            written[i] = result?;
        }
        Ok(written)
    }

    async fn write_one_retrying(&self, op: &str, write: &CondWrite) -> Result<bool> {
        let mut attempt = 0;
        loop {
            match self.write_one(op, write).await {
                Err(e) if e.is_transient() && attempt + 1 < MAX_ATTEMPTS => {
                    // Typically TransactionConflict: another replica's transaction is on the item.
                    backoff(attempt).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// One conditional request: true when written, false when its condition failed.
    async fn write_one(&self, op: &str, w: &CondWrite) -> Result<bool> {
        fn outcome<T, E>(
            ledger: &DynamoLedger,
            what: &str,
            result: std::result::Result<T, SdkError<E, HttpResponse>>,
        ) -> Result<bool>
        where
            E: ProvideErrorMetadata + std::error::Error + 'static,
        {
            match result {
                Ok(_) => Ok(true),
                Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
                Err(e) => Err(ledger.error(what, e)),
            }
        }
        let names = Some(w.names.clone());
        let values = Some(w.values.clone());
        self.count();
        match &w.kind {
            WriteKind::Put(item) => {
                let result = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(item.clone()))
                    .condition_expression(w.condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .send()
                    .await;
                outcome(self, &format!("PutItem {op}"), result)
            }
            WriteKind::Update { key, expression } => {
                let result = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(key.clone()))
                    .update_expression(*expression)
                    .condition_expression(w.condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .send()
                    .await;
                outcome(self, &format!("UpdateItem {op}"), result)
            }
            WriteKind::Delete { key } => {
                let result = self
                    .client
                    .delete_item()
                    .table_name(&self.table)
                    .set_key(Some(key.clone()))
                    .condition_expression(w.condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .send()
                    .await;
                outcome(self, &format!("DeleteItem {op}"), result)
            }
        }
    }

    /// Applies writes built per entry in input order: entries with a key seen before in the
    /// call go in a later round, since one transaction may not touch an item twice.
    async fn write_in_order(
        &self,
        op: &str,
        versions: &[ObjectVersion],
        build: impl Fn(&ObjectVersion) -> CondWrite,
    ) -> Result<()> {
        for round in rounds(versions) {
            let writes: Vec<CondWrite> = round.iter().map(|&i| build(&versions[i])).collect();
            self.write_all(op, &writes).await?;
        }
        Ok(())
    }

    fn claim_write(&self, v: &ObjectVersion, owner: &str, now: i64, until: i64) -> CondWrite {
        let mut item = key(&self.scope, &v.key);
        item.extend([
            ("etag".to_string(), s(&v.etag)),
            ("state".to_string(), s(CLAIMED)),
            ("owner".to_string(), s(owner)),
            ("lease_until_ms".to_string(), n(until)),
            ("updated_at_ms".to_string(), n(now)),
        ]);
        CondWrite {
            kind: WriteKind::Put(item),
            condition: CLAIM_CONDITION,
            names: names(&[
                ("#etag", "etag"),
                ("#state", "state"),
                ("#lease", "lease_until_ms"),
                ("#owner", "owner"),
            ]),
            values: values(vec![
                (":etag", s(&v.etag)),
                (":claimed", s(CLAIMED)),
                (":now", n(now)),
                (":owner", s(owner)),
            ]),
        }
    }
}

#[async_trait]
impl SeenLedger for DynamoLedger {
    async fn settled(&self, versions: &[ObjectVersion]) -> Result<Vec<bool>> {
        check_versions("settled", versions)?;
        let mut unique = HashSet::with_capacity(versions.len());
        let keys: Vec<&str> = versions
            .iter()
            .map(|v| v.key.as_str())
            .filter(|k| unique.insert(*k))
            .collect();
        let mut found = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(MAX_BATCH_GET_KEYS) {
            self.batch_get(chunk, &mut found).await?;
        }
        Ok(versions
            .iter()
            .map(|v| {
                found
                    .get(&v.key)
                    .is_some_and(|(etag, sent)| *sent && *etag == v.etag)
            })
            .collect())
    }

    async fn claim(
        &self,
        versions: &[ObjectVersion],
        owner: &str,
        lease: Duration,
    ) -> Result<Vec<bool>> {
        check_versions("claim", versions)?;
        check_owner("claim", owner)?;
        check_lease(lease)?;
        let firsts = first_occurrences(versions);
        // One clock reading for the call: the lease runs from before the first request, so this
        // replica never believes it holds a claim longer than the table says it does.
        let now = now_ms();
        let until = now.saturating_add(millis(lease));
        let (indexes, writes): (Vec<usize>, Vec<CondWrite>) = versions
            .iter()
            .zip(&firsts)
            .enumerate()
            .filter(|(_, (_, first))| **first)
            .map(|(i, (v, _))| (i, self.claim_write(v, owner, now, until)))
            .unzip();
        let won = self.write_all("claim", &writes).await?;
        let mut out = vec![false; versions.len()];
        for (i, won) in indexes.into_iter().zip(won) {
            out[i] = won;
        }
        Ok(out)
    }

    /// Conditional updates in transactions (see the module documentation): 100 versions per
    /// call, and a key claimed since with a newer ETag is never set back. Chosen over
    /// `BatchWriteItem`, which takes only 25 unconditional puts per call.
    async fn mark_sent(&self, versions: &[ObjectVersion]) -> Result<()> {
        check_versions("mark_sent", versions)?;
        let now = now_ms();
        self.write_in_order("mark_sent", versions, |v| CondWrite {
            kind: WriteKind::Update {
                key: key(&self.scope, &v.key),
                expression: MARK_SENT_UPDATE,
            },
            condition: MARK_SENT_CONDITION,
            names: names(&[
                ("#etag", "etag"),
                ("#state", "state"),
                ("#updated", "updated_at_ms"),
                ("#lease", "lease_until_ms"),
            ]),
            values: values(vec![
                (":etag", s(&v.etag)),
                (":sent", s(SENT)),
                (":now", n(now)),
            ]),
        })
        .await
    }

    /// Conditional deletes, in transactions of 100 like the other writes (a failed send may
    /// give back a whole page).
    async fn release(&self, versions: &[ObjectVersion], owner: &str) -> Result<()> {
        check_versions("release", versions)?;
        check_owner("release", owner)?;
        self.write_in_order("release", versions, |v| CondWrite {
            kind: WriteKind::Delete {
                key: key(&self.scope, &v.key),
            },
            condition: RELEASE_CONDITION,
            names: names(&[("#state", "state"), ("#owner", "owner"), ("#etag", "etag")]),
            values: values(vec![
                (":claimed", s(CLAIMED)),
                (":owner", s(owner)),
                (":etag", s(&v.etag)),
            ]),
        })
        .await
    }

    async fn marker_or_insert(&self, name: &str, value: &str) -> Result<String> {
        check_marker(name, value)?;
        self.count();
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&self.marker_pk, name)))
            .update_expression(MARKER_UPDATE)
            .set_expression_attribute_names(Some(names(&[
                ("#value", "value"),
                ("#created", "created_at_ms"),
            ])))
            .set_expression_attribute_values(Some(values(vec![
                (":value", s(value)),
                (":now", n(now_ms())),
            ])))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| self.error("UpdateItem marker", e))?;
        let stored = out.attributes.unwrap_or_default();
        Ok(get_s(&stored, "value")?.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(codes: &[Option<&str>]) -> Vec<Option<String>> {
        codes.iter().map(|c| c.map(str::to_string)).collect()
    }

    #[test]
    fn cancellation_reasons_decide_what_goes_again() {
        let ccf = Some("ConditionalCheckFailed");
        assert_eq!(
            classify(&codes(&[None, ccf, None, ccf]), 4),
            Cancelled::Lost(vec![1, 3])
        );
        assert_eq!(
            classify(&codes(&[ccf, Some("TransactionConflict"), None]), 3),
            Cancelled::Conflict { lost: vec![0] }
        );
        assert!(matches!(classify(&[], 3), Cancelled::Fallback(_)));
        assert!(matches!(
            classify(&codes(&[None, None]), 2),
            Cancelled::Fallback(_)
        ));
        assert!(matches!(
            classify(&codes(&[ccf, Some("ValidationError")]), 2),
            Cancelled::Fallback(_)
        ));
        assert!(matches!(
            classify(&codes(&[ccf]), 2),
            Cancelled::Fallback(_)
        ));
    }

    #[test]
    fn urls_name_a_valid_table() {
        assert_eq!(
            parse_url("dynamodb://seen-ledger").ok().as_deref(),
            Some("seen-ledger")
        );
        for bad in [
            "dynamodb://",
            "dynamodb://ab",
            "dynamodb://has space",
            "dynamodb://t?x=1",
            "dynamodb:t",
        ] {
            assert!(
                matches!(parse_url(bad), Err(LedgerError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn every_placeholder_is_used_by_its_expression() {
        // DynamoDB refuses unused names and values; keep the writes honest.
        let ledger_writes = [
            (
                CLAIM_CONDITION.to_string(),
                vec!["#etag", "#state", "#lease", "#owner"],
            ),
            (
                format!("{MARK_SENT_UPDATE} {MARK_SENT_CONDITION}"),
                vec!["#etag", "#state", "#updated", "#lease"],
            ),
            (
                RELEASE_CONDITION.to_string(),
                vec!["#state", "#owner", "#etag"],
            ),
            (MARKER_UPDATE.to_string(), vec!["#value", "#created"]),
        ];
        for (expression, placeholders) in ledger_writes {
            for p in placeholders {
                assert!(expression.contains(p), "{p} unused in {expression}");
            }
        }
    }
}
