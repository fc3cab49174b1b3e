//! The built `sender` binary: the `dead-letters` subcommand operators use, and configuration
//! from flags and environment variables (which only a separate process can set safely).

mod support;

use clap::Parser;
use message_queue::OutgoingMessage;
use pipeline_job::JobKind;
use sender::config::{Cli, Command, Settings};
use std::process::Output;
use std::time::Duration;
use support::Pipeline;

/// Runs the binary with a clean sender environment plus `env`.
fn sender(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sender"));
    cmd.args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("SENDER_") || name == "JOBS_QUEUE_URL" || name == "SOURCE_URL" {
            cmd.env_remove(name);
        }
    }
    cmd.env("RUST_LOG", "warn");
    for (name, value) in env {
        cmd.env(name, value);
    }
    cmd.output().expect("run the sender binary")
}

/// Dead-letters every message on the queue with its body as part of the reason.
async fn dead_letter_all(p: &Pipeline) {
    let got = p
        .queue
        .receive(10, Duration::from_secs(1), Duration::from_secs(30))
        .await
        .expect("receive");
    for d in got {
        p.queue
            .dead_letter(&d, &format!("test reason for {}", d.body.len()))
            .await
            .expect("dead-letter");
    }
}

#[tokio::test]
async fn dead_letters_prints_one_json_object_per_dead_letter() {
    let p = Pipeline::new().await;
    let job = p
        .put(JobKind::Make, "makes/x.json", support::make_json("x", 1))
        .await;
    p.queue
        .send_batch(vec![
            OutgoingMessage::new(job.to_json()),
            OutgoingMessage::new("not a job").with_attribute("traceparent", "00-abc-def-01"),
        ])
        .await
        .expect("send");
    dead_letter_all(&p).await;
    assert_eq!(p.dead_letters().await.len(), 2);

    // The queue given as a flag, and through the shared environment variable.
    for out in [
        sender(&["dead-letters", "--queue", &p.queue_url], &[]),
        sender(&["dead-letters"], &[("JOBS_QUEUE_URL", &p.queue_url)]),
    ] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "dead-letters failed: {stderr}");
        let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
        let lines: Vec<serde_json::Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect();
        assert_eq!(lines.len(), 2, "{stdout}");
        let job_line = lines
            .iter()
            .find(|l| l["job"]["key"] == "makes/x.json")
            .expect("the job's dead letter");
        assert_eq!(
            job_line["reason"],
            format!("test reason for {}", job.to_json().len())
        );
        assert_eq!(job_line["receiveCount"], 1);
        assert!(
            job_line["messageId"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        );
        let at = job_line["deadAt"].as_str().expect("deadAt");
        assert!(at.ends_with('Z') && at.len() == 24, "RFC 3339: {at}");
        assert!(job_line["deadAtMs"].as_i64().is_some_and(|ms| ms > 0));
        let other = lines
            .iter()
            .find(|l| l["body"] == "not a job")
            .expect("the other dead letter");
        assert_eq!(other["attributes"]["traceparent"], "00-abc-def-01");
        assert_eq!(other["job"], serde_json::Value::Null);
    }

    let limited = sender(
        &["dead-letters", "--queue", &p.queue_url, "--max", "1"],
        &[],
    );
    assert!(limited.status.success());
    assert_eq!(String::from_utf8_lossy(&limited.stdout).lines().count(), 1);
}

#[tokio::test]
async fn dead_letters_of_an_empty_queue_print_nothing() {
    let p = Pipeline::new().await;
    let out = sender(&["dead-letters", "--queue", &p.queue_url], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn defaults_are_the_documented_ones() {
    let s = Cli::parse_from(["sender"]).run;
    assert_eq!(s.pipeline.source, "dir://data/inbox");
    assert!(
        s.pipeline
            .queue
            .starts_with("sqlite://data/queue.db?queue=jobs"),
        "{}",
        s.pipeline.queue
    );
    assert_eq!(s.comparison_url, "http://127.0.0.1:50051");
    assert_eq!(s.admin_listen.to_string(), "0.0.0.0:9092");
    assert_eq!(s.concurrency, 16);
    assert_eq!(s.visibility, Duration::from_secs(60));
    assert_eq!(s.wait, Duration::from_secs(20));
    assert_eq!(s.rpc_timeout, Duration::from_secs(10));
    assert_eq!(s.connect_timeout, Duration::from_secs(5));
    assert_eq!(
        s.max_file_bytes,
        recipe_model::limits::MAX_DOCUMENT_BYTES as u64
    );
    assert_eq!(s.unknown_recipe_attempts, 5);
    assert_eq!(s.backoff_base, Duration::from_secs(1));
    assert_eq!(s.backoff_max, Duration::from_secs(60));
    assert_eq!(s.shutdown_grace, Duration::from_secs(20));
    assert_eq!(s.delete_linger, Duration::from_millis(500));
    assert_eq!(s.receive_linger, Duration::from_millis(50));
    s.validate().expect("the defaults are valid");
}

#[test]
fn flags_are_parsed_with_and_without_run() {
    for args in [vec!["sender"], vec!["sender", "run"]] {
        let mut argv = args.clone();
        argv.extend([
            "--source",
            "s3://recipes-in",
            "--queue",
            "sqs://jobs?dlq=jobs-dlq",
            "--comparison-url",
            "http://comparison:50051",
            "--admin-listen",
            "127.0.0.1:7002",
            "--concurrency",
            "32",
            "--visibility",
            "2m",
            "--wait",
            "5s",
            "--rpc-timeout",
            "1500ms",
            "--max-file-bytes",
            "2048",
            "--unknown-recipe-attempts",
            "9",
            "--backoff-base",
            "250ms",
            "--backoff-max",
            "30s",
            "--shutdown-grace",
            "45s",
            "--delete-linger",
            "5ms",
            "--receive-linger",
            "0",
        ]);
        let cli = Cli::parse_from(argv);
        let s = match cli.command {
            Some(Command::Run(s)) => s,
            None => cli.run,
            Some(other) => panic!("unexpected {other:?}"),
        };
        assert_eq!(s.pipeline.source, "s3://recipes-in");
        assert_eq!(s.pipeline.queue, "sqs://jobs?dlq=jobs-dlq");
        assert_eq!(s.comparison_url, "http://comparison:50051");
        assert_eq!(s.admin_listen.to_string(), "127.0.0.1:7002");
        assert_eq!(s.concurrency, 32);
        assert_eq!(s.visibility, Duration::from_secs(120));
        assert_eq!(s.wait, Duration::from_secs(5));
        assert_eq!(s.rpc_timeout, Duration::from_millis(1500));
        assert_eq!(s.max_file_bytes, 2048);
        assert_eq!(s.unknown_recipe_attempts, 9);
        assert_eq!(s.backoff_base, Duration::from_millis(250));
        assert_eq!(s.backoff_max, Duration::from_secs(30));
        assert_eq!(s.shutdown_grace, Duration::from_secs(45));
        assert_eq!(s.delete_linger, Duration::from_millis(5));
        assert_eq!(s.receive_linger, Duration::ZERO);
        s.validate().expect("valid");
    }
}

#[test]
fn impossible_settings_are_refused_by_name() {
    let base = || Settings::new("dir://inbox", "sqlite::memory:", "http://127.0.0.1:1");
    type Change = Box<dyn Fn(&mut Settings)>;
    let cases: Vec<(&str, Change)> = vec![
        ("SENDER_CONCURRENCY", Box::new(|s| s.concurrency = 0)),
        (
            "SENDER_VISIBILITY",
            Box::new(|s| s.visibility = Duration::from_millis(10)),
        ),
        (
            "SENDER_WAIT",
            Box::new(|s| s.wait = Duration::from_secs(21)),
        ),
        (
            "SENDER_MAX_FILE_BYTES",
            Box::new(|s| s.max_file_bytes = 10 << 20),
        ),
        (
            "SENDER_UNKNOWN_RECIPE_ATTEMPTS",
            Box::new(|s| s.unknown_recipe_attempts = 0),
        ),
        (
            "SENDER_BACKOFF_BASE",
            Box::new(|s| s.backoff_base = Duration::from_secs(120)),
        ),
        (
            "SENDER_DELETE_LINGER",
            Box::new(|s| s.delete_linger = Duration::from_secs(20)),
        ),
        (
            "SENDER_RECEIVE_LINGER",
            Box::new(|s| s.receive_linger = Duration::from_secs(2)),
        ),
        (
            "SOURCE_URL",
            Box::new(|s| s.pipeline.source = "ftp://x".into()),
        ),
        (
            "dead-letter queue",
            Box::new(|s| s.pipeline.queue = "sqs://jobs".into()),
        ),
    ];
    for (name, change) in cases {
        let mut s = base();
        change(&mut s);
        let err = s.validate().expect_err(name).to_string();
        assert!(err.contains(name), "{name}: {err}");
    }
}

#[test]
fn environment_variables_configure_the_binary() {
    // A value that only the environment sets reaches validation, which names the variable.
    let out = sender(&["run"], &[("SENDER_CONCURRENCY", "0")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SENDER_CONCURRENCY"), "{stderr}");
    // A malformed duration from the environment is refused by the parser.
    let out = sender(&[], &[("SENDER_VISIBILITY", "soon")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("soon"), "{stderr}");
    // The shared variable for the bucket is read too.
    let out = sender(&["run"], &[("SOURCE_URL", "ftp://nowhere")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("SOURCE_URL") && stderr.contains("ftp://nowhere"),
        "{stderr}"
    );
}
