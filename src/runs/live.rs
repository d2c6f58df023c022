//! A run's live stream of events: numbered, sent to whoever listens, kept in memory for a
//! resumable run and written to the database when the run's streams may be elsewhere.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};

use super::{RunRequest, Stop};
use crate::model::{Run, RunEvent};
use crate::persistence::Persistence;

/// Events already sent, and a receiver of those to come (none once the run has ended).
pub type Subscription = (Vec<Arc<RunEvent>>, Option<mpsc::Receiver<Arc<RunEvent>>>);

/// The events of a live run and who listens to them.
#[derive(Default)]
pub(super) struct Log {
    pub(super) seq: i64,
    pub(super) events: Vec<Arc<RunEvent>>,
    pub(super) subscribers: Vec<mpsc::Sender<Arc<RunEvent>>>,
    pub(super) persist: Option<mpsc::Sender<RunEvent>>,
    /// Whether events were left unstored because the database fell behind.
    pub(super) persist_fell_behind: bool,
    pub(super) ended: bool,
}

/// Events a stream's reader may fall behind by. A reader further behind (a stalled client) is
/// let go: its stream ends, and a resumable run's client rejoins with `Last-Event-ID`, so a slow
/// reader never holds more than this in memory.
const SUBSCRIBER_BACKLOG: usize = 1024;
/// Events waiting to be stored (`stream_resumable`). Beyond it (the database far behind) the
/// events are still streamed live but not stored, and the log says so.
pub(super) const PERSIST_BACKLOG: usize = 8192;

/// A run this process executes.
pub struct Live {
    pub run: Run,
    /// The thread's metadata when the run was created (it may name a service thread's user).
    pub(crate) thread_metadata: Value,
    /// The thread's owner: the user the agent acts as, whatever the input says.
    pub(crate) thread_owner: Option<String>,
    pub resumable: bool,
    pub(crate) events: Vec<&'static str>,
    /// Set once the run is being marked ended: a lease renewal that no longer finds it pending
    /// or running is then no news.
    pub(crate) ending: AtomicBool,
    pub(super) log: Mutex<Log>,
    pub(crate) stop: watch::Sender<Option<Stop>>,
    pub(crate) outcome: watch::Sender<Option<(Run, Value)>>,
}

impl Live {
    /// The live log of `run`, as `req` asks for it, its events going to `log`'s listeners.
    pub(super) fn new(
        run: Run,
        thread_metadata: Value,
        thread_owner: Option<String>,
        req: &RunRequest,
        log: Log,
    ) -> Live {
        Live {
            run,
            thread_metadata,
            thread_owner,
            resumable: req.resumable,
            events: req.events.clone(),
            ending: AtomicBool::new(false),
            log: Mutex::new(log),
            stop: watch::channel(None).0,
            outcome: watch::channel(None).0,
        }
    }

    /// A run's live log with no one listening yet and nothing stored (the loop's unit tests).
    #[cfg(test)]
    pub(crate) fn for_test(run: Run, req: &RunRequest) -> Live {
        Live::new(run, json!({}), None, req, Log::default())
    }

    pub(super) fn log(&self) -> MutexGuard<'_, Log> {
        // a panic while holding the lock cannot leave the log half-written
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the run's stream carries events of this name.
    pub fn wants(&self, name: &str) -> bool {
        name == "metadata" || name == "error" || self.events.contains(&name)
    }

    /// Sends an event to the run's listeners. A resumable run also keeps it (in memory while
    /// it runs, and in the database), and so does a run claimed from the queue (in the database:
    /// its streams may be on another process); other runs' events go only to whoever listens now
    /// (they carry no id, so nobody can ask for them again), and are not even serialised when
    /// nobody does.
    pub(crate) fn emit(&self, name: &'static str, data: &Value) {
        if !self.wants(name) {
            return;
        }
        let mut log = self.log();
        if log.ended {
            return;
        }
        log.seq += 1;
        log.subscribers.retain(|s| !s.is_closed());
        if !self.resumable && log.persist.is_none() && log.subscribers.is_empty() {
            return;
        }
        let event = Arc::new(RunEvent {
            seq: log.seq,
            event: name.to_string(),
            data: data.to_string(),
        });
        if let Some(persist) = &log.persist
            && let Err(mpsc::error::TrySendError::Full(_)) =
                persist.try_send(RunEvent::clone(&event))
            && !log.persist_fell_behind
        {
            log.persist_fell_behind = true;
            log::warn!(
                "run {}: the database fell behind its events; later ones are not stored",
                self.run.run_id
            );
        }
        log.subscribers.retain(|s| match s.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                log::warn!(
                    "run {}: a stream fell {SUBSCRIBER_BACKLOG} events behind; ending it",
                    self.run.run_id
                );
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        if self.resumable {
            log.events.push(event);
        }
    }

    /// The events after `after` (a resumable run's) and, unless the run has ended, a receiver
    /// of those to come.
    pub fn subscribe(&self, after: i64) -> Subscription {
        let mut log = self.log();
        let past = log
            .events
            .iter()
            .filter(|e| e.seq > after)
            .cloned()
            .collect();
        if log.ended {
            return (past, None);
        }
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BACKLOG);
        log.subscribers.push(tx);
        (past, Some(rx))
    }

    /// The sequence number of the latest event.
    pub fn last_seq(&self) -> i64 {
        self.log().seq
    }

    /// Asks the run to stop; the first reason given wins.
    pub fn stop(&self, why: Stop) {
        self.stop.send_if_modified(|s| {
            let first = s.is_none();
            if first {
                *s = Some(why);
            }
            first
        });
    }

    /// Waits for the run's end: the run as it ended and the values `wait` answers.
    pub async fn outcome(&self) -> (Run, Value) {
        let mut rx = self.outcome.subscribe();
        let ended = rx.wait_for(Option::is_some).await;
        match ended.ok().and_then(|o| o.clone()) {
            Some(o) => o,
            None => (self.run.clone(), json!({})),
        }
    }
}

/// Writes a run's events to the database in batches, as they come, and tells this process's
/// streams that follow the run from there (other processes hear it from the database).
pub(super) async fn persist(
    db: Persistence,
    run_id: String,
    mut rx: mpsc::Receiver<RunEvent>,
    stored: broadcast::Sender<String>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 256
            && let Ok(next) = rx.try_recv()
        {
            batch.push(next);
        }
        match db.put_run_events(run_id.clone(), batch).await {
            Ok(()) => {
                let _ = stored.send(run_id.clone());
            }
            Err(e) => log::warn!("events of run {run_id} could not be stored: {e:?}"),
        }
    }
}
