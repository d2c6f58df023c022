//! Embedded migrations, one folder per backend, run at start-up and by `mnemo migrate`.
//!
//! On Postgres they run under an advisory lock, so replicas starting at the same moment on one
//! empty database take turns: the first applies, the others find nothing pending. On a direct
//! connection it is a session lock, and each migration commits on its own; through PgBouncer in
//! transaction mode (`pgbouncer=true`, no `MNEMO_PG_DIRECT_URL`), where a session lock could be
//! left on a server connection another client gets next, every pending migration runs in one
//! transaction holding a transaction-scoped lock (`pg_advisory_xact_lock`), released by its
//! commit or rollback wherever the server connection goes afterwards.
//! Both run on a blocking thread through diesel's synchronous migration harness, which needs no
//! libpq (an `AsyncConnectionWrapper` drives the async Postgres connection, opened the way the
//! pool opens its own, TLS included).

use diesel::sqlite::SqliteConnection;
use diesel::{Connection, RunQueryDsl};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::pool::{Backend, SQLITE_PRAGMAS, sqlite_path};
use super::tls::PgConnector;

const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// The advisory lock key mnemo's migrations hold ("mnemo" in ASCII).
const MIGRATION_LOCK: i64 = 0x6d6e656d6f;

/// Applies every pending migration; returns how many ran.
pub async fn run_migrations(database_url: &str) -> Result<usize, String> {
    let migrated = match Backend::of_url(database_url)? {
        Backend::Postgres => {
            // connected here, with the pool's TLS rules; the connection's driver task runs on this
            // runtime while the blocking thread drives the wrapper through a handle to it
            let connector = PgConnector::from_url(database_url)?;
            let mut conn = connector
                .connect()
                .await
                .map_err(|e| format!("while connecting to run migrations: {e}"))?;
            if connector.behind_pgbouncer() {
                // no named prepared statements (see pool::setup_behind_pgbouncer); no statement
                // timeout: a migration may take long
                conn.set_prepared_statement_cache_size(diesel::connection::CacheSize::Disabled);
                tokio::task::spawn_blocking(move || {
                    migrate_pg_in_one_transaction(AsyncConnectionWrapper::from(conn))
                })
                .await
            } else {
                tokio::task::spawn_blocking(move || migrate_pg(AsyncConnectionWrapper::from(conn)))
                    .await
            }
        }
        Backend::Sqlite => {
            let path = sqlite_path(database_url).to_string();
            tokio::task::spawn_blocking(move || migrate_sqlite(&path)).await
        }
    };
    migrated.map_err(|e| format!("migration task failed: {e}"))?
}

/// Postgres: an index on each store value field named (see `MNEMO_STORE_INDEXED_FIELDS`), with
/// `updated_at` so a filtered search walks its matches newest first and stops at its page.
/// Built `CONCURRENTLY`: writes go on while a large store is indexed. SQLite indexes nothing
/// here (its searches scan; the embedded default serves small stores).
pub async fn index_store_fields(database_url: &str, fields: &[String]) -> Result<(), String> {
    if fields.is_empty() || Backend::of_url(database_url)? != Backend::Postgres {
        return Ok(());
    }
    use diesel_async::SimpleAsyncConnection;
    let mut conn = PgConnector::from_url(database_url)?
        .connect()
        .await
        .map_err(|e| format!("while connecting to index store fields: {e}"))?;
    #[derive(diesel::QueryableByName)]
    struct Built {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        valid: bool,
    }
    for field in fields {
        // the name is checked by the config (letters, digits, `_`): safe to splice
        let name = format!("store_value_{field}_idx");
        // a build cut short (a stop, a failure) leaves an invalid index that `IF NOT EXISTS`
        // would keep for ever: it is built again
        let built: Vec<Built> = diesel_async::RunQueryDsl::load(
            diesel::sql_query(
                "SELECT i.indisvalid AS valid FROM pg_index i \
                 JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = $1",
            )
            .bind::<diesel::sql_types::Text, _>(&name),
            &mut conn,
        )
        .await
        .map_err(|e| format!("while reading the store's indexes: {e}"))?;
        // one statement per message: `CONCURRENTLY` cannot run in the implicit transaction of
        // several
        let drop = format!("DROP INDEX CONCURRENTLY IF EXISTS {name}");
        let create = format!(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} \
             ON store ((value -> '{field}'), updated_at DESC)"
        );
        let mut result = Ok(());
        if built.iter().any(|b| !b.valid) {
            result = conn.batch_execute(&drop).await;
        }
        if result.is_ok() {
            result = conn.batch_execute(&create).await;
        }
        if let Err(e) = result {
            // another mnemo starting at the same time may be building it
            log::warn!("store field {field:?} not indexed now: {e}");
        }
    }
    Ok(())
}

fn migrate_pg(mut conn: AsyncConnectionWrapper<AsyncPgConnection>) -> Result<usize, String> {
    diesel::sql_query("SET application_name = 'mnemo-migrate'")
        .execute(&mut conn)
        .map_err(|e| e.to_string())?;
    diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .execute(&mut conn)
        .map_err(|e| format!("while taking the migration lock: {e}"))?;
    let applied = conn
        .run_pending_migrations(PG_MIGRATIONS)
        .map(|v| v.len())
        .map_err(|e| format!("while migrating: {e}"));
    let unlocked = diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
        .execute(&mut conn);
    let applied = applied?;
    unlocked.map_err(|e| format!("while releasing the migration lock: {e}"))?;
    Ok(applied)
}

/// Behind PgBouncer in transaction mode: every pending migration in one transaction, under a
/// lock that ends with it. Each migration is a savepoint of it.
fn migrate_pg_in_one_transaction(
    mut conn: AsyncConnectionWrapper<AsyncPgConnection>,
) -> Result<usize, String> {
    diesel::Connection::transaction(&mut conn, |conn| {
        diesel::sql_query(format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
            .execute(conn)?;
        conn.run_pending_migrations(PG_MIGRATIONS)
            .map(|v| v.len())
            .map_err(|e| diesel::result::Error::QueryBuilderError(e.to_string().into()))
    })
    .map_err(|e| format!("while migrating: {e}"))
}

fn migrate_sqlite(path: &str) -> Result<usize, String> {
    let mut conn =
        SqliteConnection::establish(path).map_err(|e| format!("while opening {path}: {e}"))?;
    diesel::connection::SimpleConnection::batch_execute(&mut conn, SQLITE_PRAGMAS)
        .map_err(|e| e.to_string())?;
    // BEGIN IMMEDIATE: a second process waits on busy_timeout instead of racing
    conn.immediate_transaction(|conn| {
        conn.run_pending_migrations(SQLITE_MIGRATIONS)
            .map(|v| v.len())
            .map_err(|e| diesel::result::Error::QueryBuilderError(e.to_string().into()))
    })
    .map_err(|e| format!("while migrating: {e}"))
}
