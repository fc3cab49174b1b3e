//! Durable storage for the comparison service.
//!
//! [`RecipeStore`] is the one interface; [`sqlite::SqliteStore`] (embedded default, no AWS) and
//! [`dynamodb::DynamoStore`] implement it side by side with the same guarantees, checked by one
//! contract test suite (`tests/contract.rs`):
//!
//! - recipes are versioned: an update writes a new version, old versions stay readable, and an
//!   update whose content equals the latest version writes nothing;
//! - a make is recorded, and its recipe's statistics updated, exactly once per idempotency key,
//!   atomically, even under concurrent duplicates;
//! - list calls are paged with opaque tokens; makes are listed newest first.
//!
//! [`open`] picks the backend from a URL: `sqlite://path/to/file.db`, `sqlite::memory:` or
//! `dynamodb://table-name`.

use async_trait::async_trait;
use recipe_diff::{RecipeDiff, RecipeStats};
use recipe_model::Recipe;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod cache;
mod common;
pub mod dynamodb;
pub mod sqlite;

/// Largest page any list call returns; larger requests are clamped.
pub const MAX_PAGE_SIZE: u32 = 100;
/// Page size used when the caller asks for 0.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
/// Longest accepted idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 512;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRecipe {
    pub recipe: Recipe,
    /// 1 for the first version, +1 for every update that changed the content.
    pub version: u32,
    /// When this version was written, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecipeSummary {
    pub recipe_id: String,
    pub recipe_name: String,
    pub latest_version: u32,
    pub updated_at_ms: i64,
}

/// Facts about a write request that the store keeps for idempotency.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Same key again returns the first result without writing. Reusing a key for different
    /// content is refused with [`StoreError::Conflict`].
    pub idempotency_key: Option<String>,
    pub now_ms: i64,
}

/// Result of a recipe create or update.
#[derive(Debug, Clone, PartialEq)]
pub struct RecipeWrite {
    pub stored: StoredRecipe,
    /// False when nothing was written: an idempotent replay, or an update equal to the latest.
    pub written: bool,
}

/// A make ready to be recorded; the diff was computed against `recipe_version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewMake {
    /// Derived from the idempotency key, see [`make_id_for_key`].
    pub make_id: String,
    pub idempotency_key: String,
    pub recipe_id: String,
    pub recipe_version: u32,
    pub make: Recipe,
    pub diff: RecipeDiff,
    pub recorded_at_ms: i64,
    /// Where the make came from (e.g. `s3://bucket/key`), for tracing it back; may be empty.
    pub source: String,
}

pub type StoredMake = NewMake;

/// What a make's diff was computed against, which [`RecipeStore::record_make_on`] checks in the
/// same atomic write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffBasis {
    /// The version the caller named: only the recipe's existence is checked.
    Named,
    /// What the store called the latest version: recording fails with [`StoreError::Stale`]
    /// when a newer version exists by then, so no make is compared with an outdated original.
    Latest,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RecordOutcome {
    /// Stored now, statistics updated.
    Recorded(StoredMake),
    /// The key was seen before: this is the first result, nothing was written.
    Duplicate(StoredMake),
}

impl RecordOutcome {
    pub fn make(&self) -> &StoredMake {
        match self {
            RecordOutcome::Recorded(m) | RecordOutcome::Duplicate(m) => m,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass back to get the next page; None on the last page.
    pub next_page_token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// A precondition did not hold: expected version differs, or an idempotency key was
    /// reused with different content.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The make was diffed against a version that is no longer the latest: read the recipe
    /// again, diff again and retry.
    #[error("stale: {0}")]
    Stale(String),
    #[error("invalid page token: {0}")]
    InvalidPageToken(String),
    /// Worth retrying: throttling, timeouts, the backend unreachable.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store is not set up (e.g. the DynamoDB table does not exist; run `migrate`).
    #[error("store not ready: {0}")]
    NotReady(String),
    #[error("store failure: {0}")]
    Internal(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[async_trait]
pub trait RecipeStore: Send + Sync + 'static {
    /// Creates version 1. `AlreadyExists` if the recipe id is taken (unless this is an
    /// idempotent replay of the same create).
    async fn create_recipe(&self, recipe: Recipe, opts: WriteOptions) -> Result<RecipeWrite>;

    /// Writes a new version if the content differs from the latest. `expected_version`, when
    /// given, must equal the latest version (`Conflict` otherwise). A missing recipe is
    /// `NotFound` unless `allow_missing`, which creates version 1.
    async fn update_recipe(
        &self,
        recipe: Recipe,
        expected_version: Option<u32>,
        allow_missing: bool,
        opts: WriteOptions,
    ) -> Result<RecipeWrite>;

    /// The latest version, or the given one.
    async fn get_recipe(&self, recipe_id: &str, version: Option<u32>) -> Result<StoredRecipe>;

    /// The original to diff a make against: like [`get_recipe`](Self::get_recipe), but a
    /// backend may answer from a cache, so "latest" may be out of date. Pair it with
    /// [`record_make_on`](Self::record_make_on) and [`DiffBasis::Latest`], which detects that.
    async fn recipe_for_make(&self, recipe_id: &str, version: Option<u32>) -> Result<StoredRecipe> {
        self.get_recipe(recipe_id, version).await
    }

    /// Latest version of every recipe, ordered by recipe id.
    async fn list_recipes(
        &self,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<Page<RecipeSummary>>;

    /// Records the make and folds its diff into the recipe's statistics, atomically, once per
    /// idempotency key. `NotFound` if the recipe does not exist; `Conflict` if the key was used
    /// for a different make.
    async fn record_make(&self, make: NewMake) -> Result<RecordOutcome> {
        self.record_make_on(make, DiffBasis::Named).await
    }

    /// [`record_make`](Self::record_make), also checking `basis`: with [`DiffBasis::Latest`],
    /// `Stale` if `make.recipe_version` is no longer the recipe's latest version. A replay of
    /// a recorded make returns the first result whatever the recipe's versions are now.
    async fn record_make_on(&self, make: NewMake, basis: DiffBasis) -> Result<RecordOutcome>;

    async fn get_make(&self, make_id: &str) -> Result<StoredMake>;

    /// A recipe's makes, newest first. `NotFound` if the recipe does not exist.
    async fn list_makes(
        &self,
        recipe_id: &str,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<Page<StoredMake>>;

    /// Statistics over all recorded makes; zero counts when there are none. `NotFound` if the
    /// recipe does not exist.
    async fn get_stats(&self, recipe_id: &str) -> Result<RecipeStats>;

    /// Cheap check that the backend answers (for health/readiness).
    async fn ping(&self) -> Result<()>;
}

/// The make id for an idempotency key: the same key always maps to the same make, which is what
/// lets concurrent duplicates collide on one record instead of both succeeding.
pub fn make_id_for_key(idempotency_key: &str) -> String {
    let digest = Sha256::digest(idempotency_key.as_bytes());
    format!("mk_{}", hex::encode(&digest[..16]))
}

/// Clamps a requested page size into 1..=MAX_PAGE_SIZE (0 means the default).
pub fn effective_page_size(requested: u32) -> u32 {
    match requested {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    }
}

/// Opens the store a URL names. DynamoDB uses the shared AWS configuration (`aws-setup`).
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn RecipeStore>> {
    if let Some(table) = url.strip_prefix("dynamodb://") {
        let store = dynamodb::DynamoStore::new(&aws_setup::load().await, table)?;
        Ok(std::sync::Arc::new(store))
    } else if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(sqlite::SqliteStore::open(url).await?))
    } else {
        Err(StoreError::NotReady(format!(
            "unsupported store URL {url:?}: use sqlite://PATH, sqlite::memory: or dynamodb://TABLE"
        )))
    }
}

/// Creates what the backend needs (tables, indexes). Safe to run again.
pub async fn migrate(url: &str) -> Result<()> {
    if let Some(table) = url.strip_prefix("dynamodb://") {
        dynamodb::DynamoStore::new(&aws_setup::load().await, table)?
            .create_table()
            .await
    } else {
        // The embedded store applies its schema when it opens.
        open(url).await.map(|_| ())
    }
}
