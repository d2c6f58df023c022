//! Building the connection pool: one function per backend, each connection set up the same way
//! every time it is created, and checked (and retired when old) when it is handed out again.

use std::sync::Arc;
use std::time::Duration;

use diesel::ConnectionError;
use diesel::sqlite::SqliteConnection;
use diesel_async::pooled_connection::deadpool::{Hook, HookError, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures_util::FutureExt;

use super::tls::PgConnector;
use crate::config::Config;

pub type SqliteConn = SyncConnectionWrapper<SqliteConnection>;

/// Connections older than this are closed when they come back, so a database failover or a
/// pooler's idle reaping heals without restarting mnemo.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// A Postgres connection unused for this long is pinged before it is handed out: idle ones are
/// what cloud databases and poolers reap. Busy connections skip the round trip (a `SELECT 1` on
/// every checkout costs about a third of the throughput).
const IDLE_CHECK_AFTER: Duration = Duration::from_secs(10);

/// The pool of one backend. Cloning is cheap (an `Arc`).
#[derive(Clone)]
pub enum DbPool {
    Pg(Pool<AsyncPgConnection>),
    Sqlite(Pool<SqliteConn>),
}

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn of_url(url: &str) -> Result<Backend, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else if url.starts_with("sqlite://") || url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else {
            Err("DATABASE_URL must start with postgres:// or sqlite://".into())
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// The file path in a `sqlite://` URL.
pub fn sqlite_path(url: &str) -> &str {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url)
}

/// Whether a connection is past its lifetime (checked before it is handed out again).
fn too_old(metrics: &deadpool::managed::Metrics) -> Result<(), HookError> {
    if metrics.age() > MAX_LIFETIME {
        Err(HookError::message(
            "connection reached its maximum lifetime",
        ))
    } else {
        Ok(())
    }
}

/// Before a Postgres connection is handed out again: retire it when old, ping it when idle.
fn check_pg<'a>(
    conn: &'a mut AsyncPgConnection,
    metrics: &'a deadpool::managed::Metrics,
) -> deadpool::managed::HookFuture<'a, diesel_async::pooled_connection::PoolError> {
    Box::pin(async move {
        too_old(metrics)?;
        if metrics.last_used() > IDLE_CHECK_AFTER {
            conn.batch_execute("SELECT 1").await.map_err(|e| {
                HookError::Backend(diesel_async::pooled_connection::PoolError::QueryError(e))
            })?;
        }
        Ok(())
    })
}

impl DbPool {
    /// Builds the pool for `config.database_url`. Connections open lazily, on first use.
    pub fn build(config: &Config) -> Result<DbPool, String> {
        let url = config.database_url.clone();
        let timeouts = deadpool::managed::Timeouts {
            wait: Some(config.pool_timeout()),
            create: Some(config.pool_timeout()),
            recycle: Some(config.pool_timeout()),
        };
        match Backend::of_url(&url)? {
            Backend::Postgres => {
                let statement_timeout = config.statement_timeout().as_millis();
                // sslmode/sslrootcert are read (and sslrootcert loaded) once, here
                let connector = Arc::new(PgConnector::from_url(&url)?);
                let mut cfg = ManagerConfig::<AsyncPgConnection>::default();
                cfg.recycling_method = RecyclingMethod::Fast;
                cfg.custom_setup = Box::new(move |_url| {
                    let connector = Arc::clone(&connector);
                    async move {
                        let mut conn = connector
                            .connect()
                            .await
                            .map_err(ConnectionError::BadConnection)?;
                        conn.batch_execute(&format!(
                            "SET application_name = 'mnemo'; SET statement_timeout = {statement_timeout}"
                        ))
                        .await
                        .map_err(ConnectionError::CouldntSetupConfiguration)?;
                        Ok(conn)
                    }
                    .boxed()
                });
                let manager = AsyncDieselConnectionManager::new_with_config(url, cfg);
                if config.pool_max < 2 {
                    return Err("MNEMO_POOL_MAX must be at least 2 on Postgres".into());
                }
                Pool::builder(manager)
                    // one connection of MNEMO_POOL_MAX listens for other processes' wake-ups
                    // (persistence::signals), so mnemo never holds more than the maximum
                    .max_size(config.pool_max - 1)
                    .timeouts(timeouts)
                    .runtime(deadpool::Runtime::Tokio1)
                    // LIFO: the most recently used connection goes out first, so light load stays on a
                    // few warm backends instead of waking every Postgres process in turn
                    .queue_mode(deadpool::managed::QueueMode::Lifo)
                    .pre_recycle(Hook::async_fn(check_pg))
                    .build()
                    .map(DbPool::Pg)
                    .map_err(|e| e.to_string())
            }
            Backend::Sqlite => {
                let path = sqlite_path(&url).to_string();
                let mut cfg = ManagerConfig::<SqliteConn>::default();
                // a local file cannot go away under us: skip the per-checkout test query
                cfg.recycling_method = RecyclingMethod::Fast;
                cfg.custom_setup = Box::new(|path| {
                    async move {
                        let mut conn = SqliteConn::establish(path).await?;
                        conn.batch_execute(SQLITE_PRAGMAS)
                            .await
                            .map_err(ConnectionError::CouldntSetupConfiguration)?;
                        Ok(conn)
                    }
                    .boxed()
                });
                let manager = AsyncDieselConnectionManager::new_with_config(path, cfg);
                // only the wait for a free slot is bounded: a SQLite call runs on a blocking thread and
                // must not be abandoned half-way (diesel-async would block the actor's thread on it)
                let timeouts = deadpool::managed::Timeouts {
                    wait: timeouts.wait,
                    create: None,
                    recycle: None,
                };
                Pool::builder(manager)
                    .max_size(config.pool_max)
                    .timeouts(timeouts)
                    .runtime(deadpool::Runtime::Tokio1)
                    .pre_recycle(Hook::sync_fn(|_, metrics| too_old(metrics)))
                    .build()
                    .map(DbPool::Sqlite)
                    .map_err(|e| e.to_string())
            }
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            DbPool::Pg(_) => Backend::Postgres,
            DbPool::Sqlite(_) => Backend::Sqlite,
        }
    }

    pub fn status(&self) -> deadpool::Status {
        match self {
            DbPool::Pg(p) => p.status(),
            DbPool::Sqlite(p) => p.status(),
        }
    }

    /// Closes the pool: idle connections are dropped now, checked-out ones when they return.
    pub fn close(&self) {
        match self {
            DbPool::Pg(p) => p.close(),
            DbPool::Sqlite(p) => p.close(),
        }
    }
}

/// Set on every SQLite connection (busy_timeout first: switching to WAL needs a lock): WAL so readers never block the writer, a busy timeout so
/// concurrent writers queue instead of failing, foreign keys for the cascades.
pub const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout=5000; PRAGMA journal_mode=WAL; \
     PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;";
