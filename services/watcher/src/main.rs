//! Entry point: parse the command line, set up logging, then watch or set up.

use clap::Parser;
use service_runtime::shutdown_signal;
use watcher::config::{Cli, Command};
use watcher::startup::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init(telemetry::LogFormat::from_env());
    match cli.command {
        Some(Command::Setup(setup)) => {
            watcher::setup::run(&setup).await?;
            Ok(())
        }
        Some(Command::Run(settings)) => run(settings).await,
        None => run(cli.run).await,
    }
}

async fn run(settings: watcher::config::WatchSettings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    app.run_until(shutdown_signal()).await
}
