//! A real pipeline for one test: a temporary folder as the bucket (`dir://`), an embedded SQLite
//! queue file, an in-process comparison service on 127.0.0.1 with its own SQLite store, and the
//! sender built from `Settings` with short timings. Tests write files and jobs themselves and
//! look at the queue, the dead letters and the comparison service's answers.
#![allow(dead_code)] // each test binary uses a different part of this helper

use comparison::config::ServeSettings;
use message_queue::{DeadLetter, MessageQueue, OutgoingMessage};
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
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
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
            telemetry::init(telemetry::LogFormat::Text);
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
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl RunningSender {
    pub fn snapshot(&self) -> StatsSnapshot {
        self.stats.snapshot()
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
    let app = Application::build(settings).await.expect("sender starts");
    let stats = app.stats();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    RunningSender {
        stats,
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
