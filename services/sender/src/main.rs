//! Entry point: parse the command line, set up logging, then run or print the dead letters.

use clap::Parser;
use sender::config::{Cli, Command, Settings};
use sender::startup::Application;
use service_runtime::shutdown_signal;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init(telemetry::LogFormat::from_env());
    match cli.command {
        Some(Command::DeadLetters(settings)) => {
            sender::dead_letters::print(&settings, &mut std::io::stdout().lock()).await?;
            Ok(())
        }
        Some(Command::Run(settings)) => run(settings).await,
        None => run(cli.run).await,
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    app.run_until(shutdown_signal()).await
}
