//! Runs: one graph execution on a thread. Starting a run marks its thread busy in the same
//! transaction that checks it was not, so two runs never execute on one thread at once.

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde_json::{Value, json};

use super::{DbError, DbPool, ensure_thread, with_conn};
use crate::model::{MultitaskStrategy, NewRun, Run, RunEvent, RunStatus, StartedRun};

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

/// The thread's status once a new run asked for it: busy (taken) when no run is active on it.
const TAKE_IF_FREE: &str = concat!(
    "CASE WHEN ",
    active_runs!(),
    " = 0 THEN 'busy' ELSE status END"
);

/// Creates a run. When its thread is free (not busy, no run queued before it) the run takes it
/// at once: `running`, the thread `busy`. Otherwise `reject` answers 409, and the other
/// strategies leave the run `pending`, `interrupt`/`rollback` naming the runs to stop. The
/// thread's metadata gets the run's `graph_id` and `assistant_id` (agent-chat-ui finds threads by
/// them).
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
            let locked: Option<(Value, i64, Option<String>)> =
                diesel::update(t::table.find(&new.thread_id))
                    .set((
                        t::updated_at.eq(now),
                        t::status.eq(sql::<Text>(TAKE_IF_FREE)),
                    ))
                    .returning((t::metadata, sql::<BigInt>(ACTIVE_RUNS), t::owner))
                    .get_result(conn)
                    .await
                    .optional()?
                    .filter(|(_, _, owner)| new.owner.is_none() || *owner == new.owner);
            let Some((mut metadata, active, thread_owner)) = locked else {
                return Err(DbError::NotFound(format!(
                    "Thread with ID {} not found",
                    new.thread_id
                )));
            };
            let free = active == 0;
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
            let row: Row = diesel::insert_into(r::table)
                .values((
                    r::run_id.eq(&run_id),
                    r::thread_id.eq(&new.thread_id),
                    r::assistant_id.eq(&new.assistant_id),
                    r::status.eq(if free {
                        RunStatus::Running
                    } else {
                        RunStatus::Pending
                    }
                    .as_str()),
                    r::metadata.eq(&new.metadata),
                    r::kwargs.eq(&new.kwargs),
                    r::multitask_strategy.eq(new.multitask_strategy.as_str()),
                    r::created_at.eq(now),
                    r::updated_at.eq(now),
                    r::lease_expires_at.eq(Some(new.lease_expires_at)),
                ))
                .returning(columns!(r))
                .get_result(conn)
                .await?;
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

/// A pending run takes its thread once the thread is free and no run was queued before it.
/// `None` while it must wait; an error when the run is gone (deleted with its thread) or was
/// ended meanwhile (cancelled, or its lease expired).
pub async fn claim(
    db: &DbPool,
    run_id: String,
    lease_expires_at: DateTime<Utc>,
) -> Result<Option<Run>, DbError> {
    let now = Utc::now();
    with_conn!(db, |conn, s| {
        conn.transaction::<_, DbError, _>(async move |conn| {
            use s::{runs as r, threads as t};
            // a write first, so SQLite takes its write lock now (an upgrade later could fail)
            let thread_id: String = diesel::update(r::table.find(&run_id))
                .filter(r::status.eq(RunStatus::Pending.as_str()))
                .set(r::updated_at.eq(now))
                .returning(r::thread_id)
                .get_result(conn)
                .await
                .optional()?
                .ok_or_else(|| DbError::NotFound(format!("Run {run_id} is not pending")))?;
            let status: String = diesel::update(t::table.find(&thread_id))
                .set(t::updated_at.eq(now))
                .returning(t::status)
                .get_result(conn)
                .await?;
            let first: Option<String> = r::table
                .filter(r::thread_id.eq(&thread_id))
                .filter(r::status.eq_any(RunStatus::ACTIVE))
                .select(r::run_id)
                .order(r::run_id.asc())
                .first(conn)
                .await
                .optional()?;
            if status == "busy" || first.as_deref() != Some(run_id.as_str()) {
                return Ok(None);
            }
            diesel::update(t::table.find(&thread_id))
                .set(t::status.eq("busy"))
                .execute(conn)
                .await?;
            let row: Row = diesel::update(r::table.find(&run_id))
                .set((
                    r::status.eq(RunStatus::Running.as_str()),
                    r::updated_at.eq(now),
                    r::lease_expires_at.eq(Some(lease_expires_at)),
                ))
                .returning(columns!(r))
                .get_result(conn)
                .await?;
            Ok(Some(run(row)))
        })
        .await
    })
}

/// Ends a run with `status`; a run that held its thread leaves it with `thread_status` and,
/// when given, the thread's `values` (its latest checkpoint's), in the same transaction. A run
/// that already ended keeps its status and leaves the thread alone.
pub async fn finish(
    db: &DbPool,
    run_id: String,
    status: RunStatus,
    thread_status: Option<String>,
    values: Option<Value>,
) -> Result<Run, DbError> {
    let now = Utc::now();
    with_conn!(db, |conn, s| {
        conn.transaction::<_, DbError, _>(async move |conn| {
            use s::{runs as r, threads as t};
            let row: Option<Row> = diesel::update(r::table.find(&run_id))
                .filter(r::status.eq_any(RunStatus::ACTIVE))
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

/// Extends the leases of the runs this process holds (pending or running) to `until`, in one
/// statement. Answers those still pending or running: a run missing from the answer was ended
/// elsewhere (cancelled, its thread deleted, or its lease expired during an outage).
pub async fn renew(
    db: &DbPool,
    run_ids: Vec<String>,
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
                .filter(r::status.eq_any(RunStatus::ACTIVE)),
        )
        .set(r::lease_expires_at.eq(Some(until)))
        .returning(r::run_id)
        .get_results(&mut conn)
        .await?)
    })
}

/// What the stream of a run whose process was lost ends with.
pub const LOST_EVENT: &str = r#"{"error":"RunLost","message":"the mnemo process executing this run stopped; the run was ended"}"#;

/// Ends the runs whose lease expired (their process is gone): `error`, with a last `error`
/// event for their streams. A thread a lost run held is freed (`error`, as after a failed run).
/// Answers the threads touched, whose queued runs may now go.
pub async fn reap(db: &DbPool) -> Result<Vec<String>, DbError> {
    let now = Utc::now();
    with_conn!(db, |conn, s| {
        conn.transaction::<_, DbError, _>(async move |conn| {
            use s::{run_events as e, runs as r, threads as t};
            let lost: Vec<(String, String, String)> = diesel::update(
                r::table.filter(r::status.eq_any(RunStatus::ACTIVE)).filter(
                    r::lease_expires_at
                        .is_null()
                        .or(r::lease_expires_at.lt(now)),
                ),
            )
            .set((
                r::status.eq(RunStatus::Error.as_str()),
                r::updated_at.eq(now),
            ))
            .returning((r::run_id, r::thread_id, r::status))
            .get_results(conn)
            .await?;
            if lost.is_empty() {
                return Ok(Vec::new());
            }
            for (run_id, _, _) in &lost {
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
            let threads: Vec<&String> = lost.iter().map(|(_, t, _)| t).collect();
            diesel::update(
                t::table
                    .filter(t::thread_id.eq_any(&threads))
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
            let mut touched: Vec<String> = threads.into_iter().cloned().collect();
            touched.sort();
            touched.dedup();
            if let Some(notify) = dialect::NOTIFY_THREAD {
                for thread_id in &touched {
                    diesel::sql_query(notify)
                        .bind::<Text, _>(thread_id)
                        .execute(conn)
                        .await?;
                }
            }
            Ok(touched)
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
