//! Measures what recording a make costs next to the cheapest possible call on the same server.
//!
//! Starts a comparison server in-process (or uses `--addr`), creates the example recipe, then
//! runs two phases with the same concurrency: `grpc.health.v1.Health/Check` (an empty unary RPC:
//! the floor set by gRPC, HTTP/2 and the runtime) and `RecordMake` with a unique idempotency key
//! per call (diff + one store transaction). Prints throughput and latency percentiles for each
//! and their ratios, so figures compare within one run on one machine.

use anyhow::Context;
use clap::Parser;
use futures::StreamExt;
use recipe_proto::recipe::v1 as pb;
use recipe_proto::recipe::v1::comparison_service_client::ComparisonServiceClient;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

#[derive(Debug, Parser)]
#[command(
    name = "recipe-load",
    about = "gRPC load run against the comparison service"
)]
struct Args {
    /// Store for the in-process server (ignored with --addr); default: a temporary SQLite file.
    #[arg(long)]
    store: Option<String>,
    /// Use a running server instead of starting one.
    #[arg(long)]
    addr: Option<String>,
    /// Calls per phase.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

struct Phase {
    name: &'static str,
    elapsed: Duration,
    latencies: Vec<Duration>,
    errors: usize,
}

impl Phase {
    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        let idx = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(idx).copied().unwrap_or_default()
    }

    fn print(&self) {
        println!(
            "{:<12} {:>9.0} calls/s   p50 {:>8.3} ms   p99 {:>8.3} ms   errors {}",
            self.name,
            self.per_second(),
            ms(self.percentile(0.50)),
            ms(self.percentile(0.99)),
            self.errors
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs `requests` calls of `call` with `concurrency` in flight; latencies sorted ascending.
async fn run<F, Fut>(name: &'static str, requests: usize, concurrency: usize, call: F) -> Phase
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), tonic::Status>>,
{
    let start = Instant::now();
    let results: Vec<_> = futures::stream::iter(0..requests)
        .map(|i| {
            let fut = call(i);
            async move {
                let t = Instant::now();
                fut.await.map(|()| t.elapsed())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = start.elapsed();
    let errors = results.iter().filter(|r| r.is_err()).count();
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        eprintln!("{name}: first error: {e}");
    }
    let mut latencies: Vec<_> = results.into_iter().filter_map(Result::ok).collect();
    latencies.sort();
    Phase {
        name,
        elapsed,
        latencies,
        errors,
    }
}

fn example(path: &str) -> anyhow::Result<pb::Recipe> {
    let full = format!("{}/../../examples/{path}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&full).with_context(|| format!("reading {full}"))?;
    let r = recipe_model::parse_json(&bytes).with_context(|| format!("parsing {full}"))?;
    Ok(comparison::convert::recipe_to_pb(&r))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let (addr, server) = match &args.addr {
        Some(addr) => (addr.clone(), None),
        None => {
            let store = args
                .store
                .clone()
                .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("load.db").display()));
            let settings = comparison::config::ServeSettings::new("127.0.0.1:0".parse()?, store);
            let app = comparison::startup::Application::build(settings).await?;
            let addr = app.local_addr()?.to_string();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let handle = tokio::spawn(app.run_until(async {
                let _ = stopped.await;
            }));
            (addr, Some((stop, handle)))
        }
    };
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let api = ComparisonServiceClient::new(channel.clone());
    let health = tonic_health::pb::health_client::HealthClient::new(channel);

    let recipe = example("recipes/pancakes.json")?;
    let make = example("makes/pancakes-double-batch.json")?;
    let recipe_id = recipe.recipe_id.clone();
    api.clone()
        .update_recipe(pb::UpdateRecipeRequest {
            recipe: Some(recipe),
            allow_missing: true,
            ..Default::default()
        })
        .await
        .context("creating the example recipe")?;

    println!(
        "server {addr}, {} calls per phase, {} in flight",
        args.requests, args.concurrency
    );
    // Untimed warm-up: connections, worker threads and the store's caches, so the first timed
    // phase does not pay for them.
    let check = |_| {
        let mut health = health.clone();
        async move {
            health
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .map(|_| ())
        }
    };
    run("warm-up", args.requests.min(500), args.concurrency, check).await;
    let empty = run("Health/Check", args.requests, args.concurrency, check).await;
    let run_id = std::process::id();
    let record = run("RecordMake", args.requests, args.concurrency, |i| {
        let mut api = api.clone();
        let make = make.clone();
        async move {
            api.record_make(pb::RecordMakeRequest {
                make: Some(make),
                idempotency_key: format!("load-{run_id}-{i}"),
                source: String::new(),
                recipe_version: 0,
            })
            .await
            .map(|_| ())
        }
    })
    .await;
    empty.print();
    record.print();
    println!(
        "RecordMake / empty: throughput x{:.3}, p99 latency x{:.2}",
        record.per_second() / empty.per_second(),
        ms(record.percentile(0.99)) / ms(empty.percentile(0.99)).max(f64::MIN_POSITIVE)
    );
    let stats = api
        .clone()
        .get_recipe_stats(pb::GetRecipeStatsRequest { recipe_id, top: 1 })
        .await?
        .into_inner();
    println!("recipe statistics count {} makes", stats.makes);

    if let Some((stop, handle)) = server {
        let _ = stop.send(());
        handle.await??;
    }
    anyhow::ensure!(
        empty.errors == 0 && record.errors == 0,
        "calls failed during the run"
    );
    Ok(())
}
