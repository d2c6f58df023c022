//! Runs: one graph execution on a thread. Starting a run marks its thread busy in the same
//! transaction that checks it was not, so two runs never execute on one thread at once.

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde_json::{Value, json};

use super::{DbError, DbPool, ensure_thread, with_conn};
use crate::model::{ClaimedRun, MultitaskStrategy, NewRun, Run, RunEvent, RunStatus, StartedRun};

type Row = (
    String,
    String,
    String,
    String,
    Value,
    Value,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<String>,
);

macro_rules! columns {
    ($r:ident) => {
        (
            $r::run_id,
            $r::thread_id,
            $r::assistant_id,
            $r::status,
            $r::metadata,
            $r::kwargs,
            $r::multitask_strategy,
            $r::created_at,
            $r::updated_at,
            $r::graph_id,
        )
    };
}

fn run(
    (
        run_id,
        thread_id,
        assistant_id,
        status,
        metadata,
        kwargs,
        multitask_strategy,
        created_at,
        updated_at,
        graph_id,
    ): Row,
) -> Run {
    Run {
        run_id,
        thread_id,
        assistant_id,
        // a status mnemo does not write reads as an ended run's, a strategy as the default
        status: RunStatus::parse(&status).unwrap_or(RunStatus::Error),
        metadata,
        kwargs,
        multitask_strategy: MultitaskStrategy::parse(Some(&multitask_strategy))
            .unwrap_or(MultitaskStrategy::Reject),
        created_at,
        updated_at,
        graph_id,
    }
}

/// The number of runs pending or running on the thread row at hand (SQL).
macro_rules! active_runs {
    () => {
        "(SELECT count(*) FROM runs WHERE runs.thread_id = threads.thread_id \
         AND runs.status IN ('pending', 'running'))"
    };
}
const ACTIVE_RUNS: &str = active_runs!();

/// The number of runs queued on the thread row at hand (SQL).
const PENDING_RUNS: &str = "(SELECT count(*) FROM runs WHERE runs.thread_id = threads.thread_id \
     AND runs.status = 'pending')";

/// The thread's status once a new run asked for it: busy (taken) when no run is active on it.
const TAKE_IF_FREE: &str = concat!(
    "CASE WHEN ",
    active_runs!(),
    " = 0 THEN 'busy' ELSE status END"
);

/// Creates a run. When its thread is free (not busy, no run queued before it) and `claim` is
/// set (the creating process has a free worker), the run takes it at once: `running`, held by
/// `holder`, the thread `busy`. Otherwise `reject` answers 409 on a busy thread, and the run is
/// queued `pending` (held by nobody; any process's executor claims it), `interrupt`/`rollback`
/// naming the runs to stop. Past the quotas in `new` it is refused ([`DbError::TooMany`]). The
/// thread's metadata gets the run's `graph_id` and `assistant_id` (agent-chat-ui finds threads by
/// them), and the run's metadata is the thread's under its own.
pub async fn start(db: &DbPool, new: NewRun) -> Result<StartedRun, DbError> {
    let now = Utc::now();
    let run_id = uuid::Uuid::now_v7().to_string();
    with_conn!(db, |conn, s| {
        conn.transaction::<_, DbError, _>(async move |conn| {
            use s::{runs as r, threads as t};
            if new.create_thread {
                ensure_thread!(s, &new.thread_id, &new.owner, now)
                    .execute(conn)
                    .await?;
            }
            // the write first: it locks the thread row until this transaction ends. The thread
            // is taken (busy) when no run is pending or running on it.
            // a user's run reaches only the user's threads: another's is "not found", and is
            // left as it was (the transaction rolls back)
            let take = if new.claim {
                sql::<Text>(TAKE_IF_FREE)
            } else {
                sql::<Text>("status")
            };
            let locked: Option<(Value, i64, i64, Option<String>, Value)> =
                diesel::update(t::table.find(&new.thread_id))
                    .set((t::updated_at.eq(now), t::status.eq(take)))
                    .returning((
                        t::metadata,
                        sql::<BigInt>(ACTIVE_RUNS),
                        sql::<BigInt>(PENDING_RUNS),
                        t::owner,
                        t::config,
                    ))
                    .get_result(conn)
                    .await
                    .optional()?
                    .filter(|(_, _, _, owner, _)| new.owner.is_none() || *owner == new.owner);
            let Some((mut metadata, active, pending, thread_owner, config)) = locked else {
                return Err(DbError::NotFound(format!(
                    "Thread with ID {} not found",
                    new.thread_id
                )));
            };
            let free = active == 0;
            if !free && pending >= new.max_pending_on_thread {
                return Err(DbError::TooMany("runs waiting on this thread"));
            }
            if let Some(user) = &new.owner {
                let users: i64 = r::table
                    .inner_join(t::table)
                    .filter(t::owner.eq(user))
                    .filter(r::status.eq_any(RunStatus::ACTIVE))
                    .count()
                    .get_result(conn)
                    .await?;
                if users >= new.max_active_for_owner {
                    return Err(DbError::TooMany("active runs for this user"));
                }
            }
            let running = free && new.claim;
            let to_cancel = match new.multitask_strategy {
                _ if free => Vec::new(),
                MultitaskStrategy::Reject => {
                    return Err(DbError::Conflict(format!(
                        "Thread {} is busy with another run",
                        new.thread_id
                    )));
                }
                MultitaskStrategy::Interrupt | MultitaskStrategy::Rollback => {
                    r::table
                        .filter(r::thread_id.eq(&new.thread_id))
                        .filter(r::status.eq_any(RunStatus::ACTIVE))
                        .select(r::run_id)
                        .order(r::run_id.asc())
                        .load(conn)
                        .await?
                }
                _ => Vec::new(),
            };
            if let Some(m) = metadata.as_object_mut()
                && !(m.contains_key("graph_id") && m.contains_key("assistant_id"))
            {
                m.entry("graph_id").or_insert_with(|| json!(new.graph_id));
                m.entry("assistant_id")
                    .or_insert_with(|| json!(new.assistant_id));
                diesel::update(t::table.find(&new.thread_id))
                    .set(t::metadata.eq(&metadata))
                    .execute(conn)
                    .await?;
            }
            // the thread keeps the config its runs are given (its assistant's and theirs)
            let mut kept = crate::model::over(&config, new.kwargs.get("config"));
            if let Value::Object(m) = &mut kept {
                m.entry("configurable").or_insert_with(|| json!({}));
            }
            if kept != config {
                diesel::update(t::table.find(&new.thread_id))
                    .set(t::config.eq(&kept))
                    .execute(conn)
                    .await?;
            }
            // the run's metadata: its thread's, under the run's own (the LangGraph API's)
            let mut run_metadata = metadata.clone();
            if let (Some(m), Some(own)) = (run_metadata.as_object_mut(), new.metadata.as_object()) {
                m.extend(own.clone());
            }
            let row: Row = diesel::insert_into(r::table)
                .values((
                    r::run_id.eq(&run_id),
                    r::thread_id.eq(&new.thread_id),
                    r::assistant_id.eq(&new.assistant_id),
                    r::status.eq(if running {
                        RunStatus::Running
                    } else {
                        RunStatus::Pending
                    }
                    .as_str()),
                    r::metadata.eq(&run_metadata),
                    r::kwargs.eq(&new.kwargs),
                    r::multitask_strategy.eq(new.multitask_strategy.as_str()),
                    r::created_at.eq(now),
                    r::updated_at.eq(now),
                    r::graph_id.eq(Some(&new.graph_id)),
                    r::lease_expires_at.eq(running.then_some(new.lease_expires_at)),
                    r::holder.eq(running.then_some(&new.holder)),
                ))
                .returning(columns!(r))
                .get_result(conn)
                .await?;
            // a run no process took though its thread is free: any free worker may claim it
            if free
                && !running
                && let Some(notify) = dialect::NOTIFY_QUEUE
            {
                diesel::sql_query(notify).execute(conn).await?;
            }
            Ok(StartedRun {
                run: run(row),
                to_cancel,
                thread_metadata: metadata,
                thread_owner,
            })
        })
        .await
    })
}

/// Claims up to `limit` runs from the queue for `holder`: the oldest pending run of each thread
/// on which no run is running, oldest first (on Postgres `FOR UPDATE SKIP LOCKED`: processes
/// claiming at once take different runs). Each claimed run is `running`, held by `holder` until
/// `lease_expires_at`, and its thread `busy`.
pub async fn claim_next(
    db: &DbPool,
    limit: i64,
    graphs: Vec<String>,
    holder: String,
    lease_expires_at: DateTime<Utc>,
) -> Result<Vec<ClaimedRun>, DbError> {
    let now = Utc::now();
    with_conn!(db, |conn, s| {
        conn.transaction::<_, DbError, _>(async move |conn| {
            use s::{runs as r, threads as t};
            if let Some(lock) = dialect::TAKE_WRITE_LOCK {
                diesel::sql_query(lock).execute(conn).await?;
            }
            let candidates: Vec<Claimable> = diesel::sql_query(dialect::CLAIMABLE_RUNS)
                .bind::<BigInt, _>(limit)
                .bind::<dialect::GraphList, _>(dialect::graph_list(&graphs))
                .load(conn)
                .await?;
            let mut claimed = Vec::with_capacity(candidates.len());
            for Claimable { run_id, thread_id } in candidates {
                let running_there = r::table
                    .filter(r::thread_id.eq(&thread_id))
                    .filter(r::status.eq(RunStatus::Running.as_str()));
                let thread: Option<(Value, Option<String>)> =
                    diesel::update(t::table.find(&thread_id))
                        .filter(diesel::dsl::not(diesel::dsl::exists(running_there)))
                        .set((t::status.eq("busy"), t::updated_at.eq(now)))
                        .returning((t::metadata, t::owner))
                        .get_result(conn)
                        .await
                        .optional()?;
                let Some((thread_metadata, thread_owner)) = thread else {
                    continue;
                };
                let row: Option<(Row, i32)> = diesel::update(r::table.find(&run_id))
                    .filter(r::status.eq(RunStatus::Pending.as_str()))
                    .set((
                        r::status.eq(RunStatus::Running.as_str()),
                        r::updated_at.eq(now),
                        r::lease_expires_at.eq(Some(lease_expires_at)),
                        r::holder.eq(Some(&holder)),
                    ))
                    .returning((columns!(r), r::attempt))
                    .get_result(conn)
                    .await
                    .optional()?;
                if let Some((row, attempt)) = row {
                    claimed.push(ClaimedRun {
                        run: run(row),
                        attempt,
                        thread_metadata,
                        thread_owner,
                    });
                }
            }
            Ok(claimed)
        })
        .await
    })
}

/// Whether any run of the graphs named (`""`: runs from before runs named their graph) waits
/// in the queue (most looks find none: no transaction, nor SQLite's write lock, nor a worker
/// taken, for them).
pub async fn any_queued(db: &DbPool, graphs: Vec<String>) -> Result<bool, DbError> {
    let unnamed = graphs.iter().any(String::is_empty);
    with_conn!(db, |conn, s| {
        use s::runs as r;
        let mut queued = r::table
            .filter(r::status.eq(RunStatus::Pending.as_str()))
            .into_boxed();
        queued = if unnamed {
            queued.filter(r::graph_id.is_null().or(r::graph_id.eq_any(&graphs)))
        } else {
            queued.filter(r::graph_id.eq_any(&graphs))
        };
        let found: Option<String> = queued.select(r::run_id).first(&mut conn).await.optional()?;
        Ok(found.is_some())
    })
}

/// A pending run that may be claimed now.
#[derive(diesel::QueryableByName)]
struct Claimable {
    #[diesel(sql_type = Text)]
    run_id: String,
    #[diesel(sql_type = Text)]
    thread_id: String,
}

/// Ends a run with `status`; a run that held its thread leaves it with `thread_status` and,
/// when given, the thread's `values` (its latest checkpoint's), in the same transaction. A run
/// that already ended keeps its status and leaves the thread alone; so does a run no longer held
/// by `holder`, when given (its process lost it, and another resumed it).
pub async fn finish(
    db: &DbPool,
    run_id: String,
    holder: Option<String>,
    status: RunStatus,
    thread_status: Option<String>,
    values: Option<Value>,
) -> Result<Run, DbError> {
    let now = Utc::now();
    with_conn!(db, |conn, s| {
        conn.transaction::<_, DbError, _>(async move |conn| {
            use s::{runs as r, threads as t};
            let mut ending = diesel::update(r::table)
                .filter(r::run_id.eq(&run_id))
                .filter(r::status.eq_any(RunStatus::ACTIVE))
                .into_boxed();
            if let Some(holder) = &holder {
                ending = ending.filter(r::holder.eq(holder));
            }
            let row: Option<Row> = ending
                .set((r::status.eq(status.as_str()), r::updated_at.eq(now)))
                .returning(columns!(r))
                .get_result(conn)
                .await
                .optional()?;
            let Some(row) = row else {
                // it had already ended: it keeps its status, and its thread is not its own
                return r::table
                    .find(&run_id)
                    .select(columns!(r))
                    .first(conn)
                    .await
                    .optional()?
                    .map(run)
                    .ok_or_else(|| DbError::NotFound(format!("Run {run_id} not found")));
            };
            let thread = t::table.find(&row.1);
            let held_thread = thread_status.is_some();
            match (thread_status, values) {
                (Some(status), Some(values)) => {
                    diesel::update(thread)
                        .set((
                            t::status.eq(status),
                            t::updated_at.eq(now),
                            t::state_values.eq(values),
                            t::state_updated_at.eq(now),
                        ))
                        .execute(conn)
                        .await?
                }
                (Some(status), None) => {
                    diesel::update(thread)
                        .set((t::status.eq(status), t::updated_at.eq(now)))
                        .execute(conn)
                        .await?
                }
                (None, Some(values)) => {
                    diesel::update(thread)
                        .set((t::state_values.eq(values), t::state_updated_at.eq(now)))
                        .execute(conn)
                        .await?
                }
                (None, None) => 0,
            };
            // a run ended while queued again after its process stopped leaves its thread free
            if !held_thread {
                diesel::update(
                    thread.filter(t::status.eq("busy")).filter(diesel::dsl::not(
                        diesel::dsl::exists(
                            r::table
                                .filter(r::thread_id.eq(&row.1))
                                .filter(r::status.eq(RunStatus::Running.as_str())),
                        ),
                    )),
                )
                .set(t::status.eq("idle"))
                .execute(conn)
                .await?;
            }
            // the thread may be free, or the queue on it shorter: wake other processes' runs
            if let Some(notify) = dialect::NOTIFY_THREAD {
                diesel::sql_query(notify)
                    .bind::<Text, _>(&row.1)
                    .execute(conn)
                    .await?;
            }
            Ok(run(row))
        })
        .await
    })
}

/// Deletes a run that has ended (409 while it is pending or running).
pub async fn delete(db: &DbPool, thread_id: String, run_id: String) -> Result<(), DbError> {
    with_conn!(db, |conn, s| {
        use s::runs as r;
        let status: Option<String> = r::table
            .filter(r::run_id.eq(&run_id))
            .filter(r::thread_id.eq(&thread_id))
            .select(r::status)
            .first(&mut conn)
            .await
            .optional()?;
        match status.as_deref().map(RunStatus::parse) {
            None => Err(DbError::NotFound(format!("Run {run_id} not found"))),
            Some(Some(st)) if st.is_active() => Err(DbError::Conflict(format!(
                "Run {run_id} has not ended; cancel it first"
            ))),
            Some(_) => {
                diesel::delete(r::table.find(&run_id))
                    .execute(&mut conn)
                    .await?;
                Ok(())
            }
        }
    })
}

/// Extends the leases of the runs `holder` executes to `until`, in one statement. Answers those
/// it still holds: a run missing from the answer was ended elsewhere (cancelled, its thread
/// deleted), or its lease expired during an outage (and it was ended or resumed elsewhere).
pub async fn renew(
    db: &DbPool,
    run_ids: Vec<String>,
    holder: String,
    until: DateTime<Utc>,
) -> Result<Vec<String>, DbError> {
    if run_ids.is_empty() {
        return Ok(Vec::new());
    }
    with_conn!(db, |conn, s| {
        use s::runs as r;
        Ok(diesel::update(
            r::table
                .filter(r::run_id.eq_any(&run_ids))
                .filter(r::status.eq(RunStatus::Running.as_str()))
                .filter(r::holder.eq(&holder)),
        )
        .set(r::lease_expires_at.eq(Some(until)))
        .returning(r::run_id)
        .get_results(&mut conn)
        .await?)
    })
}

/// What the stream of a run whose process was lost ends with.
pub const LOST_EVENT: &str = r#"{"error":"RunLost","message":"the mnemo process executing this run stopped; the run was ended"}"#;

/// What [`reap`] did with the runs whose process stopped.
#[derive(Debug, Default, Clone)]
pub struct Reaped {
    /// Runs queued again, to be resumed by any process.
    pub resumed: Vec<String>,
    /// Runs ended `error` (out of attempts).
    pub lost: Vec<String>,
    /// The threads touched, whose queued runs may now go.
    pub threads: Vec<String>,
}

/// Takes back the running runs whose lease expired (their process is gone). A run started
/// fewer than `max_attempts` times is queued again (`pending`, its attempt counted, its thread
/// still `busy`), for any process to resume from its last committed checkpoint. Any other ends
/// `error`, with a last `error` event for its streams, and frees its thread (`error`, as after a
/// failed run).
pub async fn reap(db: &DbPool, max_attempts: i32) -> Result<Reaped, DbError> {
    let now = Utc::now();
    with_conn!(db, |conn, s| {
        conn.transaction::<_, DbError, _>(async move |conn| {
            use s::{run_events as e, runs as r, threads as t};
            let expired = r::table
                .filter(r::status.eq(RunStatus::Running.as_str()))
                .filter(
                    r::lease_expires_at
                        .is_null()
                        .or(r::lease_expires_at.lt(now)),
                );
            let resumed: Vec<(String, String)> =
                diesel::update(expired.filter(r::attempt.lt(max_attempts)))
                    .set((
                        r::status.eq(RunStatus::Pending.as_str()),
                        r::attempt.eq(r::attempt + 1),
                        r::holder.eq(None::<String>),
                        r::lease_expires_at.eq(None::<DateTime<Utc>>),
                        r::updated_at.eq(now),
                    ))
                    .returning((r::run_id, r::thread_id))
                    .get_results(conn)
                    .await?;
            let lost: Vec<(String, String)> = diesel::update(expired)
                .set((
                    r::status.eq(RunStatus::Error.as_str()),
                    r::updated_at.eq(now),
                ))
                .returning((r::run_id, r::thread_id))
                .get_results(conn)
                .await?;
            if resumed.is_empty() && lost.is_empty() {
                return Ok(Reaped::default());
            }
            for (run_id, _) in &lost {
                let last: Option<i64> = e::table
                    .filter(e::run_id.eq(run_id))
                    .select(diesel::dsl::max(e::seq))
                    .first(conn)
                    .await?;
                diesel::insert_into(e::table)
                    .values((
                        e::run_id.eq(run_id),
                        e::seq.eq(last.unwrap_or(0) + 1),
                        e::event.eq("error"),
                        e::data.eq(LOST_EVENT),
                    ))
                    .execute(conn)
                    .await?;
            }
            // a thread is busy only for a running run: the lost runs' threads, unless another
            // run is running there (which cannot be: one runs per thread)
            let lost_threads: Vec<&String> = lost.iter().map(|(_, t)| t).collect();
            diesel::update(
                t::table
                    .filter(t::thread_id.eq_any(&lost_threads))
                    .filter(t::status.eq("busy"))
                    .filter(diesel::dsl::not(diesel::dsl::exists(
                        r::table
                            .filter(r::thread_id.eq(t::thread_id))
                            .filter(r::status.eq(RunStatus::Running.as_str())),
                    ))),
            )
            .set((t::status.eq("error"), t::updated_at.eq(now)))
            .execute(conn)
            .await?;
            let mut threads: Vec<String> = lost
                .iter()
                .chain(&resumed)
                .map(|(_, t)| t.clone())
                .collect();
            threads.sort();
            threads.dedup();
            if let Some(notify) = dialect::NOTIFY_THREAD {
                for thread_id in &threads {
                    diesel::sql_query(notify)
                        .bind::<Text, _>(thread_id)
                        .execute(conn)
                        .await?;
                }
            }
            Ok(Reaped {
                resumed: resumed.into_iter().map(|(run, _)| run).collect(),
                lost: lost.into_iter().map(|(run, _)| run).collect(),
                threads,
            })
        })
        .await
    })
}

/// Appends events to a run's stream: one statement on Postgres, one transaction on SQLite.
/// On Postgres a batch of events is one statement that also notifies the streams following the
/// run through other processes (see `signals`).
const PG_PUT_EVENTS: &str = "\
WITH stored AS (
    INSERT INTO run_events (run_id, seq, event, data)
    SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[])
)
SELECT pg_notify('mnemo_runs', $1)";

pub async fn put_events(db: &DbPool, run_id: String, events: Vec<RunEvent>) -> Result<(), DbError> {
    match db {
        DbPool::Pg(pool) => {
            use diesel::sql_types::{Array, BigInt};
            let mut conn = pool.get().await?;
            let (mut seqs, mut names, mut data) = (Vec::new(), Vec::new(), Vec::new());
            for ev in events {
                seqs.push(ev.seq);
                names.push(ev.event);
                data.push(ev.data);
            }
            diesel::sql_query(PG_PUT_EVENTS)
                .bind::<Text, _>(&run_id)
                .bind::<Array<BigInt>, _>(seqs)
                .bind::<Array<Text>, _>(names)
                .bind::<Array<Text>, _>(data)
                .execute(&mut conn)
                .await?;
            Ok(())
        }
        DbPool::Sqlite(pool) => {
            use super::schema::sqlite::run_events as e;
            let mut conn = pool.get().await?;
            conn.transaction::<_, DbError, _>(async |conn| {
                for ev in &events {
                    diesel::insert_into(e::table)
                        .values((
                            e::run_id.eq(&run_id),
                            e::seq.eq(ev.seq),
                            e::event.eq(&ev.event),
                            e::data.eq(&ev.data),
                        ))
                        .execute(conn)
                        .await?;
                }
                Ok(())
            })
            .await
        }
    }
}

/// The sequence number of a run's last stored event (0 without any).
pub async fn last_event(db: &DbPool, run_id: String) -> Result<i64, DbError> {
    with_conn!(db, |conn, s| {
        use s::run_events as e;
        let last: Option<i64> = e::table
            .filter(e::run_id.eq(&run_id))
            .select(diesel::dsl::max(e::seq))
            .first(&mut conn)
            .await?;
        Ok(last.unwrap_or(0))
    })
}

/// A run's stream events after `after`, in order.
pub async fn events(
    db: &DbPool,
    run_id: String,
    after: i64,
    limit: i64,
) -> Result<Vec<RunEvent>, DbError> {
    with_conn!(db, |conn, s| {
        use s::run_events as e;
        let rows: Vec<(i64, String, String)> = e::table
            .filter(e::run_id.eq(&run_id))
            .filter(e::seq.gt(after))
            .order(e::seq.asc())
            .limit(limit)
            .select((e::seq, e::event, e::data))
            .load(&mut conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(seq, event, data)| RunEvent { seq, event, data })
            .collect())
    })
}

/// Runs one request may name by status, at most.
const WITH_STATUS_MAX: i64 = 10_000;

/// The runs with one of `statuses` (only on `owner`'s threads when given), oldest first, as
/// (thread id, run id).
pub async fn with_status(
    db: &DbPool,
    statuses: Vec<RunStatus>,
    owner: Option<String>,
) -> Result<Vec<(String, String)>, DbError> {
    let statuses: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
    with_conn!(db, |conn, s| {
        use s::{runs as r, threads as t};
        let mut query = r::table
            .inner_join(t::table)
            .filter(r::status.eq_any(&statuses))
            .select((r::thread_id, r::run_id))
            .order(r::run_id.asc())
            .limit(WITH_STATUS_MAX)
            .into_boxed();
        if let Some(owner) = &owner {
            query = query.filter(t::owner.eq(owner));
        }
        Ok(query.load(&mut conn).await?)
    })
}

pub async fn get(db: &DbPool, thread_id: String, run_id: String) -> Result<Run, DbError> {
    with_conn!(db, |conn, s| {
        use s::runs as r;
        r::table
            .filter(r::run_id.eq(&run_id))
            .filter(r::thread_id.eq(&thread_id))
            .select(columns!(r))
            .first::<Row>(&mut conn)
            .await
            .optional()?
            .map(run)
            .ok_or_else(|| DbError::NotFound(format!("Run {run_id} not found")))
    })
}

/// A thread's runs, newest first.
pub async fn list(
    db: &DbPool,
    thread_id: String,
    status: Option<String>,
    limit: i64,
    offset: i64,
) -> Result<Vec<Run>, DbError> {
    with_conn!(db, |conn, s| {
        use s::runs as r;
        let mut query = r::table.filter(r::thread_id.eq(&thread_id)).into_boxed();
        if let Some(status) = &status {
            query = query.filter(r::status.eq(status));
        }
        let rows: Vec<Row> = query
            .order(r::run_id.desc())
            .limit(limit)
            .offset(offset)
            .select(columns!(r))
            .load(&mut conn)
            .await?;
        Ok(rows.into_iter().map(run).collect())
    })
}
