//! Runs: a graph executed on a thread to its end, model → tools → model, one checkpoint per
//! step, as a LangGraph ReAct agent does.
//!
//! The [`Runner`] keeps one [`Live`] per run this process executes: the run's stream of events
//! (numbered, so a client can rejoin with `Last-Event-ID`; written to the database as well when
//! the run is resumable, so any replica can replay them), its stop signal (cancel, timeout,
//! shutdown) and its outcome. A run's thread is busy for the run's length and idle, interrupted
//! or in error after it, whatever happens; no connection is held across a model call or a tool.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, broadcast, mpsc, watch};
use tokio::time::Instant;

use crate::agent::{Delta, Model, ToolCall, Turn, tools};
use crate::graphs::{self, Graph};
use crate::model::{
    CheckpointRecord, ClaimedRun, MultitaskStrategy, NewCheckpoint, NewRun, NewWrites, Run,
    RunEvent, RunStatus,
};
use crate::persistence::{DbError, Persistence, next_state};

/// Most model turns in one run (LangGraph's default recursion limit).
const RECURSION_LIMIT: usize = 25;

/// Thread wake-ups a queued run may fall behind on before it looks again regardless.
const WAKE_BACKLOG: usize = 1024;

/// Runs claimed from the queue in one transaction, at most.
const CLAIM_BATCH: usize = 32;

/// The wake-up that means "every queued run looks again" (a notification may have been lost).
pub const WAKE_ALL: &str = "*";

/// When a run's checkpoints are committed, as LangGraph's `durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Each step is committed before its events are sent.
    Sync,
    /// Each step is written in the background while the run goes on; the run waits for its
    /// writes before it ends.
    #[default]
    Async,
    /// Only the last step is written, when the run ends or stops to ask.
    Exit,
}

impl Durability {
    pub fn parse(s: Option<&str>) -> Result<Durability, RunError> {
        match s {
            None | Some("async") => Ok(Durability::Async),
            Some("sync") => Ok(Durability::Sync),
            Some("exit") => Ok(Durability::Exit),
            Some(other) => Err(RunError::Invalid(format!(
                "durability must be sync, async or exit, not {other:?}"
            ))),
        }
    }
}

/// A run to execute.
#[derive(Clone)]
pub struct RunRequest {
    pub thread_id: String,
    pub graph: &'static Graph,
    pub input: Value,
    pub config: Value,
    pub metadata: Value,
    pub kwargs: Value,
    pub create_thread: bool,
    /// `command.resume`: the answer to the interrupt the thread is waiting on.
    pub resume: Option<Value>,
    /// Start from this checkpoint instead of the latest (fork, regenerate).
    pub checkpoint_id: Option<String>,
    pub multitask_strategy: MultitaskStrategy,
    /// The SSE event names the run's stream carries (from its `stream_mode`).
    pub events: Vec<&'static str>,
    /// Keep the stream's events in the database (`stream_resumable`).
    pub resumable: bool,
    /// Delete the thread once the run has ended (a stateless run's, by default).
    pub delete_thread: bool,
    /// The nodes the run stops before (`interrupt_before`) and after (`interrupt_after`).
    pub interrupt_before: Vec<&'static str>,
    pub interrupt_after: Vec<&'static str>,
    /// A user principal's id: the run may only use (or create) that user's thread.
    pub owner: Option<String>,
    /// When its checkpoints are committed.
    pub durability: Durability,
}

impl RunRequest {
    /// The run a request asks for: the graph `assistant_id` names, and the rest from `kwargs`,
    /// the request's body as kept with the run (whichever process executes the run reads it
    /// from there). `create_thread`: the run may create its thread.
    pub fn parse(
        thread_id: String,
        assistant_id: &str,
        metadata: Value,
        kwargs: Value,
        multitask_strategy: MultitaskStrategy,
        owner: Option<String>,
        create_thread: bool,
    ) -> Result<RunRequest, RunError> {
        let graph = graphs::resolve(assistant_id).map_err(RunError::Invalid)?;
        let resume = match kwargs.get("command") {
            None | Some(Value::Null) => None,
            Some(Value::Object(c)) if c.keys().all(|k| k == "resume") => c.get("resume").cloned(),
            Some(_) => {
                return Err(RunError::Invalid(
                    "command supports resume only (not goto or update)".into(),
                ));
            }
        };
        let text = |field: &str| kwargs.get(field).and_then(Value::as_str);
        let delete_thread = match text("on_completion") {
            None | Some("keep") => false,
            Some("delete") => true,
            Some(other) => {
                return Err(RunError::Invalid(format!(
                    "on_completion must be delete or keep, not {other:?}"
                )));
            }
        };
        let nodes = |field: &str| {
            graphs::nodes_named(field, kwargs.get(field).unwrap_or(&Value::Null))
                .map_err(RunError::Invalid)
        };
        let events =
            crate::model::StreamMode::events_of(kwargs.get("stream_mode").unwrap_or(&Value::Null))
                .map_err(RunError::Invalid)?;
        Ok(RunRequest {
            thread_id,
            graph,
            input: kwargs.get("input").cloned().unwrap_or(Value::Null),
            config: match kwargs.get("config") {
                Some(c) if !c.is_null() => c.clone(),
                _ => json!({}),
            },
            metadata,
            create_thread,
            resume,
            checkpoint_id: text("checkpoint_id").map(str::to_string),
            multitask_strategy,
            events,
            resumable: kwargs.get("stream_resumable") == Some(&Value::Bool(true)),
            delete_thread,
            interrupt_before: nodes("interrupt_before")?,
            interrupt_after: nodes("interrupt_after")?,
            owner,
            durability: Durability::parse(text("durability"))?,
            kwargs,
        })
    }
}

/// Why a run was stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Cancelled: keep what it wrote.
    Interrupt,
    /// Cancelled: undo what it wrote and delete it.
    Rollback,
    /// The server is shutting down.
    Shutdown,
    /// It outlived `MNEMO_RUN_TIMEOUT_S`.
    Timeout,
    /// It was ended elsewhere while this process held it (its lease expired during an outage,
    /// or its thread was deleted).
    Lost,
}

impl Stop {
    pub fn of_action(action: &str) -> Result<Stop, RunError> {
        match action {
            "interrupt" => Ok(Stop::Interrupt),
            "rollback" => Ok(Stop::Rollback),
            other => Err(RunError::Invalid(format!(
                "action must be interrupt or rollback, not {other:?}"
            ))),
        }
    }
}

/// Events already sent, and a receiver of those to come (none once the run has ended).
pub type Subscription = (Vec<Arc<RunEvent>>, Option<mpsc::Receiver<Arc<RunEvent>>>);

/// The events of a live run and who listens to them.
#[derive(Default)]
struct Log {
    seq: i64,
    events: Vec<Arc<RunEvent>>,
    subscribers: Vec<mpsc::Sender<Arc<RunEvent>>>,
    persist: Option<mpsc::Sender<RunEvent>>,
    /// Whether events were left unstored because the database fell behind.
    persist_fell_behind: bool,
    ended: bool,
}

/// Events a stream's reader may fall behind by. A reader further behind (a stalled client) is
/// let go: its stream ends, and a resumable run's client rejoins with `Last-Event-ID`, so a slow
/// reader never holds more than this in memory.
const SUBSCRIBER_BACKLOG: usize = 1024;
/// Events waiting to be stored (`stream_resumable`). Beyond it (the database far behind) the
/// events are still streamed live but not stored, and the log says so.
const PERSIST_BACKLOG: usize = 8192;

/// A run this process executes.
pub struct Live {
    pub run: Run,
    /// The thread's metadata when the run was created (it may name a service thread's user).
    thread_metadata: Value,
    /// The thread's owner: the user the agent acts as, whatever the input says.
    thread_owner: Option<String>,
    pub resumable: bool,
    events: Vec<&'static str>,
    /// Set once the run is being marked ended: a lease renewal that no longer finds it pending
    /// or running is then no news.
    ending: AtomicBool,
    log: Mutex<Log>,
    stop: watch::Sender<Option<Stop>>,
    outcome: watch::Sender<Option<(Run, Value)>>,
}

impl Live {
    /// The user whose thread the run is on (`None`: a service's thread).
    pub fn thread_owner(&self) -> Option<&str> {
        self.thread_owner.as_deref()
    }

    fn log(&self) -> MutexGuard<'_, Log> {
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
    fn emit(&self, name: &'static str, data: &Value) {
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

struct Inner {
    db: Persistence,
    model: Model,
    live: Mutex<HashMap<String, Arc<Live>>>,
    settings: Settings,
    stopping: watch::Sender<bool>,
    /// Open streams per user.
    streams: Mutex<HashMap<String, usize>>,
    /// This process, as the holder of the runs it executes.
    holder: String,
    /// One permit per run this process may execute at once (`MNEMO_RUN_WORKERS`).
    workers: Arc<Semaphore>,
    /// Tells the executor the queue may have runs to claim.
    queue: Notify,
    /// The executor left runs in the queue for want of a worker: a worker set free looks again.
    backlog: AtomicBool,
    /// Ids of threads that were freed or whose queue moved, for the runs queued on them.
    wakes: broadcast::Sender<String>,
    /// Ids of runs executed by another process whose new events are stored, for the streams
    /// that follow them ([`WAKE_ALL`]: maybe any run's).
    stored: broadcast::Sender<String>,
}

/// How the runner executes runs.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// A run still going after this long ends `timeout` (`MNEMO_RUN_TIMEOUT_S`).
    pub run_timeout: Duration,
    /// How long a run stays this process's without a renewal (`MNEMO_RUN_LEASE_S`).
    pub lease: Duration,
    /// The runs this process executes at once (`MNEMO_RUN_WORKERS`).
    pub workers: usize,
    /// How many times a run is started in all (`MNEMO_RUN_MAX_ATTEMPTS`).
    pub max_attempts: i32,
    pub quotas: Quotas,
}

/// Limits a single user never meets, so that no user can take the process from the others
/// (429 beyond them). Runs are counted in the database, streams in this process. Services are
/// not limited.
#[derive(Debug, Clone, Copy)]
pub struct Quotas {
    /// Runs one user may have pending or running at once.
    pub active_runs_per_user: usize,
    /// Runs that may wait behind a thread's active run.
    pub pending_runs_per_thread: usize,
    /// Streams one user may hold open at once.
    pub streams_per_user: usize,
}

/// One open stream of a user's, given back when dropped (the stream's producer holds it).
pub struct StreamSlot {
    runner: Runner,
    user: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut streams = self.runner.streams();
        if let Some(n) = streams.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                streams.remove(&self.user);
            }
        }
    }
}

/// Why the run layer refused or failed a request (mapped to HTTP in `crate::error`).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The request names something that does not exist or cannot be: 422.
    #[error("{0}")]
    Invalid(String),
    /// A user past one of its quotas (`Too many …`): 429, to retry in a second.
    #[error("Too many {0}")]
    Quota(&'static str),
    /// mnemo is shutting down and takes no new runs: 503.
    #[error("mnemo is shutting down")]
    ShuttingDown,
    /// What the database said (not found, conflict, unavailable, …).
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Starts, tracks, cancels and stops this process's runs.
#[derive(Clone)]
pub struct Runner(Arc<Inner>);

/// How a run's steps ended.
enum Outcome {
    /// The model answered: the final values.
    Done(Value),
    /// A tool needs the user's approval: the values with `__interrupt__`.
    Interrupted(Value),
    /// Stopped before or after a node (`interrupt_before`/`interrupt_after`): the values, and
    /// whether a node is still to run.
    Paused(Value, bool),
}

/// Why a run's steps did not reach an outcome.
enum Halt {
    Failed(String),
    Stopped(Stop),
}

/// A run's error event says what went wrong in mnemo's words; the driver's go to the log.
impl From<DbError> for Halt {
    fn from(e: DbError) -> Halt {
        match e {
            DbError::NotFound(m) | DbError::Conflict(m) | DbError::Invalid(m) => Halt::Failed(m),
            other => {
                log::warn!("a run's database call failed: {other:?}");
                Halt::Failed("the database could not be reached".into())
            }
        }
    }
}

/// How [`Runner::launch`] started a run.
pub enum Launched {
    /// This process executes it: its live events (and those from the first, when asked).
    Here(Arc<Live>, Option<Subscription>),
    /// It waits in the queue (its thread is busy, or this process has no free worker); any
    /// process claims it when it may go.
    Queued(Run),
}

impl Launched {
    pub fn run(&self) -> &Run {
        match self {
            Launched::Here(live, _) => &live.run,
            Launched::Queued(run) => run,
        }
    }
}

impl Runner {
    pub fn new(db: Persistence, model: Model, settings: Settings) -> Runner {
        Runner(Arc::new(Inner {
            db,
            model,
            live: Mutex::new(HashMap::new()),
            settings,
            stopping: watch::channel(false).0,
            streams: Mutex::new(HashMap::new()),
            holder: uuid::Uuid::new_v4().simple().to_string(),
            workers: Arc::new(Semaphore::new(settings.workers.max(1))),
            queue: Notify::new(),
            backlog: AtomicBool::new(false),
            wakes: broadcast::channel(WAKE_BACKLOG).0,
            stored: broadcast::channel(WAKE_BACKLOG).0,
        }))
    }

    /// Wakes the runs queued on `thread_id` ([`WAKE_ALL`]: on every thread) to look whether
    /// it is their turn.
    pub fn wake(&self, thread_id: &str) {
        let _ = self.0.wakes.send(thread_id.to_string());
        // without notifications (SQLite), a thread that moved may have freed a queued run
        if !self.hears_other_processes() {
            self.0.queue.notify_one();
        }
    }

    /// Thread wake-ups (ids of threads, or [`WAKE_ALL`]), from this process and others.
    pub fn wakes(&self) -> broadcast::Receiver<String> {
        self.0.wakes.subscribe()
    }

    /// Notices of stored events (ids of runs, or [`WAKE_ALL`]) from other processes.
    pub fn stored_events(&self) -> broadcast::Receiver<String> {
        self.0.stored.subscribe()
    }

    /// Whether other processes' changes are notified (Postgres). Without, what waits on
    /// another process's run must look again by itself.
    pub fn hears_other_processes(&self) -> bool {
        self.0.db.backend() == crate::persistence::Backend::Postgres
    }

    /// What the listener heard from the database (see [`crate::persistence::Notice`]).
    pub fn notified(&self, notice: crate::persistence::Notice<'_>) {
        use crate::persistence::Notice;
        match notice {
            Notice::Thread(thread_id) => self.thread_changed(thread_id),
            Notice::RunEvents(run_id) => {
                let _ = self.0.stored.send(run_id.to_string());
            }
            Notice::Queue => self.0.queue.notify_one(),
            Notice::Missed => {
                self.thread_changed(WAKE_ALL);
                let _ = self.0.stored.send(WAKE_ALL.to_string());
                self.0.queue.notify_one();
            }
        }
    }

    /// Another process changed `thread_id` ([`WAKE_ALL`]: maybe any thread): its queued runs
    /// look again, and a run this process executes there that was ended meanwhile (cancelled
    /// through another process, its thread deleted) stops now, not at the next renewal.
    fn thread_changed(&self, thread_id: &str) {
        self.wake(thread_id);
        let lives: Vec<Arc<Live>> = self
            .lives()
            .into_iter()
            .filter(|l| thread_id == WAKE_ALL || l.run.thread_id == thread_id)
            .collect();
        if !lives.is_empty() {
            let runner = self.clone();
            actix_web::rt::spawn(async move { runner.renew(lives).await });
        }
    }

    fn lease_until(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
            + chrono::Duration::from_std(self.0.settings.lease)
                .unwrap_or(chrono::Duration::seconds(15))
    }

    /// Every third of the lease until told to stop: renews the leases of this process's runs,
    /// stops those that were ended elsewhere, and ends any process's runs whose lease expired
    /// (at start-up too: the first tick is at once).
    pub fn spawn_lease_keeper(&self, mut stop: watch::Receiver<bool>) {
        let runner = self.clone();
        actix_web::rt::spawn(async move {
            let mut tick = tokio::time::interval(runner.0.settings.lease / 3);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => runner.keep_leases().await,
                    _ = stop.changed() => break,
                }
            }
        });
    }

    /// Renews the leases of `lives` and stops those that were ended elsewhere: a run
    /// cancelled through another process ends `interrupted` as if cancelled here; one that is
    /// gone, ended otherwise or held by another process now is lost.
    async fn renew(&self, lives: Vec<Arc<Live>>) {
        let db = &self.0.db;
        let ids = lives.iter().map(|l| l.run.run_id.clone()).collect();
        let renewed = db.renew_runs(ids, self.0.holder.clone(), self.lease_until());
        let held = match renewed.await {
            Ok(held) => held,
            Err(e) => {
                log::warn!("renewing the leases of {} run(s): {e:?}", lives.len());
                return;
            }
        };
        for live in lives.iter().filter(|l| !held.contains(&l.run.run_id)) {
            if live.ending.load(Ordering::SeqCst) {
                continue;
            }
            let (thread_id, run_id) = (live.run.thread_id.clone(), live.run.run_id.clone());
            let cancelled = db
                .get_run(thread_id, run_id.clone())
                .await
                .is_ok_and(|run| run.status == RunStatus::Interrupted);
            if cancelled {
                log::info!("run {run_id} was cancelled through another process; stopping it");
                live.stop(Stop::Interrupt);
            } else {
                log::warn!("run {run_id} was ended elsewhere; stopping it");
                live.stop(Stop::Lost);
            }
        }
    }

    async fn keep_leases(&self) {
        let db = &self.0.db;
        let lives = self.lives();
        if !lives.is_empty() {
            self.renew(lives).await;
        }
        match db.reap_runs(self.0.settings.max_attempts).await {
            Ok(reaped) => {
                if !reaped.resumed.is_empty() {
                    log::warn!(
                        "queued again, to resume them, {} run(s) of a stopped process (lease expired): {}",
                        reaped.resumed.len(),
                        reaped.resumed.join(", ")
                    );
                }
                if !reaped.lost.is_empty() {
                    log::warn!(
                        "ended {} run(s) of a stopped process, out of attempts: {}",
                        reaped.lost.len(),
                        reaped.lost.join(", ")
                    );
                }
                for thread_id in &reaped.threads {
                    self.wake(thread_id);
                }
            }
            Err(e) => log::warn!("taking back runs whose lease expired: {e:?}"),
        }
        // a queue notification missed, or a run queued by a process that is gone
        self.0.queue.notify_one();
    }

    fn streams(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        self.0.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for one more open stream of `user` (`None`: a service's, not counted); 429 past
    /// the user's quota.
    pub fn open_stream(&self, user: Option<&str>) -> Result<Option<StreamSlot>, RunError> {
        let Some(user) = user else {
            return Ok(None);
        };
        let mut streams = self.streams();
        let n = streams.entry(user.to_string()).or_insert(0);
        if *n >= self.0.settings.quotas.streams_per_user {
            return Err(RunError::Quota("open streams for this user"));
        }
        *n += 1;
        Ok(Some(StreamSlot {
            runner: self.clone(),
            user: user.to_string(),
        }))
    }

    pub fn db(&self) -> &Persistence {
        &self.0.db
    }

    fn registry(&self) -> MutexGuard<'_, HashMap<String, Arc<Live>>> {
        self.0.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live run `run_id` of `thread_id`, when this process executes it.
    pub fn live(&self, thread_id: &str, run_id: &str) -> Option<Arc<Live>> {
        self.registry()
            .get(run_id)
            .filter(|l| l.run.thread_id == thread_id)
            .cloned()
    }

    /// The runs this process executes.
    pub fn lives(&self) -> Vec<Arc<Live>> {
        self.registry().values().cloned().collect()
    }

    /// Resolves once shutdown has begun.
    pub async fn stopping(&self) {
        let mut rx = self.0.stopping.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Creates a run: errors (404, 409, 429) come back before anything runs. When its thread is
    /// free and this process has a free worker, the run executes here, at once (with
    /// `subscribe`, the caller gets its events from the first); otherwise it is queued, for the
    /// first process with a free worker once it may go. Runs the strategy stops are told to stop.
    pub async fn launch(&self, req: RunRequest, subscribe: bool) -> Result<Launched, RunError> {
        if *self.0.stopping.borrow() {
            return Err(RunError::ShuttingDown);
        }
        let worker = self.0.workers.clone().try_acquire_owned().ok();
        let quotas = self.0.settings.quotas;
        let started = self
            .0
            .db
            .start_run(NewRun {
                thread_id: req.thread_id.clone(),
                assistant_id: req.graph.assistant_id().to_string(),
                graph_id: req.graph.id.into(),
                metadata: req.metadata.clone(),
                kwargs: req.kwargs.clone(),
                create_thread: req.create_thread,
                multitask_strategy: req.multitask_strategy,
                owner: req.owner.clone(),
                claim: worker.is_some(),
                holder: self.0.holder.clone(),
                lease_expires_at: self.lease_until(),
                max_pending_on_thread: quotas.pending_runs_per_thread as i64,
                max_active_for_owner: quotas.active_runs_per_user as i64,
            })
            .await?;
        let run = started.run;
        log::info!(
            "run {} created on thread {} ({}, {})",
            run.run_id,
            run.thread_id,
            req.graph.id,
            run.status
        );
        let stop = if req.multitask_strategy == MultitaskStrategy::Rollback {
            Stop::Rollback
        } else {
            Stop::Interrupt
        };
        let launched = match worker {
            Some(worker) if run.status == RunStatus::Running => {
                let claimed = ClaimedRun {
                    run,
                    attempt: 1,
                    thread_metadata: started.thread_metadata,
                    thread_owner: started.thread_owner,
                };
                let (live, subscription) =
                    self.execute_here(claimed, req, worker, subscribe, false);
                Launched::Here(live, subscription)
            }
            _ => {
                self.0.queue.notify_one();
                Launched::Queued(run)
            }
        };
        let thread_id = &launched.run().thread_id;
        for other in started.to_cancel {
            if let Err(e) = self.cancel(thread_id, &other, stop).await {
                log::warn!("could not cancel run {other}: {e:?}");
            }
        }
        Ok(launched)
    }

    /// Starts executing a run this process holds, on a worker of its own.
    fn execute_here(
        &self,
        claimed: ClaimedRun,
        req: RunRequest,
        worker: OwnedSemaphorePermit,
        subscribe: bool,
        from_queue: bool,
    ) -> (Arc<Live>, Option<Subscription>) {
        let ClaimedRun {
            run,
            attempt,
            thread_metadata,
            thread_owner,
        } = claimed;
        // a run claimed from the queue may have streams on another process: its events are
        // stored for them
        let mut log = Log::default();
        let persister = (req.resumable || from_queue).then(|| {
            let (tx, rx) = mpsc::channel(PERSIST_BACKLOG);
            log.persist = Some(tx);
            actix_web::rt::spawn(persist(
                self.0.db.clone(),
                run.run_id.clone(),
                rx,
                self.0.stored.clone(),
            ))
        });
        let live = Arc::new(Live {
            run,
            thread_metadata,
            thread_owner,
            resumable: req.resumable,
            events: req.events.clone(),
            ending: AtomicBool::new(false),
            log: Mutex::new(log),
            stop: watch::channel(None).0,
            outcome: watch::channel(None).0,
        });
        // subscribed before the first event, so the caller's stream misses none
        let subscription = subscribe.then(|| live.subscribe(0));
        self.registry()
            .insert(live.run.run_id.clone(), live.clone());
        let runner = self.clone();
        let running = live.clone();
        actix_web::rt::spawn(async move {
            runner.execute(&running, req, attempt, persister).await;
            drop(worker);
            // runs left in the queue for want of a worker: this one is free now
            if runner.0.backlog.load(Ordering::Relaxed) {
                runner.0.queue.notify_one();
            }
        });
        (live, subscription)
    }

    /// Until told to stop: claims runs from the queue whenever it may have some (a run queued,
    /// a thread freed, a worker set free, the lease keeper's tick) and this process has free
    /// workers, and executes them.
    pub fn spawn_executor(&self, mut stop: watch::Receiver<bool>) {
        let runner = self.clone();
        actix_web::rt::spawn(async move {
            loop {
                tokio::select! {
                    _ = runner.0.queue.notified() => runner.claim_queued().await,
                    _ = stop.changed() => break,
                }
            }
        });
    }

    /// Claims as many queued runs as this process has free workers, and executes them.
    async fn claim_queued(&self) {
        loop {
            if *self.0.stopping.borrow() {
                return;
            }
            let free = self.0.workers.available_permits();
            self.0.backlog.store(free == 0, Ordering::Relaxed);
            if free == 0 {
                return;
            }
            let claimed = self.0.db.claim_runs(
                free.min(CLAIM_BATCH) as i64,
                self.0.holder.clone(),
                self.lease_until(),
            );
            let claimed = match claimed.await {
                Ok(claimed) => claimed,
                Err(e) => {
                    log::warn!("claiming queued runs: {e:?}");
                    return;
                }
            };
            let full = claimed.len() == free.min(CLAIM_BATCH);
            for run in claimed {
                self.start_claimed(run).await;
            }
            if !full {
                return;
            }
        }
    }

    /// Executes a run claimed from the queue, as its kwargs ask; a run resumed after its process
    /// stopped goes on from the last checkpoint it committed.
    async fn start_claimed(&self, claimed: ClaimedRun) {
        let run = &claimed.run;
        log::info!(
            "run {} claimed on thread {} (attempt {})",
            run.run_id,
            run.thread_id,
            claimed.attempt
        );
        let request = RunRequest::parse(
            run.thread_id.clone(),
            &run.assistant_id,
            run.metadata.clone(),
            run.kwargs.clone(),
            run.multitask_strategy,
            claimed.thread_owner.clone(),
            false,
        );
        let worker = self.0.workers.clone().try_acquire_owned();
        let (req, worker) = match (request, worker) {
            (Ok(req), Ok(worker)) => (req, worker),
            (Err(e), _) => {
                log::warn!("run {} cannot be executed: {e}", run.run_id);
                let failed = self.0.db.finish_run(
                    run.run_id.clone(),
                    Some(self.0.holder.clone()),
                    RunStatus::Error,
                    Some("error".into()),
                    None,
                );
                if let Err(e) = failed.await {
                    log::warn!("run {} could not be marked error: {e:?}", run.run_id);
                }
                return;
            }
            (_, Err(_)) => {
                // cannot be: a worker was free for each claimed run; the lease brings it back
                log::error!("run {} was claimed without a free worker", run.run_id);
                return;
            }
        };
        self.execute_here(claimed, req, worker, false, true);
    }

    /// Stops a run: at once when this process executes it; a run left behind by another
    /// process is marked `interrupted` (and rolled back when asked). Answers the run as it is.
    pub async fn cancel(&self, thread_id: &str, run_id: &str, how: Stop) -> Result<Run, RunError> {
        if let Some(live) = self.live(thread_id, run_id) {
            live.stop(how);
            return Ok(live.run.clone());
        }
        let db = &self.0.db;
        let run = db.get_run(thread_id.into(), run_id.into()).await?;
        if !run.status.is_active() {
            return Ok(run);
        }
        let thread_status = (run.status == RunStatus::Running).then(|| "idle".to_string());
        if how == Stop::Rollback {
            db.rollback_run(thread_id.into(), run_id.into(), thread_status.is_some())
                .await?;
            self.wake(thread_id);
            return Ok(Run {
                status: RunStatus::Interrupted,
                ..run
            });
        }
        let run = db
            .finish_run(
                run_id.into(),
                None,
                RunStatus::Interrupted,
                thread_status,
                None,
            )
            .await?;
        self.wake(thread_id);
        Ok(run)
    }

    /// Stops every run (they end `interrupted`, their streams close) and waits for them to
    /// finish, at most `timeout`. New runs are refused from now on.
    pub async fn shutdown(&self, timeout: Duration) {
        self.0.stopping.send_replace(true);
        let lives = self.lives();
        if lives.is_empty() {
            return;
        }
        log::info!("stopping {} run(s)", lives.len());
        for live in &lives {
            live.stop(Stop::Shutdown);
        }
        let deadline = Instant::now() + timeout;
        while !self.registry().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Executes a run this process holds to its end and records how it ended. A run started
    /// again after its process stopped (`attempt` > 1) goes on from the last checkpoint it
    /// committed: its committed steps are not run again, a model call in flight is made again.
    async fn execute(
        &self,
        live: &Live,
        mut req: RunRequest,
        attempt: i32,
        persister: Option<actix_web::rt::task::JoinHandle<()>>,
    ) {
        let db = &self.0.db;
        let began = std::time::Instant::now();
        let mut stop = live.stop.subscribe();
        let deadline = Instant::now() + self.0.settings.run_timeout;
        let mut progress = Progress::default();
        let resumed = if attempt > 1 {
            self.resume_point(live, &mut req).await
        } else {
            Ok(())
        };
        // `thread_id` beyond LangGraph's fields: a stream that created its thread says which
        live.emit(
            "metadata",
            &json!({ "run_id": live.run.run_id, "attempt": attempt, "thread_id": live.run.thread_id }),
        );
        let mut result = match resumed {
            Ok(()) => {
                self.steps(live, &req, &mut progress, &mut stop, deadline)
                    .await
            }
            Err(halt) => Err(halt),
        };
        if let Err(e) = progress.settle(db).await
            && result.is_ok()
        {
            result = Err(Halt::Failed(e));
        }
        let latest = progress.latest.as_ref().map(CheckpointRecord::values);
        let (status, thread_status, values) = match result {
            Ok(Outcome::Done(values)) => (RunStatus::Success, "idle", values),
            Ok(Outcome::Interrupted(values)) => (RunStatus::Interrupted, "interrupted", values),
            // as LangGraph's: the run succeeded, the thread waits when a node is still to run
            Ok(Outcome::Paused(values, true)) => (RunStatus::Success, "interrupted", values),
            Ok(Outcome::Paused(values, false)) => (RunStatus::Success, "idle", values),
            Err(Halt::Failed(message)) => {
                live.emit("error", &json!({ "error": "RunError", "message": message }));
                let error = json!({ "__error__": { "error": "RunError", "message": message } });
                (RunStatus::Error, "error", error)
            }
            Err(Halt::Stopped(why)) => {
                let (status, error, message) = match why {
                    Stop::Timeout => (
                        RunStatus::Timeout,
                        "TimeoutError",
                        "the run took longer than MNEMO_RUN_TIMEOUT_S",
                    ),
                    Stop::Shutdown => (
                        RunStatus::Interrupted,
                        "ServerShutdown",
                        "mnemo is shutting down; the run was interrupted",
                    ),
                    Stop::Lost => (
                        RunStatus::Error,
                        "RunLost",
                        "the run was ended elsewhere (its lease expired or its thread was deleted)",
                    ),
                    Stop::Interrupt | Stop::Rollback => (RunStatus::Interrupted, "", ""),
                };
                if !error.is_empty() {
                    live.emit("error", &json!({ "error": error, "message": message }));
                }
                (status, "idle", latest.clone().unwrap_or_else(|| json!({})))
            }
        };
        live.ending.store(true, Ordering::SeqCst);
        // the events are in the database before the run reads as ended
        live.log().persist = None;
        if let Some(persister) = persister {
            let _ = persister.await;
        }
        let thread_status = Some(thread_status.to_string());
        let thread_values = latest.filter(|_| progress.wrote);
        let run_id = live.run.run_id.clone();
        let ended = if *stop.borrow() == Some(Stop::Rollback) {
            // undone and deleted in one transaction that also frees the thread, so a run
            // waiting for the thread never starts from what is being undone
            let undone = db
                .rollback_run(live.run.thread_id.clone(), run_id.clone(), true)
                .await;
            if let Err(e) = undone {
                log::error!("run {run_id} could not be rolled back: {e:?}");
            }
            Run {
                status,
                ..live.run.clone()
            }
        } else {
            let holder = Some(self.0.holder.clone());
            let finished = db
                .finish_run(run_id.clone(), holder, status, thread_status, thread_values)
                .await;
            finished.unwrap_or_else(|e| {
                log::error!("run {run_id} could not be marked {status}: {e:?}");
                live.run.clone()
            })
        };
        log::info!(
            "run {} ended {status} in {} ms",
            live.run.run_id,
            began.elapsed().as_millis()
        );
        {
            let mut log = live.log();
            log.ended = true;
            log.subscribers.clear();
        }
        live.outcome.send_replace(Some((ended, values)));
        self.registry().remove(&live.run.run_id);
        self.wake(&live.run.thread_id);
        if req.delete_thread
            && let Err(e) = db.delete_thread(live.run.thread_id.clone()).await
        {
            log::warn!("the thread of stateless run {run_id} could not be deleted: {e:?}");
        }
    }

    /// Where a run resumed after its process stopped goes on: its stream's numbering after the
    /// events stored, and, when it had committed a checkpoint, from the latest one (the input,
    /// fork or answer it was started with is in it already).
    async fn resume_point(&self, live: &Live, req: &mut RunRequest) -> Result<(), Halt> {
        let db = &self.0.db;
        let run = &live.run;
        live.log().seq = db.last_run_event(run.run_id.clone()).await?;
        let head = db.checkpoint_head(run.thread_id.clone(), None).await?;
        let wrote = head
            .as_ref()
            .and_then(|h| h.metadata.get("run_id"))
            .is_some_and(|id| *id == json!(run.run_id));
        if wrote {
            req.input = Value::Null;
            req.resume = None;
            req.checkpoint_id = None;
        }
        Ok(())
    }

    /// The run's steps. Each checkpoint is computed here, from the previous one held in memory,
    /// and written in the background (group-committed with other runs' writes, as LangGraph's
    /// `durability: "async"`); the run waits for its writes before it ends.
    async fn steps(
        &self,
        live: &Live,
        req: &RunRequest,
        progress: &mut Progress,
        stop: &mut watch::Receiver<Option<Stop>>,
        deadline: Instant,
    ) -> Result<Outcome, Halt> {
        let db = &self.0.db;
        let run = &live.run;
        let user_id = user_of(
            live.thread_owner.as_deref(),
            &req.config,
            &live.thread_metadata,
        );
        let mut meta = Map::new();
        meta.insert("run_id".into(), json!(run.run_id));
        meta.insert("thread_id".into(), json!(run.thread_id));
        meta.insert("graph_id".into(), json!(req.graph.id));
        meta.insert("assistant_id".into(), json!(run.assistant_id));
        meta.insert("user_id".into(), json!(user_id));
        // the run goes on from the checkpoint asked for (a fork), else from the latest
        // pending writes matter only to a resume (the interrupt it answers)
        let (thread_id, from) = (run.thread_id.clone(), req.checkpoint_id.clone());
        let start = match req.resume {
            Some(_) => db.get_checkpoint(thread_id, String::new(), from).await?,
            None => db.checkpoint_head(thread_id, from).await?,
        };
        if let (None, Some(id)) = (&start, &req.checkpoint_id) {
            return Err(Halt::Failed(format!("Checkpoint {id} not found")));
        }
        progress.latest = start.clone();
        // the step of the checkpoint the next node writes (LangGraph's `langgraph_step`)
        let step_of = |r: &CheckpointRecord| r.metadata.get("step").and_then(Value::as_i64);
        let next_step = Cell::new(start.as_ref().and_then(step_of).unwrap_or(-1) + 1);
        let durability = req.durability;
        let mut write = async |values: Value, node: &str, source: &'static str| {
            let Value::Object(changes) = values else {
                return Err(Halt::Failed(
                    "a step wrote something other than an object".into(),
                ));
            };
            let record = next_state(
                &run.thread_id,
                Some(req.graph),
                progress.latest.take(),
                changes.clone(),
                Some(node.to_string()),
                source,
                meta.clone(),
            )?;
            let new = NewCheckpoint::from(&record);
            match durability {
                // committed before anything of the step is sent
                Durability::Sync => db.put_checkpoint(new).await.map_err(|e| {
                    log::warn!("a checkpoint could not be written: {e:?}");
                    Halt::Failed("a checkpoint could not be written".into())
                })?,
                // written in the background, group-committed; waited for before the run ends
                Durability::Async => {
                    let db = db.clone();
                    progress.writes.push(actix_web::rt::spawn(async move {
                        db.put_checkpoint(new).await
                    }));
                }
                // only the last one, when the run ends (or stops to ask)
                Durability::Exit => progress.unwritten = Some(new),
            }
            progress.wrote = true;
            let step = step_of(&record).unwrap_or_default();
            next_step.set(step + 1);
            let values = record.values();
            live.emit("values", &values);
            if node != "__input__" {
                live.emit("updates", &json!({ node: changes }));
            }
            if let Some(messages) = changes.get("messages").and_then(Value::as_array) {
                for m in messages.iter().filter(|m| m["type"] == "tool") {
                    tool_message(live, m, &chunk_metadata(&meta, node, step));
                }
            }
            progress.latest = Some(record);
            Ok::<_, Halt>(values)
        };
        // the node to run first: after a resume's tools, after the input, or (no input) the
        // one the checkpoint waits on
        let mut resuming = false;
        let (mut values, mut node) = if let Some(decision) = &req.resume {
            // resuming: answer the waiting tool calls, then go on
            let Some(start) = start.filter(|s| !s.interrupts().is_empty()) else {
                return Err(Halt::Failed("The thread has no interrupt to resume".into()));
            };
            let calls = pending_calls(&start.values());
            let results = run_tools(db, &user_id, &calls, approves(decision)).await;
            let values = write(json!({ "messages": results }), "tools", "loop").await?;
            if req.interrupt_after.contains(&"tools") {
                return Ok(self.pause(live, values, true));
            }
            (values, Some("agent"))
        } else {
            match &req.input {
                Value::Null => match start {
                    Some(s) => {
                        resuming = true;
                        let values = s.values();
                        live.emit("values", &values);
                        let node = graphs::next_node(&s.metadata, &values);
                        (values, node)
                    }
                    None => return Err(Halt::Failed("Received no input for __start__".into())),
                },
                Value::Object(_) => (
                    write(req.input.clone(), "__input__", "input").await?,
                    Some("agent"),
                ),
                other => {
                    return Err(Halt::Failed(format!(
                        "Expected an object as input, got {other}"
                    )));
                }
            }
        };
        let mut model_turn = 0;
        while let Some(this) = node {
            // a run that resumes does not stop again before the node it resumes
            let resumed = std::mem::take(&mut resuming);
            if req.interrupt_before.contains(&this) && !resumed {
                return Ok(self.pause(live, values, true));
            }
            if this == "agent" {
                if model_turn == RECURSION_LIMIT {
                    return Err(Halt::Failed(format!(
                        "Recursion limit of {RECURSION_LIMIT} reached without an answer"
                    )));
                }
                let turn = self
                    .turn(
                        live,
                        req,
                        &user_id,
                        &meta,
                        (model_turn, next_step.get()),
                        &values,
                        stop,
                        deadline,
                    )
                    .await?;
                let ai = match turn {
                    Turn::Answer(text) => {
                        json!({ "type": "ai", "id": message_id(run, model_turn), "content": text, "tool_calls": [] })
                    }
                    Turn::Call(calls) => {
                        let tool_calls: Vec<Value> = calls
                            .iter()
                            .map(|c| json!({ "id": c.id, "name": c.name, "args": c.args, "type": "tool_call" }))
                            .collect();
                        json!({ "type": "ai", "id": message_id(run, model_turn), "content": "", "tool_calls": tool_calls })
                    }
                };
                model_turn += 1;
                values = write(json!({ "messages": [ai] }), "agent", "loop").await?;
                node = graphs::tools_condition(&values);
            } else {
                let calls = pending_calls(&values);
                if let Some(delete) = calls.iter().find(|c| c.name == "delete_task") {
                    return Ok(Outcome::Interrupted(
                        self.ask_approval(live, delete, progress).await?,
                    ));
                }
                if let Some(why) = *stop.borrow() {
                    return Err(Halt::Stopped(why));
                }
                let results = run_tools(db, &user_id, &calls, false).await;
                values = write(json!({ "messages": results }), "tools", "loop").await?;
                node = Some("agent");
            }
            if req.interrupt_after.contains(&this) {
                return Ok(self.pause(live, values, node.is_some()));
            }
        }
        Ok(Outcome::Done(values))
    }

    /// Stops at a static interrupt (`interrupt_before`/`interrupt_after`): as LangGraph, an
    /// `updates` event with no interrupt in it, `{"__interrupt__": []}`.
    fn pause(&self, live: &Live, values: Value, waiting: bool) -> Outcome {
        live.emit("updates", &json!({ "__interrupt__": [] }));
        Outcome::Paused(values, waiting)
    }

    /// One model turn, its fragments streamed as they come; a stop or the deadline cuts it short.
    /// `(model_turn, step)`: the run's model turn (it names the message) and the step of the
    /// checkpoint the turn writes.
    #[allow(clippy::too_many_arguments)]
    async fn turn(
        &self,
        live: &Live,
        req: &RunRequest,
        user_id: &str,
        meta: &Map<String, Value>,
        (model_turn, step): (usize, i64),
        values: &Value,
        stop: &mut watch::Receiver<Option<Stop>>,
        deadline: Instant,
    ) -> Result<Turn, Halt> {
        if let Some(why) = *stop.borrow() {
            return Err(Halt::Stopped(why));
        }
        let messages = values
            .get("messages")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let mut stream = MessageStream::new(
            live,
            message_id(&live.run, model_turn),
            chunk_metadata(meta, "agent", step),
        );
        let mut on_delta = |d| stream.push(d);
        let turn = tokio::select! {
            turn = self.0.model.turn(req.graph, user_id, messages, &mut on_delta) => turn,
            why = stopped(stop, deadline) => return Err(Halt::Stopped(why)),
        };
        let turn = turn.map_err(Halt::Failed)?;
        stream.finish();
        Ok(turn)
    }

    /// Stops on a `delete_task` call: an interrupt waits for the user's approval, as a pending
    /// `__interrupt__` write on the checkpoint that asked. Answers the values with it.
    async fn ask_approval(
        &self,
        live: &Live,
        delete: &ToolCall,
        progress: &mut Progress,
    ) -> Result<Value, Halt> {
        progress.settle(&self.0.db).await.map_err(Halt::Failed)?;
        let Some(asked) = &progress.latest else {
            return Err(Halt::Failed("no checkpoint to interrupt on".into()));
        };
        let task = delete
            .args
            .get("task")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let interrupt = json!({
            "id": uuid::Uuid::new_v4().simple().to_string(),
            "value": {
                "action": "delete_task",
                "args": delete.args,
                "description": format!("Delete the task \"{task}\"? Resume with true to delete it, false to keep it."),
            },
        });
        let writes = NewWrites {
            thread_id: asked.thread_id.clone(),
            checkpoint_ns: String::new(),
            checkpoint_id: asked.checkpoint_id.clone(),
            task_id: delete.id.clone(),
            task_path: "tools".into(),
            writes: vec![(
                "__interrupt__".into(),
                "json".into(),
                json!([interrupt]).to_string().into_bytes(),
            )],
        };
        self.0.db.put_writes(writes).await?;
        let mut values = asked.values();
        values["__interrupt__"] = json!([interrupt]);
        live.emit("values", &values);
        live.emit("updates", &json!({ "__interrupt__": [interrupt] }));
        Ok(values)
    }
}

/// What a run has written: its latest checkpoint (held in memory, the base of the next step)
/// and the writes still in flight.
#[derive(Default)]
struct Progress {
    latest: Option<CheckpointRecord>,
    wrote: bool,
    writes: Vec<actix_web::rt::task::JoinHandle<Result<(), DbError>>>,
    /// With `durability: "exit"`, the last checkpoint, written when the run ends.
    unwritten: Option<NewCheckpoint>,
}

impl Progress {
    /// Waits for the writes in flight (and writes the one kept back); the first failure is
    /// the run's.
    async fn settle(&mut self, db: &Persistence) -> Result<(), String> {
        if let Some(last) = self.unwritten.take() {
            let db = db.clone();
            self.writes.push(actix_web::rt::spawn(async move {
                db.put_checkpoint(last).await
            }));
        }
        let mut result = Ok(());
        for write in self.writes.drain(..) {
            let done = write
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            if let (Ok(()), Err(e)) = (&result, done) {
                log::warn!("a checkpoint could not be written: {e:?}");
                result = Err("a checkpoint could not be written".to_string());
            }
        }
        result
    }
}

/// Resolves with the reason once the run is asked to stop or its deadline passes.
async fn stopped(stop: &mut watch::Receiver<Option<Stop>>, deadline: Instant) -> Stop {
    tokio::select! {
        why = stop.wait_for(Option::is_some) => why.ok().and_then(|w| *w).unwrap_or(Stop::Shutdown),
        _ = tokio::time::sleep_until(deadline) => Stop::Timeout,
    }
}

/// Writes a run's events to the database in batches, as they come, and tells this process's
/// streams that follow the run from there (other processes hear it from the database).
async fn persist(
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

/// The id of the AI message a run's `step` writes.
fn message_id(run: &Run, step: usize) -> String {
    format!("run-{}-{step}", run.run_id)
}

/// A model turn as it streams: `messages` events of `AIMessageChunk`s sharing the message id,
/// each sent as soon as the model gives it, then an empty one marked `chunk_position: "last"`
/// (as LangChain ends a streamed message), and the legacy `messages/metadata` and
/// `messages/partial` events when the run's stream asked for mode `messages`.
struct MessageStream<'a> {
    live: &'a Live,
    id: String,
    meta: Value,
    pushed: bool,
    text: String,
    started: bool,
}

impl<'a> MessageStream<'a> {
    fn new(live: &'a Live, id: String, meta: Value) -> MessageStream<'a> {
        MessageStream {
            live,
            id,
            meta,
            pushed: false,
            text: String::new(),
            started: false,
        }
    }

    fn push(&mut self, delta: Delta) {
        let (content, chunks) = match delta {
            Delta::Text(t) => (t, json!([])),
            Delta::ToolCall {
                index,
                id,
                name,
                args,
            } => {
                let field = |s: String| if s.is_empty() { Value::Null } else { json!(s) };
                let chunk = json!({ "id": field(id), "name": field(name), "args": args, "index": index, "type": "tool_call_chunk" });
                (String::new(), json!([chunk]))
            }
        };
        if self.live.wants("messages/partial") {
            if !self.started {
                self.started = true;
                self.live.emit(
                    "messages/metadata",
                    &json!({ &self.id: { "metadata": self.meta } }),
                );
            }
            self.text.push_str(&content);
            self.live.emit(
                "messages/partial",
                &json!([{ "type": "ai", "id": self.id, "content": self.text, "tool_calls": [] }]),
            );
        }
        let chunk = json!({ "type": "AIMessageChunk", "id": self.id, "content": content, "tool_call_chunks": chunks });
        self.live.emit("messages", &json!([chunk, self.meta]));
        self.pushed = true;
    }

    fn finish(self) {
        if self.pushed {
            let last = json!({ "type": "AIMessageChunk", "id": self.id, "content": "", "tool_call_chunks": [], "chunk_position": "last" });
            self.live.emit("messages", &json!([last, self.meta]));
        }
    }
}

/// A message that was not streamed (a tool's), as LangGraph sends a node's output messages:
/// whole, in `messages-tuple` (event `messages`), and in the legacy `messages` mode as its metadata
/// then `messages/complete`. Streamed messages get only chunks and `messages/partial`, as the
/// reference sends.
fn tool_message(live: &Live, message: &Value, meta: &Value) {
    live.emit("messages", &json!([message, meta]));
    if !live.wants("messages/complete") {
        return;
    }
    if let Some(id) = message["id"].as_str() {
        live.emit("messages/metadata", &json!({ id: { "metadata": meta } }));
    }
    live.emit("messages/complete", &json!([message]));
}

/// The user a run acts for: its thread's owner; on a service's thread (no owner), the
/// `config.configurable.user_id` the service named, else the thread's `metadata.user_id`, else
/// `default`.
fn user_of(owner: Option<&str>, config: &Value, thread_metadata: &Value) -> String {
    if let Some(owner) = owner {
        return owner.to_string();
    }
    config
        .pointer("/configurable/user_id")
        .or_else(|| thread_metadata.get("user_id"))
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .unwrap_or("default")
        .to_string()
}

/// What LangGraph attaches to a streamed message: the node that wrote it and the step of the
/// checkpoint it is written in.
fn chunk_metadata(meta: &Map<String, Value>, node: &str, step: i64) -> Value {
    let mut m = meta.clone();
    m.insert("langgraph_node".into(), json!(node));
    m.insert("langgraph_step".into(), json!(step));
    m.insert("langgraph_checkpoint_ns".into(), json!(""));
    Value::Object(m)
}

/// Whether a `command.resume` value approves: `true`, "yes"/"approve"/"accept", `{"approved": true}`,
/// or agent-chat-ui's `{"decisions": [{"type": "approve"|"accept"}]}`.
fn approves(decision: &Value) -> bool {
    let word = |s: &str| {
        matches!(
            s.trim().to_lowercase().as_str(),
            "yes" | "y" | "approve" | "approved" | "accept" | "ok"
        )
    };
    match decision {
        Value::Bool(b) => *b,
        Value::String(s) => word(s),
        Value::Object(o) => {
            o.get("approved").is_some_and(approves)
                || o.get("type").and_then(Value::as_str).is_some_and(word)
                || o.get("decisions")
                    .and_then(Value::as_array)
                    .is_some_and(|d| !d.is_empty() && d.iter().all(approves))
        }
        Value::Array(items) => !items.is_empty() && items.iter().all(approves),
        _ => false,
    }
}

/// Runs the tool calls; `delete_task` only with an approval in hand.
async fn run_tools(
    db: &Persistence,
    user_id: &str,
    calls: &[ToolCall],
    approved: bool,
) -> Vec<Value> {
    let mut results = Vec::new();
    for call in calls {
        let content = if call.name == "delete_task" && !approved {
            "Kept the task: deleting it was not approved.".to_string()
        } else {
            tools::execute(db, user_id, call).await
        };
        results.push(json!({
            "type": "tool", "id": uuid::Uuid::new_v4().to_string(), "content": content,
            "tool_call_id": call.id, "name": call.name, "status": "success",
        }));
    }
    results
}

/// The tool calls of the conversation's last AI message.
fn pending_calls(values: &Value) -> Vec<ToolCall> {
    let text = |c: &Value, k: &str| {
        c.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    values
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.iter().rev().find(|m| m["type"] == "ai"))
        .and_then(|ai| ai.get("tool_calls"))
        .and_then(Value::as_array)
        .map(|calls| {
            calls
                .iter()
                .map(|c| ToolCall {
                    id: text(c, "id"),
                    name: text(c, "name"),
                    args: c.get("args").cloned().unwrap_or_else(|| json!({})),
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approvals_as_clients_send_them() {
        for yes in [
            json!(true),
            json!(" Yes "),
            json!("approve"),
            json!({"approved": true}),
            json!({"type": "accept"}),
            json!({"decisions": [{"type": "approve"}, {"type": "accept"}]}),
            json!([{"type": "approve"}]),
        ] {
            assert!(approves(&yes), "{yes}");
        }
        for no in [
            json!(false),
            json!("no"),
            json!(null),
            json!(1),
            json!({"approved": false}),
            json!({"decisions": []}),
            json!({"decisions": [{"type": "approve"}, {"type": "reject"}]}),
            json!([]),
        ] {
            assert!(!approves(&no), "{no}");
        }
    }

    #[test]
    fn durability_and_cancel_actions_are_named_as_langgraph_names_them() {
        assert_eq!(Durability::parse(None).ok(), Some(Durability::Async));
        assert_eq!(Durability::parse(Some("sync")).ok(), Some(Durability::Sync));
        assert_eq!(Durability::parse(Some("exit")).ok(), Some(Durability::Exit));
        assert!(Durability::parse(Some("never")).is_err());
        assert_eq!(Stop::of_action("interrupt").ok(), Some(Stop::Interrupt));
        assert_eq!(Stop::of_action("rollback").ok(), Some(Stop::Rollback));
        assert!(Stop::of_action("pause").is_err());
    }
}
