//! What the embedded backends share about their SQLite files, so that the recipe store, the
//! job queue and the watcher's ledger open, version and report them the same way:
//!
//! - [`open`]: creates the folder, waits for other processes' locks for a while, and turns on
//!   WAL (readers in other processes keep going while one writes) with `synchronous=FULL`
//!   (a commit survives a power cut) and foreign keys;
//! - [`apply_schema`]: brings a schema to its latest version inside one write transaction,
//!   refusing a file written by a newer program;
//! - [`Ctx::ctx`]: names what a call was doing and sorts its failure into
//!   [`SqliteError::Busy`] (lock contention: retry) or [`SqliteError::Failed`].
//!
//! Each backend turns a [`SqliteError`] into its own error type with `From`.

use rusqlite::{Connection, ErrorCode, OptionalExtension, Transaction, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a SQLite call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqliteError {
    /// The file cannot be used as it is: its folder or the file cannot be opened, or its schema
    /// is newer than this program or damaged. Retrying does not help; an operator must.
    #[error("{0}")]
    NotReady(String),
    /// Another connection holds the lock longer than the busy timeout: worth retrying.
    #[error("{0}")]
    Busy(String),
    /// Anything else.
    #[error("{0}")]
    Failed(String),
}

pub type Result<T> = std::result::Result<T, SqliteError>;

/// Names what a SQLite call was doing and classifies its failure.
pub trait Ctx<T> {
    fn ctx(self, what: &str) -> Result<T>;
}

impl<T> Ctx<T> for rusqlite::Result<T> {
    fn ctx(self, what: &str) -> Result<T> {
        self.map_err(|e| match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                SqliteError::Busy(format!("sqlite {what}: database is busy: {e}"))
            }
            _ => SqliteError::Failed(format!("sqlite {what}: {e}")),
        })
    }
}

/// Where a backend keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Private to one connection, gone with it (tests, throwaway runs).
    Memory,
    File(PathBuf),
}

/// Opens `target` for use by this and other processes: creates its folder, waits up to
/// `busy_timeout` for other connections' locks, and sets WAL, `synchronous=FULL` and foreign
/// keys. The schema is the caller's ([`apply_schema`]).
pub fn open(target: &Target, busy_timeout: Duration) -> Result<Connection> {
    let conn = match target {
        Target::Memory => Connection::open_in_memory().ctx("opening in-memory database")?,
        Target::File(path) => open_file(path)?,
    };
    conn.busy_timeout(busy_timeout)
        .ctx("setting busy_timeout")?;
    // An in-memory database answers "memory" and stays that way, which is fine.
    let _mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .ctx("enabling WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")
        .ctx("setting synchronous")?;
    conn.pragma_update(None, "foreign_keys", true)
        .ctx("enabling foreign keys")?;
    Ok(conn)
}

fn open_file(path: &Path) -> Result<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            SqliteError::NotReady(format!("cannot create directory {}: {e}", dir.display()))
        })?;
    }
    Connection::open(path).map_err(|e| {
        SqliteError::NotReady(format!(
            "cannot open sqlite database {}: {e}",
            path.display()
        ))
    })
}

/// Where a schema's version is kept.
#[derive(Debug, Clone, Copy)]
pub enum VersionIn {
    /// `PRAGMA user_version`: for a file that holds nothing else.
    UserVersion,
    /// Key `schema_version` of this table (created if missing): for tables that may share a
    /// file with other components, each with its own meta table.
    MetaTable(&'static str),
}

/// A schema: `migrations[i]` brings version `i` to `i + 1`, so the latest version is
/// `migrations.len()`. `what` names the tables in errors ("the queue tables").
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    pub what: &'static str,
    pub version_in: VersionIn,
    pub migrations: &'static [&'static str],
}

impl Schema {
    pub fn latest(&self) -> i64 {
        self.migrations.len() as i64
    }
}

/// Brings `schema` to its latest version in one write transaction; a no-op when it is there.
/// A file at a newer version (written by a newer program) is `NotReady`, left untouched.
pub fn apply_schema(conn: &mut Connection, schema: &Schema) -> Result<()> {
    let tx = begin_write(conn)?;
    let version = stored_version(&tx, schema)?;
    if version < 0 {
        return Err(SqliteError::NotReady(format!(
            "{} have schema version {version}; the file is damaged",
            schema.what
        )));
    }
    let latest = schema.latest();
    if version > latest {
        return Err(SqliteError::NotReady(format!(
            "{} have schema version {version}, newer than this program's {latest}; upgrade the \
             program",
            schema.what
        )));
    }
    for (from, migration) in schema.migrations.iter().enumerate().skip(version as usize) {
        tx.execute_batch(migration).ctx(&format!(
            "migrating {} to schema v{}",
            schema.what,
            from + 1
        ))?;
    }
    if version < latest {
        match schema.version_in {
            VersionIn::UserVersion => tx
                .pragma_update(None, "user_version", latest)
                .ctx("recording schema version")?,
            VersionIn::MetaTable(table) => {
                tx.execute(
                    &format!(
                        "INSERT INTO {table} (key, value) VALUES ('schema_version', ?1)
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value"
                    ),
                    [latest.to_string()],
                )
                .ctx("recording schema version")?;
            }
        }
    }
    tx.commit().ctx("committing schema")
}

fn stored_version(tx: &Transaction<'_>, schema: &Schema) -> Result<i64> {
    match schema.version_in {
        VersionIn::UserVersion => tx
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .ctx("reading schema version"),
        VersionIn::MetaTable(table) => {
            tx.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {table} (
                     key   TEXT NOT NULL PRIMARY KEY,
                     value TEXT NOT NULL
                 ) WITHOUT ROWID;"
            ))
            .ctx(&format!("creating {table}"))?;
            let stored: Option<String> = tx
                .query_row(
                    &format!("SELECT value FROM {table} WHERE key = 'schema_version'"),
                    [],
                    |row| row.get(0),
                )
                .optional()
                .ctx("reading schema version")?;
            match stored {
                None => Ok(0),
                Some(v) => v.parse::<i64>().map_err(|_| {
                    SqliteError::NotReady(format!(
                        "the schema version {v:?} of {} in {table} is not a number; the file \
                         is damaged",
                        schema.what
                    ))
                }),
            }
        }
    }
}

/// Starts a write transaction that takes the write lock at once (`BEGIN IMMEDIATE`), so its
/// reads and writes are one atomic step across processes.
pub fn begin_write(conn: &mut Connection) -> Result<Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("starting write transaction")
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "CREATE TABLE t_items (id INTEGER PRIMARY KEY);";
    const V2: &str = "ALTER TABLE t_items ADD COLUMN name TEXT;";

    fn schema(version_in: VersionIn, migrations: &'static [&'static str]) -> Schema {
        Schema {
            what: "the test tables",
            version_in,
            migrations,
        }
    }

    #[test]
    fn migrations_run_once_and_in_order_for_both_places_of_the_version() {
        for version_in in [VersionIn::UserVersion, VersionIn::MetaTable("t_meta")] {
            let dir = tempfile::tempdir().unwrap();
            let target = Target::File(dir.path().join("nested/db.sqlite"));
            let mut conn = open(&target, Duration::from_secs(1)).unwrap();
            apply_schema(&mut conn, &schema(version_in, &[V1])).unwrap();
            apply_schema(&mut conn, &schema(version_in, &[V1])).unwrap();
            drop(conn);
            // A later program adds a migration: only that one runs.
            let mut conn = open(&target, Duration::from_secs(1)).unwrap();
            apply_schema(&mut conn, &schema(version_in, &[V1, V2])).unwrap();
            conn.execute("INSERT INTO t_items (id, name) VALUES (1, 'x')", [])
                .unwrap();
            let mode: String = conn
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
            // An older program refuses the newer file and leaves it alone.
            let err = apply_schema(&mut conn, &schema(version_in, &[V1])).unwrap_err();
            assert!(
                matches!(&err, SqliteError::NotReady(m) if m.contains("newer than this program's 1")),
                "{err:?}"
            );
        }
    }

    #[test]
    fn a_damaged_version_is_not_ready() {
        let mut conn = open(&Target::Memory, Duration::from_secs(1)).unwrap();
        let s = schema(VersionIn::MetaTable("t_meta"), &[V1]);
        apply_schema(&mut conn, &s).unwrap();
        conn.execute(
            "UPDATE t_meta SET value = 'one' WHERE key = 'schema_version'",
            [],
        )
        .unwrap();
        let err = apply_schema(&mut conn, &s).unwrap_err();
        assert!(
            matches!(&err, SqliteError::NotReady(m) if m.contains("damaged")),
            "{err:?}"
        );
    }

    #[test]
    fn a_negative_user_version_is_not_ready_and_left_alone() {
        let mut conn = open(&Target::Memory, Duration::from_secs(1)).unwrap();
        conn.pragma_update(None, "user_version", -3).unwrap();
        let err = apply_schema(&mut conn, &schema(VersionIn::UserVersion, &[V1])).unwrap_err();
        assert!(
            matches!(&err, SqliteError::NotReady(m) if m.contains("damaged")),
            "{err:?}"
        );
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, -3);
    }

    #[test]
    fn lock_contention_is_busy_and_other_failures_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let target = Target::File(dir.path().join("db.sqlite"));
        let mut holder = open(&target, Duration::from_millis(10)).unwrap();
        let mut waiter = open(&target, Duration::from_millis(10)).unwrap();
        let _held = begin_write(&mut holder).unwrap();
        assert!(matches!(
            begin_write(&mut waiter),
            Err(SqliteError::Busy(_))
        ));
        let failed = waiter.execute("SELECT * FROM nowhere", []).ctx("reading");
        assert!(
            matches!(&failed, Err(SqliteError::Failed(m)) if m.starts_with("sqlite reading")),
            "{failed:?}"
        );
    }

    #[test]
    fn an_unopenable_path_is_not_ready() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        let err = open(&Target::File(file.join("db.sqlite")), Duration::ZERO).unwrap_err();
        assert!(matches!(err, SqliteError::NotReady(_)), "{err:?}");
    }
}
