//! The watcher's persisted memory of which object versions it already turned into jobs.
//!
//! In poll mode the watcher lists a bucket (or folder) prefix page by page. It has to remember
//! which versions it already put on the queue *across restarts* (the original system kept this
//! in memory and re-sent everything after a restart), stay correct when *two replicas* run at
//! once (at most one of them sends a given version while both are alive; when one dies
//! half-way, the other takes over after a lease), and keep *memory bounded* for buckets with
//! 100k+ objects: the ledger is asked about one listing page at a time, never loaded whole.
//!
//! [`SeenLedger`] is the one interface; [`sqlite::SqliteLedger`] (embedded default, a file that
//! processes on one machine share, no AWS) and [`dynamodb::DynamoLedger`] (a DynamoDB table)
//! implement it side by side with the same guarantees, checked by one contract test suite
//! (`tests/contract.rs`). Per page the watcher calls:
//!
//! 1. [`SeenLedger::settled`] to drop versions already sent (read-only, cheap);
//! 2. [`SeenLedger::claim`] on the rest, for its replica id and a lease; it sends jobs only for
//!    the versions it won;
//! 3. [`SeenLedger::mark_sent`] once the jobs are on the queue, or [`SeenLedger::release`] when
//!    sending failed, so that any replica may claim them again at once.
//!
//! The ledger keeps *one row per object key*: the latest version (ETag) it heard of, whether
//! that version is `claimed` (by whom, until when) or `sent`. A rewrite of an object (new ETag)
//! therefore replaces what was known about the old one: `settled` of an older ETag is false
//! afterwards. Every ledger is opened for a *scope* (`s3://bucket/prefix`, `dir://inbox`, …), so
//! one table or file serves several watchers without mixing them. [`open`] picks the backend
//! from a URL: `sqlite://PATH`, `sqlite:///abs/path`, `sqlite::memory:` or `dynamodb://TABLE`;
//! [`migrate`] creates what the backend needs. `docs/ledger.md` describes both.

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

mod common;
pub mod dynamodb;
pub mod sqlite;

/// Longest object key, in bytes of UTF-8 (S3's limit).
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest ETag, in bytes. S3 ETags are far shorter; the bound keeps rows small.
pub const MAX_ETAG_BYTES: usize = 1024;
/// Longest scope, in bytes.
pub const MAX_SCOPE_BYTES: usize = 1024;
/// Longest owner (replica id), in bytes.
pub const MAX_OWNER_BYTES: usize = 256;
/// Longest claim lease. A claim is meant to cover one page's sending, seconds to minutes.
pub const MAX_LEASE: Duration = Duration::from_secs(24 * 60 * 60);
/// Longest marker name, in bytes.
pub const MAX_MARKER_NAME_BYTES: usize = 256;
/// Longest marker value, in bytes.
pub const MAX_MARKER_VALUE_BYTES: usize = 4096;
/// Scopes may not start with this: on DynamoDB the markers of scope `S` live in partition
/// `marker#S`, which must never be the partition of another scope's objects.
pub const RESERVED_SCOPE_PREFIX: &str = "marker#";

/// One version of one object: the key plus its ETag (a rewrite with new content changes the
/// ETag).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectVersion {
    pub key: String,
    pub etag: String,
}

impl ObjectVersion {
    pub fn new(key: impl Into<String>, etag: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            etag: etag.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The ledger is not set up (DynamoDB table missing, database file unusable); the message
    /// says how to fix it.
    #[error("ledger not ready: {0}")]
    NotReady(String),
    /// Worth retrying: throttling, timeouts, the backend unreachable or busy.
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
    /// The request itself is wrong (bad URL, empty ETag, key too long, …). Nothing was changed.
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("ledger failure: {0}")]
    Internal(String),
}

impl LedgerError {
    /// True for errors a retry may cure.
    pub fn is_transient(&self) -> bool {
        matches!(self, LedgerError::Unavailable(_))
    }

    /// The same error kind, its message prefixed with `context`.
    pub fn context(self, context: impl std::fmt::Display) -> Self {
        match self {
            LedgerError::NotReady(m) => LedgerError::NotReady(format!("{context}: {m}")),
            LedgerError::Unavailable(m) => LedgerError::Unavailable(format!("{context}: {m}")),
            LedgerError::Invalid(m) => LedgerError::Invalid(format!("{context}: {m}")),
            LedgerError::Internal(m) => LedgerError::Internal(format!("{context}: {m}")),
        }
    }
}

pub type Result<T, E = LedgerError> = std::result::Result<T, E>;

/// What the watcher remembers about the objects of one scope.
///
/// Every call checks its whole input first (keys 1 to [`MAX_KEY_BYTES`] bytes, ETags not empty,
/// …) and changes nothing if one entry is wrong (`Invalid`). An empty input makes no call to
/// the backend. Inputs of any length are accepted and split into backend-sized chunks; a call
/// that fails half-way may have applied some chunks (claims then lapse with their lease).
#[async_trait]
pub trait SeenLedger: Send + Sync + 'static {
    /// For each version, in input order: true if it is already settled (sent), i.e. the ledger
    /// holds this key with this ETag in state `sent`. Read-only. Used to filter a listing page
    /// before claiming.
    async fn settled(&self, versions: &[ObjectVersion]) -> Result<Vec<bool>>;

    /// Tries to claim each version for sending, for `owner` (a replica id) and `lease`
    /// (1 ms to [`MAX_LEASE`]). For each input, in order, true when this caller now holds the
    /// claim. A claim succeeds when the key is unknown; or the ledger holds the key with a
    /// different ETag (in any state: a rewrite is a new version to send); or it holds this ETag
    /// in state `claimed` and the lease has expired (a crashed replica) or the owner is this
    /// same owner (a restart with the same replica id). It fails when the key and ETag are
    /// `sent`, or claimed by another owner whose lease is live. Of several entries with the
    /// same key in one call only the first can win.
    async fn claim(
        &self,
        versions: &[ObjectVersion],
        owner: &str,
        lease: Duration,
    ) -> Result<Vec<bool>>;

    /// The jobs for these versions are on the queue: they become `sent`. Idempotent. A key the
    /// ledger holds with another ETag (claimed or sent since, a newer version) is left alone.
    async fn mark_sent(&self, versions: &[ObjectVersion]) -> Result<()>;

    /// Gives claims back (sending failed) so that any replica may claim them at once: forgets
    /// each version that is `claimed` by `owner` with this ETag. Anything else is left alone.
    async fn release(&self, versions: &[ObjectVersion], owner: &str) -> Result<()>;

    /// A named marker of this scope (e.g. when the watcher first started, for "start from
    /// now"): stores `value` if the marker is absent and returns the value now stored — the
    /// existing one if it was set before, so two replicas starting together agree on one value.
    async fn marker_or_insert(&self, name: &str, value: &str) -> Result<String>;
}

/// Opens the ledger a URL names, for `scope`:
///
/// - `sqlite://PATH` (relative), `sqlite:///abs/path` or `sqlite::memory:` (one handle only):
///   the embedded ledger; the file and its parent directories are created, the schema applied;
/// - `dynamodb://TABLE`: a DynamoDB table through the shared AWS configuration (`aws-setup`);
///   the table must exist (`NotReady` otherwise; see [`migrate`]).
pub async fn open(url: &str, scope: &str) -> Result<Arc<dyn SeenLedger>> {
    if url.starts_with("dynamodb:") {
        let table = dynamodb::parse_url(url)?;
        let ledger =
            dynamodb::DynamoLedger::connect(&aws_setup::load().await, &table, scope).await?;
        Ok(Arc::new(ledger))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteLedger::open(url, scope).await?))
    } else {
        Err(unsupported_url(url))
    }
}

/// Creates what the backend needs: the SQLite schema, or the DynamoDB table (on-demand
/// capacity; waits until it is ACTIVE). Safe to run again. DynamoDB uses the shared AWS
/// configuration (`aws-setup`).
pub async fn migrate(url: &str) -> Result<()> {
    if url.starts_with("dynamodb:") {
        let table = dynamodb::parse_url(url)?;
        dynamodb::create_table(&aws_setup::load().await, &table).await
    } else if url.starts_with("sqlite:") {
        sqlite::SqliteLedger::migrate(url).await
    } else {
        Err(unsupported_url(url))
    }
}

fn unsupported_url(url: &str) -> LedgerError {
    LedgerError::Invalid(format!(
        "unsupported ledger URL {url:?}: use sqlite://PATH, sqlite:///ABSOLUTE/PATH, \
         sqlite::memory: or dynamodb://TABLE"
    ))
}
