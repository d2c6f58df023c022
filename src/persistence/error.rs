//! The persistence layer's error: what went wrong, in terms the HTTP layer can map to a status.
//!
//! "The database cannot serve now" is one variant, [`DbError::Unavailable`], whose [`Outage`]
//! says why in a typed [`OutageKind`]: callers decide on the kind (a group-commit batch that
//! failed for an outage fails all its writes at once instead of retrying them one by one), never
//! on a message.

use std::fmt;

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::pooled_connection::PoolError as ConnError;
use diesel_async::pooled_connection::deadpool::PoolError;

/// Everything a persistence operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database cannot serve now; the same operation may succeed later. Displayed without
    /// the cause (the driver's or the pool's text may reach a client or a thread's tool
    /// message); `Debug` and the [`Outage`]'s own `Display` have it, for the log.
    #[error("database unavailable")]
    Unavailable(Outage),
    /// The row the caller named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The write conflicts with what is stored (duplicate id).
    #[error("{0}")]
    Conflict(String),
    /// A quota would be passed (`Too many …`): the caller may try again later.
    #[error("Too many {0}")]
    TooMany(&'static str),
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

/// Why the database could not serve an operation. Every kind means "try again later", never
/// "this request is wrong".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutageKind {
    /// No connection became free within the pool timeout (all busy, or the database slow).
    PoolTimeout,
    /// A connection could not be opened, or broke under the operation (server down or
    /// restarting, network gone).
    Connection,
    /// The server refused or cancelled the work: shutting down, read-only (a standby after a
    /// failover), statement or lock timeout.
    Refused,
    /// SQLite: another connection held the write lock past `busy_timeout`.
    Locked,
    /// The operation did not finish within its deadline (a hung or very slow database).
    Deadline,
    /// Too many writes (or batched reads) were already queued; refused at once.
    Overloaded,
    /// The pool is closed: mnemo is stopping.
    Closed,
}

impl OutageKind {
    fn name(self) -> &'static str {
        match self {
            OutageKind::PoolTimeout => "no connection free in time",
            OutageKind::Connection => "connection failed",
            OutageKind::Refused => "refused by the server",
            OutageKind::Locked => "database locked",
            OutageKind::Deadline => "deadline passed",
            OutageKind::Overloaded => "too many operations queued",
            OutageKind::Closed => "pool closed",
        }
    }
}

/// An outage: its kind, and the driver's or pool's words for the log.
#[derive(Debug, Clone)]
pub struct Outage {
    pub kind: OutageKind,
    detail: String,
}

impl fmt::Display for Outage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.detail.is_empty() {
            f.write_str(self.kind.name())
        } else {
            write!(f, "{}: {}", self.kind.name(), self.detail)
        }
    }
}

impl DbError {
    /// An outage of `kind`; `detail` goes to the log only.
    pub fn unavailable(kind: OutageKind, detail: impl Into<String>) -> DbError {
        DbError::Unavailable(Outage {
            kind,
            detail: detail.into(),
        })
    }

    /// The outage's kind when the database could not serve (`None`: any other failure).
    pub fn outage(&self) -> Option<OutageKind> {
        match self {
            DbError::Unavailable(o) => Some(o.kind),
            _ => None,
        }
    }

    /// The same error for each caller that shared one failed batch.
    pub fn shared(&self) -> DbError {
        match self {
            DbError::Unavailable(o) => DbError::Unavailable(o.clone()),
            DbError::NotFound(m) => DbError::NotFound(m.clone()),
            DbError::Conflict(m) => DbError::Conflict(m.clone()),
            DbError::Invalid(m) => DbError::Invalid(m.clone()),
            DbError::TooMany(m) => DbError::TooMany(m),
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
            // diesel-async reports every Postgres error that is not the server's (socket closed,
            // I/O error, connection task gone) as UnableToSendCommand
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                info,
            ) => DbError::unavailable(OutageKind::Connection, info.message()),
            DieselError::DatabaseError(DatabaseErrorKind::ReadOnlyTransaction, info) => {
                DbError::unavailable(OutageKind::Refused, info.message())
            }
            DieselError::DatabaseError(DatabaseErrorKind::Unknown, ref info) => {
                match outage_of_unknown(info.message()) {
                    Some(kind) => DbError::unavailable(kind, info.message()),
                    None => DbError::Query(e),
                }
            }
            other => DbError::Query(other),
        }
    }
}

/// The outage behind an error diesel could only call `Unknown`, or `None`.
///
/// diesel keeps no SQLSTATE (Postgres) or result code (SQLite) for these, only the message, so
/// this is the one place that reads one; it compares with the fixed texts the servers use for
/// those codes, not free-form words:
/// - SQLite `SQLITE_BUSY` and `SQLITE_LOCKED` (`sqlite3_errstr`): another connection holds the
///   lock past `busy_timeout`;
/// - Postgres class 57 "operator intervention": `57014` query_canceled ("canceling statement due
///   to statement timeout", "… lock timeout", "… user request") and `57P01`–`57P02` ("terminating
///   connection due to administrator command", "… because of crash of another server process",
///   "… due to immediate shutdown command"). Postgres words these in the server's
///   `lc_messages`; with another language they stay `Query` (a 500), as before.
fn outage_of_unknown(message: &str) -> Option<OutageKind> {
    match message {
        "database is locked" | "database table is locked" => Some(OutageKind::Locked),
        m if m.starts_with("canceling statement due to ") => Some(OutageKind::Refused),
        m if m.starts_with("terminating connection ") => Some(OutageKind::Connection),
        _ => None,
    }
}

impl From<PoolError> for DbError {
    fn from(e: PoolError) -> Self {
        let kind = match &e {
            PoolError::Timeout(_) => OutageKind::PoolTimeout,
            PoolError::Closed => OutageKind::Closed,
            // a connection that could not be opened, or failed its check before reuse
            PoolError::Backend(ConnError::ConnectionError(_) | ConnError::QueryError(_))
            | PoolError::PostCreateHook(_)
            | PoolError::NoRuntimeSpecified => OutageKind::Connection,
        };
        DbError::unavailable(kind, e.to_string())
    }
}
