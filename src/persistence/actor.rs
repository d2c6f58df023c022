//! The actor that owns the pool. It runs on its own arbiter so that its `stopped` hook runs when
//! mnemo stops it (an actor on the System arbiter is only dropped after `main` returns).

use std::time::{Duration, Instant};

use actix::{
    Actor, ActorFutureExt, Context, Handler, Message, MessageResult, ResponseActFuture,
    ResponseFuture, WrapFuture,
};
use diesel_async::RunQueryDsl;
use serde::Serialize;

use super::{DbError, DbPool, batch, checkpoints, store, with_conn};
use crate::model::{NewCheckpoint, NewWrites};

/// Owns the process's one connection pool. Holds no per-request state.
pub struct PersistenceActor {
    db: DbPool,
    /// Store writes and checkpoint puts go to group-commit tasks started with the actor.
    puts: Option<batch::Queue<store::NewItem>>,
    checkpoint_puts: Option<batch::Queue<NewCheckpoint>>,
    write_puts: Option<batch::Queue<NewWrites>>,
}

impl PersistenceActor {
    pub fn new(db: DbPool) -> Self {
        PersistenceActor {
            db,
            puts: None,
            checkpoint_puts: None,
            write_puts: None,
        }
    }

    pub(super) fn pool(&self) -> &DbPool {
        &self.db
    }
}

impl Actor for PersistenceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // the default mailbox (16) would make request handlers queue behind each other;
        // the pool, not the mailbox, is what bounds concurrency
        ctx.set_mailbox_capacity(8192);
        self.puts = Some(batch::spawn(self.db.clone(), store::put_many));
        self.checkpoint_puts = Some(batch::spawn(self.db.clone(), checkpoints::put_many));
        self.write_puts = Some(batch::spawn(self.db.clone(), checkpoints::put_writes_many));
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
                let queue = self.$queue.clone();
                Box::pin(async move { batch::enqueue(queue.as_ref(), m.0).await })
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
        Box::pin(async move {
            with_conn!(&db, |conn, _s| {
                diesel::sql_query("SELECT 1").execute(&mut conn).await?;
            });
            Ok(db.status().into())
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
