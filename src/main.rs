use std::{process::ExitCode, sync::Arc};

use anyhow::Context;
use chatty::{
    bus::{Bus, MemoryBus, RedisBus},
    config::Settings,
    db,
    fabric::{RedisKeys, RedisTarget},
    shutdown,
    social::notifications,
    startup::Application,
    telemetry,
};
use clap::{ArgGroup, Args, Parser, Subcommand, error::ErrorKind};
use uuid::Uuid;

// A node holds many small long-lived allocations per idle socket, interleaved with bursts of
// short-lived ones (handshakes, queries, fan-out); with glibc's malloc the gaps they leave
// stay resident. mimalloc measured 24 KB of RSS per idle socket against 33 KB
// (docs/benchmarks.md, "Memory per connection").
// `--features system-allocator` leaves the allocation to glibc, for heap profilers that
// intercept malloc (valgrind's dhat and massif, heaptrack): see docs/benchmarks.md.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
    /// Send a system notification to one user or to everyone, pushed live to connected clients.
    Notify(NotifyArgs),
}

/// `chatty notify --user ID|--all TITLE TEXT`. It reaches the cluster the way a node does:
/// same database, same Redis and key prefix, so every node delivers the notifications.
#[derive(Args)]
#[command(group(ArgGroup::new("recipients").required(true).args(["user", "all"])))]
struct NotifyArgs {
    /// PostgreSQL URL of the cluster.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,

    /// Redis URL of the cluster. Without it the notifications are stored but not pushed:
    /// clients see them on their next fetch.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,

    /// Seed nodes of the cluster's Redis Cluster, instead of `REDIS_URL`.
    #[arg(long, env = "REDIS_CLUSTER_URLS", hide_env_values = true)]
    redis_cluster_urls: Option<String>,

    /// Prefix of the cluster's Redis keys and channels (as given to its nodes).
    #[arg(long, env = "CHATTY_REDIS_PREFIX", default_value = "chatty:")]
    redis_prefix: String,

    /// The one user to notify.
    #[arg(long, value_name = "USER_ID", value_parser = parse_user_id)]
    user: Option<Uuid>,

    /// Notify every user.
    #[arg(long)]
    all: bool,

    /// The notification's title.
    title: String,

    /// The notification's text.
    text: String,
}

fn parse_user_id(raw: &str) -> Result<Uuid, String> {
    Uuid::parse_str(raw.trim()).map_err(|_| "expected a user id (a UUID)".to_owned())
}

/// Longest system notification title and text, in characters.
const MAX_TITLE_CHARS: usize = 200;
const MAX_TEXT_CHARS: usize = 4000;

impl NotifyArgs {
    /// The trimmed title and text, or the one-line reason they are refused.
    fn validated(&self) -> Result<(String, String), String> {
        let title = self.title.trim();
        let text = self.text.trim();
        if title.is_empty() {
            return Err("the title must not be empty".to_owned());
        }
        if text.is_empty() {
            return Err("the text must not be empty".to_owned());
        }
        if title.chars().count() > MAX_TITLE_CHARS {
            return Err(format!(
                "the title is longer than {MAX_TITLE_CHARS} characters"
            ));
        }
        if text.chars().count() > MAX_TEXT_CHARS {
            return Err(format!(
                "the text is longer than {MAX_TEXT_CHARS} characters"
            ));
        }
        Ok((title.to_owned(), text.to_owned()))
    }
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
    let mut cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    // Fixed before the first log line, so a generated id is the same in every line, in
    // metrics and in the probes.
    let node_id = match &mut cli.command {
        Command::Serve(settings) => Some(settings.fix_node_id()),
        Command::Migrate { .. } | Command::Notify(_) => None,
    };
    telemetry::init(cli.log_format == "json", node_id.as_deref());
    let result = match cli.command {
        Command::Serve(settings) => serve(*settings).await,
        Command::Migrate { database_url } => migrate(&database_url).await,
        Command::Notify(args) => match args.validated() {
            Ok((title, text)) => notify(&args, &title, &text).await,
            Err(reason) => {
                eprintln!("chatty: {reason}");
                return ExitCode::from(2);
            }
        },
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

async fn notify(args: &NotifyArgs, title: &str, text: &str) -> anyhow::Result<()> {
    let pool = db::connect(&args.database_url, 2).await?;
    let target = RedisTarget::from_settings(
        args.redis_url.as_deref(),
        args.redis_cluster_urls.as_deref(),
    )
    .map_err(anyhow::Error::msg)?;
    let bus: Arc<dyn Bus> = match &target {
        Some(target) => {
            Arc::new(RedisBus::start(target, RedisKeys::new(&args.redis_prefix)).await?)
        }
        None => {
            eprintln!(
                "chatty: neither REDIS_URL nor REDIS_CLUSTER_URLS is set: notifications are stored but not pushed to connected clients"
            );
            Arc::new(MemoryBus::new())
        }
    };
    let created = notifications::send_system(&pool, bus.as_ref(), args.user, title, text)
        .await
        .context("storing the notifications")?;
    if let Some(user) = args.user {
        anyhow::ensure!(created > 0, "no user with id {user}");
    }
    println!(
        "created {created} notification{}",
        if created == 1 { "" } else { "s" }
    );
    pool.close().await;
    Ok(())
}
