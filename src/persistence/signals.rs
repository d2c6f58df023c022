//! Signals across processes on Postgres, through `LISTEN`/`NOTIFY`:
//! - whenever a run ends, is rolled back or is reaped, its transaction sends
//!   `pg_notify('mnemo_threads', thread_id)`: the run manager wakes the runs queued on that
//!   thread, stops a run it executes there that was ended meanwhile (cancelled through another
//!   process), and `join`s of runs executed elsewhere look again;
//! - whenever a resumable run's events are stored, the same statement sends
//!   `pg_notify('mnemo_runs', run_id)`: streams rejoined through another process than the one
//!   executing the run read the new events then, instead of polling;
//! - whenever a run is queued that a process may claim now (its thread is free, or was freed
//!   with runs waiting on it, or its process stopped and it is to be resumed), the transaction
//!   sends `pg_notify('mnemo_queue', '')`: every process with a free worker claims runs.
//!
//! Each mnemo holds one connection (besides the pool) that `LISTEN`s on the three channels. A lost
//! connection is noticed by a ping, re-opened with back-off, and after each (re)connection
//! everything that waits looks again ([`Notice::Missed`]), so a notification missed meanwhile
//! delays nothing. SQLite serves one process: nothing to listen to.

use std::pin::pin;
use std::time::Duration;

use diesel_async::SimpleAsyncConnection;
use futures_util::StreamExt;
use tokio::sync::watch;

use super::pool::Backend;
use super::tls::PgConnector;

/// The channel thread ids are notified on.
const THREADS: &str = "mnemo_threads";
/// The channel run ids are notified on when events of theirs are stored.
const RUNS: &str = "mnemo_runs";
/// The channel that says the run queue has runs to claim.
const QUEUE: &str = "mnemo_queue";
/// With no notification for this long, the connection is pinged.
const PING_EVERY: Duration = Duration::from_secs(10);
/// A ping (or the connection's set-up) answered later than this counts as a lost connection.
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest wait between two attempts to reconnect.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What a notification says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice<'a> {
    /// A thread was freed, or its queue or its runs changed.
    Thread(&'a str),
    /// New events of a run are stored.
    RunEvents(&'a str),
    /// A run waits in the queue that a free worker may claim.
    Queue,
    /// Notifications may have been missed (the listener (re)connected): look at everything.
    Missed,
}

/// What the listener calls with each notice.
pub type Wake = Box<dyn Fn(Notice<'_>)>;

/// Starts the listener on Postgres (nothing on SQLite). It ends, closing its connection, when
/// `stop` changes.
pub fn spawn_listener(
    database_url: &str,
    wake: Wake,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    if Backend::of_url(database_url)? != Backend::Postgres {
        return Ok(());
    }
    let connector = PgConnector::from_url(database_url)?;
    actix_rt::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            tokio::select! {
                ended = listen(&connector, &wake, &mut backoff) => {
                    log::warn!("the wake-up listener lost its connection ({ended}); reconnecting");
                }
                _ = stop.changed() => break,
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => break,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    });
    Ok(())
}

/// One connection's life: answers why it ended.
async fn listen(connector: &PgConnector, wake: &Wake, backoff: &mut Duration) -> String {
    let connected = tokio::time::timeout(PING_TIMEOUT, async {
        let mut conn = connector.connect().await?;
        conn.batch_execute(&format!(
            "SET application_name = 'mnemo'; LISTEN {THREADS}; LISTEN {RUNS}; LISTEN {QUEUE}"
        ))
        .await
        .map_err(|e| e.to_string())?;
        Ok::<_, String>(conn)
    })
    .await;
    let mut conn = match connected {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return e,
        Err(_) => return "connecting timed out".into(),
    };
    *backoff = Duration::from_millis(100);
    wake(Notice::Missed);
    loop {
        let next = {
            let mut notes = pin!(conn.notifications_stream());
            tokio::time::timeout(PING_EVERY, notes.next()).await
        };
        match next {
            Ok(Some(Ok(note))) if note.channel == RUNS => wake(Notice::RunEvents(&note.payload)),
            Ok(Some(Ok(note))) if note.channel == QUEUE => wake(Notice::Queue),
            Ok(Some(Ok(note))) => wake(Notice::Thread(&note.payload)),
            Ok(Some(Err(e))) => return e.to_string(),
            Ok(None) => return "the connection closed".into(),
            Err(_) => {
                match tokio::time::timeout(PING_TIMEOUT, conn.batch_execute("SELECT 1")).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return e.to_string(),
                    Err(_) => return "a ping timed out".into(),
                }
            }
        }
    }
}
