//! Entry point: parse the command line, set up logging and tracing, then run or print the dead letters.

use clap::Parser;
use sender::config::{Cli, Command, Settings};
use sender::startup::Application;
use service_runtime::shutdown_signal;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let telemetry = telemetry::init("sender", telemetry::LogFormat::from_env());
    let result = match cli.command {
        Some(Command::DeadLetters(settings)) => {
            sender::dead_letters::print(&settings, &mut std::io::stdout().lock()).await?;
            Ok(())
        }
        Some(Command::Run(settings)) => run(settings).await,
        None => run(cli.run).await,
    };
    // Spans still buffered are sent before the process exits.
    telemetry.shutdown_async().await;
    result
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    app.run_until(shutdown_signal()).await
}
