//! mnemo's configuration: defaults in code, then the environment, then command-line flags.
//!
//! Every variable (also listed in the README):
//! - `DATABASE_URL`: `postgres://…` or `sqlite://PATH` (default `sqlite://mnemo.db`).
//! - `MNEMO_HOST` (default `127.0.0.1`) and `MNEMO_PORT` (default `2024`, where LangGraph clients look).
//! - `MNEMO_POOL_MAX` (default 16): the most database connections mnemo ever holds.
//! - `MNEMO_POOL_TIMEOUT_MS` (default 5000): how long a request waits for a connection before 503.
//! - `MNEMO_STATEMENT_TIMEOUT_MS` (default 30000): Postgres `statement_timeout` on every connection.
//! - `MNEMO_WORKERS` (default: the number of cores): HTTP worker threads.
//! - `MNEMO_SHUTDOWN_TIMEOUT_S` (default 10): how long in-flight requests may run after SIGTERM.
//! - `MNEMO_MAX_BODY_BYTES` (default 10 MiB): larger request bodies get 413.
//! - `MNEMO_STORE_SWEEP_INTERVAL_S` (default 60): how often expired store items are deleted.
//! - `MNEMO_LLM` (default `builtin`): the agent's model, `builtin` (offline, deterministic) or
//!   `openai` (any OpenAI-compatible chat-completions endpoint).
//! - `MNEMO_LLM_BASE_URL` (default `https://api.openai.com/v1`), `MNEMO_LLM_API_KEY`,
//!   `MNEMO_LLM_MODEL` (default `gpt-4o-mini`): the endpoint `openai` calls.
//! - `MNEMO_LLM_CONNECT_TIMEOUT_MS` (default 5000), `MNEMO_LLM_READ_TIMEOUT_MS` (default 60000):
//!   connecting, and the longest silence while a response streams.
//! - `MNEMO_LLM_MAX_RETRIES` (default 3): retries, with backoff, on 429, 5xx and failed connects.
//! - `MNEMO_RUN_TIMEOUT_S` (default 600): a run still going after this long ends as `timeout`.
//! - `RUST_LOG` (default `info`): env_logger filter.

use std::time::Duration;

use clap::Args;

/// Settings shared by `serve`, `migrate` and `bench`.
#[derive(Args, Debug, Clone)]
pub struct Config {
    /// Database: `postgres://user@host/db` or `sqlite://path/to/file.db`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://mnemo.db")]
    pub database_url: String,

    /// Address to listen on.
    #[arg(long, env = "MNEMO_HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "MNEMO_PORT", default_value_t = 2024)]
    pub port: u16,

    /// Largest number of database connections; requests beyond it wait, then get 503.
    #[arg(long, env = "MNEMO_POOL_MAX", default_value_t = 16)]
    pub pool_max: usize,

    /// How long a request waits for a free connection before it is answered 503.
    #[arg(long, env = "MNEMO_POOL_TIMEOUT_MS", default_value_t = 5000)]
    pub pool_timeout_ms: u64,

    /// Postgres statement_timeout for every connection, so no query outlives its caller.
    #[arg(long, env = "MNEMO_STATEMENT_TIMEOUT_MS", default_value_t = 30_000)]
    pub statement_timeout_ms: u64,

    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "MNEMO_WORKERS")]
    pub workers: Option<usize>,

    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    #[arg(long, env = "MNEMO_SHUTDOWN_TIMEOUT_S", default_value_t = 10)]
    pub shutdown_timeout_s: u64,

    /// Largest accepted request body; larger ones get 413.
    #[arg(long, env = "MNEMO_MAX_BODY_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Seconds between two sweeps of expired store items.
    #[arg(long, env = "MNEMO_STORE_SWEEP_INTERVAL_S", default_value_t = 60)]
    pub store_sweep_interval_s: u64,

    /// The agent's model: `builtin` (offline, deterministic) or `openai` (OpenAI-compatible).
    #[arg(long, env = "MNEMO_LLM", default_value = "builtin", value_parser = ["builtin", "openai"])]
    pub llm: String,

    /// Base URL of the OpenAI-compatible API (`…/chat/completions` is appended).
    #[arg(
        long,
        env = "MNEMO_LLM_BASE_URL",
        default_value = "https://api.openai.com/v1"
    )]
    pub llm_base_url: String,

    /// Bearer token for the OpenAI-compatible API.
    #[arg(long, env = "MNEMO_LLM_API_KEY", hide_env_values = true)]
    pub llm_api_key: Option<String>,

    /// Model name sent to the OpenAI-compatible API.
    #[arg(long, env = "MNEMO_LLM_MODEL", default_value = "gpt-4o-mini")]
    pub llm_model: String,

    /// How long connecting to the model's endpoint may take.
    #[arg(long, env = "MNEMO_LLM_CONNECT_TIMEOUT_MS", default_value_t = 5000)]
    pub llm_connect_timeout_ms: u64,

    /// The longest silence while waiting for or reading the model's response.
    #[arg(long, env = "MNEMO_LLM_READ_TIMEOUT_MS", default_value_t = 60_000)]
    pub llm_read_timeout_ms: u64,

    /// Retries (with exponential backoff) on 429, 5xx and failed connects.
    #[arg(long, env = "MNEMO_LLM_MAX_RETRIES", default_value_t = 3)]
    pub llm_max_retries: u32,

    /// A run still going after this many seconds is stopped and ends as `timeout`.
    #[arg(long, env = "MNEMO_RUN_TIMEOUT_S", default_value_t = 600)]
    pub run_timeout_s: u64,
}

impl Config {
    /// A configuration from the environment alone (flags are parsed by the binary).
    pub fn from_env() -> Result<Config, clap::Error> {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            config: Config,
        }
        <Only as clap::Parser>::try_parse_from(["mnemo"]).map(|o| o.config)
    }

    pub fn pool_timeout(&self) -> Duration {
        Duration::from_millis(self.pool_timeout_ms)
    }

    pub fn statement_timeout(&self) -> Duration {
        Duration::from_millis(self.statement_timeout_ms)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_s)
    }

    pub fn run_timeout(&self) -> Duration {
        Duration::from_secs(self.run_timeout_s.max(1))
    }

    pub fn store_sweep_interval(&self) -> Duration {
        Duration::from_secs(self.store_sweep_interval_s.max(1))
    }
}

/// The URL with any password and query string replaced, for logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (rest, had_query) = match rest.split_once('?') {
        Some((before, _)) => (before, true),
        None => (rest, false),
    };
    // the user info ends at the last '@' (a password may itself hold '/' or '@')
    let rest = match rest.rsplit_once('@') {
        Some((userinfo, host_path)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host_path}"),
            None => format!("{userinfo}@{host_path}"),
        },
        None => rest.to_string(),
    };
    format!("{scheme}://{rest}{}", if had_query { "?***" } else { "" })
}
