//! The persistence layer's error: what went wrong, in terms the HTTP layer can map to a status.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// Everything a persistence operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database cannot be reached in time: pool checkout timed out, pool closed, connection lost.
    /// (Displayed without the cause, which is the driver's or the pool's text: it may reach a
    /// client or a thread's tool message; `Debug` has it, for the log.)
    #[error("database unavailable")]
    Unavailable(String),
    /// The row the caller named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The write conflicts with what is stored (duplicate id).
    #[error("{0}")]
    Conflict(String),
    /// The request is well-formed JSON but names something impossible.
    #[error("{0}")]
    Invalid(String),
    /// The persistence actor has stopped (the server is shutting down).
    #[error("persistence actor stopped")]
    ActorGone,
    /// Any other database error.
    #[error("database error")]
    Query(#[source] DieselError),
    /// Any other database error, seen by a whole batch of writes.
    #[error("database error")]
    Failed(String),
}

impl DbError {
    /// The same error for each caller that shared one failed batch.
    pub fn shared(&self) -> DbError {
        match self {
            DbError::Unavailable(m) => DbError::Unavailable(m.clone()),
            DbError::NotFound(m) => DbError::NotFound(m.clone()),
            DbError::Conflict(m) => DbError::Conflict(m.clone()),
            DbError::Invalid(m) => DbError::Invalid(m.clone()),
            DbError::ActorGone => DbError::ActorGone,
            DbError::Query(e) => DbError::Failed(format!("{e:?}")),
            DbError::Failed(m) => DbError::Failed(m.clone()),
        }
    }
}

impl From<DieselError> for DbError {
    fn from(e: DieselError) -> Self {
        match e {
            DieselError::NotFound => DbError::NotFound("not found".into()),
            // the driver's text names tables and constraints: it goes to the log, not the client
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                log::info!("unique violation: {}", info.message());
                DbError::Conflict("conflicts with an existing record".into())
            }
            DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
                DbError::Unavailable(info.message().to_string())
            }
            // 57014 query_canceled (statement_timeout) arrives as Unknown; SQLite's "database is
            // locked" past busy_timeout too: both mean "try again later", not "bug".
            DieselError::DatabaseError(DatabaseErrorKind::Unknown, ref info)
                if info.message().contains("statement timeout")
                    || info.message().contains("database is locked") =>
            {
                DbError::Unavailable(info.message().to_string())
            }
            other => DbError::Query(other),
        }
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for DbError {
    fn from(e: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        DbError::Unavailable(e.to_string())
    }
}
