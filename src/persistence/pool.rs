//! Building the connection pool: one function per backend, each connection set up the same way
//! every time it is created, and checked (and retired when old) when it is handed out again.
//!
//! Every operation has a deadline, the pool timeout, checkout included ([`DbPool::settle`]):
//! whatever the database does (down, locked, hung, slow), the caller has its answer or an
//! outage by then. A Postgres connection still busy at the deadline is closed, never pooled
//! again; SQLite's `busy_timeout` is half the pool timeout, so a lock wait ends inside it.

use std::cell::RefCell;
use std::future::Future;
use std::ops::Deref;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
use super::{DbError, OutageKind};
use crate::config::Config;

pub type SqliteConn = SyncConnectionWrapper<SqliteConnection, super::sqlite_threads::SqliteThreads>;

/// Connections older than this are closed when they come back, so a database failover or a
/// pooler's idle reaping heals without restarting mnemo.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// A Postgres connection unused for this long is pinged before it is handed out: idle ones are
/// what cloud databases and poolers reap. Busy connections skip the round trip (a `SELECT 1` on
/// every checkout costs about a third of the throughput).
const IDLE_CHECK_AFTER: Duration = Duration::from_secs(10);

tokio::task_local! {
    /// The connections the running operation has taken out of the pool (by creation time,
    /// which tells connections apart), so that those it still held when it was abandoned at
    /// its deadline are closed instead of pooled again. Noted by the pool's checkout hooks.
    static TAKEN: Rc<RefCell<Vec<Instant>>>;
}

/// Checkout hook: notes the connection against the running operation, if any.
fn note_taken(metrics: &deadpool::managed::Metrics) -> Result<(), HookError> {
    let _ = TAKEN.try_with(|taken| taken.borrow_mut().push(metrics.created));
    Ok(())
}

/// The pool of one backend. Cloning is cheap (an `Arc`).
#[derive(Clone)]
pub enum DbPool {
    Pg(Pool<AsyncPgConnection>),
    Sqlite(SqlitePool),
}

/// SQLite's pool, and when its planner statistics last changed.
///
/// SQLite keeps no statistics by itself, and without them it plans a search over many
/// namespaces on the primary key and sorts every item it finds (10,000 items: 9 ms) where
/// walking `updated_at` reads a page's worth (0.3 ms). [`SqlitePool::refresh_statistics`]
/// analyzes what has grown or shrunk; a connection reads the statistics once, when it opens,
/// so one opened before they changed is closed when it comes back, and a fresh one plans with
/// the new ones.
#[derive(Clone)]
pub struct SqlitePool {
    pool: Pool<SqliteConn>,
    analyzed_at: Arc<Mutex<Instant>>,
}

impl Deref for SqlitePool {
    type Target = Pool<SqliteConn>;

    fn deref(&self) -> &Pool<SqliteConn> {
        &self.pool
    }
}

impl SqlitePool {
    /// `PRAGMA optimize` over every table (0x10002): it analyzes the tables whose statistics
    /// are missing or whose size changed about tenfold since, within a bounded number of rows
    /// per index, and is a quick no-op otherwise. Connections opened before a change are retired.
    pub async fn refresh_statistics(&self) -> Result<(), DbError> {
        use diesel::dsl::sql;
        use diesel::sql_types::BigInt;
        use diesel_async::RunQueryDsl;
        let mut conn = self.pool.get().await?;
        // 0x10003: the same check, only listing what it would analyze
        let stale: i64 = diesel::select(sql::<BigInt>(
            "(SELECT count(*) FROM pragma_optimize(0x10003))",
        ))
        .get_result(&mut *conn)
        .await?;
        if stale > 0 {
            // under the write lock from the start: `optimize` reads before its `ANALYZE` writes,
            // and a read that another connection's write overtook cannot take the lock (SQLite
            // answers busy at once, without waiting)
            conn.spawn_blocking(|conn| {
                conn.immediate_transaction(|conn| {
                    diesel::connection::SimpleConnection::batch_execute(
                        conn,
                        "PRAGMA optimize=0x10002",
                    )
                })
            })
            .await?;
            *self.analyzed_at.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        }
        Ok(())
    }

    /// Before a connection is handed out again: retire it when old, or when it opened before
    /// the statistics last changed.
    fn retire(metrics: &deadpool::managed::Metrics, analyzed_at: Instant) -> Result<(), HookError> {
        too_old(metrics)?;
        if metrics.created < analyzed_at {
            return Err(HookError::message("planner statistics changed"));
        }
        Ok(())
    }
}

/// A connection that has carried a document this large keeps buffers of that size for as long
/// as it lives (Postgres's driver never shrinks them), so it is closed after use
/// ([`close_if_large`]) rather than pooled again.
const LARGE_PAYLOAD: usize = 1 << 20;

/// Gives `conn` back to the pool, or closes it when the operation moved `bytes` through it.
pub fn close_if_large<M: deadpool::managed::Manager>(
    conn: deadpool::managed::Object<M>,
    bytes: usize,
) {
    if bytes >= LARGE_PAYLOAD {
        drop(deadpool::managed::Object::take(conn));
    }
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

/// A connection to PgBouncer in transaction mode, where consecutive transactions (and
/// statements outside one) may run on different server connections, set up to rely on no
/// session:
/// - no named prepared statement: with diesel-async's statement cache disabled, each query goes
///   unnamed, Parse/Bind/Execute in one round trip that PgBouncer keeps on one server (the
///   vendored diesel-async's patch; tokio-postgres' own `prepare` names its statements);
/// - `statement_timeout` (and `jit = off`) is `SET LOCAL` by the `BEGIN` of each transaction mnemo opens (PgBouncer
///   1.18 refuses the `options` start-up parameter, and a session `SET` would stay on whichever
///   server ran it, for other clients); a statement outside a transaction has no server-side
///   timeout, only the operation's deadline;
/// - `application_name` is a parameter PgBouncer tracks per client and sets on each server it
///   lends it; `client_connection_check_interval` is left unset.
pub(crate) async fn setup_behind_pgbouncer(
    conn: &mut AsyncPgConnection,
    statement_timeout_ms: u128,
) -> diesel::QueryResult<()> {
    conn.set_prepared_statement_cache_size(diesel::connection::CacheSize::Disabled);
    conn.transaction_state().set_begin_sql(Some(format!(
        "BEGIN; SET LOCAL statement_timeout = {statement_timeout_ms}; SET LOCAL jit = off"
    )));
    conn.batch_execute("SET application_name = 'mnemo'").await
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
                        if connector.behind_pgbouncer() {
                            setup_behind_pgbouncer(&mut conn, statement_timeout)
                                .await
                                .map_err(ConnectionError::CouldntSetupConfiguration)?;
                            return Ok(conn);
                        }
                        // no JIT: mnemo's statements are short, and a plan costed past
                        // `jit_above_cost` (a batched read of a thread with many writes) would
                        // spend ~10 ms compiling for a query that runs in 0.1 ms
                        conn.batch_execute(&format!(
                            "SET application_name = 'mnemo'; SET statement_timeout = {statement_timeout}; SET jit = off"
                        ))
                        .await
                        .map_err(ConnectionError::CouldntSetupConfiguration)?;
                        // Postgres ≥ 14: a backend whose client closed the socket (an operation
                        // abandoned at its deadline) stops its query within a second instead of
                        // running on to statement_timeout; older servers do not know the setting
                        let _ = conn
                            .batch_execute("SET client_connection_check_interval = 1000")
                            .await;
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
                    .post_create(Hook::sync_fn(|_, metrics| note_taken(metrics)))
                    .post_recycle(Hook::sync_fn(|_, metrics| note_taken(metrics)))
                    .build()
                    .map(DbPool::Pg)
                    .map_err(|e| e.to_string())
            }
            Backend::Sqlite => {
                let path = sqlite_path(&url).to_string();
                sqlite_plans_once();
                let mut cfg = ManagerConfig::<SqliteConn>::default();
                // a local file cannot go away under us: skip the per-checkout test query
                cfg.recycling_method = RecyclingMethod::Fast;
                let pragmas = sqlite_pragmas(sqlite_busy_timeout(config.pool_timeout()));
                cfg.custom_setup = Box::new(move |path| {
                    let pragmas = pragmas.clone();
                    async move {
                        let mut conn = SqliteConn::establish(path).await?;
                        conn.batch_execute(&pragmas)
                            .await
                            .map_err(ConnectionError::CouldntSetupConfiguration)?;
                        Ok(conn)
                    }
                    .boxed()
                });
                let manager = AsyncDieselConnectionManager::new_with_config(path, cfg);
                // only the wait for a free slot is bounded here: a SQLite call runs on a thread of
                // its own (`sqlite_threads`) and must not be abandoned half-way (its connection
                // would be pooled again mid-transaction); `settle` answers the caller at the
                // deadline instead
                let timeouts = deadpool::managed::Timeouts {
                    wait: timeouts.wait,
                    create: None,
                    recycle: None,
                };
                let analyzed_at = Arc::new(Mutex::new(Instant::now()));
                let stats = Arc::clone(&analyzed_at);
                let pool = Pool::builder(manager)
                    .max_size(config.pool_max)
                    .timeouts(timeouts)
                    .runtime(deadpool::Runtime::Tokio1)
                    .pre_recycle(Hook::sync_fn(move |_, metrics| {
                        let analyzed_at = *stats.lock().unwrap_or_else(|p| p.into_inner());
                        SqlitePool::retire(metrics, analyzed_at)
                    }))
                    .build()
                    .map_err(|e| e.to_string())?;
                Ok(DbPool::Sqlite(SqlitePool { pool, analyzed_at }))
            }
        }
    }

    /// How long one operation may take, waiting for a connection included: the pool timeout.
    pub fn op_budget(&self) -> Duration {
        let timeouts = match self {
            DbPool::Pg(p) => p.timeouts(),
            DbPool::Sqlite(p) => p.timeouts(),
        };
        timeouts.wait.unwrap_or(Duration::from_secs(5))
    }

    /// Runs one operation, `op`, and answers by `deadline` (its start plus [`Self::op_budget`]):
    /// with `op`'s result, or an outage of kind `Deadline`.
    ///
    /// Why the pool timeout is the deadline of the whole operation, not only of the wait for a
    /// connection: the bound is on the answer. deadpool bounds its wait, its connect and
    /// its check before reuse separately (each up to the pool timeout, so a checkout alone could
    /// take several), and nothing in the driver bounds a query on a connection whose peer is
    /// frozen or whose network path hangs (TCP keepalives do not fire while the peer's kernel
    /// still acknowledges, and `statement_timeout` is the frozen server's own). One deadline over
    /// checkout and queries keeps every answer within the pool timeout plus the time to hand it
    /// back, and never a multiple of it. A query that legitimately needs longer than the pool
    /// timeout needs a larger `MNEMO_POOL_TIMEOUT_MS`.
    ///
    /// - Postgres: at the deadline `op` is dropped, and the connections it held are closed
    ///   rather than pooled again (the server may still be working on them, or never answer);
    ///   the pool opens fresh ones for the next callers.
    /// - SQLite: a statement runs on a thread of its own (`sqlite_threads`), and `op` dropped
    ///   half-way would pool its connection again mid-transaction. `op` runs as a task of its
    ///   own that ends when its statement does (a lock wait ends at `busy_timeout`, half the
    ///   budget); the caller is answered at the deadline either way.
    pub async fn settle<T: 'static>(
        &self,
        deadline: tokio::time::Instant,
        op: impl Future<Output = Result<T, DbError>> + 'static,
    ) -> Result<T, DbError> {
        match self {
            DbPool::Pg(pool) => {
                let taken = Rc::new(RefCell::new(Vec::new()));
                let mut op = Box::pin(TAKEN.scope(taken.clone(), op));
                match tokio::time::timeout_at(deadline, &mut op).await {
                    Ok(result) => result,
                    Err(_) => {
                        // dropping `op` hands its connections back; take out again every one it
                        // took (one it had already given back goes too: a reconnect, paid only
                        // when a deadline is missed)
                        drop(op);
                        let taken = taken.borrow();
                        let closed = pool
                            .retain(|_, metrics| !taken.contains(&metrics.created))
                            .removed
                            .len();
                        Err(DbError::unavailable(
                            OutageKind::Deadline,
                            format!("abandoned at its deadline; {closed} connection(s) closed"),
                        ))
                    }
                }
            }
            DbPool::Sqlite(_) => {
                let task = actix_rt::spawn(op);
                match tokio::time::timeout_at(deadline, task).await {
                    Ok(Ok(result)) => result,
                    Ok(Err(e)) => Err(DbError::Failed(format!("persistence task failed: {e}"))),
                    Err(_) => Err(DbError::unavailable(
                        OutageKind::Deadline,
                        "answered at its deadline; the statement ends on its own",
                    )),
                }
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

/// Set on every SQLite connection (busy_timeout first: switching to WAL needs a lock): WAL so
/// readers never block the writer, a busy timeout so concurrent writers queue instead of
/// failing, foreign keys for the cascades, and reads through a memory map of the file (its
/// first 256 MiB): a page is then read in place, from the one copy the kernel keeps for every
/// connection, where each connection's own 2 MB page cache missed and copied it in again
/// (a namespace search ran at half the rate). Migrations use this one; the pool's connections
/// get [`sqlite_pragmas`] with a busy timeout that fits the pool timeout.
pub const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout=5000; PRAGMA journal_mode=WAL; \
     PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA mmap_size=268435456;";

/// How long a pooled SQLite connection waits for another's write lock: half the pool timeout.
/// A write stuck behind a lock then fails as `Locked` by itself inside the operation's deadline,
/// with the other half left for waiting for a connection (and for the statements after the lock).
pub fn sqlite_busy_timeout(pool_timeout: Duration) -> Duration {
    pool_timeout / 2
}

/// [`SQLITE_PRAGMAS`] with `busy_timeout` in place of its 5 s.
fn sqlite_pragmas(busy_timeout: Duration) -> String {
    SQLITE_PRAGMAS.replacen(
        "busy_timeout=5000",
        &format!("busy_timeout={}", busy_timeout.as_millis()),
        1,
    )
}

/// Makes every SQLite connection the process opens from now on plan each statement once,
/// whatever its parameters (the query planner stability guarantee, QPSG).
///
/// Without it SQLite plans a statement again whenever a parameter its plan looked at is bound
/// anew: a bound `LIMIT` (every `first()`), and, once `PRAGMA optimize` has gathered STAT4
/// samples, every equality on an indexed column. diesel binds every parameter on every
/// execution, so its cached statements were parsed and planned again on every call: a fifth of
/// a point read's time. With QPSG a plan comes from the statistics alone, and stays.
fn sqlite_plans_once() {
    static HOOKED: std::sync::Once = std::sync::Once::new();
    HOOKED.call_once(|| {
        // SAFETY: registers a function SQLite calls on each connection it opens; the function
        // is `'static` and only sets an option on the connection it is given.
        unsafe {
            libsqlite3_sys::sqlite3_auto_extension(Some(plan_once));
        }
    });
}

/// [`sqlite_plans_once`]'s hook: QPSG on the connection being opened.
unsafe extern "C" fn plan_once(
    db: *mut libsqlite3_sys::sqlite3,
    _error: *mut *mut std::ffi::c_char,
    _api: *const libsqlite3_sys::sqlite3_api_routines,
) -> std::ffi::c_int {
    // SAFETY: `db` is the connection SQLite is opening, valid for this call; this option takes
    // an int and an optional out-pointer for the new setting, null here.
    unsafe {
        libsqlite3_sys::sqlite3_db_config(
            db,
            libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
            1 as std::ffi::c_int,
            std::ptr::null_mut::<std::ffi::c_int>(),
        );
    }
    libsqlite3_sys::SQLITE_OK
}

#[cfg(test)]
mod tests {
    use diesel_async::SimpleAsyncConnection;

    use super::DbPool;

    /// A connection pooled before the statistics changed is not handed out again: the next
    /// checkout opens one that plans with them.
    #[tokio::test]
    async fn connections_opened_before_an_analyze_are_retired() {
        let dir = std::env::temp_dir().join(format!("mnemo-stats-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut config = crate::config::Config::from_env().unwrap();
        config.database_url = format!("sqlite://{}", dir.join("db.sqlite").display());
        config.pool_max = 2;
        let Ok(DbPool::Sqlite(pool)) = DbPool::build(&config) else {
            panic!("not a SQLite pool");
        };
        let created =
            |conn: &deadpool::managed::Object<_>| deadpool::managed::Object::metrics(conn).created;

        let mut conn = pool.get().await.unwrap();
        let first = created(&conn);
        conn.batch_execute(
            "CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT); CREATE INDEX t_b ON t (b);",
        )
        .await
        .unwrap();
        drop(conn);
        // nothing to analyze in an empty table: the connection stays
        pool.refresh_statistics().await.unwrap();
        assert_eq!(created(&pool.get().await.unwrap()), first);

        pool.get()
            .await
            .unwrap()
            .batch_execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) \
                 INSERT INTO t SELECT i, i % 7 FROM n;",
            )
            .await
            .unwrap();
        pool.refresh_statistics().await.unwrap();
        let again = pool.get().await.unwrap();
        assert!(
            created(&again) > first,
            "a connection older than the statistics came back"
        );
        drop(again);
        // and statistics that did not change since leave the new connection pooled
        let newer = created(&pool.get().await.unwrap());
        pool.refresh_statistics().await.unwrap();
        assert_eq!(created(&pool.get().await.unwrap()), newer);
        pool.close();
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A pooled SQLite connection plans a statement from the statistics alone, not from the
    /// values bound to it (QPSG), so binding new values does not plan it again. Seen from SQL: a
    /// partial index that holds only `b = 5` is not chosen for `b = ?`, even with 5 bound.
    #[tokio::test]
    async fn sqlite_plans_do_not_depend_on_bound_values() {
        use diesel::sql_types::{Integer, Text};
        use diesel_async::RunQueryDsl;

        #[derive(diesel::QueryableByName)]
        struct Plan {
            #[diesel(sql_type = Text)]
            detail: String,
        }

        let dir = std::env::temp_dir().join(format!("mnemo-qpsg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut config = crate::config::Config::from_env().unwrap();
        config.database_url = format!("sqlite://{}", dir.join("db.sqlite").display());
        let Ok(DbPool::Sqlite(pool)) = DbPool::build(&config) else {
            panic!("not a SQLite pool");
        };
        let mut conn = pool.get().await.unwrap();
        conn.batch_execute(
            "CREATE TABLE t (a INTEGER PRIMARY KEY, b INTEGER); \
             CREATE INDEX t_five ON t (b) WHERE b = 5;",
        )
        .await
        .unwrap();
        let plan: Vec<Plan> = diesel::sql_query("EXPLAIN QUERY PLAN SELECT a FROM t WHERE b = ?")
            .bind::<Integer, _>(5)
            .load(&mut conn)
            .await
            .unwrap();
        let plan: Vec<String> = plan.into_iter().map(|p| p.detail).collect();
        assert!(!plan.is_empty());
        assert!(
            plan.iter().all(|d| !d.contains("t_five")),
            "planned from the bound value: {plan:?}"
        );
        drop(conn);
        pool.close();
        let _ = std::fs::remove_dir_all(dir);
    }
}
