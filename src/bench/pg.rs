//! The bench's own view of Postgres, from outside mnemo: how many connections mnemo holds on
//! the bench's database, and how many transactions that database has committed.

use tokio_postgres::{Client, NoTls};

/// A connection of the bench's own (its `application_name` is not `mnemo`, so it is never
/// counted as one of mnemo's).
pub struct Watcher {
    client: Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watcher {
    /// `None` when `database_url` is not Postgres; an error when it cannot be reached. The
    /// URL's query string (mnemo's TLS settings) is dropped: the bench runs on loopback.
    pub async fn connect(database_url: &str) -> Result<Option<Watcher>, String> {
        if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            return Ok(None);
        }
        let url = database_url.split('?').next().unwrap_or(database_url);
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .map_err(|e| format!("the bench's own Postgres connection: {e}"))?;
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        client
            .batch_execute("SET application_name = 'mnemo-bench'")
            .await
            .map_err(|e| format!("the bench's own Postgres connection: {e}"))?;
        Ok(Some(Watcher { client, task }))
    }

    /// Connections on this database whose `application_name` is `mnemo`.
    pub async fn mnemo_connections(&self) -> Result<i64, String> {
        let row = self
            .client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE application_name = 'mnemo' AND datname = current_database()",
                &[],
            )
            .await
            .map_err(|e| format!("pg_stat_activity: {e}"))?;
        Ok(row.get(0))
    }

    /// Transactions this database has committed and rolled back since the statistics began
    /// (a counter: read it twice and subtract).
    pub async fn transactions(&self) -> Result<i64, String> {
        // each query is a transaction of its own, so it reads fresh statistics (which backends
        // report about once a second: read this over windows of seconds)
        let row = self
            .client
            .query_one(
                "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database \
                 WHERE datname = current_database()",
                &[],
            )
            .await
            .map_err(|e| format!("pg_stat_database: {e}"))?;
        Ok(row.get(0))
    }

    /// Refreshes the planner's statistics of the whole database, as autovacuum does once enough
    /// rows changed.
    pub async fn analyze(&self) -> Result<(), String> {
        self.client
            .batch_execute("ANALYZE")
            .await
            .map_err(|e| format!("ANALYZE: {e}"))
    }

    /// The server processes (backends) of mnemo's connections on this database.
    pub async fn mnemo_backends(&self) -> Result<Vec<u32>, String> {
        let rows = self
            .client
            .query(
                "SELECT pid FROM pg_stat_activity \
                 WHERE application_name = 'mnemo' AND datname = current_database()",
                &[],
            )
            .await
            .map_err(|e| format!("pg_stat_activity: {e}"))?;
        Ok(rows
            .iter()
            .filter_map(|r| u32::try_from(r.get::<_, i32>(0)).ok())
            .collect())
    }
}
