use std::process::ExitCode;

use chatty::{config::Settings, db, shutdown, startup::Application, telemetry};
use clap::{Parser, Subcommand, error::ErrorKind};

#[derive(Parser)]
#[command(name = "chatty", version, about = "Real-time chat backend node")]
struct Cli {
    /// Log format: `text` for people, `json` for log shippers.
    #[arg(long, env = "CHATTY_LOG_FORMAT", default_value = "text", global = true, value_parser = ["text", "json"])]
    log_format: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node: HTTP API, Socket.IO, metrics and probes on one port.
    Serve(Box<Settings>),
    /// Apply pending database migrations and exit.
    Migrate {
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
}

/// clap's own errors span several lines; operators get one line naming the setting.
fn parse() -> Result<Cli, ExitCode> {
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        Err(e) => {
            let text = e.render().to_string();
            let line = text
                .lines()
                .take_while(|l| !l.starts_with("Usage:"))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            eprintln!("chatty: {}", line.trim_start_matches("error: "));
            Err(ExitCode::from(2))
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    telemetry::init(cli.log_format == "json");
    let result = match cli.command {
        Command::Serve(settings) => serve(*settings).await,
        Command::Migrate { database_url } => migrate(&database_url).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chatty: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    app.run_until_stopped(shutdown::signal()).await
}

async fn migrate(database_url: &str) -> anyhow::Result<()> {
    db::ensure_database(database_url).await?;
    let pool = db::connect(database_url, 2).await?;
    db::migrate(&pool).await?;
    tracing::info!("migrations applied");
    Ok(())
}
