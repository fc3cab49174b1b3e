//! The ledger contract, written once and run against both backends.
//!
//! Every test is a generic `async fn(&Backend)`; the `contract!` macro instantiates each one in
//! `sqlite::` (a temporary database file) and `dynamodb::` (a fresh, uniquely named table made
//! by `migrate` on the emulator `AWS_ENDPOINT_URL` points at). Without `AWS_ENDPOINT_URL` the
//! DynamoDB tests fail on purpose: run `scripts/test.sh`, which starts moto. Tests that only make
//! sense for one backend live in the `sqlite_only` and `dynamodb_only` modules. The contract
//! also runs in `dynamodb_item_by_item::`, DynamoDB with transactions switched off: the per-item
//! conditional writes a chunk falls back to when a transaction's outcome is inconclusive.
//!
//! A second `open` of the same URL and scope stands for a second watcher replica (on SQLite it
//! is a separate connection, as a second process would have). Owners are replica ids.
//!
//! About moto: it returns `CancellationReasons` for cancelled transactions as DynamoDB does, so
//! these tests run the ledger's transaction path; `scripts/lib/moto_server.py` serialises
//! DynamoDB requests, because moto itself applies a transaction item by item and is not atomic
//! under concurrent requests. Real DynamoDB may also cancel a transaction with
//! `TransactionConflict` when two replicas write the same items at once; moto never does.

use seen_ledger::dynamodb::DynamoLedger;
use seen_ledger::{LedgerError, ObjectVersion, SeenLedger, migrate, open};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Backends

/// A lease no test outlives.
const LEASE: Duration = Duration::from_secs(60);
const A: &str = "replica-a";
const B: &str = "replica-b";
const SCOPE: &str = "s3://recipes-bucket/incoming/";

struct Backend {
    ledger: Arc<dyn SeenLedger>,
    /// Opens another handle (another replica) with [`Backend::reopen`].
    url: String,
    scope: String,
    _dir: Option<tempfile::TempDir>,
    /// DynamoDB table to drop after a passing test.
    table: Option<String>,
    /// DynamoDB without transactions: every handle writes item by item.
    item_by_item: bool,
}

impl Backend {
    /// Versions in a "full page" test. DynamoDB gets 250 (still three transaction chunks and a
    /// remainder): moto copies the whole table once per item of a transaction, so 1000-wide
    /// writes cost the suite minutes there without testing anything more.
    fn page_len(&self) -> usize {
        if self.table.is_some() { 250 } else { 1000 }
    }

    async fn reopen(&self) -> Arc<dyn SeenLedger> {
        self.in_scope(&self.scope).await
    }

    async fn in_scope(&self, scope: &str) -> Arc<dyn SeenLedger> {
        match &self.table {
            Some(table) if self.item_by_item => Arc::new(
                DynamoLedger::connect(&aws_setup::load().await, table, scope)
                    .await
                    .expect("connect to the ledger table")
                    .item_by_item(),
            ),
            _ => open(&self.url, scope).await.expect("open the ledger"),
        }
    }

    async fn finish(self) {
        if let Some(table) = self.table {
            drop_table(&table).await;
        }
    }
}

/// Best effort: the emulator is thrown away after the run anyway.
async fn drop_table(table: &str) {
    let client = aws_sdk_dynamodb::Client::new(&aws_setup::load().await);
    let _ = client.delete_table().table_name(table).send().await;
}

async fn sqlite_backend() -> Backend {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}/state/ledger.db", dir.path().display());
    Backend {
        ledger: open(&url, SCOPE).await.expect("open sqlite ledger"),
        url,
        scope: SCOPE.to_string(),
        _dir: Some(dir),
        table: None,
        item_by_item: false,
    }
}

/// Fails the test when there is no emulator to run against.
fn require_emulator() {
    if std::env::var_os("AWS_ENDPOINT_URL").is_none_or(|v| v.is_empty()) {
        panic!(
            "AWS_ENDPOINT_URL is not set, so the DynamoDB contract tests have nothing to run \
             against. Run scripts/test.sh (it starts moto), or start \
             `python scripts/lib/moto_server.py -p 5066 &` and set \
             AWS_ENDPOINT_URL=http://127.0.0.1:5066 AWS_ACCESS_KEY_ID=testing \
             AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1"
        );
    }
}

fn unique_table() -> String {
    format!("sl-{}", uuid::Uuid::new_v4().simple())
}

async fn dynamodb_backend() -> Backend {
    require_emulator();
    let table = unique_table();
    let url = format!("dynamodb://{table}");
    migrate(&url).await.expect("create the ledger table");
    Backend {
        ledger: open(&url, SCOPE).await.expect("open DynamoDB ledger"),
        url,
        scope: SCOPE.to_string(),
        _dir: None,
        table: Some(table),
        item_by_item: false,
    }
}

/// DynamoDB with the per-item path a chunk falls back to when a transaction's cancellation
/// reasons are missing or inconclusive (on real DynamoDB: `TransactionConflict` between
/// replicas). moto always gives reasons, so without this that path would go untested.
async fn dynamodb_item_by_item_backend() -> Backend {
    let mut b = dynamodb_backend().await;
    b.item_by_item = true;
    b.ledger = b.reopen().await;
    b
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let backend = super::sqlite_backend().await;
                    super::$name(&backend).await;
                    backend.finish().await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let backend = super::dynamodb_backend().await;
                    super::$name(&backend).await;
                    backend.finish().await;
                }
            )*
        }
        mod dynamodb_item_by_item {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let backend = super::dynamodb_item_by_item_backend().await;
                    super::$name(&backend).await;
                    backend.finish().await;
                }
            )*
        }
    };
}

contract!(
    claim_then_mark_sent_settles_a_version,
    a_rewrite_is_a_new_version_and_only_the_latest_is_remembered,
    an_expired_lease_can_be_taken_over,
    the_same_owner_can_claim_again_and_renew_its_lease,
    release_gives_the_claim_back_at_once,
    two_replicas_claiming_concurrently_never_both_win,
    scopes_are_isolated,
    a_page_of_1000_mixed_versions_is_chunked_with_exact_results,
    the_first_marker_value_wins,
    invalid_inputs_are_refused_and_change_nothing,
);

// ---------------------------------------------------------------------------------------------
// Helpers

fn v(key: &str, etag: &str) -> ObjectVersion {
    ObjectVersion::new(key, etag)
}

/// `n` versions `recipes/NNNNN.json` with ETag `etag`.
fn page(n: usize, etag: &str) -> Vec<ObjectVersion> {
    (0..n)
        .map(|i| v(&format!("recipes/{i:05}.json"), etag))
        .collect()
}

fn assert_invalid<T: std::fmt::Debug>(what: &str, result: Result<T, LedgerError>) {
    assert!(
        matches!(result, Err(LedgerError::Invalid(_))),
        "{what}: expected Invalid, got {result:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The contract

async fn claim_then_mark_sent_settles_a_version(b: &Backend) {
    let l = b.ledger.as_ref();
    let other = b.reopen().await;
    let vs = [v("recipes/toast.json", "e1"), v("recipes/soup.json", "e1")];

    assert_eq!(l.settled(&vs).await.expect("settled"), [false, false]);
    assert_eq!(l.claim(&vs, A, LEASE).await.expect("claim"), [true, true]);
    assert_eq!(
        other.claim(&vs, B, LEASE).await.expect("claim by B"),
        [false, false],
        "another replica won a live claim"
    );
    assert_eq!(
        l.settled(&vs).await.expect("settled"),
        [false, false],
        "a claim is not settled"
    );

    l.mark_sent(&vs).await.expect("mark_sent");
    assert_eq!(l.settled(&vs).await.expect("settled"), [true, true]);
    assert_eq!(
        other.settled(&vs).await.expect("settled by B"),
        [true, true],
        "the other replica sees it"
    );
    l.mark_sent(&vs).await.expect("mark_sent is idempotent");
    assert_eq!(l.settled(&vs).await.expect("settled"), [true, true]);

    for owner in [A, B] {
        assert_eq!(
            l.claim(&vs, owner, LEASE).await.expect("claim after sent"),
            [false, false],
            "{owner} claimed a sent version"
        );
    }

    // Empty input: no call, empty result.
    assert!(l.settled(&[]).await.expect("settled []").is_empty());
    assert!(l.claim(&[], A, LEASE).await.expect("claim []").is_empty());
    l.mark_sent(&[]).await.expect("mark_sent []");
    l.release(&[], A).await.expect("release []");

    // Within one call, only the first entry of a key can win.
    let dup = [v("recipes/pie.json", "e1"), v("recipes/pie.json", "e1")];
    assert_eq!(l.claim(&dup, A, LEASE).await.expect("claim"), [true, false]);
    let dup = [v("recipes/cake.json", "e1"), v("recipes/cake.json", "e2")];
    assert_eq!(l.claim(&dup, A, LEASE).await.expect("claim"), [true, false]);
    assert_eq!(
        l.settled(&dup).await.expect("settled"),
        [false, false],
        "duplicates in settled"
    );
    l.mark_sent(&dup).await.expect("mark_sent with duplicates");
    assert_eq!(
        l.settled(&dup).await.expect("settled"),
        [true, false],
        "mark_sent applies entries in order; the second ETag does not replace the first"
    );
}

async fn a_rewrite_is_a_new_version_and_only_the_latest_is_remembered(b: &Backend) {
    let l = b.ledger.as_ref();
    let old = [v("recipes/toast.json", "etag-1")];
    let new = [v("recipes/toast.json", "etag-2")];
    let both = [old[0].clone(), new[0].clone()];

    assert_eq!(l.claim(&old, A, LEASE).await.expect("claim"), [true]);
    l.mark_sent(&old).await.expect("mark_sent");
    assert_eq!(l.settled(&both).await.expect("settled"), [true, false]);

    // The object was rewritten: the new ETag is claimable, by anyone.
    assert_eq!(l.claim(&new, B, LEASE).await.expect("claim new"), [true]);
    assert_eq!(
        l.settled(&both).await.expect("settled"),
        [false, false],
        "only the latest version of a key is remembered"
    );

    // A late mark_sent of the old version does not regress the key.
    l.mark_sent(&old).await.expect("late mark_sent");
    assert_eq!(l.settled(&both).await.expect("settled"), [false, false]);
    assert_eq!(
        l.claim(&new, A, LEASE).await.expect("claim new by A"),
        [false],
        "B's live claim of the new version survived the late mark_sent"
    );

    l.mark_sent(&new).await.expect("mark_sent new");
    assert_eq!(l.settled(&both).await.expect("settled"), [false, true]);

    // Going back to earlier content is a change too: a new version to send.
    assert_eq!(
        l.claim(&old, A, LEASE).await.expect("claim old again"),
        [true]
    );
}

async fn an_expired_lease_can_be_taken_over(b: &Backend) {
    let l = b.ledger.as_ref();
    let other = b.reopen().await;
    let vs = page(3, "e1");
    let claimed_at = Instant::now();
    assert_eq!(
        l.claim(&vs, A, Duration::from_secs(1))
            .await
            .expect("claim"),
        [true; 3]
    );
    assert_eq!(
        other.claim(&vs, B, LEASE).await.expect("claim by B"),
        [false; 3]
    );

    tokio::time::sleep(Duration::from_millis(1_200).saturating_sub(claimed_at.elapsed())).await;
    assert_eq!(
        other
            .claim(&vs, B, LEASE)
            .await
            .expect("claim by B after the lease"),
        [true; 3],
        "A's lease expired: B takes over"
    );
    assert_eq!(
        l.claim(&vs, A, LEASE).await.expect("claim by A"),
        [false; 3],
        "B's claim is live now"
    );
    assert_eq!(l.settled(&vs).await.expect("settled"), [false; 3]);
}

async fn the_same_owner_can_claim_again_and_renew_its_lease(b: &Backend) {
    let l = b.ledger.as_ref();
    // A restart of replica A: a new handle, the same replica id.
    let restarted = b.reopen().await;
    let vs = page(2, "e1");
    assert_eq!(
        l.claim(&vs, A, Duration::from_secs(1))
            .await
            .expect("claim"),
        [true, true]
    );
    assert_eq!(
        restarted
            .claim(&vs, A, LEASE)
            .await
            .expect("claim by the same owner"),
        [true, true],
        "the same owner re-claims its live claim"
    );
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(
        l.claim(&vs, B, LEASE).await.expect("claim by B"),
        [false, false],
        "the re-claim renewed the lease beyond the first 1 s"
    );
}

async fn release_gives_the_claim_back_at_once(b: &Backend) {
    let l = b.ledger.as_ref();
    let other = b.reopen().await;
    let x = [v("recipes/a.json", "e1")];

    assert_eq!(l.claim(&x, A, LEASE).await.expect("claim"), [true]);
    // Releasing someone else's claim, or another ETag, changes nothing.
    other.release(&x, B).await.expect("release by B");
    l.release(&[v("recipes/a.json", "e0")], A)
        .await
        .expect("release of another ETag");
    assert_eq!(
        other.claim(&x, B, LEASE).await.expect("claim by B"),
        [false],
        "a release by the wrong owner or of the wrong ETag freed the claim"
    );

    l.release(&x, A).await.expect("release by A");
    assert_eq!(
        other.claim(&x, B, LEASE).await.expect("claim by B"),
        [true],
        "released: B wins at once, without waiting for the lease"
    );
    assert_eq!(l.settled(&x).await.expect("settled"), [false]);

    // A sent version is not released (only claims are), and unknown keys are fine.
    other.mark_sent(&x).await.expect("mark_sent");
    other
        .release(&[x[0].clone(), v("recipes/unknown.json", "e1")], B)
        .await
        .expect("release of a sent and an unknown version");
    assert_eq!(l.settled(&x).await.expect("settled"), [true]);
}

async fn two_replicas_claiming_concurrently_never_both_win(b: &Backend) {
    // A multiple of CHUNK; smaller on DynamoDB, whose emulator is slow at transactions.
    let versions = if b.table.is_some() { 150 } else { 300 };
    const TASKS_PER_REPLICA: usize = 3;
    const CHUNK: usize = 50;
    let vs = Arc::new(page(versions, "e1"));
    let replicas = [b.ledger.clone(), b.reopen().await];
    let mut tasks = Vec::new();
    for (r, ledger) in replicas.iter().enumerate() {
        for t in 0..TASKS_PER_REPLICA {
            let ledger = ledger.clone();
            let vs = vs.clone();
            // Each task is its own owner, so a version may be won by at most one task overall;
            // each starts at a different chunk, so the tasks interleave.
            let owner = format!("replica-{r}-task-{t}");
            let start = (r * TASKS_PER_REPLICA + t) * CHUNK;
            tasks.push(tokio::spawn(async move {
                let mut won = Vec::new();
                for c in 0..versions / CHUNK {
                    let from = (start + c * CHUNK) % versions;
                    let chunk = &vs[from..from + CHUNK];
                    let result = ledger.claim(chunk, &owner, LEASE).await.expect("claim");
                    won.extend(
                        chunk
                            .iter()
                            .zip(result)
                            .filter(|(_, w)| *w)
                            .map(|(v, _)| v.key.clone()),
                    );
                }
                (owner, won)
            }));
        }
    }
    let mut winners: HashMap<String, Vec<String>> = HashMap::new();
    for task in tasks {
        let (owner, won) = task.await.expect("claiming task");
        for key in won {
            winners.entry(key).or_default().push(owner.clone());
        }
    }
    let shared: Vec<_> = winners.iter().filter(|(_, o)| o.len() > 1).collect();
    assert!(shared.is_empty(), "won by several owners: {shared:?}");
    assert_eq!(winners.len(), versions, "some versions were won by nobody");
}

async fn scopes_are_isolated(b: &Backend) {
    let here = b.ledger.as_ref();
    let there = b.in_scope("dir://inbox").await;
    let x = [v("recipes/a.json", "e1")];

    assert_eq!(here.claim(&x, A, LEASE).await.expect("claim here"), [true]);
    assert_eq!(
        there.claim(&x, B, LEASE).await.expect("claim there"),
        [true],
        "the same key in another scope is another object"
    );
    here.mark_sent(&x).await.expect("mark_sent here");
    assert_eq!(here.settled(&x).await.expect("settled here"), [true]);
    assert_eq!(there.settled(&x).await.expect("settled there"), [false]);
    there.release(&x, B).await.expect("release there");
    assert_eq!(here.settled(&x).await.expect("settled here"), [true]);

    assert_eq!(
        here.marker_or_insert("started_at", "1")
            .await
            .expect("marker here"),
        "1"
    );
    assert_eq!(
        there
            .marker_or_insert("started_at", "2")
            .await
            .expect("marker there"),
        "2"
    );
    // A scope that is a prefix of another is still another scope.
    let longer = b.in_scope(&format!("{SCOPE}sub/")).await;
    assert_eq!(longer.settled(&x).await.expect("settled"), [false]);
}

async fn a_page_of_1000_mixed_versions_is_chunked_with_exact_results(b: &Backend) {
    let l = b.ledger.as_ref();
    let other = b.reopen().await;
    let n = b.page_len();
    let vs = page(n, "new");
    let pick = |r: usize| -> Vec<ObjectVersion> {
        vs.iter()
            .enumerate()
            .filter(|(i, _)| i % 5 == r)
            .map(|(_, v)| v.clone())
            .collect()
    };
    // i % 5: 0 unknown, 1 claimed by B (live), 2 sent, 3 an older ETag sent, 4 an older ETag
    // claimed by B.
    assert!(
        other
            .claim(&pick(1), B, LEASE)
            .await
            .expect("claim by B")
            .iter()
            .all(|w| *w)
    );
    let sent = pick(2);
    assert!(
        l.claim(&sent, A, LEASE)
            .await
            .expect("claim")
            .iter()
            .all(|w| *w)
    );
    l.mark_sent(&sent).await.expect("mark_sent");
    let older = |r| -> Vec<ObjectVersion> {
        pick(r)
            .into_iter()
            .map(|v| ObjectVersion::new(v.key, "old"))
            .collect()
    };
    l.mark_sent(&older(3))
        .await
        .expect("mark_sent of absent keys");
    assert!(
        other
            .claim(&older(4), B, LEASE)
            .await
            .expect("claim old")
            .iter()
            .all(|w| *w)
    );

    let settled = l.settled(&vs).await.expect("settled 1000");
    let expected: Vec<bool> = (0..n).map(|i| i % 5 == 2).collect();
    assert_eq!(settled, expected, "settled of the mixed page");
    assert_eq!(
        l.settled(&older(3)).await.expect("settled old"),
        vec![true; n / 5]
    );

    let won = l.claim(&vs, A, LEASE).await.expect("claim 1000");
    let expected: Vec<bool> = (0..n).map(|i| matches!(i % 5, 0 | 3 | 4)).collect();
    assert_eq!(won, expected, "claim of the mixed page");

    l.mark_sent(&vs).await.expect("mark_sent 1000");
    assert_eq!(l.settled(&vs).await.expect("settled 1000"), vec![true; n]);
    assert_eq!(
        l.settled(&older(3)).await.expect("settled old"),
        vec![false; n / 5]
    );
    // Now settled for everyone (a slice: moto copies the whole table once per item of a
    // transaction, so every 1000-wide write on this table costs the suite seconds).
    assert_eq!(
        other.claim(&vs[..100], B, LEASE).await.expect("claim by B"),
        vec![false; 100]
    );
}

async fn the_first_marker_value_wins(b: &Backend) {
    let l = b.ledger.as_ref();
    assert_eq!(
        l.marker_or_insert("started_at_ms", "1700000000000")
            .await
            .expect("marker"),
        "1700000000000"
    );
    assert_eq!(
        l.marker_or_insert("started_at_ms", "1800000000000")
            .await
            .expect("marker again"),
        "1700000000000"
    );
    assert_eq!(
        l.marker_or_insert("empty", "").await.expect("empty marker"),
        "",
        "an empty value is a value"
    );
    assert_eq!(
        l.marker_or_insert("empty", "later").await.expect("marker"),
        ""
    );
    // Marker names live apart from object keys.
    let key_named_like_it = [v("started_at_ms", "e1")];
    assert_eq!(
        l.settled(&key_named_like_it).await.expect("settled"),
        [false]
    );
    assert_eq!(
        l.claim(&key_named_like_it, A, LEASE).await.expect("claim"),
        [true]
    );
    assert_eq!(
        l.marker_or_insert("started_at_ms", "x")
            .await
            .expect("marker after the claim"),
        "1700000000000"
    );

    // Two replicas starting together agree on one value.
    let replicas = [b.ledger.clone(), b.reopen().await];
    for round in 0..5 {
        let name = format!("first_seen_{round}");
        let tasks = replicas.clone().map(|ledger| {
            let name = name.clone();
            tokio::spawn(async move {
                let mine = format!("{:p}", Arc::as_ptr(&ledger));
                let stored = ledger.marker_or_insert(&name, &mine).await.expect("marker");
                (mine, stored)
            })
        });
        let [x, y] = tasks;
        let (x_mine, x_stored) = x.await.expect("task");
        let (y_mine, y_stored) = y.await.expect("task");
        assert_eq!(x_stored, y_stored, "the replicas disagree on {name}");
        assert!(
            x_stored == x_mine || x_stored == y_mine,
            "{x_stored} is neither value"
        );
    }
}

async fn invalid_inputs_are_refused_and_change_nothing(b: &Backend) {
    let l = b.ledger.as_ref();
    let good = [v("recipes/a.json", "e1")];
    let exactly_1024 = [v(&"é".repeat(512), "e1")];
    let too_long = v(&format!("{}x", "é".repeat(512)), "e1");
    for (what, bad) in [
        ("empty etag", v("recipes/b.json", "")),
        ("1025-byte key", too_long),
        ("empty key", v("", "e1")),
    ] {
        let input = [good[0].clone(), bad];
        assert_invalid(what, l.claim(&input, A, LEASE).await);
        assert_invalid(what, l.settled(&input).await);
        assert_invalid(what, l.mark_sent(&input).await);
        assert_invalid(what, l.release(&input, A).await);
    }
    assert_invalid("empty owner", l.claim(&good, "", LEASE).await);
    assert_invalid("empty owner", l.release(&good, "").await);
    assert_invalid("zero lease", l.claim(&good, A, Duration::ZERO).await);
    assert_invalid(
        "lease over 24 h",
        l.claim(&good, A, Duration::from_secs(24 * 3600 + 1)).await,
    );
    assert_invalid("empty marker name", l.marker_or_insert("", "v").await);

    // None of that claimed or sent the good version.
    assert_eq!(l.settled(&good).await.expect("settled"), [false]);
    assert_eq!(l.claim(&good, B, LEASE).await.expect("claim"), [true]);
    // A key of exactly 1024 bytes of UTF-8 is fine.
    assert_eq!(
        l.claim(&exactly_1024, A, LEASE)
            .await
            .expect("claim a 1024-byte key"),
        [true]
    );
    l.mark_sent(&exactly_1024)
        .await
        .expect("mark_sent a 1024-byte key");
    assert_eq!(l.settled(&exactly_1024).await.expect("settled"), [true]);

    for scope in ["", "marker#s3://bucket"] {
        assert_invalid(
            &format!("scope {scope:?}"),
            open(&b.url, scope).await.map(|_| ()),
        );
    }
}

#[tokio::test]
async fn bad_urls_are_invalid() {
    for url in [
        "redis://x",
        "sqlite://",
        "sqlite://ledger.db?queue=jobs",
        "dynamodb://",
        "dynamodb://a",
        "dynamodb://table/with/slash",
        "s3://bucket",
    ] {
        assert_invalid(url, open(url, SCOPE).await.map(|_| ()));
        assert_invalid(url, migrate(url).await);
    }
}

// ---------------------------------------------------------------------------------------------
// The embedded ledger only

mod sqlite_only {
    use super::*;

    /// What a restarted watcher finds: everything it had before.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_ledger_survives_a_restart() {
        let b = sqlite_backend().await;
        let sent = page(3, "e1");
        let held = [v("recipes/held.json", "e1")];
        b.ledger.claim(&sent, A, LEASE).await.expect("claim");
        b.ledger.mark_sent(&sent).await.expect("mark_sent");
        b.ledger.claim(&held, A, LEASE).await.expect("claim held");
        b.ledger
            .marker_or_insert("started_at_ms", "42")
            .await
            .expect("marker");
        let url = b.url.clone();
        let dir = b._dir;
        drop(b.ledger);

        let again = open(&url, SCOPE).await.expect("reopen");
        assert_eq!(again.settled(&sent).await.expect("settled"), [true; 3]);
        assert_eq!(
            again.claim(&held, B, LEASE).await.expect("claim by B"),
            [false],
            "the claim and its lease survived"
        );
        assert_eq!(
            again.claim(&held, A, LEASE).await.expect("claim by A"),
            [true],
            "the restarted replica A gets its own claim back"
        );
        assert_eq!(
            again
                .marker_or_insert("started_at_ms", "43")
                .await
                .expect("marker"),
            "42"
        );
        migrate(&url).await.expect("migrate an existing file");
        assert_eq!(again.settled(&sent).await.expect("settled"), [true; 3]);
        drop(dir);
    }

    #[tokio::test]
    async fn memory_ledgers_work_and_are_private() {
        let one = open("sqlite::memory:", SCOPE).await.expect("open");
        let two = open("sqlite::memory:", SCOPE).await.expect("open");
        let x = [v("a", "e1")];
        assert_eq!(one.claim(&x, A, LEASE).await.expect("claim"), [true]);
        assert_eq!(two.claim(&x, B, LEASE).await.expect("claim"), [true]);
        migrate("sqlite::memory:").await.expect("migrate memory");
    }
}

// ---------------------------------------------------------------------------------------------
// DynamoDB only

mod dynamodb_only {
    use super::*;

    #[tokio::test]
    async fn a_missing_table_is_not_ready_and_says_how_to_create_it() {
        require_emulator();
        let missing = unique_table();
        let err = open(&format!("dynamodb://{missing}"), SCOPE)
            .await
            .map(|_| ())
            .err();
        match err {
            Some(LedgerError::NotReady(m)) => {
                assert!(m.contains(&missing) && m.contains("migrate"), "{m}")
            }
            other => panic!("expected NotReady, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn migrate_is_safe_to_run_again_and_refuses_a_foreign_table() {
        let b = dynamodb_backend().await;
        let x = [v("recipes/a.json", "e1")];
        b.ledger.claim(&x, A, LEASE).await.expect("claim");
        migrate(&b.url).await.expect("migrate again");
        assert_eq!(
            b.reopen().await.claim(&x, B, LEASE).await.expect("claim"),
            [false],
            "migrating again kept the data"
        );

        let foreign = unique_table();
        let client = aws_sdk_dynamodb::Client::new(&aws_setup::load().await);
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        };
        client
            .create_table()
            .table_name(&foreign)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("id")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("attribute"),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("id")
                    .key_type(KeyType::Hash)
                    .build()
                    .expect("key"),
            )
            .send()
            .await
            .expect("create a foreign table");
        let url = format!("dynamodb://{foreign}");
        for (what, result) in [
            ("open", open(&url, SCOPE).await.map(|_| ())),
            ("migrate", migrate(&url).await),
        ] {
            assert!(
                matches!(&result, Err(LedgerError::NotReady(m)) if m.contains("pk")),
                "{what}: {result:?}"
            );
        }
        drop_table(&foreign).await;
        b.finish().await;
    }

    /// The cost that matters: AWS calls per listed object. Fails if any step goes per item.
    #[tokio::test]
    async fn a_page_of_1000_costs_about_ten_calls_per_step() {
        let b = dynamodb_backend().await;
        let table = b.table.clone().expect("table");
        let ledger = DynamoLedger::connect(&aws_setup::load().await, &table, SCOPE)
            .await
            .expect("connect");
        let vs = page(1000, "e1");

        let before = ledger.calls();
        assert_eq!(
            ledger.settled(&vs).await.expect("settled"),
            vec![false; 1000]
        );
        let settled_calls = ledger.calls() - before;

        let before = ledger.calls();
        assert_eq!(
            ledger.claim(&vs, A, LEASE).await.expect("claim"),
            vec![true; 1000]
        );
        let claim_calls = ledger.calls() - before;

        let before = ledger.calls();
        ledger.mark_sent(&vs).await.expect("mark_sent");
        let sent_calls = ledger.calls() - before;

        // A second replica's claim of the same page: every item fails its condition, which a
        // transaction reports per item in one round.
        let before = ledger.calls();
        assert_eq!(
            ledger.claim(&vs, B, LEASE).await.expect("claim by B"),
            vec![false; 1000]
        );
        let lost_calls = ledger.calls() - before;

        // Without transactions: one call per item (what the fallback costs).
        let single = DynamoLedger::connect(&aws_setup::load().await, &table, SCOPE)
            .await
            .expect("connect")
            .item_by_item();
        let fresh: Vec<ObjectVersion> = (0..20).map(|i| v(&format!("single/{i}"), "e1")).collect();
        let before = single.calls();
        assert_eq!(
            single
                .claim(&fresh, A, LEASE)
                .await
                .expect("claim item by item"),
            vec![true; 20]
        );
        assert_eq!(
            single.calls() - before,
            20,
            "item by item is one call per item"
        );

        println!(
            "AWS calls per 1000 objects: settled {settled_calls}, claim {claim_calls}, \
             mark_sent {sent_calls}, claim of a settled page {lost_calls}"
        );
        assert!(claim_calls <= 12, "claim took {claim_calls} calls");
        assert!(settled_calls <= 12, "settled took {settled_calls} calls");
        assert!(sent_calls <= 12, "mark_sent took {sent_calls} calls");
        assert!(lost_calls <= 12, "a lost claim took {lost_calls} calls");
        b.finish().await;
    }
}
