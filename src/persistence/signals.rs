//! Wake-ups across processes on Postgres. Whenever a run ends, is rolled back or is reaped, its
//! transaction sends `pg_notify('mnemo_threads', thread_id)`; each mnemo holds one connection
//! (besides the pool) that `LISTEN`s on that channel and hands each thread id to the run
//! manager, which wakes the runs queued on that thread and stops a run it executes there that
//! was ended meanwhile (cancelled through another process). A lost connection is noticed by a
//! ping, re-opened with back-off, and every run looks again after each (re)connection, so a
//! notification missed meanwhile delays no run. SQLite serves one process: nothing to listen to.

use std::pin::pin;
use std::time::Duration;

use diesel_async::SimpleAsyncConnection;
use futures_util::StreamExt;
use tokio::sync::watch;

use super::pool::Backend;
use super::tls::PgConnector;

/// The channel thread ids are notified on.
const CHANNEL: &str = "mnemo_threads";
/// With no notification for this long, the connection is pinged.
const PING_EVERY: Duration = Duration::from_secs(10);
/// A ping (or the connection's set-up) answered later than this counts as a lost connection.
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest wait between two attempts to reconnect.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the listener calls: with a thread id, or with `None` for "look at every thread" (after
/// a (re)connection, when notifications may have been missed).
pub type Wake = Box<dyn Fn(Option<&str>)>;

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
        conn.batch_execute(&format!("SET application_name = 'mnemo'; LISTEN {CHANNEL}"))
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
    wake(None);
    loop {
        let next = {
            let mut notes = pin!(conn.notifications_stream());
            tokio::time::timeout(PING_EVERY, notes.next()).await
        };
        match next {
            Ok(Some(Ok(note))) => wake(Some(&note.payload)),
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
