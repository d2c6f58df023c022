//! The actor that owns the pool. It runs on its own arbiter so that its `stopped` hook runs when
//! mnemo stops it (an actor on the System arbiter is only dropped after `main` returns).
//!
//! Every operation is answered within its deadline ([`PersistenceActor::bounded`], the pool
//! timeout), and the actor keeps the database's [`Health`] for `/ready`: an outage not yet
//! followed by a successful write means writes are failing.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorFutureExt, Context, Handler, Message, MessageResult, ResponseActFuture,
    ResponseFuture, WrapFuture,
};
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use serde::Serialize;

use super::checkpoints::CheckpointKey;
use super::{DbError, DbPool, OutageKind, batch, checkpoints, store, with_conn};
use crate::model::{CheckpointRecord, NewCheckpoint, NewWrites};

/// After an outage, `/ready` answers 503 at once for this long without asking the database
/// again; past it, a write probe decides (and a successful write of any caller ends the
/// outage sooner).
const RECHECK_AFTER: Duration = Duration::from_secs(1);

/// Whether writes are failing: the last outage an operation met, until a write succeeds.
/// Shared by the actor and its group-commit tasks, all on the actor's thread.
#[derive(Clone, Default)]
pub struct Health(Rc<Cell<Option<(Instant, OutageKind)>>>);

impl Health {
    /// Notes what an operation met: an outage marks writes as failing.
    pub fn saw<T>(&self, result: &Result<T, DbError>) {
        if let Some(kind) = result.as_ref().err().and_then(DbError::outage) {
            self.0.set(Some((Instant::now(), kind)));
        }
    }

    /// A write succeeded: the database takes writes again.
    pub fn wrote(&self) {
        self.0.set(None);
    }

    /// Notes what a write met: success ends an outage, an outage marks one.
    pub fn saw_write<T>(&self, result: &Result<T, DbError>) {
        match result {
            Ok(_) => self.wrote(),
            Err(_) => self.saw(result),
        }
    }

    /// The outage met within the last `within`, not since followed by a successful write.
    fn recent_outage(&self, within: Duration) -> Option<OutageKind> {
        self.0
            .get()
            .filter(|(at, _)| at.elapsed() < within)
            .map(|(_, kind)| kind)
    }
}

/// Owns the process's one connection pool. Holds no per-request state.
pub struct PersistenceActor {
    db: DbPool,
    health: Health,
    /// Store writes and checkpoint puts go to group-commit tasks started with the actor.
    puts: Option<batch::Queue<store::NewItem>>,
    checkpoint_puts: Option<batch::Queue<NewCheckpoint>>,
    write_puts: Option<batch::Queue<NewWrites>>,
    /// Postgres: concurrent checkpoint reads share one statement.
    checkpoint_reads: Option<batch::Queue<CheckpointKey, Option<CheckpointRecord>>>,
}

impl PersistenceActor {
    pub fn new(db: DbPool) -> Self {
        PersistenceActor {
            db,
            health: Health::default(),
            puts: None,
            checkpoint_puts: None,
            write_puts: None,
            checkpoint_reads: None,
        }
    }

    pub(super) fn pool(&self) -> &DbPool {
        &self.db
    }

    /// When an operation starting now must have its answer.
    fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.db.op_budget()
    }

    /// Runs one operation for a caller, answered within its deadline (see `DbPool::settle`);
    /// an outage it meets is noted for `/ready`.
    pub(super) fn bounded<T: 'static>(
        &self,
        op: impl Future<Output = Result<T, DbError>> + 'static,
    ) -> ResponseFuture<Result<T, DbError>> {
        let (db, health, deadline) = (self.db.clone(), self.health.clone(), self.deadline());
        Box::pin(async move {
            let result = db.settle(deadline, op).await;
            health.saw(&result);
            result
        })
    }
}

impl Actor for PersistenceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // the default mailbox (16) would make request handlers queue behind each other;
        // the pool, not the mailbox, is what bounds concurrency
        ctx.set_mailbox_capacity(8192);
        let (db, health) = (&self.db, &self.health);
        self.puts = Some(batch::spawn(db.clone(), health.clone(), store::put_many));
        self.checkpoint_puts = Some(batch::spawn(
            db.clone(),
            health.clone(),
            checkpoints::put_many,
        ));
        self.write_puts = Some(batch::spawn(
            db.clone(),
            health.clone(),
            checkpoints::put_writes_many,
        ));
        self.checkpoint_reads = Some(batch::spawn_reads(
            db.clone(),
            health.clone(),
            checkpoints::get_many,
        ));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.db.close();
    }
}

/// A write that goes through one of the actor's group-commit queues.
macro_rules! queued_write {
    ($(#[$doc:meta])* $msg:ident($item:ty) via $queue:ident) => {
        $(#[$doc])*
        pub struct $msg(pub $item);
        impl Message for $msg {
            type Result = Result<(), DbError>;
        }
        impl Handler<$msg> for PersistenceActor {
            type Result = ResponseFuture<Result<(), DbError>>;
            fn handle(&mut self, m: $msg, _: &mut Self::Context) -> Self::Result {
                let (queue, deadline, health) =
                    (self.$queue.clone(), self.deadline(), self.health.clone());
                Box::pin(async move {
                    let result = batch::enqueue(queue.as_ref(), m.0, deadline).await;
                    health.saw(&result);
                    result
                })
            }
        }
    };
}

queued_write!(
    /// Creates or replaces a store item.
    PutItem(store::NewItem) via puts
);
queued_write!(
    /// Stores a checkpoint with its blobs.
    PutCheckpoint(NewCheckpoint) via checkpoint_puts
);
queued_write!(
    /// Stores a task's pending writes.
    PutWrites(NewWrites) via write_puts
);

/// Reads a checkpoint, through the read queue: reads waiting together make one batch.
pub struct ReadCheckpoint(pub CheckpointKey);
impl Message for ReadCheckpoint {
    type Result = Result<Option<CheckpointRecord>, DbError>;
}
impl Handler<ReadCheckpoint> for PersistenceActor {
    type Result = ResponseFuture<Result<Option<CheckpointRecord>, DbError>>;
    fn handle(&mut self, m: ReadCheckpoint, _: &mut Self::Context) -> Self::Result {
        let (queue, deadline, health) = (
            self.checkpoint_reads.clone(),
            self.deadline(),
            self.health.clone(),
        );
        Box::pin(async move {
            let result = batch::enqueue(queue.as_ref(), m.0, deadline).await;
            health.saw(&result);
            result
        })
    }
}

/// The pool's figures, for `/ready` and the start-up and shutdown log lines.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PoolStats {
    pub max_size: usize,
    pub size: usize,
    pub available: usize,
    pub waiting: usize,
}

impl From<deadpool::Status> for PoolStats {
    fn from(s: deadpool::Status) -> Self {
        PoolStats {
            max_size: s.max_size,
            size: s.size,
            available: s.available,
            waiting: s.waiting,
        }
    }
}

/// Reads the pool's figures.
pub struct Stats;
impl Message for Stats {
    type Result = PoolStats;
}
impl Handler<Stats> for PersistenceActor {
    type Result = MessageResult<Stats>;
    fn handle(&mut self, _: Stats, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.db.status().into())
    }
}

/// One `SELECT 1` through the pool.
pub struct Ping;
impl Message for Ping {
    type Result = Result<PoolStats, DbError>;
}
impl Handler<Ping> for PersistenceActor {
    type Result = ResponseFuture<Result<PoolStats, DbError>>;
    fn handle(&mut self, _: Ping, _: &mut Self::Context) -> Self::Result {
        let db = self.db.clone();
        self.bounded(async move {
            with_conn!(&db, |conn, _s| {
                diesel::sql_query("SELECT 1").execute(&mut conn).await?;
            });
            Ok(db.status().into())
        })
    }
}

/// Whether the database takes writes now, with the pool's figures (`/ready`).
///
/// While an outage met in the last second has not been followed by a successful write, the
/// answer is that outage, at once. Otherwise a write probe that changes nothing: SQLite takes
/// and releases the write lock (`BEGIN IMMEDIATE`, so a lock held elsewhere is seen); Postgres
/// assigns a transaction id and commits (a read-only standby, or a server that cannot commit,
/// refuses).
pub struct Probe;
impl Message for Probe {
    type Result = Result<PoolStats, DbError>;
}
impl Handler<Probe> for PersistenceActor {
    type Result = ResponseFuture<Result<PoolStats, DbError>>;
    fn handle(&mut self, _: Probe, _: &mut Self::Context) -> Self::Result {
        if let Some(kind) = self.health.recent_outage(RECHECK_AFTER) {
            return Box::pin(async move {
                Err(DbError::unavailable(
                    kind,
                    "writes failed less than a second ago",
                ))
            });
        }
        let (db, health) = (self.db.clone(), self.health.clone());
        let probe = self.bounded(async move {
            match &db {
                DbPool::Pg(pool) => {
                    pool.get()
                        .await?
                        .batch_execute("SELECT txid_current()")
                        .await?
                }
                DbPool::Sqlite(pool) => {
                    pool.get()
                        .await?
                        .batch_execute("BEGIN IMMEDIATE; ROLLBACK")
                        .await?
                }
            }
            Ok(db.status().into())
        });
        Box::pin(async move {
            let stats = probe.await?;
            health.wrote();
            Ok(stats)
        })
    }
}

/// What closing the pool found.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ShutdownReport {
    pub size_before: usize,
    pub size_after: usize,
    pub waited_ms: u128,
}

/// Closes the pool, waits for checked-out connections to come back, then stops the actor.
pub struct Shutdown {
    pub wait: Duration,
}
impl Message for Shutdown {
    type Result = ShutdownReport;
}
impl Handler<Shutdown> for PersistenceActor {
    type Result = ResponseActFuture<Self, ShutdownReport>;
    fn handle(&mut self, m: Shutdown, _: &mut Self::Context) -> Self::Result {
        let db = self.db.clone();
        let size_before = db.status().size;
        db.close();
        let started = Instant::now();
        Box::pin(
            async move {
                while db.status().size > 0 && started.elapsed() < m.wait {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                // dropping a Postgres connection only signals its driver task, which lives on
                // this thread: let those tasks run so the sockets are closed before we return
                for _ in 0..10 {
                    tokio::task::yield_now().await;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                ShutdownReport {
                    size_before,
                    size_after: db.status().size,
                    waited_ms: started.elapsed().as_millis(),
                }
            }
            .into_actor(self)
            .map(|report, _, ctx| {
                actix::ActorContext::stop(ctx);
                report
            }),
        )
    }
}
