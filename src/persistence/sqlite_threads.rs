//! Where SQLite statements run: on a few long-lived threads, two per core, taking them
//! from one queue; a statement that waited there [`SPILL_AFTER`] goes to tokio's blocking pool.
//!
//! A SQLite statement is a blocking call, so it cannot run on the persistence actor's thread.
//! Tokio's blocking pool alone runs every statement at once, each on a thread of its own: 32
//! concurrent requests keep dozens of threads competing for the cores and waking from sleep,
//! for point reads that take a few microseconds each. Queued on a few threads, the same
//! statements run one after another, at up to twice the rate. The spill bounds what a slow
//! statement (a scan of a large store) costs the others: the quick ones behind it wait
//! [`SPILL_AFTER`] at most, then run beside it.

use std::error::Error;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use diesel_async::sync_connection_wrapper::SpawnBlocking;
use futures_util::future::BoxFuture;

/// How long a statement waits for one of the threads before the blocking pool takes it.
const SPILL_AFTER: Duration = Duration::from_millis(5);

/// A statement, taken by whichever comes first: a thread, or the spill to the blocking pool.
type Job = Arc<Mutex<Option<Box<dyn FnOnce() + Send + 'static>>>>;

fn take(job: &Job) -> Option<Box<dyn FnOnce() + Send + 'static>> {
    job.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// How many threads take statements from the queue: two per core.
fn thread_count() -> usize {
    2 * std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The threads' queue. They start on first use and live as long as the process; `None` when
/// not one could be started (the blocking pool then runs every statement).
fn queue() -> Option<&'static crossbeam_channel::Sender<Job>> {
    static QUEUE: OnceLock<Option<crossbeam_channel::Sender<Job>>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let n = thread_count();
            let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
            let started = (0..n)
                .filter(|i| {
                    let queue = queue.clone();
                    std::thread::Builder::new()
                        .name(format!("mnemo-sqlite-{i}"))
                        .spawn(move || {
                            while let Ok(job) = queue.recv() {
                                if let Some(run) = take(&job) {
                                    run();
                                }
                            }
                        })
                        .is_ok()
                })
                .count();
            (started > 0).then_some(jobs)
        })
        .as_ref()
}

/// The runtime of mnemo's SQLite connections (see the module's documentation).
pub struct SqliteThreads;

impl SpawnBlocking for SqliteThreads {
    fn spawn_blocking<'a, R>(
        &mut self,
        task: impl FnOnce() -> R + Send + 'static,
    ) -> BoxFuture<'a, Result<R, Box<dyn Error + Send + Sync + 'static>>>
    where
        R: Send + 'static,
    {
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let job: Job = Arc::new(Mutex::new(Some(Box::new(move || {
            let _ = tx.send(task());
        }))));
        let queued = queue().is_some_and(|q| q.send(job.clone()).is_ok());
        Box::pin(async move {
            if queued {
                tokio::select! {
                    answer = &mut rx => return answer.map_err(ended),
                    _ = tokio::time::sleep(SPILL_AFTER) => {}
                }
            }
            if let Some(run) = take(&job) {
                tokio::task::spawn_blocking(run);
            }
            rx.await.map_err(ended)
        })
    }

    fn get_runtime() -> Self {
        SqliteThreads
    }
}

fn ended(_: tokio::sync::oneshot::error::RecvError) -> Box<dyn Error + Send + Sync + 'static> {
    Box::from("the SQLite statement's thread ended before it answered")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use diesel_async::sync_connection_wrapper::SpawnBlocking;

    use super::{SqliteThreads, thread_count};

    /// A statement queued behind statements that hold every thread runs anyway, beside them.
    #[tokio::test]
    async fn a_statement_behind_busy_threads_spills_to_the_blocking_pool() {
        let (release, held) = crossbeam_channel::unbounded::<()>();
        let blockers: Vec<_> = (0..thread_count())
            .map(|_| {
                let held = held.clone();
                tokio::spawn(SqliteThreads.spawn_blocking(move || held.recv().is_err()))
            })
            .collect();
        let quick = SqliteThreads.spawn_blocking(|| 42);
        let answer = tokio::time::timeout(Duration::from_secs(10), quick).await;
        drop(release);
        assert_eq!(answer.ok().and_then(Result::ok), Some(42));
        for b in blockers {
            assert_eq!(b.await.ok().and_then(Result::ok), Some(true));
        }
    }
}
