//! End-to-end pipeline benchmark: the three services as processes (see `e2e::Pipeline`), R
//! recipes uploaded and stored first, then N makes uploaded as fast as possible. Reports makes/s
//! end to end and upload→stored latency per make (the make's `record_time` from ListMakes
//! against the wall-clock time its upload finished), and on the AWS backends the AWS calls per
//! make, read from the counter `scripts/lib/moto_server.py` keeps.
//!
//! ```sh
//! cargo build -p e2e -p comparison -p sender -p watcher
//! target/debug/pipeline-bench --backend embedded --makes 500
//! AWS_ENDPOINT_URL=http://127.0.0.1:5091 target/debug/pipeline-bench --backend aws-poll
//! ```

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use e2e::workload::{Upload, makes, recipes};
use e2e::{Backend, Pipeline};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BackendArg {
    Embedded,
    AwsPoll,
    AwsEvents,
}

#[derive(Debug, Parser)]
#[command(about = "End-to-end pipeline benchmark: makes/s, upload→stored latency, AWS calls")]
struct Args {
    #[arg(long, value_enum, default_value = "embedded")]
    backend: BackendArg,
    /// Recipes uploaded (and stored) before the makes; makes go round-robin over them.
    #[arg(long, default_value_t = 10)]
    recipes: usize,
    /// Makes uploaded; default 500 embedded, 300 on AWS.
    #[arg(long)]
    makes: Option<usize>,
    /// Uploads in flight at once.
    #[arg(long, default_value_t = 16)]
    upload_concurrency: usize,
    /// How often the bench asks the comparison service how many makes are stored. Each check
    /// costs AWS calls of its own, counted separately and subtracted.
    #[arg(long, default_value = "2s", value_parser = parse_secs)]
    check_interval: Duration,
    /// Overrides a service setting, e.g. `--set SENDER_CONCURRENCY=32` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// Give up after this long.
    #[arg(long, default_value = "900s", value_parser = parse_secs)]
    deadline: Duration,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let n = s.strip_suffix('s').unwrap_or(s);
    n.parse::<f64>()
        .map(Duration::from_secs_f64)
        .map_err(|e| format!("{s}: {e} (seconds, e.g. 2s)"))
}

type Calls = BTreeMap<String, BTreeMap<String, i64>>;

/// The emulator's call counter (`scripts/lib/moto_server.py`), over plain HTTP/1.0.
struct CallCounter {
    host_port: String,
}

impl CallCounter {
    fn from_env() -> anyhow::Result<Self> {
        let url = std::env::var("AWS_ENDPOINT_URL").context("AWS_ENDPOINT_URL")?;
        let host_port = url
            .strip_prefix("http://")
            .context("AWS_ENDPOINT_URL must be http://host:port")?
            .trim_end_matches('/')
            .to_string();
        Ok(Self { host_port })
    }

    fn request(&self, method: &str, path: &str) -> anyhow::Result<String> {
        let mut stream = std::net::TcpStream::connect(&self.host_port)?;
        write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nContent-Length: 0\r\n\r\n",
            self.host_port
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .context("an HTTP response")?;
        if !head.starts_with("HTTP/1.0 2") && !head.starts_with("HTTP/1.1 2") {
            bail!(
                "{method} {path}: {}; is the emulator scripts/lib/moto_server.py?",
                head.lines().next().unwrap_or("")
            );
        }
        Ok(body.to_string())
    }

    fn reset(&self) -> anyhow::Result<()> {
        self.request("POST", "/_recipe_mesh/calls/reset").map(drop)
    }

    fn read(&self) -> anyhow::Result<Calls> {
        Ok(serde_json::from_str(
            &self.request("GET", "/_recipe_mesh/calls")?,
        )?)
    }
}

fn subtract(total: &mut Calls, other: &Calls, times: i64) {
    for (service, ops) in other {
        for (op, n) in ops {
            *total
                .entry(service.clone())
                .or_default()
                .entry(op.clone())
                .or_default() -= n * times;
        }
    }
}

/// Drops the run id from table and queue names (`store-1a2b…` → `store`).
fn normalise(calls: Calls, run_id: &str) -> Calls {
    let suffix = format!("-{run_id}");
    calls
        .into_iter()
        .map(|(service, ops)| {
            let mut out: BTreeMap<String, i64> = BTreeMap::new();
            for (op, n) in ops {
                *out.entry(op.replace(&suffix, "")).or_default() += n;
            }
            (service, out)
        })
        .collect()
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Uploads the files, `concurrency` at a time; returns each key's upload (start, end) times.
async fn upload_timed(
    p: &Pipeline,
    files: &[Upload],
    concurrency: usize,
) -> BTreeMap<String, (SystemTime, SystemTime)> {
    futures::stream::iter(files)
        .map(|f| async move {
            let start = SystemTime::now();
            p.upload(&f.key, &f.bytes).await;
            (f.key.clone(), (start, SystemTime::now()))
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

/// Waits until `want` makes are stored, checking every `interval`; returns the checks made.
async fn wait_stored(p: &Pipeline, want: u64, interval: Duration, deadline: Duration) -> u64 {
    let start = Instant::now();
    let mut checks = 0;
    loop {
        checks += 1;
        let stored = p.stored_makes().await;
        if stored >= want {
            return checks;
        }
        assert!(
            start.elapsed() < deadline,
            "only {stored} of {want} makes stored after {deadline:?}\n--- sender\n{}",
            p.logs(e2e::Service::Sender)
        );
        tokio::time::sleep(interval).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let backend = match args.backend {
        BackendArg::Embedded => Backend::Embedded,
        BackendArg::AwsPoll => Backend::AwsPoll,
        BackendArg::AwsEvents => Backend::AwsEvents,
    };
    let aws = backend != Backend::Embedded;
    let n = args.makes.unwrap_or(if aws { 300 } else { 500 });
    let counter = if aws {
        let c = CallCounter::from_env()?;
        c.read()?; // fail early if the emulator has no counter
        Some(c)
    } else {
        None
    };
    eprintln!(
        "services from {}; backend {backend:?}, {} recipes, {n} makes",
        e2e::binary_dir().display(),
        args.recipes
    );

    let mut overrides = Vec::new();
    for kv in &args.settings {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set {kv}: expected KEY=VALUE"))?;
        overrides.push((k, v));
    }
    let mut p = Pipeline::new(backend, &overrides).await;
    p.start_all().await;
    let tag = "bench";
    p.upload_all(&recipes(tag, args.recipes)).await;
    // A recipe is stored once ListRecipes shows it.
    let recipes_start = Instant::now();
    loop {
        let stored = p.makes_per_recipe().await.map_or(0, |m| m.len());
        if stored >= args.recipes {
            break;
        }
        assert!(
            recipes_start.elapsed() < args.deadline,
            "recipes not stored"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("{} recipes stored", args.recipes);

    let per_recipe = n.div_ceil(args.recipes.max(1));
    let mut files = makes(tag, args.recipes, 0, per_recipe);
    files.truncate(n);
    if let Some(c) = &counter {
        c.reset()?;
    }
    let wall = Instant::now();
    let uploads = upload_timed(&p, &files, args.upload_concurrency).await;
    let upload_secs = wall.elapsed().as_secs_f64();
    eprintln!("{n} makes uploaded in {upload_secs:.2} s");
    let checks = wait_stored(&p, n as u64, args.check_interval, args.deadline).await;
    let wait_secs = wall.elapsed().as_secs_f64();
    // Let in-flight work (the last queue deletes) finish before reading the counter.
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Tables and queues are named `<role>-<run id>`: keep the role.
    let run_id = p
        .setting("COMPARISON_STORE_URL")
        .rsplit("store-")
        .next()
        .unwrap_or_default()
        .to_string();
    let during = match &counter {
        Some(c) => Some(normalise(c.read()?, &run_id)),
        None => None,
    };
    // The cost of one check, measured now the pipeline is idle: the comparison service's reads
    // of its store (the watcher's idle polling in the same window is left out).
    let per_check = match &counter {
        Some(c) => {
            c.reset()?;
            p.stored_makes().await;
            let mut calls = normalise(c.read()?, &run_id);
            for ops in calls.values_mut() {
                // DescribeTable is the comparison service's periodic health ping, not a check.
                ops.retain(|op, _| op.ends_with("@store") && !op.starts_with("DescribeTable"));
            }
            calls.retain(|_, ops| !ops.is_empty());
            Some(calls)
        }
        None => None,
    };

    // Latency: each make's record_time against the end of its upload.
    let mut latencies = Vec::with_capacity(n);
    let mut recorded_at = Vec::with_capacity(n);
    let mut last_stored = 0f64;
    let mut stored = 0usize;
    for r in 0..args.recipes {
        for m in p.list_makes(&format!("{tag}-r{r:03}")).await {
            let key = uploads
                .keys()
                .find(|k| m.source.ends_with(k.as_str()))
                .with_context(|| format!("no upload for source {}", m.source))?;
            let ts = m.record_time.context("record_time")?;
            let recorded = ts.seconds as f64 + f64::from(ts.nanos) / 1e9;
            latencies.push(recorded - unix(uploads[key].1));
            recorded_at.push(recorded);
            last_stored = last_stored.max(recorded);
            stored += 1;
        }
    }
    if stored != n {
        bail!("{stored} makes stored, {n} uploaded");
    }
    latencies.sort_by(f64::total_cmp);
    let first_upload = uploads
        .values()
        .map(|(s, _)| unix(*s))
        .fold(f64::INFINITY, f64::min);
    let span = last_stored - first_upload;
    println!(
        "backend        {:?} {}",
        args.backend,
        args.settings.join(" ")
    );
    println!(
        "makes          {n} over {} recipes, {} uploads in flight",
        args.recipes, args.upload_concurrency
    );
    println!(
        "uploads took   {upload_secs:.2} s ({:.0}/s)",
        n as f64 / upload_secs
    );
    println!(
        "end to end     {:.1} makes/s ({n} makes, first upload → last stored {span:.2} s; \
         bench saw all stored after {wait_secs:.1} s)",
        n as f64 / span
    );
    println!(
        "latency        p50 {:.3} s  p95 {:.3} s  max {:.3} s  (upload done → record_time)",
        percentile(&latencies, 50.0),
        percentile(&latencies, 95.0),
        latencies[latencies.len() - 1]
    );
    // Stored rate in each third of the makes (by record time): does it hold as tables grow?
    recorded_at.sort_by(f64::total_cmp);
    let thirds: Vec<String> = (0..3)
        .map(|i| {
            let (a, b) = (i * n / 3, ((i + 1) * n / 3).max(1) - 1);
            let from = if i == 0 {
                first_upload
            } else {
                recorded_at[a - 1]
            };
            format!("{:.1}", (b + 1 - a) as f64 / (recorded_at[b] - from))
        })
        .collect();
    println!(
        "stored/s       by thirds of the makes: {}",
        thirds.join(" / ")
    );
    if let (Some(mut calls), Some(per_check)) = (during, per_check) {
        subtract(&mut calls, &per_check, checks as i64);
        // The bench's own uploads.
        if let Some(put) = calls
            .get_mut("s3")
            .and_then(|ops| ops.get_mut("PUT object"))
        {
            *put -= n as i64;
        }
        let check_total: i64 = per_check.values().flat_map(|o| o.values()).sum();
        println!(
            "AWS calls per make (pipeline only: minus the bench's {n} uploads and its {checks} \
             progress checks of {check_total} calls each)"
        );
        let mut total = 0i64;
        for (service, ops) in &calls {
            for (op, count) in ops {
                if *count != 0 {
                    println!(
                        "  {service:<9} {op:<40} {:>7.3}  ({count})",
                        *count as f64 / n as f64
                    );
                }
                total += count;
            }
        }
        println!(
            "  {:<50} {:>7.3}  ({total})",
            "total",
            total as f64 / n as f64
        );
        println!("per check: {per_check:?}");
    }
    Ok(())
}
