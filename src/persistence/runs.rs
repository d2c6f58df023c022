//! Runs: one graph execution on a thread. Starting a run marks its thread busy in the same
//! transaction that checks it was not, so two runs never execute on one thread at once.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde_json::{Value, json};

use super::{DbError, DbPool, ensure_thread, with_conn};
use crate::model::{NewRun, Run};

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
        status,
        metadata,
        kwargs,
        multitask_strategy,
        created_at,
        updated_at,
    }
}

/// Starts a run: the thread (created when asked) must not be busy; it becomes busy, and its
/// metadata gets the run's `graph_id` and `assistant_id` (agent-chat-ui finds threads by them).
pub async fn start(db: &DbPool, new: NewRun) -> Result<Run, DbError> {
    let now = Utc::now();
    let run_id = uuid::Uuid::now_v7().to_string();
    with_conn!(db, |conn, s| {
        conn.transaction::<_, DbError, _>(async move |conn| {
            use s::{runs as r, threads as t};
            if new.create_thread {
                ensure_thread!(conn, s, &new.thread_id, now);
            }
            // the write first: it locks the thread row until this transaction ends
            let locked: Option<(Value, String)> = diesel::update(t::table.find(&new.thread_id))
                .set(t::updated_at.eq(now))
                .returning((t::metadata, t::status))
                .get_result(conn)
                .await
                .optional()?;
            let Some((mut metadata, status)) = locked else {
                return Err(DbError::NotFound(format!(
                    "Thread with ID {} not found",
                    new.thread_id
                )));
            };
            if status == "busy" {
                return Err(DbError::Conflict(format!(
                    "Thread {} is busy with another run",
                    new.thread_id
                )));
            }
            if let Some(m) = metadata.as_object_mut() {
                m.entry("graph_id").or_insert_with(|| json!(new.graph_id));
                m.entry("assistant_id")
                    .or_insert_with(|| json!(new.assistant_id));
            }
            diesel::update(t::table.find(&new.thread_id))
                .set((t::status.eq("busy"), t::metadata.eq(&metadata)))
                .execute(conn)
                .await?;
            let row: Row = diesel::insert_into(r::table)
                .values((
                    r::run_id.eq(&run_id),
                    r::thread_id.eq(&new.thread_id),
                    r::assistant_id.eq(&new.assistant_id),
                    r::status.eq("running"),
                    r::metadata.eq(&new.metadata),
                    r::kwargs.eq(&new.kwargs),
                    r::multitask_strategy.eq("reject"),
                    r::created_at.eq(now),
                    r::updated_at.eq(now),
                ))
                .returning(columns!(r))
                .get_result(conn)
                .await?;
            Ok(run(row))
        })
        .await
    })
}

/// Ends a run with `status` and leaves its thread with `thread_status`, in one transaction.
pub async fn finish(
    db: &DbPool,
    run_id: String,
    status: String,
    thread_status: String,
) -> Result<Run, DbError> {
    let now = Utc::now();
    with_conn!(db, |conn, s| {
        conn.transaction::<_, DbError, _>(async move |conn| {
            use s::{runs as r, threads as t};
            let row: Row = diesel::update(r::table.find(&run_id))
                .set((r::status.eq(&status), r::updated_at.eq(now)))
                .returning(columns!(r))
                .get_result(conn)
                .await?;
            diesel::update(t::table.find(&row.1))
                .set((t::status.eq(&thread_status), t::updated_at.eq(now)))
                .execute(conn)
                .await?;
            Ok(run(row))
        })
        .await
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
    limit: i64,
    offset: i64,
) -> Result<Vec<Run>, DbError> {
    with_conn!(db, |conn, s| {
        use s::runs as r;
        let rows: Vec<Row> = r::table
            .filter(r::thread_id.eq(&thread_id))
            .order(r::run_id.desc())
            .limit(limit)
            .offset(offset)
            .select(columns!(r))
            .load(&mut conn)
            .await?;
        Ok(rows.into_iter().map(run).collect())
    })
}
