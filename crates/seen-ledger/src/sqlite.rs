//! The embedded ledger: a SQLite file that processes on one machine share (two watcher
//! replicas, and possibly the embedded queue in the same file), no AWS needed.
//!
//! Each object key of a scope is one row of `sl_seen` holding its latest ETag and state;
//! markers are rows of `sl_markers`. Every writing call is one `BEGIN IMMEDIATE` transaction,
//! which SQLite serialises across processes, so a claim's check and write are atomic: two
//! replicas never both win a version. `settled` only reads, in a deferred transaction (one
//! snapshot, and it does not queue behind writers). Claims, `mark_sent` and `release` are
//! single upserts/deletes whose `WHERE` clause is the protocol's condition, so a row either
//! changes or it does not. The file runs in WAL mode with `synchronous=FULL` and a busy timeout;
//! tables are prefixed `sl_` and the schema version lives in `sl_meta` (not in
//! `PRAGMA user_version`, which another component of the same file may use).

use crate::common::{
    check_lease, check_marker, check_owner, check_scope, check_versions, first_occurrences, millis,
    now_ms,
};
use crate::{LedgerError, ObjectVersion, Result, SeenLedger};
use async_trait::async_trait;
use embedded_sqlite::{Ctx, Schema, SqliteError, Target, VersionIn, apply_schema, begin_write};
use rusqlite::{Connection, TransactionBehavior, params};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a statement waits for another process's lock before giving up with `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS sl_seen (
    scope          TEXT    NOT NULL,
    key            TEXT    NOT NULL,
    etag           TEXT    NOT NULL,
    state          TEXT    NOT NULL CHECK (state IN ('claimed', 'sent')),
    owner          TEXT,
    lease_until_ms INTEGER,
    updated_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS sl_markers (
    scope         TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    value         TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (scope, name)
) WITHOUT ROWID;
";

/// The tables this code writes and understands; the version is kept in `sl_meta`.
const SCHEMA: Schema = Schema {
    what: "the ledger tables",
    version_in: VersionIn::MetaTable("sl_meta"),
    migrations: &[SCHEMA_V1],
};

/// Claims the row unless it holds this ETag as `sent`, or as `claimed` by another owner whose
/// lease is live. `changes()` is 1 when the claim was taken, 0 when it was refused.
const CLAIM_SQL: &str = "
INSERT INTO sl_seen (scope, key, etag, state, owner, lease_until_ms, updated_at_ms)
VALUES (?1, ?2, ?3, 'claimed', ?4, ?5, ?6)
ON CONFLICT (scope, key) DO UPDATE SET
    etag = excluded.etag, state = 'claimed', owner = excluded.owner,
    lease_until_ms = excluded.lease_until_ms, updated_at_ms = excluded.updated_at_ms
WHERE sl_seen.etag <> excluded.etag
   OR (sl_seen.state = 'claimed'
       AND (sl_seen.lease_until_ms < ?6 OR sl_seen.owner = excluded.owner))";

/// Marks the version sent, unless the row has moved on to another ETag. The owner of the claim
/// is kept, for whoever looks at the file.
const MARK_SENT_SQL: &str = "
INSERT INTO sl_seen (scope, key, etag, state, owner, lease_until_ms, updated_at_ms)
VALUES (?1, ?2, ?3, 'sent', NULL, NULL, ?4)
ON CONFLICT (scope, key) DO UPDATE SET
    state = 'sent', lease_until_ms = NULL, updated_at_ms = excluded.updated_at_ms
WHERE sl_seen.etag = excluded.etag";

const RELEASE_SQL: &str = "
DELETE FROM sl_seen
WHERE scope = ?1 AND key = ?2 AND etag = ?3 AND state = 'claimed' AND owner = ?4";

/// One scope of a ledger in a SQLite file.
pub struct SqliteLedger {
    conn: Arc<Mutex<Connection>>,
    scope: String,
    location: String,
}

fn parse_url(url: &str) -> Result<Target> {
    let usage = "sqlite://PATH, sqlite:///ABSOLUTE/PATH or sqlite::memory:";
    let rest = url
        .strip_prefix("sqlite:")
        .ok_or_else(|| LedgerError::Invalid(format!("{url:?} is not a sqlite URL ({usage})")))?;
    if rest.contains('?') {
        return Err(LedgerError::Invalid(format!(
            "sqlite URL {url:?}: the ledger takes no parameters ({usage})"
        )));
    }
    if rest == ":memory:" || rest == "//:memory:" {
        return Ok(Target::Memory);
    }
    let Some(path) = rest.strip_prefix("//").filter(|p| !p.is_empty()) else {
        return Err(LedgerError::Invalid(format!(
            "sqlite URL {url:?} names no file ({usage})"
        )));
    };
    Ok(Target::File(PathBuf::from(path)))
}

impl SqliteLedger {
    /// Opens (creating if needed) the ledger file a URL names, for `scope`:
    /// `sqlite://relative/path.db`, `sqlite:///absolute/path.db` or `sqlite::memory:` (a
    /// private database of this handle). Parent directories are created and the schema applied.
    pub async fn open(url: &str, scope: &str) -> Result<Self> {
        check_scope(scope)?;
        let target = parse_url(url)?;
        let location = match &target {
            Target::Memory => ":memory:".to_string(),
            Target::File(p) => p.display().to_string(),
        };
        let conn = tokio::task::spawn_blocking(move || open_connection(&target))
            .await
            .map_err(|e| LedgerError::Internal(format!("opening sqlite ledger: {e}")))??;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            scope: scope.to_string(),
            location,
        })
    }

    /// Creates the file and applies the schema; what [`SqliteLedger::open`] does anyway.
    pub async fn migrate(url: &str) -> Result<()> {
        let target = parse_url(url)?;
        tokio::task::spawn_blocking(move || open_connection(&target).map(drop))
            .await
            .map_err(|e| LedgerError::Internal(format!("migrating sqlite ledger: {e}")))?
    }

    /// Where the database lives (`:memory:` or the file path), for logs.
    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// Runs `f` with the scope on the connection, on the blocking thread pool.
    async fn with_conn<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &str) -> Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let scope = self.scope.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while the lock was held rolled its transaction back (rusqlite rolls back
            // on drop), so the connection is still usable.
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut guard, &scope)
        })
        .await
        .map_err(|e| LedgerError::Internal(format!("sqlite task failed: {e}")))?
    }
}

fn open_connection(target: &Target) -> Result<Connection> {
    let mut conn = embedded_sqlite::open(target, BUSY_TIMEOUT)?;
    apply_schema(&mut conn, &SCHEMA)?;
    Ok(conn)
}

impl From<SqliteError> for LedgerError {
    fn from(e: SqliteError) -> Self {
        match e {
            SqliteError::NotReady(m) => LedgerError::NotReady(m),
            SqliteError::Busy(m) => LedgerError::Unavailable(m),
            SqliteError::Failed(m) => LedgerError::Internal(m),
        }
    }
}

#[async_trait]
impl SeenLedger for SqliteLedger {
    async fn settled(&self, versions: &[ObjectVersion]) -> Result<Vec<bool>> {
        check_versions("settled", versions)?;
        if versions.is_empty() {
            return Ok(Vec::new());
        }
        let versions = versions.to_vec();
        self.with_conn(move |conn, scope| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Deferred)
                .ctx("starting read transaction")?;
            let mut out = Vec::with_capacity(versions.len());
            {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT 1 FROM sl_seen
                         WHERE scope = ?1 AND key = ?2 AND etag = ?3 AND state = 'sent'",
                    )
                    .ctx("preparing settled")?;
                for v in &versions {
                    out.push(
                        stmt.exists(params![scope, v.key, v.etag])
                            .ctx("reading settled")?,
                    );
                }
            }
            tx.finish().ctx("ending read transaction")?;
            Ok(out)
        })
        .await
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
        if versions.is_empty() {
            return Ok(Vec::new());
        }
        let versions = versions.to_vec();
        let owner = owner.to_string();
        self.with_conn(move |conn, scope| {
            let firsts = first_occurrences(&versions);
            let tx = begin_write(conn)?;
            // Taken after the lock: a lease is compared with the time the claim really happens.
            let now = now_ms();
            let until = now.saturating_add(millis(lease));
            let mut out = Vec::with_capacity(versions.len());
            {
                let mut stmt = tx.prepare_cached(CLAIM_SQL).ctx("preparing claim")?;
                for (v, first) in versions.iter().zip(firsts) {
                    let won = first
                        && stmt
                            .execute(params![scope, v.key, v.etag, owner, until, now])
                            .ctx("claiming")?
                            == 1;
                    out.push(won);
                }
            }
            tx.commit().ctx("committing claim")?;
            Ok(out)
        })
        .await
    }

    async fn mark_sent(&self, versions: &[ObjectVersion]) -> Result<()> {
        check_versions("mark_sent", versions)?;
        if versions.is_empty() {
            return Ok(());
        }
        let versions = versions.to_vec();
        self.with_conn(move |conn, scope| {
            let tx = begin_write(conn)?;
            let now = now_ms();
            {
                let mut stmt = tx
                    .prepare_cached(MARK_SENT_SQL)
                    .ctx("preparing mark_sent")?;
                for v in &versions {
                    stmt.execute(params![scope, v.key, v.etag, now])
                        .ctx("marking sent")?;
                }
            }
            Ok(tx.commit().ctx("committing mark_sent")?)
        })
        .await
    }

    async fn release(&self, versions: &[ObjectVersion], owner: &str) -> Result<()> {
        check_versions("release", versions)?;
        check_owner("release", owner)?;
        if versions.is_empty() {
            return Ok(());
        }
        let versions = versions.to_vec();
        let owner = owner.to_string();
        self.with_conn(move |conn, scope| {
            let tx = begin_write(conn)?;
            {
                let mut stmt = tx.prepare_cached(RELEASE_SQL).ctx("preparing release")?;
                for v in &versions {
                    stmt.execute(params![scope, v.key, v.etag, owner])
                        .ctx("releasing")?;
                }
            }
            Ok(tx.commit().ctx("committing release")?)
        })
        .await
    }

    async fn marker_or_insert(&self, name: &str, value: &str) -> Result<String> {
        check_marker(name, value)?;
        let name = name.to_string();
        let value = value.to_string();
        self.with_conn(move |conn, scope| {
            let tx = begin_write(conn)?;
            tx.execute(
                "INSERT INTO sl_markers (scope, name, value, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (scope, name) DO NOTHING",
                params![scope, name, value, now_ms()],
            )
            .ctx("inserting marker")?;
            let stored: String = tx
                .query_row(
                    "SELECT value FROM sl_markers WHERE scope = ?1 AND name = ?2",
                    params![scope, name],
                    |row| row.get(0),
                )
                .ctx("reading marker")?;
            tx.commit().ctx("committing marker")?;
            Ok(stored)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_file_or_memory() {
        assert_eq!(
            parse_url("sqlite://a/b.db").ok(),
            Some(Target::File("a/b.db".into()))
        );
        assert_eq!(
            parse_url("sqlite:///abs/l.db").ok(),
            Some(Target::File("/abs/l.db".into()))
        );
        assert_eq!(parse_url("sqlite::memory:").ok(), Some(Target::Memory));
        for bad in [
            "sqlite://",
            "sqlite:",
            "sqlite:relative.db",
            "sqlite://l.db?queue=jobs",
            "postgres://x",
        ] {
            assert!(
                matches!(parse_url(bad), Err(LedgerError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn the_file_is_shared_politely_and_refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.db");
        // Another component's table and its use of user_version, already in the file.
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE mq_messages (seq INTEGER PRIMARY KEY, body TEXT);
                 INSERT INTO mq_messages (body) VALUES ('job');
                 PRAGMA user_version = 7;",
            )
            .unwrap();
        }
        let url = format!("sqlite://{}", path.display());
        let ledger = SqliteLedger::open(&url, "dir://inbox").await.unwrap();
        let (mode, user_version, jobs): (String, i64, i64) = ledger
            .with_conn(|c, _| {
                let mode = c
                    .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                    .ctx("mode")?;
                let uv = c
                    .query_row("PRAGMA user_version", [], |r| r.get(0))
                    .ctx("user_version")?;
                let jobs = c
                    .query_row("SELECT COUNT(*) FROM mq_messages", [], |r| r.get(0))
                    .ctx("jobs")?;
                Ok((mode, uv, jobs))
            })
            .await
            .unwrap();
        assert_eq!(mode.to_lowercase(), "wal");
        assert_eq!(user_version, 7);
        assert_eq!(jobs, 1);
        ledger
            .with_conn(|c, _| {
                c.execute(
                    "UPDATE sl_meta SET value = '99' WHERE key = 'schema_version'",
                    [],
                )
                .ctx("bump")
                .map_err(Into::into)
            })
            .await
            .unwrap();
        drop(ledger);
        let err = SqliteLedger::open(&url, "dir://inbox").await.err();
        assert!(matches!(err, Some(LedgerError::NotReady(_))), "{err:?}");
    }

    #[tokio::test]
    async fn a_sent_row_keeps_the_owner_of_its_claim_and_drops_the_lease() {
        let ledger = SqliteLedger::open("sqlite::memory:", "s3://b/p")
            .await
            .unwrap();
        let v = [ObjectVersion::new("a.json", "e1")];
        assert_eq!(
            ledger
                .claim(&v, "replica-a", Duration::from_secs(60))
                .await
                .unwrap(),
            vec![true]
        );
        ledger.mark_sent(&v).await.unwrap();
        let row: (String, Option<String>, Option<i64>) = ledger
            .with_conn(|c, scope| {
                c.query_row(
                    "SELECT state, owner, lease_until_ms FROM sl_seen WHERE scope = ?1",
                    [scope],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .ctx("row")
                .map_err(Into::into)
            })
            .await
            .unwrap();
        assert_eq!(
            row,
            ("sent".to_string(), Some("replica-a".to_string()), None)
        );
    }
}
