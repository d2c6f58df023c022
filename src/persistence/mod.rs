//! Persistence: the only module that touches the database.
//!
//! One [`PersistenceActor`] per process owns the connection pool. Every operation is a typed
//! actix message whose handler clones the pool into a future (`ResponseFuture`), so queries run
//! concurrently, bounded by the pool size; a connection is held for one query or one
//! transaction, never longer. Callers use the cloneable [`Persistence`] handle, one `async fn`
//! per operation. When the actix system stops, [`Persistence::shutdown`] closes the pool and
//! waits for checked-out connections to come back, so mnemo leaves no connection behind.
//! Nothing outside this module imports diesel, diesel-async or deadpool.

mod actor;
mod assistants;
mod batch;
mod checkpoints;
mod error;
mod json_filter;
mod keys;
mod migrate;
mod pool;
mod raw_json;
mod runs;
mod schema;
mod signals;
mod sqlite_threads;
mod store;
mod tasks;
mod threads;
mod tls;
mod workers;

pub use actor::{PersistenceActor, PoolStats, ShutdownReport};
pub use checkpoints::{Prune, next_state};
pub use error::{DbError, Outage, OutageKind};
pub use migrate::{index_store_fields, run_migrations};
use pool::close_if_large;
pub use pool::{Backend, DbPool};
pub use signals::{Notice, Wake, spawn_listener};
pub use tls::behind_pgbouncer;

use actix::Addr;

/// Runs `$body` with a pooled connection `$conn` and the backend's schema module `$s`.
/// The body is compiled once per backend, so one query serves Postgres and SQLite.
macro_rules! with_conn {
    ($db:expr, |$conn:ident, $s:ident| $body:expr) => {{
        match $db {
            $crate::persistence::DbPool::Pg(pool) => {
                #[allow(unused_imports)]
                use $crate::persistence::schema::pg as $s;
                #[allow(unused_mut)]
                let mut $conn = pool.get().await?;
                #[allow(unused_imports)]
                use $crate::persistence::json_filter::pg as dialect;
                $body
            }
            $crate::persistence::DbPool::Sqlite(pool) => {
                #[allow(unused_imports)]
                use $crate::persistence::schema::sqlite as $s;
                #[allow(unused_mut)]
                let mut $conn = pool.get().await?;
                #[allow(unused_imports)]
                use $crate::persistence::json_filter::sqlite as dialect;
                $body
            }
        }
    }};
}
pub(crate) use with_conn;

/// The statement that inserts an empty idle thread row unless it exists (raw checkpointer
/// writes and `if_not_exists: create` runs need not create their thread first).
macro_rules! ensure_thread {
    ($s:ident, $thread_id:expr, $owner:expr, $now:expr) => {{
        use $s::threads as t;
        diesel::insert_into(t::table)
            .values((
                t::thread_id.eq($thread_id),
                t::metadata.eq(serde_json::json!({})),
                t::owner.eq($owner),
                t::status.eq("idle"),
                // as a run leaves it (see `runs::start`): a thread made by its run needs no update
                t::config.eq(serde_json::json!({ "configurable": {} })),
                t::created_at.eq($now),
                t::updated_at.eq($now),
                t::state_updated_at.eq($now),
            ))
            .on_conflict_do_nothing()
    }};
}
pub(crate) use ensure_thread;

/// Declares the persistence operations: for each, a message type, the actor's handler (a future
/// over a cloned pool) and the handle's `async fn`.
macro_rules! operations {
    ($( $(#[$doc:meta])* $msg:ident => fn $method:ident($($arg:ident: $ty:ty),*) -> $ret:ty = $func:path; )*) => {
        $(
            $(#[$doc])*
            pub struct $msg { $($arg: $ty),* }
            impl actix::Message for $msg { type Result = Result<$ret, DbError>; }
            impl actix::Handler<$msg> for PersistenceActor {
                type Result = actix::ResponseFuture<Result<$ret, DbError>>;
                fn handle(&mut self, m: $msg, _: &mut Self::Context) -> Self::Result {
                    let db = self.pool().clone();
                    #[allow(unused_variables)]
                    let $msg { $($arg),* } = m;
                    self.bounded(async move { $func(&db, $($arg),*).await })
                }
            }
        )*
        impl Persistence {
            $(
                $(#[$doc])*
                pub async fn $method(&self, $($arg: $ty),*) -> Result<$ret, DbError> {
                    self.addr.send($msg { $($arg),* }).await.map_err(|_| DbError::ActorGone)?
                }
            )*
        }
    };
}

use crate::model::*;
use serde_json::Value;

/// The typed handle request handlers use; cheap to clone.
#[derive(Clone)]
pub struct Persistence {
    addr: Addr<PersistenceActor>,
    backend: Backend,
    /// Bytes a page of history or search holds at most (`MNEMO_PAGE_MAX_BYTES`).
    page_max_bytes: usize,
}

impl Persistence {
    pub fn new(addr: Addr<PersistenceActor>, backend: Backend) -> Self {
        Persistence {
            addr,
            backend,
            page_max_bytes: usize::MAX,
        }
    }

    /// The same handle with pages bounded to `bytes`.
    pub fn with_page_max_bytes(self, bytes: usize) -> Self {
        Persistence {
            page_max_bytes: bytes,
            ..self
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Bytes a page of history or search holds at most (at least one row).
    pub fn page_max_bytes(&self) -> usize {
        self.page_max_bytes
    }

    /// A round trip to the database through the actor, with the pool's figures.
    pub async fn ping(&self) -> Result<PoolStats, DbError> {
        self.addr
            .send(actor::Ping)
            .await
            .map_err(|_| DbError::ActorGone)?
    }

    /// Whether the database takes writes now (a write probe that changes nothing, or the
    /// outage writes met in the last second), with the pool's figures.
    pub async fn probe(&self) -> Result<PoolStats, DbError> {
        self.addr
            .send(actor::Probe)
            .await
            .map_err(|_| DbError::ActorGone)?
    }

    /// The pool's figures without touching the database.
    pub async fn pool_stats(&self) -> Result<PoolStats, DbError> {
        self.addr
            .send(actor::Stats)
            .await
            .map_err(|_| DbError::ActorGone)
    }

    /// Creates or replaces a store item (group-committed with concurrent puts).
    pub async fn put_item(
        &self,
        prefix: String,
        key: String,
        value: Value,
        ttl_minutes: Option<f64>,
    ) -> Result<(), DbError> {
        let value = RawJson::from_value(&value);
        self.put_item_raw(prefix, key, value, ttl_minutes).await
    }

    /// [`Persistence::put_item`] of JSON text stored as it is (checked by the caller).
    pub async fn put_item_raw(
        &self,
        prefix: String,
        key: String,
        value: RawJson,
        ttl_minutes: Option<f64>,
    ) -> Result<(), DbError> {
        let item = store::NewItem {
            prefix,
            key,
            value,
            ttl_minutes,
        };
        self.addr
            .send(actor::PutItem(item))
            .await
            .map_err(|_| DbError::ActorGone)?
    }

    /// Stores a checkpoint with its channel blobs, creating the thread row if needed
    /// (group-committed with concurrent puts).
    pub async fn put_checkpoint(&self, new: NewCheckpoint) -> Result<(), DbError> {
        self.addr
            .send(actor::PutCheckpoint(new))
            .await
            .map_err(|_| DbError::ActorGone)?
    }

    /// Stores a task's pending writes against a checkpoint; the first write of an index wins
    /// (group-committed with concurrent writes).
    pub async fn put_writes(&self, new: NewWrites) -> Result<(), DbError> {
        self.addr
            .send(actor::PutWrites(new))
            .await
            .map_err(|_| DbError::ActorGone)?
    }

    /// Reads one checkpoint (or the latest) with its blobs and pending writes (coalesced with
    /// concurrent reads on Postgres).
    pub async fn get_checkpoint(
        &self,
        thread_id: String,
        checkpoint_ns: String,
        checkpoint_id: Option<String>,
    ) -> Result<Option<CheckpointRecord>, DbError> {
        self.read_checkpoint(checkpoints::CheckpointKey {
            thread_id,
            checkpoint_ns,
            checkpoint_id,
            with_writes: true,
        })
        .await
    }

    /// Reads a checkpoint (the latest without an id) without its pending writes.
    pub async fn checkpoint_head(
        &self,
        thread_id: String,
        checkpoint_id: Option<String>,
    ) -> Result<Option<CheckpointRecord>, DbError> {
        self.read_checkpoint(checkpoints::CheckpointKey {
            thread_id,
            checkpoint_ns: String::new(),
            checkpoint_id,
            with_writes: false,
        })
        .await
    }

    async fn read_checkpoint(
        &self,
        key: checkpoints::CheckpointKey,
    ) -> Result<Option<CheckpointRecord>, DbError> {
        self.addr
            .send(actor::ReadCheckpoint(key))
            .await
            .map_err(|_| DbError::ActorGone)?
    }

    /// Closes the pool and stops the actor; waits up to `wait` for busy connections.
    pub async fn shutdown(&self, wait: std::time::Duration) -> Result<ShutdownReport, DbError> {
        self.addr
            .send(actor::Shutdown { wait })
            .await
            .map_err(|_| DbError::ActorGone)
    }
}

operations! {
    /// Reads a store item (expired ones never), refreshing its TTL when asked.
    GetItem => fn get_item(prefix: String, key: String, refresh_ttl: bool) -> Option<StoreItem> = store::get;
    /// Deletes a store item; deleting nothing is not an error.
    DeleteItem => fn delete_item(prefix: String, key: String) -> () = store::delete;
    /// Searches the store under a namespace prefix with field filters, newest first.
    SearchItems => fn search_items(query: StoreSearch) -> Vec<StoreItem> = store::search;
    /// Lists the distinct namespaces (dotted prefixes) under an optional prefix.
    ListPrefixes => fn list_prefixes(prefix: Option<String>) -> Vec<String> = store::list_prefixes;
    /// Deletes every expired store item; returns how many.
    SweepExpired => fn sweep_expired() -> usize = store::sweep_expired;

    /// Writes the system assistants unless they exist.
    EnsureSystemAssistants => fn ensure_system_assistants(system: Vec<NewAssistant>) -> () = assistants::ensure_system;
    /// Creates an assistant (or answers the existing one with `if_exists = do_nothing`).
    CreateAssistant => fn create_assistant(new: NewAssistant) -> Assistant = assistants::create;
    /// One assistant a viewer may see.
    GetAssistant => fn get_assistant(assistant_id: String, viewer: Option<String>) -> Assistant = assistants::get;
    /// A page of assistants and how many match.
    SearchAssistants => fn search_assistants(query: AssistantQuery) -> (Vec<Assistant>, i64) = assistants::search;
    /// Changes an assistant: a new version, put in use.
    PatchAssistant => fn patch_assistant(assistant_id: String, editor: Option<String>, patch: AssistantPatch) -> Assistant = assistants::patch;
    /// Puts a version of an assistant back in use.
    SetLatestAssistant => fn set_latest_assistant(assistant_id: String, editor: Option<String>, version: i32) -> Assistant = assistants::set_latest;
    /// An assistant's versions, newest first.
    AssistantVersions => fn assistant_versions(assistant_id: String, viewer: Option<String>, metadata: Option<Value>, limit: i64, offset: i64) -> Vec<Assistant> = assistants::versions;
    /// Deletes an assistant and its versions.
    DeleteAssistant => fn delete_assistant(assistant_id: String, editor: Option<String>) -> () = assistants::delete;
    /// Creates a thread (or returns the existing one with `if_exists = do_nothing`).
    CreateThread => fn create_thread(new: NewThread) -> Thread = threads::create;
    /// Who owns a thread (`None`: no such thread).
    ThreadOwner => fn thread_owner(thread_id: String) -> Option<Option<String>> = threads::owner;
    /// Reads one thread.
    GetThread => fn get_thread(thread_id: String) -> Thread = threads::get;
    /// Merges metadata into a thread.
    PatchThread => fn patch_thread(thread_id: String, metadata: RawJson) -> Thread = threads::patch;
    /// Deletes a thread with its checkpoints, blobs and writes, in one transaction.
    DeleteThread => fn delete_thread(thread_id: String) -> () = threads::delete;
    /// Searches threads; returns one page and the total count.
    SearchThreads => fn search_threads(query: ThreadSearch) -> (Vec<Thread>, i64) = threads::search;
    /// Counts threads matching a filter.
    CountThreads => fn count_threads(filter: ThreadFilter) -> i64 = threads::count;
    /// Copies a thread with its whole history under a new id.
    CopyThread => fn copy_thread(thread_id: String, new_id: String) -> Thread = threads::copy;
    /// Prunes threads (deletes them, or keeps only their latest checkpoints), only `owner`'s when
    /// given; returns how many existed.
    PruneThreads => fn prune_threads(thread_ids: Vec<String>, strategy: checkpoints::Prune, owner: Option<String>) -> i64 = checkpoints::prune;
    /// Deletes the checkpoints the given runs wrote, in every thread (only `owner`'s when given);
    /// returns how many.
    DeleteForRuns => fn delete_for_runs(run_ids: Vec<String>, owner: Option<String>) -> i64 = checkpoints::delete_for_runs;

    /// Lists checkpoints newest first, keyset-paginated by checkpoint id.
    ListCheckpoints => fn list_checkpoints(query: CheckpointQuery) -> Vec<CheckpointRecord> = checkpoints::list;
    /// Deletes a thread's checkpoints, blobs and writes (and the thread); idempotent.
    DeleteCheckpoints => fn delete_checkpoints(thread_id: String) -> () = checkpoints::delete_thread;
    /// Starts a run on a thread that is not busy, and marks the thread busy.
    StartRun => fn start_run(new: NewRun) -> StartedRun = runs::start;
    /// Whether any run of these graphs waits in the queue.
    AnyQueued => fn any_queued(graphs: Vec<String>) -> bool = runs::any_queued;
    /// Claims runs of these graphs from the queue, for a process (or graph worker) with free workers.
    ClaimRuns => fn claim_runs(limit: i64, graphs: Vec<String>, holder: String, lease_expires_at: chrono::DateTime<chrono::Utc>) -> Vec<ClaimedRun> = runs::claim_next;
    /// Registers the graphs a graph worker serves, until a time.
    RegisterWorkerGraphs => fn register_worker_graphs(graphs: Vec<WorkerGraph>, served_until: chrono::DateTime<chrono::Utc>) -> () = workers::register;
    /// Extends the time graphs are served (their worker claims their runs).
    RefreshWorkerGraphs => fn refresh_worker_graphs(graph_ids: Vec<String>, served_until: chrono::DateTime<chrono::Utc>) -> () = workers::refresh;
    /// A graph a worker registered.
    WorkerGraphOf => fn worker_graph(graph_id: String) -> Option<WorkerGraph> = workers::get;
    /// Hands a run a worker holds back to the queue; answers whether it held it.
    ReleaseRuns => fn release_runs(run_id: Option<String>, holder: String) -> usize = workers::release;
    /// Appends a worker's events to a run it holds; answers the last event's number.
    AppendRunEvents => fn append_run_events(run_id: String, holder: String, events: Vec<(String, String)>, first_seq: Option<i64>) -> i64 = workers::append_events;
    /// Ends a run and, when it held its thread, sets the thread's status.
    FinishRun => fn finish_run(run_id: String, holder: Option<String>, status: RunStatus, thread_status: Option<String>, values: Option<Value>) -> Run = runs::finish;
    /// Deletes a run and the checkpoints it wrote.
    RollbackRun => fn rollback_run(thread_id: String, run_id: String, free_thread: bool) -> () = checkpoints::rollback_run;
    /// Deletes a run that has ended.
    DeleteRun => fn delete_run(thread_id: String, run_id: String) -> () = runs::delete;
    /// Extends the leases of this process's runs; answers those it still holds.
    RenewRuns => fn renew_runs(run_ids: Vec<String>, holder: String, until: chrono::DateTime<chrono::Utc>) -> Vec<String> = runs::renew;
    /// Queues again (or ends) the runs whose lease expired.
    ReapRuns => fn reap_runs(max_attempts: i32) -> runs::Reaped = runs::reap;
    /// The runs with one of these statuses (only on `owner`'s threads when given), oldest
    /// first, as (thread id, run id).
    ActiveRuns => fn active_runs(statuses: Vec<RunStatus>, owner: Option<String>) -> Vec<(String, String)> = runs::with_status;
    /// Reads one run of a thread.
    GetRun => fn get_run(thread_id: String, run_id: String) -> Run = runs::get;
    /// Lists a thread's runs, newest first.
    ListRuns => fn list_runs(thread_id: String, status: Option<String>, limit: i64, offset: i64) -> Vec<Run> = runs::list;
    /// Appends events to a run's stream.
    PutRunEvents => fn put_run_events(run_id: String, events: Vec<RunEvent>) -> () = runs::put_events;
    /// Reads a run's stream events after a sequence number.
    GetRunEvents => fn get_run_events(run_id: String, after: i64, limit: i64) -> Vec<RunEvent> = runs::events;
    /// The sequence number of a run's last stored event (0 without any).
    LastRunEvent => fn last_run_event(run_id: String) -> i64 = runs::last_event;
    /// Creates a task on a user's list.
    CreateTask => fn create_task(new: NewTask) -> Task = tasks::create;
    /// Reads one of a user's tasks.
    GetTask => fn get_task(user_id: String, task_id: String) -> Task = tasks::get;
    /// Lists a user's tasks, oldest first, one page after a cursor.
    ListTasks => fn list_tasks(query: TaskQuery) -> Vec<Task> = tasks::list;
    /// Changes some fields of one of a user's tasks.
    UpdateTask => fn update_task(user_id: String, task_id: String, patch: TaskPatch) -> Task = tasks::update;
    /// Deletes one of a user's tasks.
    DeleteTask => fn delete_task(user_id: String, task_id: String) -> () = tasks::delete;
    /// Stores a new API key's row.
    CreateApiKey => fn create_api_key(new: NewApiKey) -> ApiKey = keys::create;
    /// Reads one API key by its public id.
    FindApiKey => fn find_api_key(key_id: String) -> Option<ApiKey> = keys::find;
    /// Lists every API key, oldest first.
    ListApiKeys => fn list_api_keys() -> Vec<ApiKey> = keys::list;
    /// Revokes an API key.
    RevokeApiKey => fn revoke_api_key(key_id: String) -> () = keys::revoke;
    /// Records that an API key was used.
    TouchApiKey => fn touch_api_key(key_id: String) -> () = keys::touch;
    /// The latest time any key was revoked.
    LastRevocation => fn last_revocation() -> Option<chrono::DateTime<chrono::Utc>> = keys::last_revocation;
    /// Writes a new checkpoint whose values are the base state's updated with `values`.
    UpdateState => fn update_state(update: StateUpdate) -> CheckpointRecord = checkpoints::update_state;
}
