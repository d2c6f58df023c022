//! The `mnemo` binary: `serve` (the default), `migrate`, `keys`, `healthcheck` and `bench`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mnemo::config::{Config, redact_url};
use mnemo::startup::{Application, shutdown_signal};

#[derive(Parser)]
#[command(
    name = "mnemo",
    version,
    about = "State server for AI chat agents (LangGraph Platform API)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Exit 0 when the server's /ready answers 200 (for Docker's HEALTHCHECK).
    Healthcheck,
    /// Manage API keys on the configured database.
    #[command(subcommand)]
    Keys(mnemo::auth::admin::KeysCommand),
    /// Drive a server over HTTP and print ops/s, p50 and p99 per operation.
    Bench(mnemo::bench::BenchArgs),
}

/// glibc raises its mmap threshold to the largest block freed so far (up to 32 MiB), so after
/// one large request body the next ones are carved from the heap, whose pages stay resident
/// once freed: the process keeps the peak of every burst of large bodies. A fixed threshold
/// keeps each large buffer in a mapping of its own, given back to the system when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn give_back_large_buffers() {
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn give_back_large_buffers() {}

fn main() -> ExitCode {
    give_back_large_buffers();
    run()
}

#[actix_web::main]
async fn run() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    mnemo::install_crypto_provider();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config).await,
        // behind PgBouncer, through MNEMO_PG_DIRECT_URL when set
        Command::Migrate => mnemo::persistence::run_migrations(cli.config.session_url())
            .await
            .map(|n| {
                log::info!(
                    "{n} migration(s) applied to {}",
                    redact_url(cli.config.session_url())
                )
            }),
        Command::Healthcheck => healthcheck(&cli.config).await,
        Command::Keys(cmd) => mnemo::auth::admin::run(&cli.config, cmd).await,
        Command::Bench(args) => mnemo::bench::run(cli.config, args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("mnemo: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<(), String> {
    let app = Application::build(config).await?;
    app.run_until(shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

async fn healthcheck(config: &Config) -> Result<(), String> {
    let host = match config.host.as_str() {
        "0.0.0.0" | "::" | "[::]" => "127.0.0.1",
        h => h,
    };
    let url = format!("http://{host}:{}/ready", config.port);
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let resp = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("{url} answered {}", resp.status()))
    }
}
