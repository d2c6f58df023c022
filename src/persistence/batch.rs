//! Group commit: writes that arrive while others are being written share the next transaction;
//! and its twin for reads: point reads that arrive together share one statement on Postgres,
//! and one trip to a SQLite thread.
//!
//! A queue's task takes whatever is waiting (up to `MAX_BATCH`) and hands it to one `flush`
//! call; with nothing else waiting, a write goes alone, with no added wait. Under load, writes
//! that arrive while `IN_FLIGHT` batches (one on SQLite) are being written make up the next batch,
//! so many callers share one round trip and one commit. Reads take no lock: `IN_FLIGHT` batches
//! of them on either database.
//!
//! When a batch fails:
//! - because the database is unavailable (an [`OutageKind`]: down, locked, hung, past the
//!   deadline), every write in it fails at once with that outage: writing them one by one
//!   would only make each caller wait for the same outage again;
//! - for any other reason (one write's content, a deadlock between batches), its writes are
//!   retried one by one, so one bad write fails only its own caller.
//!
//! Each write carries its caller's deadline; the caller is answered by then whatever the batch
//! does, and a batch is written only for callers still waiting, within the earliest of their
//! deadlines. The queue is bounded ([`QUEUE_CAPACITY`]): when it is full, a write is refused at
//! once (`Overloaded`, a 503), not queued behind writes that cannot finish in time.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use super::actor::Health;
use super::{Backend, DbError, DbPool, OutageKind};

/// Most writes in one batch.
const MAX_BATCH: usize = 128;
/// Batches being written (or read) at once per queue on Postgres, each holding one connection.
/// Two measured best on a 2-core host, against four and eight (32 clients: about +10 % on
/// pending writes and state reads against four); fewer, larger batches cost less per item.
const IN_FLIGHT: usize = 2;
/// On SQLite, one: its writers take turns on one file lock anyway, and batches written at once
/// would only poll for it (SQLite's busy handler is not first come, first served), so under load
/// a batch could starve past its `busy_timeout` while others commit. Queued here, writes wait
/// their turn in order and make up bigger batches.
const IN_FLIGHT_SQLITE: usize = 1;
/// Writes that may wait for a batch, beyond those being written: eight full batches. More would
/// only wait past their deadlines while a slow database works through the ones before them.
pub const QUEUE_CAPACITY: usize = 8 * MAX_BATCH;

/// One queued write (or read): the item, its caller's deadline, and where to send its result.
pub struct Pending<T, R = ()> {
    item: T,
    deadline: Instant,
    reply: oneshot::Sender<Result<R, DbError>>,
}

/// Where callers put their writes (or reads, answered with `R`).
pub type Queue<T, R = ()> = mpsc::Sender<Pending<T, R>>;

/// Starts the write queue's task on the current arbiter (the actor's). It ends when the queue
/// is dropped, after writing what was already queued.
pub fn spawn<T, F, Fut>(db: DbPool, health: Health, flush: F) -> Queue<T>
where
    T: Clone + 'static,
    F: Fn(DbPool, Vec<T>) -> Fut + 'static,
    Fut: Future<Output = Result<(), DbError>> + 'static,
{
    let flush = Arc::new(flush);
    let in_flight = match db.backend() {
        Backend::Postgres => IN_FLIGHT,
        Backend::Sqlite => IN_FLIGHT_SQLITE,
    };
    start(in_flight, move |batch| {
        let (db, flush, health) = (db.clone(), flush.clone(), health.clone());
        async move { write(&db, &health, &*flush, batch).await }
    })
}

/// Starts a read queue's task: the keys waiting are read by one `fetch` call, which answers
/// one result per key, in order. When the read fails, each of its callers gets that error.
pub fn spawn_reads<K, R, F, Fut>(db: DbPool, health: Health, fetch: F) -> Queue<K, R>
where
    K: 'static,
    R: 'static,
    F: Fn(DbPool, Vec<K>) -> Fut + 'static,
    Fut: Future<Output = Result<Vec<R>, DbError>> + 'static,
{
    let fetch = Arc::new(fetch);
    // reads take no lock: as many batches at once on SQLite as on Postgres
    start(IN_FLIGHT, move |batch| {
        let (db, fetch, health) = (db.clone(), fetch.clone(), health.clone());
        async move { read(&db, &health, &*fetch, batch).await }
    })
}

/// The queue's task: takes what is waiting (up to `MAX_BATCH`) while a slot is free, and hands
/// it to `work`.
fn start<T, R, W, WFut>(in_flight: usize, work: W) -> Queue<T, R>
where
    T: 'static,
    R: 'static,
    W: Fn(Vec<Pending<T, R>>) -> WFut + 'static,
    WFut: Future<Output = ()> + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Pending<T, R>>(QUEUE_CAPACITY);
    let slots = Arc::new(Semaphore::new(in_flight));
    actix_rt::spawn(async move {
        while let Some(first) = rx.recv().await {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                break;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            let work = work(batch);
            actix_rt::spawn(async move {
                work.await;
                drop(slot);
            });
        }
    });
    tx
}

/// Writes one batch and answers each of its callers.
async fn write<T, F, Fut>(db: &DbPool, health: &Health, flush: &F, mut batch: Vec<Pending<T>>)
where
    T: Clone + 'static,
    F: Fn(DbPool, Vec<T>) -> Fut,
    Fut: Future<Output = Result<(), DbError>> + 'static,
{
    // a caller past its deadline has had its answer (an outage): its write is not made
    batch.retain(|p| !p.reply.is_closed());
    let Some(deadline) = batch.iter().map(|p| p.deadline).min() else {
        return;
    };
    let (items, replies): (Vec<T>, Vec<_>) = batch.into_iter().map(|p| (p.item, p.reply)).unzip();
    let retry = (items.len() > 1).then(|| items.clone());
    let result = within(db, deadline, flush(db.clone(), items)).await;
    health.saw_write(&result);
    match (result, retry) {
        (Ok(()), _) => replies.into_iter().for_each(|r| {
            let _ = r.send(Ok(()));
        }),
        (Err(e), None) => replies.into_iter().for_each(|r| {
            let _ = r.send(Err(e.shared()));
        }),
        // the database is unavailable: every write fails now, with the same outage
        (Err(e), Some(_)) if e.outage().is_some() => replies.into_iter().for_each(|r| {
            let _ = r.send(Err(e.shared()));
        }),
        (Err(_), Some(items)) => {
            let mut outage: Option<DbError> = None;
            for (item, reply) in items.into_iter().zip(replies) {
                if let Some(e) = &outage {
                    let _ = reply.send(Err(e.shared()));
                    continue;
                }
                if reply.is_closed() {
                    continue;
                }
                let result = within(db, deadline, flush(db.clone(), vec![item])).await;
                health.saw_write(&result);
                if let Err(e) = &result
                    && e.outage().is_some()
                {
                    outage = Some(e.shared());
                }
                let _ = reply.send(result);
            }
        }
    }
}

/// Reads one batch and answers each of its callers.
async fn read<K, R: 'static, F, Fut>(
    db: &DbPool,
    health: &Health,
    fetch: &F,
    mut batch: Vec<Pending<K, R>>,
) where
    F: Fn(DbPool, Vec<K>) -> Fut,
    Fut: Future<Output = Result<Vec<R>, DbError>> + 'static,
{
    batch.retain(|p| !p.reply.is_closed());
    let Some(deadline) = batch.iter().map(|p| p.deadline).min() else {
        return;
    };
    let (keys, replies): (Vec<K>, Vec<_>) = batch.into_iter().map(|p| (p.item, p.reply)).unzip();
    let asked = keys.len();
    let result = within(db, deadline, fetch(db.clone(), keys)).await;
    health.saw(&result);
    match result {
        Ok(found) if found.len() == asked => {
            for (value, reply) in found.into_iter().zip(replies) {
                let _ = reply.send(Ok(value));
            }
        }
        Ok(_) => replies.into_iter().for_each(|r| {
            let _ = r.send(Err(DbError::Failed(
                "a batched read answered a different number of rows".into(),
            )));
        }),
        Err(e) => replies.into_iter().for_each(|r| {
            let _ = r.send(Err(e.shared()));
        }),
    }
}

/// A flush bounded by the batch's deadline on Postgres (a hung connection is closed there). On
/// SQLite it runs to its end, which `busy_timeout` bounds; its callers are answered by their
/// deadlines in [`enqueue`] either way, and the batch keeps its slot until it has ended.
async fn within<R, Fut>(db: &DbPool, deadline: Instant, flush: Fut) -> Result<R, DbError>
where
    R: 'static,
    Fut: Future<Output = Result<R, DbError>> + 'static,
{
    if Instant::now() >= deadline {
        return Err(DbError::unavailable(
            OutageKind::Deadline,
            "the batch's deadline passed before it was written",
        ));
    }
    match db.backend() {
        Backend::Postgres => db.settle(deadline, flush).await,
        Backend::Sqlite => flush.await,
    }
}

/// Queues `item` and waits, until `deadline`, for its batch to be written (or read). A full
/// queue refuses the item at once.
pub async fn enqueue<T, R>(
    queue: Option<&Queue<T, R>>,
    item: T,
    deadline: Instant,
) -> Result<R, DbError> {
    let Some(queue) = queue else {
        return Err(DbError::ActorGone);
    };
    let (reply, answer) = oneshot::channel();
    match queue.try_send(Pending {
        item,
        deadline,
        reply,
    }) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            return Err(DbError::unavailable(
                OutageKind::Overloaded,
                format!("{QUEUE_CAPACITY} operations already waiting for a batch"),
            ));
        }
        Err(TrySendError::Closed(_)) => return Err(DbError::ActorGone),
    }
    match tokio::time::timeout_at(deadline, answer).await {
        Ok(result) => result.unwrap_or(Err(DbError::ActorGone)),
        Err(_) => Err(DbError::unavailable(
            OutageKind::Deadline,
            "the write's batch was not written by its deadline",
        )),
    }
}
