//! Runs the whole pipeline — watcher, sender and comparison as separate processes, the way
//! they are deployed — over the embedded backends (a folder, SQLite queue, ledger and store) or
//! the AWS ones on the emulator `AWS_ENDPOINT_URL` points at, and lets a test upload files,
//! kill or stop services, read back what was stored, and scrape each service's admin port.
//!
//! The binaries are the ones cargo built beside the test (`target/<profile>/`); `scripts/test.sh`
//! builds them before the tests run. [`Pipeline::in_containers`] runs the images instead
//! ([`containers`]).

pub mod containers;
pub mod traces;
pub mod workload;

use message_queue::MessageQueue;
use object_source::ObjectSource;
use recipe_proto::recipe::v1 as pb;
use recipe_proto::recipe::v1::comparison_service_client::ComparisonServiceClient;
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Which backends the services run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Local folder, SQLite queue, ledger and store: no AWS.
    Embedded,
    /// S3, SQS and DynamoDB on the emulator, the watcher polling the bucket.
    AwsPoll,
    /// S3, SQS and DynamoDB on the emulator, the watcher consuming S3 event notifications.
    AwsEvents,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Service {
    Comparison,
    Sender,
    Watcher,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::Comparison, Service::Sender, Service::Watcher];

    pub fn binary(self) -> &'static str {
        match self {
            Service::Comparison => "comparison",
            Service::Sender => "sender",
            Service::Watcher => "watcher",
        }
    }

    /// The variable that sets the service's admin port (metrics and probes).
    pub fn admin_variable(self) -> &'static str {
        match self {
            Service::Comparison => "COMPARISON_ADMIN_LISTEN",
            Service::Sender => "SENDER_ADMIN_LISTEN",
            Service::Watcher => "WATCHER_ADMIN_LISTEN",
        }
    }
}

/// The running pipeline. Dropping it kills every process.
pub struct Pipeline {
    pub backend: Backend,
    pub dir: tempfile::TempDir,
    pub comparison_addr: SocketAddr,
    /// Each service's admin port: /metrics, /livez, /readyz.
    admin: BTreeMap<Service, SocketAddr>,
    /// Settings every service gets (processes: on top of the test's own environment).
    env: BTreeMap<String, String>,
    runner: Runner,
    running: BTreeMap<Service, Running>,
    /// The test's handle on the bucket or folder, for uploads.
    pub source: Arc<dyn ObjectSource>,
    /// The test's handle on the job queue, for dead letters and depth.
    pub queue: Arc<dyn MessageQueue>,
    /// Held while an AWS pipeline runs: the emulator serialises DynamoDB, so two pipelines at
    /// once would only slow each other down past their timeouts.
    _emulator_turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

/// How the services run.
enum Runner {
    /// The binaries beside the test, as child processes.
    Processes,
    /// The images under test, as containers on their own network.
    Containers {
        images: containers::Images,
        network: containers::Network,
        /// Container names are `{prefix}-{service}`.
        prefix: String,
    },
}

/// A started service.
enum Running {
    Process(Child),
    Container(String),
}

static EMULATOR: std::sync::LazyLock<Arc<tokio::sync::Mutex<()>>> =
    std::sync::LazyLock::new(|| Arc::new(tokio::sync::Mutex::new(())));

/// Directory of the service binaries (`target/<profile>/`): the executable's own folder for a
/// binary of this package (`target/<profile>/pipeline-bench`), or the parent of its `deps/`
/// folder for a test executable (`target/<profile>/deps/embedded-…`).
pub fn binary_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("executable path");
    let services = [Service::Comparison, Service::Sender, Service::Watcher];
    let own = exe.parent().expect("executable in a folder");
    let candidates = [Some(own), own.parent()];
    for dir in candidates.into_iter().flatten() {
        if services.iter().all(|s| dir.join(s.binary()).exists()) {
            return dir.to_path_buf();
        }
    }
    let dir = own.parent().unwrap_or(own);
    for service in services {
        let path = dir.join(service.binary());
        assert!(
            path.exists(),
            "{} is missing: build the services first with `cargo test --workspace --no-run` \
             (scripts/test.sh does)",
            path.display()
        );
    }
    dir.to_path_buf()
}

/// `n` distinct loopback addresses nothing listens on (all bound at once, then released).
fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("a bound address"))
        .collect()
}

fn require_emulator() {
    if std::env::var_os("AWS_ENDPOINT_URL").is_none_or(|v| v.is_empty()) {
        panic!(
            "AWS_ENDPOINT_URL is not set, so the AWS pipeline tests have nothing to run \
             against. Run scripts/test.sh (it starts moto)"
        );
    }
}

impl Pipeline {
    /// Creates the backends (`watcher setup`, `comparison migrate`) and starts nothing yet.
    /// `extra` overrides settings, e.g. shorter backoffs.
    pub async fn new(backend: Backend, extra: &[(&str, &str)]) -> Self {
        Self::build(backend, extra, Runner::Processes).await
    }

    /// As [`Pipeline::new`] on the AWS backends (the watcher polling), with every service
    /// running as a container of `images` on a private network of its own. The test reaches
    /// the comparison service and the admin ports through ports published on 127.0.0.1.
    pub async fn in_containers(images: containers::Images, extra: &[(&str, &str)]) -> Self {
        let prefix = format!(
            "recipe-mesh-e2e-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let network = containers::Network::create(&prefix).expect("a Docker network");
        let runner = Runner::Containers {
            images,
            network,
            prefix,
        };
        Self::build(Backend::AwsPoll, extra, runner).await
    }

    async fn build(backend: Backend, extra: &[(&str, &str)], runner: Runner) -> Self {
        let emulator_turn = match backend {
            Backend::Embedded => None,
            Backend::AwsPoll | Backend::AwsEvents => Some(EMULATOR.clone().lock_owned().await),
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let addrs = free_addrs(1 + Service::ALL.len());
        let comparison_addr = addrs[0];
        let admin: BTreeMap<Service, SocketAddr> =
            Service::ALL.into_iter().zip(addrs[1..].to_vec()).collect();
        let mut env = settings(backend, dir.path(), comparison_addr, &admin);
        if let Runner::Containers { network, .. } = &runner {
            container_settings(&mut env, network);
        }
        for (k, v) in extra {
            env.insert((*k).to_string(), (*v).to_string());
        }
        std::fs::create_dir_all(dir.path().join("logs")).expect("logs folder");
        // Buckets, queues, ledger and table first: the services expect them.
        run_one_off(dir.path(), &env, &runner, Service::Watcher, &["setup"]);
        run_one_off(dir.path(), &env, &runner, Service::Comparison, &["migrate"]);
        Self {
            backend,
            comparison_addr,
            admin,
            source: object_source::open(&env["SOURCE_URL"])
                .await
                .expect("source"),
            queue: message_queue::open(&env["JOBS_QUEUE_URL"])
                .await
                .expect("job queue"),
            env,
            runner,
            running: BTreeMap::new(),
            dir,
            _emulator_turn: emulator_turn,
        }
    }

    pub fn setting(&self, name: &str) -> &str {
        &self.env[name]
    }

    /// Runs a one-off subcommand (setup, migrate, dead-letters) and returns its stdout.
    pub fn run_to_end(&self, service: Service, args: &[&str]) -> String {
        run_one_off(self.dir.path(), &self.env, &self.runner, service, args)
    }

    /// The end of a service's log so far (all its runs), for failure messages.
    pub fn logs(&self, service: Service) -> String {
        if let Some(Running::Container(name)) = self.running.get(&service) {
            save_container_log(self.dir.path(), service, name);
        }
        read_log(self.dir.path(), service)
    }

    pub async fn start(&mut self, service: Service) {
        assert!(
            !self.running.contains_key(&service),
            "{service:?} runs already"
        );
        let started = match &self.runner {
            Runner::Processes => {
                let log = log_file(self.dir.path(), service);
                let child = command(self.dir.path(), &self.env, service)
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .expect("start a service");
                Running::Process(child)
            }
            Runner::Containers {
                images,
                network,
                prefix,
            } => {
                let name = format!("{prefix}-{}", service.binary());
                let mut args = vec![
                    "run".to_string(),
                    "--detach".into(),
                    "--name".into(),
                    name.clone(),
                    "--network".into(),
                    network.name.clone(),
                    "--network-alias".into(),
                    service.binary().into(),
                ];
                args.extend(containers::HARDENING.map(String::from));
                let mut publish = vec![(self.admin[&service], containers::admin_port(service))];
                if service == Service::Comparison {
                    publish.push((self.comparison_addr, containers::COMPARISON_GRPC_PORT));
                }
                for (host, port) in publish {
                    args.extend(["--publish".into(), format!("{host}:{port}")]);
                }
                args.extend(env_args(&self.env));
                args.push(images.of(service));
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                containers::docker(&args)
                    .unwrap_or_else(|e| panic!("start {service:?} as a container: {e:#}"));
                Running::Container(name)
            }
        };
        self.running.insert(service, started);
        if service == Service::Comparison {
            self.wait_for_comparison().await;
        }
    }

    pub async fn start_all(&mut self) {
        for service in [Service::Comparison, Service::Sender, Service::Watcher] {
            self.start(service).await;
        }
    }

    /// SIGKILL: no chance to clean up, as when a node dies.
    pub fn kill(&mut self, service: Service) {
        match self.running.remove(&service) {
            Some(Running::Process(mut child)) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Some(Running::Container(name)) => {
                let _ = containers::docker(&["kill", &name]);
                self.remove_container(service, &name);
            }
            None => {}
        }
    }

    /// SIGTERM, then waits for the service to exit on its own (as Kubernetes does before its
    /// grace period ends; a container gets 30 s before Docker's SIGKILL). Panics unless it
    /// exits with status 0. Returns how long that took.
    pub fn terminate(&mut self, service: Service) -> Duration {
        let start = Instant::now();
        match self.running.remove(&service) {
            Some(Running::Process(mut child)) => {
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                let status = child.wait().expect("wait for the service");
                assert!(
                    status.success(),
                    "{service:?} exited with {status} after SIGTERM\n{}",
                    self.logs(service)
                );
            }
            Some(Running::Container(name)) => {
                containers::docker(&["stop", "--time", "30", &name])
                    .unwrap_or_else(|e| panic!("stop {name}: {e:#}"));
                let elapsed = start.elapsed();
                let (_, code) = containers::state(&name).expect("container state");
                self.remove_container(service, &name);
                assert_eq!(
                    code,
                    0,
                    "{service:?} exited with {code} after SIGTERM ({elapsed:?})\n{}",
                    self.logs(service)
                );
            }
            None => return Duration::ZERO,
        }
        start.elapsed()
    }

    /// Keeps a stopped container's log in the pipeline's log folder, then removes it.
    fn remove_container(&self, service: Service, name: &str) {
        save_container_log(self.dir.path(), service, name);
        let _ = containers::docker(&["rm", "--force", name]);
    }

    /// Whether `service` is still up, or how it ended.
    fn exited(&mut self, service: Service) -> Option<String> {
        match self.running.get_mut(&service)? {
            Running::Process(child) => match child.try_wait() {
                Ok(Some(status)) => Some(status.to_string()),
                _ => None,
            },
            Running::Container(name) => match containers::state(name) {
                Ok((false, code)) => Some(format!("exit code {code}")),
                _ => None,
            },
        }
    }

    async fn wait_for_comparison(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut client) = self.try_client().await
                && client
                    .list_recipes(pb::ListRecipesRequest::default())
                    .await
                    .is_ok()
            {
                return;
            }
            if let Some(status) = self.exited(Service::Comparison) {
                panic!(
                    "comparison exited with {status}\n{}",
                    self.logs(Service::Comparison)
                );
            }
            assert!(
                Instant::now() < deadline,
                "comparison did not answer within 30 s\n{}",
                self.logs(Service::Comparison)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn try_client(&self) -> anyhow::Result<ComparisonServiceClient<Channel>> {
        Ok(ComparisonServiceClient::connect(format!("http://{}", self.comparison_addr)).await?)
    }

    pub async fn client(&self) -> ComparisonServiceClient<Channel> {
        self.try_client().await.expect("connect to comparison")
    }

    /// Where `service` serves /metrics, /livez and /readyz.
    pub fn admin_addr(&self, service: Service) -> SocketAddr {
        self.admin[&service]
    }

    /// The running `service`'s /metrics page (Prometheus text format).
    pub async fn metrics(&self, service: Service) -> String {
        let addr = self.admin_addr(service);
        match admin_http::scrape::get(addr, "/metrics").await {
            Ok(got) if got.status == 200 => got.body,
            Ok(got) => panic!(
                "{service:?} /metrics answered {}: {}\n{}",
                got.status,
                got.body,
                self.logs(service)
            ),
            Err(e) => panic!(
                "{service:?} /metrics on {addr}: {e:#}\n{}",
                self.logs(service)
            ),
        }
    }

    /// Waits until the sum of `service`'s series `name` with (at least) `labels` is `want`;
    /// returns the metrics page then, or panics with the last one and the service's log.
    pub async fn wait_for_metric(
        &self,
        service: Service,
        name: &str,
        labels: &[(&str, &str)],
        want: f64,
        deadline: Duration,
    ) -> String {
        let start = Instant::now();
        loop {
            let text = self.metrics(service).await;
            let got = admin_http::scrape::sum(&text, name, labels);
            if got == want {
                return text;
            }
            if start.elapsed() > deadline {
                panic!(
                    "{service:?}: {name}{labels:?} is {got}, not {want}, after {deadline:?}\n\
                     {text}\n--- log\n{}",
                    self.logs(service)
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub async fn upload(&self, key: &str, bytes: &[u8]) {
        self.source
            .put(key, bytes.to_vec())
            .await
            .unwrap_or_else(|e| panic!("upload {key}: {e}"));
    }

    /// Makes stored per recipe, read through the service (None while it is down).
    pub async fn makes_per_recipe(&self) -> Option<BTreeMap<String, u64>> {
        let mut client = self.try_client().await.ok()?;
        let mut out = BTreeMap::new();
        let mut token = String::new();
        loop {
            let page = client
                .list_recipes(pb::ListRecipesRequest {
                    page_size: 100,
                    page_token: token.clone(),
                })
                .await
                .ok()?
                .into_inner();
            for r in page.recipes {
                let stats = client
                    .get_recipe_stats(pb::GetRecipeStatsRequest {
                        recipe_id: r.recipe_id.clone(),
                        top: 1,
                    })
                    .await
                    .ok()?
                    .into_inner();
                out.insert(r.recipe_id, stats.makes);
            }
            if page.next_page_token.is_empty() {
                return Some(out);
            }
            token = page.next_page_token;
        }
    }

    pub async fn stored_makes(&self) -> u64 {
        self.makes_per_recipe()
            .await
            .map_or(0, |m| m.values().sum())
    }

    /// Waits until `done` holds for the stored makes per recipe, or panics with the logs.
    pub async fn wait_until(
        &self,
        what: &str,
        deadline: Duration,
        done: impl Fn(&BTreeMap<String, u64>) -> bool,
    ) -> BTreeMap<String, u64> {
        let start = Instant::now();
        let mut last = BTreeMap::new();
        while start.elapsed() < deadline {
            if let Some(now) = self.makes_per_recipe().await {
                if done(&now) {
                    return now;
                }
                last = now;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!(
            "{what}: not reached within {deadline:?}; stored {} makes: {last:?}\n\
             --- watcher\n{}\n--- sender\n{}\n--- comparison\n{}",
            last.values().sum::<u64>(),
            self.logs(Service::Watcher),
            self.logs(Service::Sender),
            self.logs(Service::Comparison)
        );
    }

    /// Uploads recipe files and waits until every one is stored, as a cook's original exists
    /// before its makes (a make of a recipe still unknown after its retries is dead-lettered).
    pub async fn upload_recipes(&self, files: &[workload::Upload], deadline: Duration) {
        self.upload_all(files).await;
        let n = files.len();
        self.wait_until("the recipes stored", deadline, |m| m.len() >= n)
            .await;
    }

    /// Waits until `recipe_id` has `n` makes and returns them (through ListMakes).
    pub async fn wait_for_makes(
        &self,
        recipe_id: &str,
        n: u64,
        deadline: Duration,
    ) -> Vec<pb::Make> {
        self.wait_until(&format!("{n} makes of {recipe_id}"), deadline, |m| {
            m.get(recipe_id).copied().unwrap_or(0) >= n
        })
        .await;
        self.list_makes(recipe_id).await
    }

    /// Every make of every recipe, through ListMakes.
    pub async fn list_makes(&self, recipe_id: &str) -> Vec<pb::Make> {
        let mut client = self.client().await;
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page = client
                .list_makes(pb::ListMakesRequest {
                    recipe_id: recipe_id.to_string(),
                    page_size: 100,
                    page_token: token.clone(),
                })
                .await
                .expect("list makes")
                .into_inner();
            out.extend(page.makes);
            if page.next_page_token.is_empty() {
                return out;
            }
            token = page.next_page_token;
        }
    }

    /// Uploads every file, several at a time.
    pub async fn upload_all(&self, files: &[workload::Upload]) {
        for chunk in files.chunks(16) {
            let puts = chunk.iter().map(|f| self.upload(&f.key, &f.bytes));
            futures::future::join_all(puts).await;
        }
    }

    /// Checks that exactly `expected` makes per recipe are stored — in the statistics and in
    /// the list of makes, each make once — and that no job is left or dead.
    pub async fn assert_exactly(&self, expected: &BTreeMap<String, u64>) {
        let stored = self.makes_per_recipe().await.expect("comparison answers");
        assert_eq!(&stored, expected, "makes per recipe (statistics)");
        for (recipe_id, n) in expected {
            let makes = self.list_makes(recipe_id).await;
            let ids: std::collections::BTreeSet<&str> =
                makes.iter().map(|m| m.make_id.as_str()).collect();
            assert_eq!(makes.len() as u64, *n, "ListMakes of {recipe_id}");
            assert_eq!(
                ids.len(),
                makes.len(),
                "make ids of {recipe_id} are distinct"
            );
            assert!(
                makes.iter().all(|m| m.source.contains(recipe_id)),
                "each make names its source file"
            );
        }
        let dead = self.dead_letters();
        assert!(dead.is_empty(), "unexpected dead letters: {dead:?}");
    }

    /// Waits until `poison` files are dead-lettered, then checks each has a dead letter whose
    /// reason contains its word.
    pub async fn assert_dead_lettered(
        &self,
        poison: &[(workload::Upload, &str)],
        deadline: Duration,
    ) {
        let start = Instant::now();
        let dead = loop {
            let dead = self.dead_letters();
            if dead.len() >= poison.len() || start.elapsed() > deadline {
                break dead;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        assert_eq!(dead.len(), poison.len(), "{dead:#?}");
        for (file, word) in poison {
            let entry = dead
                .iter()
                .find(|d| d.to_string().contains(&file.key))
                .unwrap_or_else(|| panic!("no dead letter for {}: {dead:#?}", file.key));
            let reason = entry["reason"].as_str().expect("a reason");
            assert!(reason.contains(word), "{}: {reason}", file.key);
        }
    }

    /// The dead letters as `sender dead-letters` prints them, one JSON object each.
    pub fn dead_letters(&self) -> Vec<serde_json::Value> {
        self.run_to_end(Service::Sender, &["dead-letters"])
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("dead-letters prints JSON lines"))
            .collect()
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        for (_, running) in std::mem::take(&mut self.running) {
            match running {
                Running::Process(mut child) => {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                // Before the network, which cannot go while it has containers.
                Running::Container(name) => {
                    let _ = containers::docker(&["rm", "--force", &name]);
                }
            }
        }
    }
}

/// The settings of a pipeline on `backend` whose files live in `dir`.
fn settings(
    backend: Backend,
    dir: &Path,
    comparison_addr: SocketAddr,
    admin: &BTreeMap<Service, SocketAddr>,
) -> BTreeMap<String, String> {
    let root = dir.display().to_string();
    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        env.insert(k.to_string(), v);
    };
    set("COMPARISON_LISTEN", comparison_addr.to_string());
    for (service, addr) in admin {
        set(service.admin_variable(), addr.to_string());
    }
    set("SENDER_COMPARISON_URL", format!("http://{comparison_addr}"));
    set("RUST_LOG", "info".into());
    // Quick recovery so faults cost seconds, not minutes: a killed sender's jobs come back
    // after the visibility timeout, a killed watcher's claims after the lease.
    set("SENDER_VISIBILITY", "10s".into());
    set("SENDER_BACKOFF_BASE", "250ms".into());
    set("SENDER_BACKOFF_MAX", "3s".into());
    set("SENDER_WAIT", "2s".into());
    set("SENDER_UNKNOWN_RECIPE_ATTEMPTS", "8".into());
    set("WATCHER_POLL_INTERVAL", "250ms".into());
    set("WATCHER_SETTLE", "0s".into());
    set("WATCHER_CLAIM_LEASE", "5s".into());
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    match backend {
        Backend::Embedded => {
            set("SOURCE_URL", format!("dir://{root}/inbox"));
            set(
                "JOBS_QUEUE_URL",
                format!("sqlite://{root}/queue.db?queue=jobs&max_receive_count=20"),
            );
            set("WATCHER_LEDGER_URL", format!("sqlite://{root}/watcher.db"));
            set("COMPARISON_STORE_URL", format!("sqlite://{root}/store.db"));
        }
        Backend::AwsPoll | Backend::AwsEvents => {
            require_emulator();
            set("SOURCE_URL", format!("s3://e2e-{id}"));
            set(
                "JOBS_QUEUE_URL",
                format!("sqs://jobs-{id}?dlq=jobs-{id}-dlq"),
            );
            set("WATCHER_LEDGER_URL", format!("dynamodb://ledger-{id}"));
            set("COMPARISON_STORE_URL", format!("dynamodb://store-{id}"));
            set("WATCHER_POLL_INTERVAL", "500ms".into());
            if backend == Backend::AwsEvents {
                set("WATCHER_MODE", "events".into());
                set(
                    "WATCHER_EVENTS_QUEUE_URL",
                    format!("sqs://events-{id}?dlq=events-{id}-dlq"),
                );
            }
        }
    }
    env
}

/// What changes when the services run as containers: they listen on every interface of
/// their own network namespace on the images' ports, find the comparison service by its
/// network alias and the emulator through the network's gateway, and get the AWS settings
/// explicitly (a container inherits nothing from the test's environment).
fn container_settings(env: &mut BTreeMap<String, String>, network: &containers::Network) {
    let mut set = |k: &str, v: String| {
        env.insert(k.to_string(), v);
    };
    let port = containers::COMPARISON_GRPC_PORT;
    set("COMPARISON_LISTEN", format!("0.0.0.0:{port}"));
    for service in Service::ALL {
        let admin = containers::admin_port(service);
        set(service.admin_variable(), format!("0.0.0.0:{admin}"));
    }
    set("SENDER_COMPARISON_URL", format!("http://comparison:{port}"));
    set(
        "AWS_ENDPOINT_URL",
        network
            .emulator_endpoint()
            .expect("the emulator's address for containers"),
    );
    for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"] {
        if let Ok(value) = std::env::var(name) {
            set(name, value);
        }
    }
}

/// `--env K=V` for each setting.
fn env_args(env: &BTreeMap<String, String>) -> Vec<String> {
    env.iter()
        .flat_map(|(k, v)| ["--env".to_string(), format!("{k}={v}")])
        .collect()
}

/// Appends what a container has logged to the service's log file, replacing what an earlier
/// call saved of the same container.
fn save_container_log(dir: &Path, service: Service, name: &str) {
    let path = dir.join("logs").join(format!("{}.log", service.binary()));
    let saved = dir.join("logs").join(format!("{name}.saved"));
    let before = std::fs::read_to_string(&saved).unwrap_or_default();
    let now = containers::logs(name);
    let new = now.strip_prefix(&before).unwrap_or(&now);
    if let Ok(mut file) = OpenOptions::new().create(true).append(true).open(&path) {
        use std::io::Write;
        let _ = file.write_all(new.as_bytes());
    }
    let _ = std::fs::write(saved, now);
}

fn command(dir: &Path, env: &BTreeMap<String, String>, service: Service) -> Command {
    let mut cmd = Command::new(binary_dir().join(service.binary()));
    cmd.envs(env).current_dir(dir);
    cmd
}

fn log_file(dir: &Path, service: Service) -> std::fs::File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("logs").join(format!("{}.log", service.binary())))
        .expect("log file")
}

fn read_log(dir: &Path, service: Service) -> String {
    let path = dir.join("logs").join(format!("{}.log", service.binary()));
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(60).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

fn run_one_off(
    dir: &Path,
    env: &BTreeMap<String, String>,
    runner: &Runner,
    service: Service,
    args: &[&str],
) -> String {
    let mut cmd = match runner {
        Runner::Processes => command(dir, env, service),
        Runner::Containers {
            images, network, ..
        } => {
            let mut cmd = Command::new("docker");
            cmd.args(["run", "--rm", "--network", &network.name])
                .args(containers::HARDENING)
                .args(env_args(env))
                .arg(images.of(service));
            cmd
        }
    };
    let out = cmd
        .args(args)
        .stderr(log_file(dir, service))
        .output()
        .expect("run a service command");
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}\n{}",
        service.binary(),
        out.status,
        read_log(dir, service)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
