//! Group commit: writes that arrive while others are being written share the next transaction.
//!
//! A queue's task takes whatever is waiting (up to `MAX_BATCH`) and hands it to one `flush`
//! call; with nothing else waiting, a write goes alone, with no added wait. Under load, writes
//! that arrive while `IN_FLIGHT` batches are being written make up the next batch, so many
//! callers share one round trip and one commit. When a batch fails, its writes are retried one
//! by one, so one bad write (or a deadlock between batches) fails only its own caller.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{DbError, DbPool};

/// Most writes in one batch.
const MAX_BATCH: usize = 128;
/// Batches being written at once (each holds one connection).
const IN_FLIGHT: usize = 4;

/// Where callers put their writes, each with where to send its result.
pub type Queue<T> = mpsc::UnboundedSender<(T, oneshot::Sender<Result<(), DbError>>)>;

/// Starts the queue's task on the current arbiter (the actor's). It ends when the queue is
/// dropped, after writing what was already queued.
pub fn spawn<T, F, Fut>(db: DbPool, flush: F) -> Queue<T>
where
    T: Clone + 'static,
    F: Fn(DbPool, Vec<T>) -> Fut + 'static,
    Fut: Future<Output = Result<(), DbError>> + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<(T, oneshot::Sender<Result<(), DbError>>)>();
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let flush = Arc::new(flush);
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
            let (db, flush) = (db.clone(), flush.clone());
            actix_rt::spawn(async move {
                let (items, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                let retry = (items.len() > 1).then(|| items.clone());
                match (flush(db.clone(), items).await, retry) {
                    (Ok(()), _) => replies.into_iter().for_each(|r| {
                        let _ = r.send(Ok(()));
                    }),
                    (Err(e), None) => replies.into_iter().for_each(|r| {
                        let _ = r.send(Err(e.shared()));
                    }),
                    (Err(_), Some(items)) => {
                        for (item, reply) in items.into_iter().zip(replies) {
                            let _ = reply.send(flush(db.clone(), vec![item]).await);
                        }
                    }
                }
                drop(slot);
            });
        }
    });
    tx
}

/// Queues `item` and waits for its batch to be written.
pub async fn enqueue<T>(queue: Option<&Queue<T>>, item: T) -> Result<(), DbError> {
    let (tx, rx) = oneshot::channel();
    match queue {
        Some(q) if q.send((item, tx)).is_ok() => rx.await.unwrap_or(Err(DbError::ActorGone)),
        _ => Err(DbError::ActorGone),
    }
}
