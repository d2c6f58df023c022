//! Following a run this process does not execute, from the database: its stored events as they
//! are stored, and its end. Nothing polls on Postgres: the waits end on notices (its events
//! stored, its thread changed).

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::{RunError, Runner, WAKE_ALL};
use crate::model::RunEvent;

/// On SQLite (one process, no notifications), how often a rejoined stream or a `join` of a run
/// executed by another process on the same file looks again. On Postgres they are notified.
const UNHEARD_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Stored events read at once.
const STORED_PAGE: i64 = 256;

impl Runner {
    /// Feeds a stored run's events after `after` into `tx` until the run has ended (or the stream
    /// is gone, or mnemo stops). A run another process executes is followed through notices (its
    /// new events stored, its thread changed when it ends), not by polling.
    pub async fn follow_stored(
        self,
        run_id: String,
        thread_id: String,
        mut after: i64,
        tx: mpsc::Sender<Arc<RunEvent>>,
    ) {
        let db = self.db();
        // subscribed before the first read, so that a notice between a read and the wait is kept
        let (mut stored, mut wakes) = (self.stored_events(), self.wakes());
        let hears = self.hears_other_processes();
        loop {
            // the status first: a run that had ended before this read has all its events stored
            let ended = match db.get_run(thread_id.clone(), run_id.clone()).await {
                Ok(run) => !run.status.is_active(),
                Err(_) => true,
            };
            // a page at a time: memory follows the page, not the run's whole stream
            let events = db
                .get_run_events(run_id.clone(), after, STORED_PAGE)
                .await
                .unwrap_or_default();
            let full = events.len() as i64 == STORED_PAGE;
            for e in events {
                after = e.seq;
                if tx.send(Arc::new(e)).await.is_err() {
                    return;
                }
            }
            if full {
                continue;
            }
            if ended {
                return;
            }
            loop {
                tokio::select! {
                    n = stored.recv() => if concerns(n, &run_id) { break },
                    n = wakes.recv() => if concerns(n, &thread_id) { break },
                    _ = tokio::time::sleep(UNHEARD_POLL), if !hears => break,
                    _ = tx.closed() => return,
                    _ = self.stopping() => return,
                }
            }
        }
    }

    /// Waits for a run this process does not execute to end (it ends with a notice on its
    /// thread), and answers its thread's values then, with the interrupts it waits on.
    pub async fn ended(&self, thread_id: &str, run_id: &str) -> Result<Value, RunError> {
        let db = self.db();
        let mut wakes = self.wakes();
        let hears = self.hears_other_processes();
        let run = loop {
            let run = db.get_run(thread_id.into(), run_id.into()).await?;
            if !run.status.is_active() {
                break run;
            }
            loop {
                tokio::select! {
                    n = wakes.recv() => if concerns(n, thread_id) { break },
                    _ = tokio::time::sleep(UNHEARD_POLL), if !hears => break,
                }
            }
        };
        // a graph worker's run: the values it ended with; mnemo's own: its latest checkpoint's.
        // The interrupts its thread waits on come from the latest checkpoint either way.
        let (mut values, state) = if run
            .graph_id
            .as_deref()
            .is_some_and(|g| crate::graphs::Graph::named(g).is_err())
        {
            let thread = db.get_thread(thread_id.into()).await?;
            let state = match thread.status.as_str() {
                "interrupted" => {
                    db.get_checkpoint(thread_id.into(), String::new(), None)
                        .await?
                }
                _ => None,
            };
            (thread.values.unwrap_or_else(|| json!({})), state)
        } else {
            let state = db
                .get_checkpoint(thread_id.into(), String::new(), None)
                .await?;
            let values = state
                .as_ref()
                .map(|s| s.values())
                .unwrap_or_else(|| json!({}));
            (values, state)
        };
        // as the stream shows them: with their `response_schema`
        let interrupts: Vec<Value> = state
            .iter()
            .flat_map(|s| s.interrupts())
            .flat_map(|(_, waiting)| waiting)
            .map(|mut i| {
                if let Value::Object(m) = &mut i {
                    m.entry("response_schema").or_insert(Value::Null);
                }
                i
            })
            .collect();
        if !interrupts.is_empty() {
            values["__interrupt__"] = json!(interrupts);
        }
        Ok(values)
    }
}

/// Whether a notice from a broadcast of ids may be about `id`: it names `id` or every one
/// ([`WAKE_ALL`]), or notices were missed.
fn concerns(notice: Result<String, broadcast::error::RecvError>, id: &str) -> bool {
    notice.map_or(true, |named| named == id || named == WAKE_ALL)
}
