//! The embedded queue: a SQLite file that separate processes on one machine share (a watcher
//! sending, a sender receiving), no AWS needed.
//!
//! Each message is a row with the time it becomes visible and the token of its latest receive.
//! `receive` picks visible rows and hides them in one `BEGIN IMMEDIATE` transaction, which
//! SQLite serialises across processes, so two consumers never hold the same message at once.
//! `delete`, `extend`, `release` and `dead_letter` only touch a row whose token still matches
//! the receipt; otherwise the receipt is stale and nothing changes. `delete_batch` and
//! `extend_batch` do the same for many receipts in one write transaction. Long polls wake up at once
//! for messages sent through the same [`SqliteQueue`] and poll every
//! [`POLL_INTERVAL`] for the rest (other processes). The file runs in WAL mode with
//! `synchronous=FULL` and a busy timeout; tables are prefixed `mq_`, so the file may also hold
//! other data (it does not use `PRAGMA user_version`).

use crate::common::{
    check_duration, check_messages, check_receive, clean_reason, millis, now_ms, peek_limit, single,
};
use crate::{
    DEFAULT_MAX_RECEIVE_COUNT, DeadLetter, Delivery, MessageQueue, OutgoingMessage, QueueError,
    Receipt, ReceiptKind, Result,
};
use async_trait::async_trait;
use embedded_sqlite::{Ctx, Schema, SqliteError, Target, VersionIn, apply_schema, begin_write};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How long a statement waits for another process's lock before giving up with `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a long poll looks for messages that other processes sent or that became visible.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// The queue a URL without `?queue=` names.
pub const DEFAULT_QUEUE: &str = "jobs";

const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS mq_messages (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    queue         TEXT    NOT NULL,
    message_id    TEXT    NOT NULL UNIQUE,
    body          TEXT    NOT NULL,
    attributes    TEXT    NOT NULL,
    sent_at_ms    INTEGER NOT NULL,
    visible_at_ms INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT
);

CREATE INDEX IF NOT EXISTS mq_messages_ready ON mq_messages (queue, visible_at_ms, seq);

CREATE TABLE IF NOT EXISTS mq_dead_letters (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    queue         TEXT    NOT NULL,
    message_id    TEXT    NOT NULL,
    body          TEXT    NOT NULL,
    attributes    TEXT    NOT NULL,
    sent_at_ms    INTEGER NOT NULL,
    receive_count INTEGER NOT NULL,
    reason        TEXT    NOT NULL,
    dead_at_ms    INTEGER NOT NULL
);

CREATE INDEX IF NOT EXISTS mq_dead_letters_by_queue ON mq_dead_letters (queue, seq);
";

/// The tables this code writes and understands; the version is kept in `mq_meta`.
const SCHEMA: Schema = Schema {
    what: "the queue tables",
    version_in: VersionIn::MetaTable("mq_meta"),
    migrations: &[SCHEMA_V1],
};

/// The embedded queue's receipt: the row and the token of the receive that issued it.
#[derive(Debug, Clone)]
pub(crate) struct SqliteReceipt {
    seq: i64,
    token: String,
    queue: String,
    location: String,
}

/// One named queue in a SQLite file.
pub struct SqliteQueue {
    conn: Arc<Mutex<Connection>>,
    queue: String,
    location: String,
    max_receive_count: u32,
    /// Wakes long polls of this instance when it sends.
    sent: Arc<Notify>,
}

#[derive(Debug, PartialEq)]
struct SqliteUrl {
    target: Target,
    queue: String,
    max_receive_count: u32,
}

fn parse_url(url: &str) -> Result<SqliteUrl> {
    let usage = "sqlite://PATH[?queue=NAME&max_receive_count=N] or sqlite::memory:";
    let rest = url
        .strip_prefix("sqlite:")
        .ok_or_else(|| QueueError::Invalid(format!("{url:?} is not a sqlite URL ({usage})")))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let target = if path == ":memory:" || path == "//:memory:" {
        Target::Memory
    } else {
        let path = path.strip_prefix("//").unwrap_or(path);
        if path.is_empty() {
            return Err(QueueError::Invalid(format!(
                "sqlite URL {url:?} names no file ({usage})"
            )));
        }
        Target::File(PathBuf::from(path))
    };
    let mut parsed = SqliteUrl {
        target,
        queue: DEFAULT_QUEUE.to_string(),
        max_receive_count: DEFAULT_MAX_RECEIVE_COUNT,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("queue", name)) => {
                if name.is_empty()
                    || name.len() > 80
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return Err(QueueError::Invalid(format!(
                        "sqlite URL {url:?}: queue name {name:?} must be 1 to 80 letters, digits, \
                         '-' or '_'"
                    )));
                }
                parsed.queue = name.to_string();
            }
            Some(("max_receive_count", n)) => {
                parsed.max_receive_count = n.parse().map_err(|_| {
                    QueueError::Invalid(format!(
                        "sqlite URL {url:?}: max_receive_count {n:?} is not a whole number \
                         (0 turns redrive off)"
                    ))
                })?;
            }
            _ => {
                return Err(QueueError::Invalid(format!(
                    "sqlite URL {url:?}: unknown parameter {pair:?} (known: queue, \
                     max_receive_count)"
                )));
            }
        }
    }
    Ok(parsed)
}

impl SqliteQueue {
    /// Opens (creating if needed) the queue a URL names: `sqlite://relative/path.db`,
    /// `sqlite:///absolute/path.db` or `sqlite::memory:` (one process, one handle only), with
    /// optional `?queue=NAME` (default `jobs`) and `max_receive_count=N` (default 10; 0 turns
    /// redrive off). Parent directories are created and the schema applied.
    pub async fn open(url: &str) -> Result<Self> {
        let parsed = parse_url(url)?;
        let location = match &parsed.target {
            Target::Memory => ":memory:".to_string(),
            Target::File(p) => p.display().to_string(),
        };
        let target = parsed.target;
        let conn = tokio::task::spawn_blocking(move || open_connection(&target))
            .await
            .map_err(|e| QueueError::Internal(format!("opening sqlite queue: {e}")))??;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            queue: parsed.queue,
            location,
            max_receive_count: parsed.max_receive_count,
            sent: Arc::new(Notify::new()),
        })
    }

    /// Where the database lives (`:memory:` or the file path), for logs.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The queue's name inside the file.
    pub fn queue_name(&self) -> &str {
        &self.queue
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
        .map_err(|e| QueueError::Internal(format!("sqlite task failed: {e}")))?
    }

    /// The row and token of a receipt this queue issued.
    fn own<'r>(&self, receipt: &'r Receipt) -> Result<&'r SqliteReceipt> {
        match &receipt.0 {
            ReceiptKind::Sqlite(r) if r.queue == self.queue && r.location == self.location => Ok(r),
            ReceiptKind::Sqlite(r) => Err(QueueError::Invalid(format!(
                "the receipt belongs to queue {:?} in {}, not {:?} in {}",
                r.queue, r.location, self.queue, self.location
            ))),
            ReceiptKind::Sqs(_) => Err(QueueError::Invalid(
                "an SQS receipt was passed to the embedded queue".into(),
            )),
        }
    }

    /// `delete_batch` / `extend_batch`: receipts of other queues fail alone with `Invalid`, the
    /// rest are changed in one transaction; if that transaction fails, each of them fails with
    /// its error.
    async fn change_batch(&self, receipts: &[Receipt], change: RowChange) -> Vec<Result<()>> {
        let mut results: Vec<Result<()>> = Vec::with_capacity(receipts.len());
        let mut positions = Vec::new();
        let mut owned = Vec::new();
        for (i, receipt) in receipts.iter().enumerate() {
            match self.own(receipt) {
                Ok(r) => {
                    positions.push(i);
                    owned.push(r.clone());
                    results.push(Ok(()));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        if owned.is_empty() {
            return results;
        }
        match self
            .with_conn(move |conn| change_rows(conn, &owned, change))
            .await
        {
            Ok(held) => {
                for (i, held) in positions.into_iter().zip(held) {
                    if !held {
                        results[i] = Err(stale(change.name()));
                    }
                }
            }
            Err(e) => {
                for i in positions {
                    results[i] = Err(e.clone());
                }
            }
        }
        results
    }

    /// One non-waiting receive.
    async fn receive_now(&self, max: u32, visibility: Duration) -> Result<Vec<Delivery>> {
        let queue = self.queue.clone();
        let location = self.location.clone();
        let max_receive_count = self.max_receive_count;
        self.with_conn(move |conn| {
            // Idle long polls look first without taking the write lock, which other processes
            // sharing the file would otherwise wait for every POLL_INTERVAL.
            let ready: bool = conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM mq_messages
                                    WHERE queue = ?1 AND visible_at_ms <= ?2)",
                    params![queue, now_ms()],
                    |row| row.get(0),
                )
                .ctx("looking for visible messages")?;
            if !ready {
                return Ok(Vec::new());
            }
            receive_in(
                conn,
                &queue,
                &location,
                max,
                millis(visibility),
                max_receive_count,
            )
        })
        .await
    }
}

fn open_connection(target: &Target) -> Result<Connection> {
    let mut conn = embedded_sqlite::open(target, BUSY_TIMEOUT)?;
    apply_schema(&mut conn, &SCHEMA)?;
    Ok(conn)
}

impl From<SqliteError> for QueueError {
    fn from(e: SqliteError) -> Self {
        match e {
            SqliteError::NotReady(m) => QueueError::NotReady(m),
            SqliteError::Busy(m) => QueueError::Unavailable(m),
            SqliteError::Failed(m) => QueueError::Internal(m),
        }
    }
}

fn attributes_json(attributes: &BTreeMap<String, String>) -> Result<String> {
    serde_json::to_string(attributes)
        .map_err(|e| QueueError::Internal(format!("cannot serialise attributes: {e}")))
}

fn parse_attributes(json: &str) -> std::result::Result<BTreeMap<String, String>, String> {
    serde_json::from_str(json).map_err(|e| format!("stored attributes are damaged ({e}): {json}"))
}

fn send_in(conn: &mut Connection, queue: &str, messages: &[OutgoingMessage]) -> Result<()> {
    let now = now_ms();
    let tx = begin_write(conn)?;
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO mq_messages (queue, message_id, body, attributes, sent_at_ms,
                                          visible_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            )
            .ctx("preparing send")?;
        for m in messages {
            let id = uuid::Uuid::new_v4().to_string();
            insert
                .execute(params![
                    queue,
                    id,
                    m.body,
                    attributes_json(&m.attributes)?,
                    now
                ])
                .ctx("inserting message")?;
        }
    }
    Ok(tx.commit().ctx("committing send")?)
}

/// A message row as `receive` reads it.
struct Candidate {
    seq: i64,
    message_id: String,
    body: String,
    attributes: String,
    sent_at_ms: i64,
    receive_count: u32,
}

fn move_to_dead_letters(
    tx: &Transaction<'_>,
    queue: &str,
    c: &Candidate,
    attributes: &str,
    reason: &str,
    now: i64,
) -> Result<()> {
    tx.execute(
        "INSERT INTO mq_dead_letters (queue, message_id, body, attributes, sent_at_ms,
                                      receive_count, reason, dead_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            queue,
            c.message_id,
            c.body,
            attributes,
            c.sent_at_ms,
            c.receive_count,
            reason,
            now
        ],
    )
    .ctx("inserting dead letter")?;
    tx.execute("DELETE FROM mq_messages WHERE seq = ?1", [c.seq])
        .ctx("deleting dead-lettered message")?;
    Ok(())
}

fn receive_in(
    conn: &mut Connection,
    queue: &str,
    location: &str,
    max: u32,
    visibility_ms: i64,
    max_receive_count: u32,
) -> Result<Vec<Delivery>> {
    let tx = begin_write(conn)?;
    let now = now_ms();
    let mut out = Vec::new();
    // Rows handled in this transaction: with a visibility of 0 they stay visible.
    let mut seen = HashSet::new();
    while out.len() < max as usize {
        let want = max as usize - out.len();
        let page: Vec<Candidate> = {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT seq, message_id, body, attributes, sent_at_ms, receive_count
                     FROM mq_messages WHERE queue = ?1 AND visible_at_ms <= ?2
                     ORDER BY visible_at_ms, seq LIMIT ?3",
                )
                .ctx("preparing receive")?;
            stmt.query_map(params![queue, now, (want + seen.len()) as i64], |row| {
                Ok(Candidate {
                    seq: row.get(0)?,
                    message_id: row.get(1)?,
                    body: row.get(2)?,
                    attributes: row.get(3)?,
                    sent_at_ms: row.get(4)?,
                    receive_count: row.get(5)?,
                })
            })
            .ctx("reading visible messages")?
            .collect::<rusqlite::Result<Vec<_>>>()
            .ctx("reading visible messages")?
        };
        let fresh: Vec<Candidate> = page
            .into_iter()
            .filter(|c| !seen.contains(&c.seq))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for c in fresh {
            seen.insert(c.seq);
            if max_receive_count > 0 && c.receive_count >= max_receive_count {
                let reason = format!("received {} times without success", c.receive_count);
                move_to_dead_letters(&tx, queue, &c, &c.attributes, &reason, now)?;
                tracing::warn!(queue, message_id = %c.message_id, %reason, "message dead-lettered by redrive");
                continue;
            }
            let attributes = match parse_attributes(&c.attributes) {
                Ok(a) => a,
                Err(problem) => {
                    // Delivering it would fail every time; keep it where an operator looks.
                    move_to_dead_letters(&tx, queue, &c, "{}", &problem, now)?;
                    tracing::error!(queue, message_id = %c.message_id, %problem, "damaged message dead-lettered");
                    continue;
                }
            };
            if out.len() >= max as usize {
                break;
            }
            let token = uuid::Uuid::new_v4().simple().to_string();
            let receive_count = c.receive_count.saturating_add(1);
            tx.execute(
                "UPDATE mq_messages SET visible_at_ms = ?2, receive_count = ?3, receipt = ?4
                 WHERE seq = ?1",
                params![
                    c.seq,
                    now.saturating_add(visibility_ms),
                    receive_count,
                    token
                ],
            )
            .ctx("hiding received message")?;
            out.push(Delivery {
                body: c.body,
                attributes,
                receipt: Receipt(ReceiptKind::Sqlite(SqliteReceipt {
                    seq: c.seq,
                    token,
                    queue: queue.to_string(),
                    location: location.to_string(),
                })),
                receive_count,
                message_id: c.message_id,
                sent_at_ms: c.sent_at_ms,
            });
        }
    }
    tx.commit().ctx("committing receive")?;
    Ok(out)
}

/// What a batch does to each row its receipt still holds.
#[derive(Debug, Clone, Copy)]
enum RowChange {
    Delete,
    /// Hidden for this many milliseconds from the moment of the write.
    Extend {
        visibility_ms: i64,
    },
}

impl RowChange {
    fn name(self) -> &'static str {
        match self {
            RowChange::Delete => "delete",
            RowChange::Extend { .. } => "extend",
        }
    }
}

/// Applies `change` to the row of every receipt in one write transaction. Returns, per receipt,
/// whether its row was still held by it (false: stale, nothing changed).
fn change_rows(
    conn: &mut Connection,
    receipts: &[SqliteReceipt],
    change: RowChange,
) -> Result<Vec<bool>> {
    let tx = begin_write(conn)?;
    let mut held = Vec::with_capacity(receipts.len());
    {
        let now = now_ms();
        let mut stmt = match change {
            RowChange::Delete => tx
                .prepare_cached("DELETE FROM mq_messages WHERE seq = ?1 AND receipt = ?2")
                .ctx("preparing delete")?,
            RowChange::Extend { .. } => tx
                .prepare_cached(
                    "UPDATE mq_messages SET visible_at_ms = ?3 WHERE seq = ?1 AND receipt = ?2",
                )
                .ctx("preparing extend")?,
        };
        for r in receipts {
            let changed = match change {
                RowChange::Delete => stmt.execute(params![r.seq, r.token]),
                RowChange::Extend { visibility_ms } => {
                    stmt.execute(params![r.seq, r.token, now.saturating_add(visibility_ms)])
                }
            }
            .ctx(change.name())?;
            held.push(changed > 0);
        }
    }
    tx.commit().ctx("committing batch")?;
    Ok(held)
}

fn stale(what: &str) -> QueueError {
    QueueError::StaleReceipt(format!(
        "{what}: the message was deleted, released or dead-lettered already, or its visibility \
         timeout lapsed and another consumer received it"
    ))
}

#[async_trait]
impl MessageQueue for SqliteQueue {
    async fn send_batch(&self, messages: Vec<OutgoingMessage>) -> Result<()> {
        check_messages(&messages)?;
        if messages.is_empty() {
            return Ok(());
        }
        let queue = self.queue.clone();
        let count = messages.len();
        self.with_conn(move |conn| send_in(conn, &queue, &messages))
            .await
            .map_err(|e| e.context(format!("none of the {count} messages was sent")))?;
        self.sent.notify_waiters();
        Ok(())
    }

    async fn receive(
        &self,
        max: u32,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Delivery>> {
        check_receive(max, wait, visibility)?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Created before looking, so a send in between still wakes us.
            let sent = self.sent.notified();
            let got = self.receive_now(max, visibility).await?;
            let now = tokio::time::Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            let nap = POLL_INTERVAL.min(deadline - now);
            let _ = tokio::time::timeout(nap, sent).await;
        }
    }

    async fn delete(&self, receipt: &Receipt) -> Result<()> {
        single(self.delete_batch(std::slice::from_ref(receipt)).await)
    }

    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<()> {
        single(
            self.extend_batch(std::slice::from_ref(receipt), visibility)
                .await,
        )
    }

    async fn delete_batch(&self, receipts: &[Receipt]) -> Vec<Result<()>> {
        self.change_batch(receipts, RowChange::Delete).await
    }

    async fn extend_batch(&self, receipts: &[Receipt], visibility: Duration) -> Vec<Result<()>> {
        if let Err(e) = check_duration("extend: visibility", visibility) {
            return vec![Err(e); receipts.len()];
        }
        let change = RowChange::Extend {
            visibility_ms: millis(visibility),
        };
        self.change_batch(receipts, change).await
    }

    async fn release(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        check_duration("release: delay", delay)?;
        let r = self.own(receipt)?.clone();
        let changed = self
            .with_conn(move |conn| {
                Ok(conn
                    .execute(
                        "UPDATE mq_messages SET visible_at_ms = ?3, receipt = NULL
                         WHERE seq = ?1 AND receipt = ?2",
                        params![r.seq, r.token, now_ms().saturating_add(millis(delay))],
                    )
                    .ctx("releasing message")?)
            })
            .await?;
        if changed == 0 {
            return Err(stale("release"));
        }
        if delay.is_zero() {
            self.sent.notify_waiters();
        }
        Ok(())
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<()> {
        let reason = clean_reason(reason)?;
        let r = self.own(&delivery.receipt)?.clone();
        let queue = self.queue.clone();
        self.with_conn(move |conn| {
            let tx = begin_write(conn)?;
            let row: Option<Candidate> = tx
                .query_row(
                    "SELECT seq, message_id, body, attributes, sent_at_ms, receive_count
                     FROM mq_messages WHERE seq = ?1 AND receipt = ?2",
                    params![r.seq, r.token],
                    |row| {
                        Ok(Candidate {
                            seq: row.get(0)?,
                            message_id: row.get(1)?,
                            body: row.get(2)?,
                            attributes: row.get(3)?,
                            sent_at_ms: row.get(4)?,
                            receive_count: row.get(5)?,
                        })
                    },
                )
                .optional()
                .ctx("reading message to dead-letter")?;
            let Some(c) = row else {
                return Err(stale("dead_letter"));
            };
            // Copy and delete in one transaction: the message is in exactly one place.
            move_to_dead_letters(&tx, &queue, &c, &c.attributes, &reason, now_ms())?;
            Ok(tx.commit().ctx("committing dead letter")?)
        })
        .await
    }

    async fn dead_letters(&self, max: u32) -> Result<Vec<DeadLetter>> {
        let limit = peek_limit(max);
        let queue = self.queue.clone();
        let rows = self
            .with_conn(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT message_id, body, attributes, reason, dead_at_ms, receive_count
                         FROM mq_dead_letters WHERE queue = ?1 ORDER BY seq LIMIT ?2",
                    )
                    .ctx("preparing dead-letter listing")?;
                let listed = stmt
                    .query_map(params![queue, limit], |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, String>(1)?,
                            row.get::<_, String>(2)?,
                            row.get::<_, String>(3)?,
                            row.get::<_, i64>(4)?,
                            row.get::<_, u32>(5)?,
                        ))
                    })
                    .ctx("listing dead letters")?
                    .collect::<rusqlite::Result<Vec<_>>>();
                Ok(listed.ctx("listing dead letters")?)
            })
            .await?;
        rows.into_iter()
            .map(
                |(message_id, body, attributes, reason, dead_at_ms, receive_count)| {
                    let attributes = parse_attributes(&attributes).map_err(|e| {
                        QueueError::Internal(format!("dead letter {message_id}: {e}"))
                    })?;
                    Ok(DeadLetter {
                        message_id,
                        body,
                        attributes,
                        reason,
                        dead_at_ms,
                        receive_count,
                    })
                },
            )
            .collect()
    }

    async fn approximate_depth(&self) -> Result<u64> {
        let queue = self.queue.clone();
        self.with_conn(move |conn| {
            let n = conn
                .query_row(
                    "SELECT COUNT(*) FROM mq_messages WHERE queue = ?1 AND visible_at_ms <= ?2",
                    params![queue, now_ms()],
                    |row| row.get::<_, i64>(0),
                )
                .ctx("counting visible messages")?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_file_a_queue_and_a_redrive_limit() {
        let p = parse_url("sqlite://a/b.db").ok();
        assert_eq!(
            p,
            Some(SqliteUrl {
                target: Target::File("a/b.db".into()),
                queue: "jobs".into(),
                max_receive_count: 10
            })
        );
        let p = parse_url("sqlite:///abs/q.db?queue=s3-events&max_receive_count=3").ok();
        assert_eq!(
            p,
            Some(SqliteUrl {
                target: Target::File("/abs/q.db".into()),
                queue: "s3-events".into(),
                max_receive_count: 3
            })
        );
        assert_eq!(
            parse_url("sqlite::memory:").ok().map(|p| p.target),
            Some(Target::Memory)
        );
        for bad in [
            "sqlite://",
            "sqlite://?queue=x",
            "sqlite://q.db?queue=",
            "sqlite://q.db?queue=a/b",
            "sqlite://q.db?max_receive_count=-1",
            "sqlite://q.db?colour=blue",
            "postgres://x",
        ] {
            assert!(
                matches!(parse_url(bad), Err(QueueError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn the_file_is_in_wal_mode_and_refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/q.db", dir.path().display());
        let q = SqliteQueue::open(&url).await.unwrap();
        let mode: String = q
            .with_conn(|c| {
                c.query_row("PRAGMA journal_mode", [], |r| r.get(0))
                    .ctx("mode")
                    .map_err(Into::into)
            })
            .await
            .unwrap();
        assert_eq!(mode.to_lowercase(), "wal");
        q.with_conn(|c| {
            c.execute(
                "UPDATE mq_meta SET value = '99' WHERE key = 'schema_version'",
                [],
            )
            .ctx("bump")
            .map_err(Into::into)
        })
        .await
        .unwrap();
        drop(q);
        let err = SqliteQueue::open(&url).await.err();
        assert!(matches!(err, Some(QueueError::NotReady(_))), "{err:?}");
    }

    #[tokio::test]
    async fn a_damaged_row_is_dead_lettered_instead_of_blocking_the_queue() {
        let q = SqliteQueue::open("sqlite::memory:").await.unwrap();
        q.send_batch(vec![
            OutgoingMessage::new("bad"),
            OutgoingMessage::new("good"),
        ])
        .await
        .unwrap();
        q.with_conn(|c| {
            c.execute(
                "UPDATE mq_messages SET attributes = 'not json' WHERE body = 'bad'",
                [],
            )
            .ctx("damage")
            .map_err(Into::into)
        })
        .await
        .unwrap();
        let got = q
            .receive(10, Duration::ZERO, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body, "good");
        let dead = q.dead_letters(10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].body, "bad");
        assert!(dead[0].reason.contains("damaged"), "{}", dead[0].reason);
    }

    #[tokio::test]
    async fn receipts_of_another_queue_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = SqliteQueue::open(&format!("sqlite://{}/q.db", dir.path().display()))
            .await
            .unwrap();
        let b = SqliteQueue::open(&format!(
            "sqlite://{}/q.db?queue=other",
            dir.path().display()
        ))
        .await
        .unwrap();
        a.send_batch(vec![OutgoingMessage::new("x")]).await.unwrap();
        let got = a
            .receive(1, Duration::ZERO, Duration::from_secs(30))
            .await
            .unwrap();
        let err = b.delete(&got[0].receipt).await.err();
        assert!(matches!(err, Some(QueueError::Invalid(_))), "{err:?}");
        a.delete(&got[0].receipt).await.unwrap();
    }
}
