//! Runs: created, queued, claimed, executed, cancelled, leased and stopped by the [`Runner`],
//! this process's run manager.
//!
//! A created run is a row. It executes here at once when its thread is free and a worker is
//! free; otherwise it waits in the queue (the `runs` table) for the first process with a free
//! worker to claim it. The [`Runner`] keeps one [`Live`] per run this process executes: the run's
//! stream of events (numbered, so a client can rejoin with `Last-Event-ID`; written to the
//! database as well when the run is resumable or was claimed from the queue, so any replica can
//! replay them), its stop signal (cancel, timeout, shutdown) and its outcome. The steps
//! themselves are the agent's ReAct loop ([`crate::agent::react`]). A run's thread is busy for the
//! run's length and idle, interrupted or in error after it, whatever happens; no connection is
//! held across a model call or a tool.

mod follow;
mod live;
mod request;

pub use live::{Live, Subscription};
pub use request::{
    CancelAction, Durability, GraphRef, Of, OnCompletion, OnDisconnect, RunRequest, Stop,
};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, broadcast, mpsc, watch};
use tokio::time::Instant;

use crate::agent::Model;
use crate::agent::react::{Halt, Outcome, Progress, Step};
use crate::model::{CheckpointRecord, ClaimedRun, MultitaskStrategy, NewRun, Run, RunStatus};
use crate::persistence::{DbError, Persistence};
use live::{Log, PERSIST_BACKLOG, persist};

/// Thread wake-ups a queued run may fall behind on before it looks again regardless.
const WAKE_BACKLOG: usize = 1024;

/// Runs claimed from the queue in one transaction, at most.
const CLAIM_BATCH: usize = 32;

/// The graphs this process executes runs of: mnemo's own (`""`: runs from before runs named
/// their graph, all of them mnemo's).
fn own_graphs() -> Vec<String> {
    crate::graphs::GRAPHS
        .iter()
        .map(|g| g.id.to_string())
        .chain([String::new()])
        .collect()
}

/// The wake-up that means "every queued run looks again" (a notification may have been lost).
pub const WAKE_ALL: &str = "*";

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
    /// Tells graph workers waiting to claim that the queue may have runs for them.
    queue_moved: broadcast::Sender<()>,
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
            queue_moved: broadcast::channel(16).0,
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
            self.queue_moved();
        }
    }

    /// The queue may have runs to claim: this process's executor looks, and so do the graph
    /// workers waiting on it.
    pub fn queue_moved(&self) {
        self.0.queue.notify_one();
        let _ = self.0.queue_moved.send(());
    }

    /// Notices that the queue may have runs to claim (for graph workers waiting to claim).
    pub fn queue_notices(&self) -> broadcast::Receiver<()> {
        self.0.queue_moved.subscribe()
    }

    /// Tells this process's streams following a run from the database that its events are
    /// stored (other processes hear it from the database).
    pub fn events_stored(&self, run_id: &str) {
        let _ = self.0.stored.send(run_id.to_string());
    }

    /// Until when a run claimed now is held, for a lease of `lease`.
    pub fn lease_until_for(&self, lease: Duration) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
            + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(15))
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
            Notice::Queue => self.queue_moved(),
            Notice::Missed => {
                self.thread_changed(WAKE_ALL);
                let _ = self.0.stored.send(WAKE_ALL.to_string());
                self.queue_moved();
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
        self.lease_until_for(self.0.settings.lease)
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
        self.queue_moved();
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
        // a graph worker's graph is executed there: queued for it
        let worker = match req.graph {
            GraphRef::Builtin(_) => self.0.workers.clone().try_acquire_owned().ok(),
            GraphRef::Worker(_) => None,
        };
        let quotas = self.0.settings.quotas;
        let started = self
            .0
            .db
            .start_run(NewRun {
                thread_id: req.thread_id.clone(),
                assistant_id: req.assistant_id.clone(),
                graph_id: req.graph.id().into(),
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
            req.graph.id(),
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
                self.queue_moved();
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
        let live = Arc::new(Live::new(run, thread_metadata, thread_owner, &req, log));
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
                runner.queue_moved();
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

    /// Claims as many queued runs as this process has free workers, and executes them. The
    /// workers are taken first, so that a run created here meanwhile cannot take a claimed
    /// run's worker.
    async fn claim_queued(&self) {
        loop {
            if *self.0.stopping.borrow() {
                return;
            }
            if self.0.workers.available_permits() == 0 {
                self.0.backlog.store(true, Ordering::Relaxed);
                return;
            }
            match self.0.db.any_queued(own_graphs()).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    log::warn!("looking at the run queue: {e:?}");
                    return;
                }
            }
            let mut workers = Vec::new();
            while workers.len() < CLAIM_BATCH
                && let Ok(worker) = self.0.workers.clone().try_acquire_owned()
            {
                workers.push(worker);
            }
            self.0.backlog.store(workers.is_empty(), Ordering::Relaxed);
            if workers.is_empty() {
                return;
            }
            let asked = workers.len();
            let claimed = self.0.db.claim_runs(
                asked as i64,
                own_graphs(),
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
            let full = claimed.len() == asked;
            for (run, worker) in claimed.into_iter().zip(workers) {
                self.start_claimed(run, worker).await;
            }
            if !full {
                return;
            }
        }
    }

    /// Executes a run claimed from the queue, as its kwargs ask; a run resumed after its process
    /// stopped goes on from the last checkpoint it committed.
    async fn start_claimed(&self, claimed: ClaimedRun, worker: OwnedSemaphorePermit) {
        let run = &claimed.run;
        log::info!(
            "run {} claimed on thread {} (attempt {})",
            run.run_id,
            run.thread_id,
            claimed.attempt
        );
        let request = Of::stored(&run.assistant_id, run.graph_id.as_deref()).and_then(|of| {
            RunRequest::parse(
                run.thread_id.clone(),
                of,
                run.metadata.clone(),
                run.kwargs.clone(),
                run.multitask_strategy,
                claimed.thread_owner.clone(),
                false,
            )
        });
        match request {
            Ok(req) => {
                self.execute_here(claimed, req, worker, false, true);
            }
            Err(e) => {
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
            }
        }
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
        // a running run holds its thread, which it frees; a pending one does not
        let frees = run.status == RunStatus::Running;
        if how == Stop::Rollback {
            db.rollback_run(thread_id.into(), run_id.into(), frees)
                .await?;
            self.wake(thread_id);
            return Ok(Run {
                status: RunStatus::Interrupted,
                ..run
            });
        }
        // a run executing elsewhere (another process, a graph worker) ends here: the thread
        // shows the last checkpoint it committed (`interrupted` while a node is still to run)
        let (thread_status, values) = if frees {
            let latest = db
                .get_checkpoint(thread_id.into(), String::new(), None)
                .await?;
            let values = latest.as_ref().map(CheckpointRecord::values);
            let status = crate::graphs::status_at(latest.as_ref().zip(values.as_ref()));
            (Some(status.to_string()), values)
        } else {
            (None, None)
        };
        let run = db
            .finish_run(
                run_id.into(),
                None,
                RunStatus::Interrupted,
                thread_status,
                values,
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
                let step = Step {
                    host: db,
                    model: &self.0.model,
                    live,
                    req: &req,
                    deadline,
                };
                step.steps(&mut progress, &mut stop).await
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
            // as LangGraph's: the run succeeded, and its thread waits on the interrupt
            Ok(Outcome::Interrupted(values)) => (RunStatus::Success, "interrupted", values),
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
                // a cancelled run's thread, as LangGraph's: `interrupted` while a node is
                // still to run
                let thread_status = match why {
                    Stop::Interrupt => {
                        crate::graphs::status_at(progress.latest.as_ref().zip(latest.as_ref()))
                    }
                    _ => "idle",
                };
                (
                    status,
                    thread_status,
                    latest.clone().unwrap_or_else(|| json!({})),
                )
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
        if req.on_completion == OnCompletion::Delete
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
}
