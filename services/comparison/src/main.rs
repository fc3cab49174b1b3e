//! Entry point: parse the command line, set up logging and tracing, then serve or migrate.

use clap::Parser;
use comparison::config::{Cli, Command};
use comparison::startup::Application;
use service_runtime::shutdown_signal;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let telemetry = telemetry::init("comparison", telemetry::LogFormat::from_env());
    let result = match cli.command {
        Some(Command::Migrate(store)) => {
            recipe_store::migrate(&store.url).await?;
            println!("store {} is ready", store.url);
            Ok(())
        }
        Some(Command::Serve(settings)) => serve(settings).await,
        None => serve(cli.serve).await,
    };
    // Spans still buffered are sent before the process exits.
    telemetry.shutdown_async().await;
    result
}

async fn serve(settings: comparison::config::ServeSettings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    app.run_until(shutdown_signal()).await
}
