//! A real pipeline for one test: a temporary folder as the bucket (`dir://`), an embedded SQLite
//! queue file, an in-process comparison service on 127.0.0.1 with its own SQLite store, and the
//! sender built from `Settings` with short timings. Tests write files and jobs themselves and
//! look at the queue, the dead letters and the comparison service's answers. A slow service is
//! a delaying TCP proxy in front of the real one ([`delaying_proxy`]); the sender's queue calls
//! can be counted by running it on a [`CountingQueue`].
#![allow(dead_code)] // each test binary uses a different part of this helper

use comparison::config::ServeSettings;
use message_queue::{DeadLetter, Delivery, MessageQueue, OutgoingMessage, QueueError, Receipt};
use object_source::ObjectSource;
use pipeline_job::{Detection, JOB_FORMAT_VERSION, Job, JobKind};
use recipe_proto::recipe::v1 as pb;
use recipe_proto::recipe::v1::comparison_service_client::ComparisonServiceClient;
use sender::config::Settings;
use sender::startup::Application;
use sender::stats::{SenderStats, StatsSnapshot};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::transport::Channel;

/// How long an eventual condition may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The bucket, the queue and the comparison service's store of one test.
pub struct Pipeline {
    pub dir: tempfile::TempDir,
    pub source_url: String,
    pub queue_url: String,
    pub store_url: String,
    pub source: Arc<dyn ObjectSource>,
    /// A separate handle on the sender's queue file, as the watcher would have.
    pub queue: Arc<dyn MessageQueue>,
}

impl Pipeline {
    /// A fresh folder bucket and queue; `max_receive_count` is the queue's redrive limit.
    pub async fn new() -> Self {
        Self::with_max_receive_count(10).await
    }

    pub async fn with_max_receive_count(max_receive_count: u32) -> Self {
        // Logs only when asked for (RUST_LOG=sender=debug cargo test ...): they go to stderr,
        // which the test harness does not capture.
        if std::env::var_os("RUST_LOG").is_some() {
            // Tests export no spans, so the guard is not kept.
            let _ = telemetry::init("sender", telemetry::LogFormat::Text);
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let inbox = dir.path().join("inbox");
        let source_url = format!("dir://{}", inbox.display());
        object_source::create_bucket(&source_url)
            .await
            .expect("create the inbox folder");
        let queue_url = format!(
            "sqlite://{}?queue=jobs&max_receive_count={max_receive_count}",
            dir.path().join("queue.db").display()
        );
        let store_url = format!("sqlite://{}", dir.path().join("store.db").display());
        let source = object_source::open(&source_url).await.expect("open source");
        let queue = message_queue::open(&queue_url).await.expect("open queue");
        Self {
            dir,
            source_url,
            queue_url,
            store_url,
            source,
            queue,
        }
    }

    pub fn inbox(&self) -> PathBuf {
        self.dir.path().join("inbox")
    }

    /// Sender settings for this pipeline with short timings (backoff 100ms..1s, 1s long poll).
    pub fn settings(&self, comparison: SocketAddr) -> Settings {
        let mut s = Settings::new(
            &self.source_url,
            &self.queue_url,
            format!("http://{comparison}"),
        );
        s.concurrency = 4;
        s.visibility = Duration::from_secs(5);
        s.wait = Duration::from_secs(1);
        s.rpc_timeout = Duration::from_secs(5);
        s.connect_timeout = Duration::from_secs(1);
        s.unknown_recipe_attempts = 3;
        s.backoff_base = Duration::from_millis(100);
        s.backoff_max = Duration::from_secs(1);
        s.shutdown_grace = Duration::from_secs(2);
        s
    }

    /// Writes a file into the bucket and returns the job the watcher would send for it.
    pub async fn put(&self, kind: JobKind, key: &str, bytes: impl Into<Vec<u8>>) -> Job {
        let meta = self.source.put(key, bytes.into()).await.expect("put file");
        Job {
            v: JOB_FORMAT_VERSION,
            kind,
            scheme: "dir".into(),
            bucket: self.source.bucket().into(),
            key: key.into(),
            etag: meta.etag,
            size: meta.size,
            version_id: None,
            detected_by: Detection::Poll,
            detected_at_ms: 0,
        }
    }

    /// Sends the job's message.
    pub async fn enqueue(&self, job: &Job) {
        self.send_raw(&job.to_json()).await;
    }

    /// Sends any message body.
    pub async fn send_raw(&self, body: &str) {
        self.queue
            .send_batch(vec![OutgoingMessage::new(body)])
            .await
            .expect("send");
    }

    /// Writes the file and sends its job.
    pub async fn submit(&self, kind: JobKind, key: &str, bytes: impl Into<Vec<u8>>) -> Job {
        let job = self.put(kind, key, bytes).await;
        self.enqueue(&job).await;
        job
    }

    pub async fn dead_letters(&self) -> Vec<DeadLetter> {
        self.queue.dead_letters(100).await.expect("dead letters")
    }

    pub async fn depth(&self) -> u64 {
        self.queue.approximate_depth().await.expect("depth")
    }

    /// A comparison service on an ephemeral port with this pipeline's store.
    pub async fn start_comparison(&self) -> ComparisonServer {
        self.start_comparison_on("127.0.0.1:0".parse().expect("address"))
            .await
    }

    /// A comparison service on `addr` with this pipeline's store.
    pub async fn start_comparison_on(&self, addr: SocketAddr) -> ComparisonServer {
        let app =
            comparison::startup::Application::build(ServeSettings::new(addr, &self.store_url))
                .await
                .expect("comparison service starts");
        let addr = app.local_addr().expect("bound address");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        let client = ComparisonServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("client connects");
        ComparisonServer {
            addr,
            client,
            stop: Some(stop),
            server: Some(server),
        }
    }
}

pub struct ComparisonServer {
    pub addr: SocketAddr,
    pub client: ComparisonServiceClient<Channel>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

impl ComparisonServer {
    /// The makes stored for a recipe, newest first (none while the recipe is unknown).
    pub async fn makes(&self, recipe_id: &str) -> Vec<pb::Make> {
        let answer = self
            .client
            .clone()
            .list_makes(pb::ListMakesRequest {
                recipe_id: recipe_id.into(),
                page_size: 100,
                page_token: String::new(),
            })
            .await;
        match answer {
            Ok(reply) => reply.into_inner().makes,
            Err(status) if status.code() == tonic::Code::NotFound => Vec::new(),
            Err(status) => panic!("ListMakes failed: {status}"),
        }
    }

    pub async fn recipe(&self, recipe_id: &str) -> Option<pb::RecipeVersion> {
        self.client
            .clone()
            .get_recipe(pb::GetRecipeRequest {
                recipe_id: recipe_id.into(),
                version: 0,
            })
            .await
            .ok()
            .map(tonic::Response::into_inner)
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

/// A sender running in a task until stopped.
pub struct RunningSender {
    pub stats: Arc<SenderStats>,
    /// The admin port: /metrics, /livez, /readyz.
    pub admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl RunningSender {
    pub fn snapshot(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// The admin port's /metrics page.
    pub async fn metrics(&self) -> String {
        let got = admin_http::scrape::get(self.admin, "/metrics")
            .await
            .expect("GET /metrics");
        assert_eq!(got.status, 200, "{}", got.body);
        got.body
    }

    /// The admin port's answer to /readyz: status and body.
    pub async fn readyz(&self) -> (u16, String) {
        let got = admin_http::scrape::get(self.admin, "/readyz")
            .await
            .expect("GET /readyz");
        (got.status, got.body)
    }

    /// Asks for a graceful shutdown and waits for `run_until` to return.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }
}

pub async fn spawn_sender(settings: Settings) -> RunningSender {
    run_app(Application::build(settings).await.expect("sender starts"))
}

/// A sender working on `queue` (for example a [`CountingQueue`]) instead of opening the one its
/// settings name.
pub async fn spawn_sender_with_queue(
    settings: Settings,
    queue: Arc<dyn MessageQueue>,
) -> RunningSender {
    let app = Application::build_with_queue(settings, queue)
        .await
        .expect("sender starts");
    run_app(app)
}

fn run_app(app: Application) -> RunningSender {
    let stats = app.stats();
    let admin = app.admin_addr().expect("admin address");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    RunningSender {
        stats,
        admin,
        stop: Some(stop),
        task: Some(task),
    }
}

/// Polls `check` until it returns `Some`, failing the test with `what` after [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {PATIENCE:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TCP proxy to `upstream` that delivers everything the client sends `delay` late (as a
/// slow network or an overloaded service would); answers come back unchanged. The delay is a
/// constant latency, not a pause per chunk, so it does not add up over a connection.
pub async fn delaying_proxy(upstream: SocketAddr, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("proxy address");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (client_read, mut client_write) = client.into_split();
                let (mut server_read, server_write) = server.into_split();
                tokio::spawn(delayed_copy(client_read, server_write, delay));
                let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
            });
        }
    });
    addr
}

/// Copies `from` to `to`, each chunk written `delay` after it was read.
async fn delayed_copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address")
}

/// A valid recipe document.
pub fn recipe_json(id: &str) -> String {
    format!(
        r#"{{"recipeName": "Soup {id}", "recipeId": "{id}", "rating": 4,
  "ingredients": [
    {{"ingredientId": 1, "quantity": 2, "measurement": "cup", "ingredientName": "water"}},
    {{"ingredientId": 2, "quantity": 1, "measurement": "tsp", "ingredientName": "salt"}}
  ],
  "steps": [{{"stepId": 1, "stepText": "Boil the water."}}, {{"stepId": 2, "stepText": "Add the salt."}}]
}}"#
    )
}

/// A valid make of recipe `id`: a double batch, rated `rating`.
pub fn make_json(id: &str, rating: u32) -> String {
    format!(
        r#"{{"recipeName": "Soup {id}", "recipeId": "{id}", "rating": {rating},
  "ingredients": [
    {{"ingredientId": 1, "quantity": 4, "measurement": "cup", "ingredientName": "water"}},
    {{"ingredientId": 2, "quantity": 2, "measurement": "tsp", "ingredientName": "salt"}}
  ],
  "steps": [{{"stepId": 1, "stepText": "Boil the water."}}, {{"stepId": 2, "stepText": "Add the salt."}}]
}}"#
    )
}

/// The example files shipped in examples/.
pub fn example(path: &str) -> Vec<u8> {
    let full = format!("{}/../../examples/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).expect("example file")
}

/// The queue calls a [`CountingQueue`] saw.
#[derive(Debug, Clone, Default)]
pub struct QueueCalls {
    pub receive: u64,
    /// Receives that returned at least one message.
    pub receive_with_messages: u64,
    /// Messages all receives returned.
    pub received: u64,
    pub delete: u64,
    pub delete_batch: u64,
    /// Most receipts in one `delete_batch`.
    pub largest_delete_batch: usize,
    /// Messages that `delete` or `delete_batch` reported deleted.
    pub deleted: u64,
    pub extend: u64,
    pub extend_batch: u64,
    /// Most receipts in one `extend_batch`.
    pub largest_extend_batch: usize,
    /// Leases that `extend` or `extend_batch` reported extended.
    pub extended: u64,
    pub release: u64,
    pub dead_letter: u64,
}

impl QueueCalls {
    /// Every call that extends a visibility timeout, single or batch.
    pub fn extend_calls(&self) -> u64 {
        self.extend + self.extend_batch
    }

    /// Every call that deletes, single or batch.
    pub fn delete_calls(&self) -> u64 {
        self.delete + self.delete_batch
    }
}

/// The real queue, with every call the sender makes through it counted.
pub struct CountingQueue {
    inner: Arc<dyn MessageQueue>,
    calls: Arc<Mutex<QueueCalls>>,
}

/// Reads what a [`CountingQueue`] counted, while the sender runs or after.
#[derive(Clone)]
pub struct CallCounter(Arc<Mutex<QueueCalls>>);

impl CallCounter {
    pub fn snapshot(&self) -> QueueCalls {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl CountingQueue {
    /// Opens `url` (its own handle, as a separate sender process would have) and counts.
    pub async fn open(url: &str) -> (Arc<dyn MessageQueue>, CallCounter) {
        let inner = message_queue::open(url).await.expect("open queue");
        let calls = Arc::new(Mutex::new(QueueCalls::default()));
        let counter = CallCounter(calls.clone());
        (Arc::new(Self { inner, calls }), counter)
    }

    fn calls(&self) -> MutexGuard<'_, QueueCalls> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn oks(results: &[Result<(), QueueError>]) -> u64 {
    results.iter().filter(|r| r.is_ok()).count() as u64
}

#[async_trait::async_trait]
impl MessageQueue for CountingQueue {
    async fn send_batch(&self, messages: Vec<OutgoingMessage>) -> message_queue::Result<()> {
        self.inner.send_batch(messages).await
    }

    async fn receive(
        &self,
        max: u32,
        wait: Duration,
        visibility: Duration,
    ) -> message_queue::Result<Vec<Delivery>> {
        let got = self.inner.receive(max, wait, visibility).await;
        let mut calls = self.calls();
        calls.receive += 1;
        if let Ok(got) = &got
            && !got.is_empty()
        {
            calls.receive_with_messages += 1;
            calls.received += got.len() as u64;
        }
        got
    }

    async fn delete(&self, receipt: &Receipt) -> message_queue::Result<()> {
        let result = self.inner.delete(receipt).await;
        let mut calls = self.calls();
        calls.delete += 1;
        calls.deleted += u64::from(result.is_ok());
        result
    }

    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> message_queue::Result<()> {
        let result = self.inner.extend(receipt, visibility).await;
        let mut calls = self.calls();
        calls.extend += 1;
        calls.extended += u64::from(result.is_ok());
        result
    }

    async fn delete_batch(&self, receipts: &[Receipt]) -> Vec<message_queue::Result<()>> {
        let results = self.inner.delete_batch(receipts).await;
        let mut calls = self.calls();
        calls.delete_batch += 1;
        calls.largest_delete_batch = calls.largest_delete_batch.max(receipts.len());
        calls.deleted += oks(&results);
        results
    }

    async fn extend_batch(
        &self,
        receipts: &[Receipt],
        visibility: Duration,
    ) -> Vec<message_queue::Result<()>> {
        let results = self.inner.extend_batch(receipts, visibility).await;
        let mut calls = self.calls();
        calls.extend_batch += 1;
        calls.largest_extend_batch = calls.largest_extend_batch.max(receipts.len());
        calls.extended += oks(&results);
        results
    }

    async fn release(&self, receipt: &Receipt, delay: Duration) -> message_queue::Result<()> {
        self.calls().release += 1;
        self.inner.release(receipt, delay).await
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> message_queue::Result<()> {
        self.calls().dead_letter += 1;
        self.inner.dead_letter(delivery, reason).await
    }

    async fn dead_letters(&self, max: u32) -> message_queue::Result<Vec<DeadLetter>> {
        self.inner.dead_letters(max).await
    }

    async fn approximate_depth(&self) -> message_queue::Result<u64> {
        self.inner.approximate_depth().await
    }
}
