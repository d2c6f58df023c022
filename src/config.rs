//! mnemo's configuration: defaults in code, then the environment, then command-line flags.
//!
//! Every variable (also listed in the README):
//! - `DATABASE_URL`: `postgres://…` or `sqlite://PATH` (default `sqlite://mnemo.db`);
//!   `pgbouncer=true` in its query string: it names PgBouncer in transaction mode.
//! - `MNEMO_PG_DIRECT_URL`: behind PgBouncer, a direct Postgres URL for what needs a session
//!   (listening for other processes' notifications, the migrations' lock).
//! - `MNEMO_HOST` (default `127.0.0.1`) and `MNEMO_PORT` (default `2024`, where LangGraph clients look).
//! - `MNEMO_POOL_MAX` (default 16): the most database connections mnemo ever holds (at least 2
//!   on Postgres, where one of them listens for wake-ups from other processes).
//! - `MNEMO_POOL_TIMEOUT_MS` (default 5000): the deadline of each database operation (the wait
//!   for a connection included) before 503; SQLite's `busy_timeout` is half of it.
//! - `MNEMO_STATEMENT_TIMEOUT_MS` (default 30000): Postgres `statement_timeout` on every connection.
//! - `MNEMO_WORKERS` (default: the number of cores): HTTP worker threads.
//! - `MNEMO_SHUTDOWN_TIMEOUT_S` (default 10): how long in-flight requests may run after SIGTERM.
//! - `MNEMO_MAX_BODY_BYTES` (default 10 MiB): larger request bodies get 413.
//! - `MNEMO_STORE_INDEXED_FIELDS` (default none): top-level store value fields that Postgres
//!   indexes for search filters (`category,kind`): letters, digits and `_`, at most 40 each.
//! - `MNEMO_STORE_SWEEP_INTERVAL_S` (default 60): how often expired store items are deleted.
//! - `MNEMO_LLM` (default `builtin`): the agent's model, `builtin` (offline, deterministic) or
//!   `openai` (any OpenAI-compatible chat-completions endpoint).
//! - `MNEMO_LLM_BASE_URL` (default `https://api.openai.com/v1`), `MNEMO_LLM_API_KEY`,
//!   `MNEMO_LLM_MODEL` (default `gpt-4o-mini`): the endpoint `openai` calls.
//! - `MNEMO_LLM_CONNECT_TIMEOUT_MS` (default 5000), `MNEMO_LLM_READ_TIMEOUT_MS` (default 60000):
//!   connecting, and the longest silence while a response streams.
//! - `MNEMO_LLM_MAX_RETRIES` (default 3): retries, with backoff, on 429, 5xx and failed connects.
//! - `MNEMO_RUN_TIMEOUT_S` (default 600): a run still going after this long ends as `timeout`.
//! - `MNEMO_RUN_LEASE_S` (default 15, at least 3): a run's lease; a run whose process stopped
//!   renewing it is resumed by any mnemo on the database (or ended, past its attempts).
//! - `MNEMO_RUN_WORKERS` (default 256, at least 1): the runs one mnemo executes at once; more
//!   wait in the queue, for this mnemo or another on the database.
//! - `MNEMO_RUN_MAX_ATTEMPTS` (default 3, at least 1): how many times a run is started in all;
//!   a run whose process stopped is resumed until then, and then ends `error`.
//! - `MNEMO_AUTH` (default `none`, allowed only on loopback addresses unless given explicitly):
//!   `none`, `api_key`, `jwt` or `api_key,jwt`.
//! - `MNEMO_JWT_SECRET` (HS256) or `MNEMO_JWT_JWKS` (a URL or a file), `MNEMO_JWT_ISSUER`,
//!   `MNEMO_JWT_AUDIENCE`, `MNEMO_JWT_USER_CLAIM` (default `sub`): how tokens are checked.
//! - `MNEMO_METRICS_PUBLIC` (default off): `/metrics` without a service principal.
//! - `MNEMO_CORS_ORIGINS` (default: loopback origins): origins browsers may call mnemo from.
//! - `MNEMO_ALLOWED_HOSTS` (default: loopback names, and with auth on any host): `Host` values
//!   mnemo answers.
//! - `MNEMO_RATE_LIMIT_PER_S` (default 50), `MNEMO_RATE_LIMIT_BURST` (default 200): requests per
//!   second per user principal; `0` turns the limit off.
//! - `MNEMO_MAX_ACTIVE_RUNS_PER_USER` (default 16), `MNEMO_MAX_PENDING_RUNS_PER_THREAD`
//!   (default 16), `MNEMO_MAX_STREAMS_PER_USER` (default 32): per-user quotas (429 beyond them).
//! - `RUST_LOG` (default `info`): env_logger filter.
//! - `MNEMO_BODY_BUDGET_BYTES` (default 64 MiB, at least `MNEMO_MAX_BODY_BYTES`): request bodies
//!   the process holds at once; a body beyond what is left gets 503 with `Retry-After`.
//! - `MNEMO_PAGE_MAX_BYTES` (default 8 MiB): a history, checkpoint search or thread search page
//!   stops adding rows once they take this many bytes in memory (it always holds at least one row).

use std::time::Duration;

use clap::Args;

/// Settings shared by `serve`, `migrate` and `bench`.
#[derive(Args, Clone)]
pub struct Config {
    /// Database: `postgres://user@host/db` or `sqlite://path/to/file.db`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://mnemo.db",
        hide_env_values = true
    )]
    pub database_url: String,

    /// Behind PgBouncer (`pgbouncer=true` in DATABASE_URL): a direct Postgres URL to the same
    /// database, for what needs a session (LISTEN, the migrations' advisory lock).
    #[arg(long, env = "MNEMO_PG_DIRECT_URL", hide_env_values = true)]
    pub pg_direct_url: Option<String>,

    /// Address to listen on.
    #[arg(long, env = "MNEMO_HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "MNEMO_PORT", default_value_t = 2024)]
    pub port: u16,

    /// Largest number of database connections; requests beyond it wait, then get 503.
    #[arg(long, env = "MNEMO_POOL_MAX", default_value_t = 16)]
    pub pool_max: usize,

    /// The deadline of each database operation, the wait for a free connection included: past
    /// it the request is answered 503. SQLite's busy_timeout is half of it.
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

    /// Store value fields that searches filter on often (comma-separated top-level keys):
    /// Postgres indexes each, so a whole-store filter on one reads only the items it matches.
    #[arg(long, env = "MNEMO_STORE_INDEXED_FIELDS", value_delimiter = ',', value_parser = store_field)]
    pub store_indexed_fields: Vec<String>,

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
        default_value = "https://api.openai.com/v1",
        hide_env_values = true
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

    /// A running run is held by its process for this many seconds at a time, renewed every
    /// third of it; past it, any mnemo on the database resumes the run (or ends it, past its
    /// attempts), so a crashed process blocks no thread for longer.
    #[arg(long, env = "MNEMO_RUN_LEASE_S", default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..))]
    pub run_lease_s: u64,

    /// The runs this process executes at once; more wait in the queue, for any process.
    #[arg(long, env = "MNEMO_RUN_WORKERS", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub run_workers: u32,

    /// How many times a run is started in all: a run whose process stopped is resumed by
    /// another until then, and then ends `error`.
    #[arg(long, env = "MNEMO_RUN_MAX_ATTEMPTS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub run_max_attempts: u32,

    /// Credentials accepted: `none`, `api_key`, `jwt` or `api_key,jwt`. Unset means `none`,
    /// which mnemo accepts only while it listens on loopback addresses.
    #[arg(long, env = "MNEMO_AUTH")]
    pub auth: Option<String>,

    /// HS256 secret that signs the JWTs mnemo accepts.
    #[arg(long, env = "MNEMO_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// JWKS with the keys that sign the JWTs mnemo accepts: an http(s) URL or a file.
    #[arg(long, env = "MNEMO_JWT_JWKS", hide_env_values = true)]
    pub jwt_jwks: Option<String>,

    /// When set, a JWT's `iss` must be this.
    #[arg(long, env = "MNEMO_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// When set, a JWT's `aud` must hold this.
    #[arg(long, env = "MNEMO_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// The JWT claim that names the user.
    #[arg(long, env = "MNEMO_JWT_USER_CLAIM", default_value = "sub")]
    pub jwt_user_claim: String,

    /// Serve `/metrics` without credentials (otherwise a service principal is needed).
    #[arg(long, env = "MNEMO_METRICS_PUBLIC", default_value_t = false, action = clap::ArgAction::Set)]
    pub metrics_public: bool,

    /// Comma-separated origins browsers may call mnemo from (`*`: any, only with auth on).
    #[arg(long, env = "MNEMO_CORS_ORIGINS")]
    pub cors_origins: Option<String>,

    /// Comma-separated `Host` names mnemo answers besides loopback ones (DNS-rebinding guard).
    #[arg(long, env = "MNEMO_ALLOWED_HOSTS")]
    pub allowed_hosts: Option<String>,

    /// Requests per second each user principal may make (0: no limit).
    #[arg(long, env = "MNEMO_RATE_LIMIT_PER_S", default_value_t = 50)]
    pub rate_limit_per_s: u32,

    /// Requests a user principal may make at once above its rate.
    #[arg(long, env = "MNEMO_RATE_LIMIT_BURST", default_value_t = 200)]
    pub rate_limit_burst: u32,

    /// Runs one user may have pending or running at once.
    #[arg(long, env = "MNEMO_MAX_ACTIVE_RUNS_PER_USER", default_value_t = 16)]
    pub max_active_runs_per_user: usize,

    /// Runs that may wait (enqueued) behind a thread's active run.
    #[arg(long, env = "MNEMO_MAX_PENDING_RUNS_PER_THREAD", default_value_t = 16)]
    pub max_pending_runs_per_thread: usize,

    /// Streams one user may hold open at once.
    #[arg(long, env = "MNEMO_MAX_STREAMS_PER_USER", default_value_t = 32)]
    pub max_streams_per_user: usize,

    /// Bytes of request bodies the process holds at once (raised to the largest body if
    /// smaller); a body beyond what is left is answered 503 with `Retry-After`.
    #[arg(long, env = "MNEMO_BODY_BUDGET_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub body_budget_bytes: usize,

    /// Bytes (in memory) a page of history, checkpoint search or thread search holds at most:
    /// rows stop being added once it is reached (a page always holds at least one row).
    #[arg(long, env = "MNEMO_PAGE_MAX_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub page_max_bytes: usize,
}

/// Secrets stay out of logs: the database URL's password and the keys are redacted.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = |s: &Option<String>| s.as_ref().map(|_| "***");
        f.debug_struct("Config")
            .field("database_url", &redact_url(&self.database_url))
            .field(
                "pg_direct_url",
                &self.pg_direct_url.as_deref().map(redact_url),
            )
            .field("host", &self.host)
            .field("port", &self.port)
            .field("pool_max", &self.pool_max)
            .field("pool_timeout_ms", &self.pool_timeout_ms)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .field("workers", &self.workers)
            .field("shutdown_timeout_s", &self.shutdown_timeout_s)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("store_sweep_interval_s", &self.store_sweep_interval_s)
            .field("llm", &self.llm)
            .field("llm_base_url", &redact_url(&self.llm_base_url))
            .field("llm_api_key", &secret(&self.llm_api_key))
            .field("llm_model", &self.llm_model)
            .field("llm_connect_timeout_ms", &self.llm_connect_timeout_ms)
            .field("llm_read_timeout_ms", &self.llm_read_timeout_ms)
            .field("llm_max_retries", &self.llm_max_retries)
            .field("run_timeout_s", &self.run_timeout_s)
            .field("auth", &self.auth)
            .field("jwt_secret", &secret(&self.jwt_secret))
            .field("jwt_jwks", &self.jwt_jwks.as_deref().map(redact_url))
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .field("jwt_user_claim", &self.jwt_user_claim)
            .field("metrics_public", &self.metrics_public)
            .field("cors_origins", &self.cors_origins)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("rate_limit_per_s", &self.rate_limit_per_s)
            .field("rate_limit_burst", &self.rate_limit_burst)
            .field("run_workers", &self.run_workers)
            .field("run_max_attempts", &self.run_max_attempts)
            .field("max_active_runs_per_user", &self.max_active_runs_per_user)
            .field(
                "max_pending_runs_per_thread",
                &self.max_pending_runs_per_thread,
            )
            .field("max_streams_per_user", &self.max_streams_per_user)
            .field("body_budget_bytes", &self.body_budget_bytes)
            .field("page_max_bytes", &self.page_max_bytes)
            .finish()
    }
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

    /// The URL of connections that need a session of their own (LISTEN, session advisory
    /// locks): `MNEMO_PG_DIRECT_URL` when set, else `DATABASE_URL`.
    pub fn session_url(&self) -> &str {
        self.pg_direct_url.as_deref().unwrap_or(&self.database_url)
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

    pub fn run_lease(&self) -> Duration {
        Duration::from_secs(self.run_lease_s.max(3))
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

/// A store field name that may name an index: letters, digits and `_`, at most 40.
fn store_field(s: &str) -> Result<String, String> {
    let s = s.trim();
    if !s.is_empty() && s.len() <= 40 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?}: a store field to index is 1 to 40 letters, digits or _"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::store_field;

    #[test]
    fn store_fields_to_index_are_plain_names() {
        assert_eq!(store_field(" category ").as_deref(), Ok("category"));
        assert_eq!(store_field("user_id2").as_deref(), Ok("user_id2"));
        for bad in ["", "a-b", "a'b", "a b", "é", &"x".repeat(41)] {
            assert!(store_field(bad).is_err(), "{bad:?} accepted");
        }
    }
}
