//! The embedded backend: one SQLite database file (or an in-memory database), no AWS needed.
//!
//! rusqlite is blocking, so every call runs on `tokio::task::spawn_blocking` with the single
//! connection behind a `std::sync::Mutex`. Every write is one `BEGIN IMMEDIATE` transaction, so
//! the checks it makes (idempotency key, expected version, recipe existence) and the rows it
//! writes (version + head + key, or make + statistics) are atomic, also against other processes
//! sharing the file. The schema (see `docs/storage.md`) is applied on open, versioned with
//! `PRAGMA user_version`.

use crate::common::{
    check_new_make, decode_page_token, encode_page_token, from_json, make_fingerprint,
    recipe_fingerprint, stale, to_json,
};
use crate::{
    DiffBasis, NewMake, Page, RecipeStore, RecipeSummary, RecipeWrite, RecordOutcome, Result,
    StoreError, StoredMake, StoredRecipe, WriteOptions, effective_page_size,
};
use async_trait::async_trait;
use embedded_sqlite::{Ctx, Schema, SqliteError, Target, VersionIn, apply_schema, begin_write};
use recipe_diff::RecipeStats;
use recipe_model::Recipe;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a statement waits for another process's lock before giving up with `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS recipe_versions (
    recipe_id     TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    name          TEXT    NOT NULL,
    body          TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (recipe_id, version)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS recipe_heads (
    recipe_id      TEXT    NOT NULL PRIMARY KEY,
    latest_version INTEGER NOT NULL,
    name           TEXT    NOT NULL,
    updated_at_ms  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS recipe_write_keys (
    idempotency_key TEXT    NOT NULL PRIMARY KEY,
    recipe_id       TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    fingerprint     TEXT    NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS makes (
    make_id         TEXT    NOT NULL PRIMARY KEY,
    idempotency_key TEXT    NOT NULL UNIQUE,
    fingerprint     TEXT    NOT NULL,
    recipe_id       TEXT    NOT NULL REFERENCES recipe_heads (recipe_id),
    recipe_version  INTEGER NOT NULL,
    recorded_at_ms  INTEGER NOT NULL,
    source          TEXT    NOT NULL,
    make            TEXT    NOT NULL,
    diff            TEXT    NOT NULL
);

CREATE INDEX IF NOT EXISTS makes_by_recipe
    ON makes (recipe_id, recorded_at_ms DESC, make_id DESC);

CREATE TABLE IF NOT EXISTS recipe_stats (
    recipe_id TEXT NOT NULL PRIMARY KEY REFERENCES recipe_heads (recipe_id),
    stats     TEXT NOT NULL
) WITHOUT ROWID;
";

/// The tables this code writes and understands; the version is kept in `PRAGMA user_version`.
const SCHEMA: Schema = Schema {
    what: "the recipe store's tables",
    version_in: VersionIn::UserVersion,
    migrations: &[SCHEMA_V1],
};

const TOKEN_RECIPES: &str = "sqlite.recipes";
const TOKEN_MAKES: &str = "sqlite.makes";

const MAKE_COLUMNS: &str =
    "make_id, idempotency_key, recipe_id, recipe_version, recorded_at_ms, source, make, diff";

/// Position after the last recipe of a page.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipesPosition {
    after: String,
}

/// Position after the last make of a page; bound to the recipe it lists.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MakesPosition {
    recipe_id: String,
    recorded_at_ms: i64,
    make_id: String,
}

/// Recipes, makes and statistics in one SQLite database.
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    location: String,
}

impl SqliteStore {
    /// Opens (creating if needed) the database a URL names: `sqlite://relative/path.db`,
    /// `sqlite:///absolute/path.db` or `sqlite::memory:`. Parent directories are created, and
    /// the schema is applied.
    pub async fn open(url: &str) -> Result<Self> {
        let target = parse_url(url)?;
        let location = match &target {
            Target::Memory => ":memory:".to_string(),
            Target::File(p) => p.display().to_string(),
        };
        let conn = tokio::task::spawn_blocking(move || open_connection(&target))
            .await
            .map_err(|e| StoreError::Internal(format!("opening sqlite database: {e}")))??;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            location,
        })
    }

    /// Where the database lives (`:memory:` or the file path), for logs.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Runs `f` on the connection on the blocking thread pool.
    async fn with_conn<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while the lock was held rolled its transaction back (rusqlite rolls back
            // on drop), so the connection is still usable.
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("sqlite task failed: {e}")))?
    }
}

fn parse_url(url: &str) -> Result<Target> {
    let rest = url.strip_prefix("sqlite:").ok_or_else(|| {
        StoreError::NotReady(format!(
            "{url:?} is not a sqlite URL (sqlite://PATH or sqlite::memory:)"
        ))
    })?;
    if rest == ":memory:" || rest == "//:memory:" {
        return Ok(Target::Memory);
    }
    let path = rest.strip_prefix("//").unwrap_or(rest);
    if path.is_empty() {
        return Err(StoreError::NotReady(format!(
            "sqlite URL {url:?} names no file (sqlite://PATH or sqlite::memory:)"
        )));
    }
    Ok(Target::File(PathBuf::from(path)))
}

fn open_connection(target: &Target) -> Result<Connection> {
    let mut conn = embedded_sqlite::open(target, BUSY_TIMEOUT)?;
    apply_schema(&mut conn, &SCHEMA)?;
    Ok(conn)
}

impl From<SqliteError> for StoreError {
    fn from(e: SqliteError) -> Self {
        match e {
            SqliteError::NotReady(m) => StoreError::NotReady(m),
            SqliteError::Busy(m) => StoreError::Unavailable(m),
            SqliteError::Failed(m) => StoreError::Internal(m),
        }
    }
}

fn latest_version(tx: &Transaction<'_>, recipe_id: &str) -> Result<Option<u32>> {
    Ok(tx
        .query_row(
            "SELECT latest_version FROM recipe_heads WHERE recipe_id = ?1",
            [recipe_id],
            |row| row.get(0),
        )
        .optional()
        .ctx("reading recipe head")?)
}

fn load_version(conn: &Connection, recipe_id: &str, version: u32) -> Result<Option<StoredRecipe>> {
    let row: Option<(String, i64)> = conn
        .query_row(
            "SELECT body, created_at_ms FROM recipe_versions
             WHERE recipe_id = ?1 AND version = ?2",
            params![recipe_id, version],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .ctx("reading recipe version")?;
    row.map(|(body, created_at_ms)| {
        Ok(StoredRecipe {
            recipe: from_json(&format!("recipe {recipe_id} v{version}"), &body)?,
            version,
            created_at_ms,
        })
    })
    .transpose()
}

/// The first result of an earlier write with the same idempotency key, if there was one.
fn replay(
    tx: &Transaction<'_>,
    opts: &WriteOptions,
    fingerprint: &str,
) -> Result<Option<RecipeWrite>> {
    let Some(key) = opts.idempotency_key.as_deref() else {
        return Ok(None);
    };
    let row: Option<(String, u32, String)> = tx
        .query_row(
            "SELECT recipe_id, version, fingerprint FROM recipe_write_keys
             WHERE idempotency_key = ?1",
            [key],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()
        .ctx("reading recipe write key")?;
    let Some((recipe_id, version, stored_fingerprint)) = row else {
        return Ok(None);
    };
    if stored_fingerprint != fingerprint {
        return Err(StoreError::Conflict(format!(
            "idempotency key {key:?} was already used for a different recipe write"
        )));
    }
    let stored = load_version(tx, &recipe_id, version)?.ok_or_else(|| {
        StoreError::Internal(format!(
            "idempotency key {key:?} points at recipe {recipe_id} v{version}, which is missing"
        ))
    })?;
    Ok(Some(RecipeWrite {
        stored,
        written: false,
    }))
}

/// Writes `recipe` as `version` (version row, head, write key) inside `tx`.
fn write_version(
    tx: &Transaction<'_>,
    recipe: Recipe,
    version: u32,
    opts: &WriteOptions,
    fingerprint: &str,
) -> Result<RecipeWrite> {
    let body = to_json("recipe", &recipe)?;
    tx.execute(
        "INSERT INTO recipe_versions (recipe_id, version, name, body, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            recipe.recipe_id,
            version,
            recipe.recipe_name,
            body,
            opts.now_ms
        ],
    )
    .ctx("inserting recipe version")?;
    tx.execute(
        "INSERT INTO recipe_heads (recipe_id, latest_version, name, updated_at_ms)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (recipe_id) DO UPDATE SET
             latest_version = excluded.latest_version,
             name = excluded.name,
             updated_at_ms = excluded.updated_at_ms",
        params![recipe.recipe_id, version, recipe.recipe_name, opts.now_ms],
    )
    .ctx("writing recipe head")?;
    if let Some(key) = opts.idempotency_key.as_deref() {
        tx.execute(
            "INSERT INTO recipe_write_keys (idempotency_key, recipe_id, version, fingerprint)
             VALUES (?1, ?2, ?3, ?4)",
            params![key, recipe.recipe_id, version, fingerprint],
        )
        .ctx("inserting recipe write key")?;
    }
    Ok(RecipeWrite {
        stored: StoredRecipe {
            recipe,
            version,
            created_at_ms: opts.now_ms,
        },
        written: true,
    })
}

fn create_in(conn: &mut Connection, recipe: Recipe, opts: &WriteOptions) -> Result<RecipeWrite> {
    let fingerprint = recipe_fingerprint(&recipe);
    let tx = begin_write(conn)?;
    if let Some(first) = replay(&tx, opts, &fingerprint)? {
        return Ok(first);
    }
    if latest_version(&tx, &recipe.recipe_id)?.is_some() {
        return Err(StoreError::AlreadyExists(format!(
            "recipe {}",
            recipe.recipe_id
        )));
    }
    let out = write_version(&tx, recipe, 1, opts, &fingerprint)?;
    tx.commit().ctx("committing recipe create")?;
    Ok(out)
}

fn update_in(
    conn: &mut Connection,
    recipe: Recipe,
    expected_version: Option<u32>,
    allow_missing: bool,
    opts: &WriteOptions,
) -> Result<RecipeWrite> {
    let fingerprint = recipe_fingerprint(&recipe);
    let tx = begin_write(conn)?;
    if let Some(first) = replay(&tx, opts, &fingerprint)? {
        return Ok(first);
    }
    let id = recipe.recipe_id.clone();
    let Some(latest) = latest_version(&tx, &id)? else {
        if !allow_missing {
            return Err(StoreError::NotFound(format!("recipe {id}")));
        }
        if let Some(expected) = expected_version.filter(|v| *v != 0) {
            return Err(StoreError::Conflict(format!(
                "recipe {id}: expected version {expected}, but the recipe does not exist"
            )));
        }
        let out = write_version(&tx, recipe, 1, opts, &fingerprint)?;
        tx.commit().ctx("committing recipe create")?;
        return Ok(out);
    };
    if let Some(expected) = expected_version.filter(|v| *v != latest) {
        return Err(StoreError::Conflict(format!(
            "recipe {id}: expected version {expected}, latest is {latest}"
        )));
    }
    let current = load_version(&tx, &id, latest)?.ok_or_else(|| {
        StoreError::Internal(format!(
            "recipe {id}: head names v{latest}, which is missing"
        ))
    })?;
    if current.recipe.canonical_json() == recipe.canonical_json() {
        return Ok(RecipeWrite {
            stored: current,
            written: false,
        });
    }
    let next = latest
        .checked_add(1)
        .ok_or_else(|| StoreError::Internal(format!("recipe {id}: version counter exhausted")))?;
    let out = write_version(&tx, recipe, next, opts, &fingerprint)?;
    tx.commit().ctx("committing recipe update")?;
    Ok(out)
}

/// A `makes` row as read, before its JSON columns are parsed.
struct MakeRow {
    make_id: String,
    idempotency_key: String,
    recipe_id: String,
    recipe_version: u32,
    recorded_at_ms: i64,
    source: String,
    make: String,
    diff: String,
}

impl MakeRow {
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            make_id: row.get(0)?,
            idempotency_key: row.get(1)?,
            recipe_id: row.get(2)?,
            recipe_version: row.get(3)?,
            recorded_at_ms: row.get(4)?,
            source: row.get(5)?,
            make: row.get(6)?,
            diff: row.get(7)?,
        })
    }

    fn into_stored(self) -> Result<StoredMake> {
        let what = format!("make {}", self.make_id);
        Ok(StoredMake {
            make: from_json(&what, &self.make)?,
            diff: from_json(&format!("diff of {what}"), &self.diff)?,
            make_id: self.make_id,
            idempotency_key: self.idempotency_key,
            recipe_id: self.recipe_id,
            recipe_version: self.recipe_version,
            recorded_at_ms: self.recorded_at_ms,
            source: self.source,
        })
    }
}

fn record_in(conn: &mut Connection, make: NewMake, basis: DiffBasis) -> Result<RecordOutcome> {
    check_new_make(&make)?;
    let fingerprint = make_fingerprint(&make);
    let tx = begin_write(conn)?;
    let existing: Option<(MakeRow, String)> = tx
        .query_row(
            &format!("SELECT {MAKE_COLUMNS}, fingerprint FROM makes WHERE make_id = ?1"),
            [&make.make_id],
            |row| Ok((MakeRow::read(row)?, row.get(8)?)),
        )
        .optional()
        .ctx("reading make")?;
    if let Some((first, stored_fingerprint)) = existing {
        if stored_fingerprint != fingerprint {
            return Err(StoreError::Conflict(format!(
                "idempotency key {:?} was already used for a different make",
                make.idempotency_key
            )));
        }
        return Ok(RecordOutcome::Duplicate(first.into_stored()?));
    }
    match latest_version(&tx, &make.recipe_id)? {
        None => return Err(StoreError::NotFound(format!("recipe {}", make.recipe_id))),
        Some(latest) if basis == DiffBasis::Latest && latest != make.recipe_version => {
            return Err(stale(&make, latest));
        }
        Some(_) => {}
    }
    tx.execute(
        "INSERT INTO makes (make_id, idempotency_key, fingerprint, recipe_id, recipe_version,
                            recorded_at_ms, source, make, diff)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            make.make_id,
            make.idempotency_key,
            fingerprint,
            make.recipe_id,
            make.recipe_version,
            make.recorded_at_ms,
            make.source,
            to_json("make", &make.make)?,
            to_json("diff", &make.diff)?,
        ],
    )
    .ctx("inserting make")?;
    let mut stats = read_stats(&tx, &make.recipe_id)?.unwrap_or_default();
    stats.apply(&make.make, &make.diff);
    tx.execute(
        "INSERT INTO recipe_stats (recipe_id, stats) VALUES (?1, ?2)
         ON CONFLICT (recipe_id) DO UPDATE SET stats = excluded.stats",
        params![make.recipe_id, to_json("statistics", &stats)?],
    )
    .ctx("writing statistics")?;
    tx.commit().ctx("committing make")?;
    Ok(RecordOutcome::Recorded(make))
}

fn read_stats(conn: &Connection, recipe_id: &str) -> Result<Option<RecipeStats>> {
    let json: Option<String> = conn
        .query_row(
            "SELECT stats FROM recipe_stats WHERE recipe_id = ?1",
            [recipe_id],
            |row| row.get(0),
        )
        .optional()
        .ctx("reading statistics")?;
    json.map(|j| from_json(&format!("statistics of recipe {recipe_id}"), &j))
        .transpose()
}

#[async_trait]
impl RecipeStore for SqliteStore {
    async fn create_recipe(&self, recipe: Recipe, opts: WriteOptions) -> Result<RecipeWrite> {
        self.with_conn(move |conn| create_in(conn, recipe, &opts))
            .await
    }

    async fn update_recipe(
        &self,
        recipe: Recipe,
        expected_version: Option<u32>,
        allow_missing: bool,
        opts: WriteOptions,
    ) -> Result<RecipeWrite> {
        self.with_conn(move |conn| update_in(conn, recipe, expected_version, allow_missing, &opts))
            .await
    }

    async fn get_recipe(&self, recipe_id: &str, version: Option<u32>) -> Result<StoredRecipe> {
        let id = recipe_id.to_string();
        self.with_conn(move |conn| {
            let tx = conn.transaction().ctx("starting read transaction")?;
            let version = match version {
                Some(v) => v,
                None => latest_version(&tx, &id)?
                    .ok_or_else(|| StoreError::NotFound(format!("recipe {id}")))?,
            };
            load_version(&tx, &id, version)?
                .ok_or_else(|| StoreError::NotFound(format!("recipe {id} version {version}")))
        })
        .await
    }

    async fn list_recipes(
        &self,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<Page<RecipeSummary>> {
        let after =
            decode_page_token::<RecipesPosition>(TOKEN_RECIPES, page_token)?.map(|p| p.after);
        let limit = effective_page_size(page_size);
        let mut page = self
            .with_conn(move |conn| {
                // Two statements rather than `?1 IS NULL OR …`, so both use the primary key.
                let (sql, after) = match after {
                    Some(after) => (
                        "SELECT recipe_id, name, latest_version, updated_at_ms FROM recipe_heads
                         WHERE recipe_id > ?1 ORDER BY recipe_id LIMIT ?2",
                        after,
                    ),
                    None => (
                        "SELECT recipe_id, name, latest_version, updated_at_ms FROM recipe_heads
                         WHERE recipe_id >= ?1 ORDER BY recipe_id LIMIT ?2",
                        String::new(),
                    ),
                };
                let mut stmt = conn.prepare_cached(sql).ctx("preparing recipe listing")?;
                let rows = stmt
                    .query_map(params![after, limit + 1], |row| {
                        Ok(RecipeSummary {
                            recipe_id: row.get(0)?,
                            recipe_name: row.get(1)?,
                            latest_version: row.get(2)?,
                            updated_at_ms: row.get(3)?,
                        })
                    })
                    .ctx("listing recipes")?;
                Ok(rows
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .ctx("listing recipes")?)
            })
            .await?;
        let next_page_token = if page.len() > limit as usize {
            page.truncate(limit as usize);
            match page.last() {
                Some(last) => Some(encode_page_token(
                    TOKEN_RECIPES,
                    &RecipesPosition {
                        after: last.recipe_id.clone(),
                    },
                )?),
                None => None,
            }
        } else {
            None
        };
        Ok(Page {
            items: page,
            next_page_token,
        })
    }

    async fn record_make_on(&self, make: NewMake, basis: DiffBasis) -> Result<RecordOutcome> {
        self.with_conn(move |conn| record_in(conn, make, basis))
            .await
    }

    async fn get_make(&self, make_id: &str) -> Result<StoredMake> {
        let id = make_id.to_string();
        self.with_conn(move |conn| {
            conn.query_row(
                &format!("SELECT {MAKE_COLUMNS} FROM makes WHERE make_id = ?1"),
                [&id],
                MakeRow::read,
            )
            .optional()
            .ctx("reading make")?
            .ok_or_else(|| StoreError::NotFound(format!("make {id}")))?
            .into_stored()
        })
        .await
    }

    async fn list_makes(
        &self,
        recipe_id: &str,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<Page<StoredMake>> {
        let after = decode_page_token::<MakesPosition>(TOKEN_MAKES, page_token)?;
        if let Some(pos) = &after
            && pos.recipe_id != recipe_id
        {
            return Err(StoreError::InvalidPageToken(format!(
                "the token lists the makes of another recipe ({:?})",
                pos.recipe_id
            )));
        }
        let id = recipe_id.to_string();
        let limit = effective_page_size(page_size);
        let rows = self
            .with_conn(move |conn| {
                let tx = conn.transaction().ctx("starting read transaction")?;
                if latest_version(&tx, &id)?.is_none() {
                    return Err(StoreError::NotFound(format!("recipe {id}")));
                }
                let rows = match &after {
                    None => {
                        let mut stmt = tx
                            .prepare_cached(&format!(
                                "SELECT {MAKE_COLUMNS} FROM makes WHERE recipe_id = ?1
                                 ORDER BY recorded_at_ms DESC, make_id DESC LIMIT ?2"
                            ))
                            .ctx("preparing make listing")?;
                        stmt.query_map(params![id, limit + 1], MakeRow::read)
                            .ctx("listing makes")?
                            .collect::<rusqlite::Result<Vec<_>>>()
                            .ctx("listing makes")?
                    }
                    Some(pos) => {
                        let mut stmt = tx
                            .prepare_cached(&format!(
                                "SELECT {MAKE_COLUMNS} FROM makes WHERE recipe_id = ?1
                                   AND (recorded_at_ms, make_id) < (?2, ?3)
                                 ORDER BY recorded_at_ms DESC, make_id DESC LIMIT ?4"
                            ))
                            .ctx("preparing make listing")?;
                        stmt.query_map(
                            params![id, pos.recorded_at_ms, pos.make_id, limit + 1],
                            MakeRow::read,
                        )
                        .ctx("listing makes")?
                        .collect::<rusqlite::Result<Vec<_>>>()
                        .ctx("listing makes")?
                    }
                };
                Ok(rows)
            })
            .await?;
        let more = rows.len() > limit as usize;
        let items = rows
            .into_iter()
            .take(limit as usize)
            .map(MakeRow::into_stored)
            .collect::<Result<Vec<_>>>()?;
        let next_page_token = match items.last() {
            Some(last) if more => Some(encode_page_token(
                TOKEN_MAKES,
                &MakesPosition {
                    recipe_id: recipe_id.to_string(),
                    recorded_at_ms: last.recorded_at_ms,
                    make_id: last.make_id.clone(),
                },
            )?),
            _ => None,
        };
        Ok(Page {
            items,
            next_page_token,
        })
    }

    async fn get_stats(&self, recipe_id: &str) -> Result<RecipeStats> {
        let id = recipe_id.to_string();
        self.with_conn(move |conn| {
            let tx = conn.transaction().ctx("starting read transaction")?;
            if latest_version(&tx, &id)?.is_none() {
                return Err(StoreError::NotFound(format!("recipe {id}")));
            }
            Ok(read_stats(&tx, &id)?.unwrap_or_default())
        })
        .await
    }

    async fn ping(&self) -> Result<()> {
        self.with_conn(|conn| {
            conn.query_row("SELECT 1", [], |row| row.get::<_, i64>(0))
                .ctx("ping")?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_files_or_memory() {
        assert!(matches!(parse_url("sqlite::memory:"), Ok(Target::Memory)));
        assert!(
            matches!(parse_url("sqlite://a/b.db"), Ok(Target::File(p)) if p == std::path::Path::new("a/b.db"))
        );
        assert!(
            matches!(parse_url("sqlite:///abs/b.db"), Ok(Target::File(p)) if p == std::path::Path::new("/abs/b.db"))
        );
        assert!(matches!(
            parse_url("sqlite://"),
            Err(StoreError::NotReady(_))
        ));
        assert!(matches!(
            parse_url("postgres://x"),
            Err(StoreError::NotReady(_))
        ));
    }

    #[tokio::test]
    async fn reopening_keeps_data_and_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/nested/dir/store.db", dir.path().display());
        let recipe: Recipe = serde_json::from_str(
            r#"{"recipeId":"r1","recipeName":"Toast","ingredients":[],"steps":[]}"#,
        )
        .unwrap();
        {
            let store = SqliteStore::open(&url).await.unwrap();
            store
                .create_recipe(recipe.clone(), WriteOptions::default())
                .await
                .unwrap();
        }
        let store = SqliteStore::open(&url).await.unwrap();
        assert_eq!(store.get_recipe("r1", None).await.unwrap().recipe, recipe);
        let (version, mode) = store
            .with_conn(|conn| {
                let v: i64 = conn
                    .query_row("PRAGMA user_version", [], |r| r.get(0))
                    .ctx("version")?;
                let m: String = conn
                    .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                    .ctx("mode")?;
                Ok((v, m))
            })
            .await
            .unwrap();
        assert_eq!(version, SCHEMA.latest());
        assert_eq!(mode.to_lowercase(), "wal");
    }

    #[tokio::test]
    async fn an_in_memory_store_works() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        assert_eq!(store.location(), ":memory:");
        let recipe: Recipe = serde_json::from_str(
            r#"{"recipeId":"r1","recipeName":"Toast","ingredients":[],"steps":[]}"#,
        )
        .unwrap();
        store
            .create_recipe(recipe.clone(), WriteOptions::default())
            .await
            .unwrap();
        assert_eq!(store.get_recipe("r1", None).await.unwrap().recipe, recipe);
        store.ping().await.unwrap();
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("future.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA.latest() + 1)
            .unwrap();
        drop(conn);
        let err = SqliteStore::open(&format!("sqlite://{}", path.display()))
            .await
            .err();
        assert!(matches!(err, Some(StoreError::NotReady(_))), "{err:?}");
    }
}
