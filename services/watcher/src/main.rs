//! Entry point: parse the command line, set up logging and tracing, then watch or set up.

use clap::Parser;
use service_runtime::shutdown_signal;
use watcher::config::{Cli, Command};
use watcher::startup::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let telemetry = telemetry::init("watcher", telemetry::LogFormat::from_env());
    let result = match cli.command {
        Some(Command::Setup(setup)) => {
            watcher::setup::run(&setup).await?;
            Ok(())
        }
        Some(Command::Run(settings)) => run(settings).await,
        None => run(cli.run).await,
    };
    // Spans still buffered are sent before the process exits.
    telemetry.shutdown_async().await;
    result
}

async fn run(settings: watcher::config::WatchSettings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    app.run_until(shutdown_signal()).await
}
