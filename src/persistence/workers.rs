//! Graphs served by graph workers, and what a worker does with the runs it claims: their events
//! appended to their streams while the worker holds them.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::{DbError, DbPool, with_conn};
use crate::model::{RunStatus, WorkerGraph};

/// Registers the graphs a worker serves (their schemas and drawings as it sent them), each
/// served until `served_until`.
pub async fn register(
    db: &DbPool,
    graphs: Vec<WorkerGraph>,
    served_until: DateTime<Utc>,
) -> Result<(), DbError> {
    with_conn!(db, |conn, s| {
        conn.transaction::<_, DbError, _>(async move |conn| {
            use s::worker_graphs as g;
            for graph in &graphs {
                diesel::insert_into(g::table)
                    .values((
                        g::graph_id.eq(&graph.graph_id),
                        g::description.eq(&graph.description),
                        g::schemas.eq(&graph.schemas),
                        g::drawing.eq(&graph.drawing),
                        g::served_until.eq(served_until),
                        g::drawing_xray.eq(&graph.drawing_xray),
                        g::subgraphs.eq(&graph.subgraphs),
                        g::state_defaults.eq(&graph.state_defaults),
                    ))
                    .on_conflict(g::graph_id)
                    .do_update()
                    .set((
                        g::description.eq(&graph.description),
                        g::schemas.eq(&graph.schemas),
                        g::drawing.eq(&graph.drawing),
                        g::served_until.eq(served_until),
                        g::drawing_xray.eq(&graph.drawing_xray),
                        g::subgraphs.eq(&graph.subgraphs),
                        g::state_defaults.eq(&graph.state_defaults),
                    ))
                    .execute(conn)
                    .await?;
            }
            Ok(())
        })
        .await
    })
}

/// Extends the time the graphs named are served (a worker claiming their runs is alive).
pub async fn refresh(
    db: &DbPool,
    graph_ids: Vec<String>,
    served_until: DateTime<Utc>,
) -> Result<(), DbError> {
    with_conn!(db, |conn, s| {
        use s::worker_graphs as g;
        diesel::update(g::table.filter(g::graph_id.eq_any(&graph_ids)))
            .filter(g::served_until.lt(served_until))
            .set(g::served_until.eq(served_until))
            .execute(&mut conn)
            .await?;
        Ok(())
    })
}

/// A graph a worker registered (served now or not).
pub async fn get(db: &DbPool, graph_id: String) -> Result<Option<WorkerGraph>, DbError> {
    with_conn!(db, |conn, s| {
        use s::worker_graphs as g;
        Ok(g::table
            .find(&graph_id)
            .select((
                g::graph_id,
                g::description,
                g::schemas,
                g::drawing,
                g::served_until,
                g::drawing_xray,
                g::subgraphs,
                g::state_defaults,
            ))
            .first::<WorkerGraph>(&mut conn)
            .await
            .optional()?)
    })
}

/// Appends events to the stream of a run `holder` holds (a conflict when it no longer does),
/// numbered after the last stored; answers the last number. With `first_seq` (the number the
/// sender gave the first event), events already stored under their numbers (a batch sent again
/// after its answer was lost) are left out, and a batch starting past the next number is refused.
pub async fn append_events(
    db: &DbPool,
    run_id: String,
    holder: String,
    events: Vec<(String, String)>,
    first_seq: Option<i64>,
) -> Result<i64, DbError> {
    with_conn!(db, |conn, s| {
        conn.transaction::<_, DbError, _>(async move |conn| {
            use s::{run_events as e, runs as r};
            // a write first: it checks the holder and locks the run's row (SQLite: the database)
            let held = diesel::update(r::table.find(&run_id))
                .filter(r::status.eq(RunStatus::Running.as_str()))
                .filter(r::holder.eq(&holder))
                .set(r::updated_at.eq(Utc::now()))
                .execute(conn)
                .await?;
            if held == 0 {
                return Err(DbError::Conflict(format!(
                    "Run {run_id} is not held by worker {holder}"
                )));
            }
            let last: Option<i64> = e::table
                .filter(e::run_id.eq(&run_id))
                .select(diesel::dsl::max(e::seq))
                .first(conn)
                .await?;
            let mut seq = last.unwrap_or(0);
            let stored = match first_seq {
                Some(first) if first > seq + 1 => {
                    return Err(DbError::Invalid(format!(
                        "Events from {first} sent, but the run's stream ends at {seq}"
                    )));
                }
                Some(first) => usize::try_from(seq + 1 - first).unwrap_or(usize::MAX),
                None => 0,
            };
            for (event, data) in events.iter().skip(stored) {
                seq += 1;
                diesel::insert_into(e::table)
                    .values((
                        e::run_id.eq(&run_id),
                        e::seq.eq(seq),
                        e::event.eq(event),
                        e::data.eq(data),
                    ))
                    .execute(conn)
                    .await?;
            }
            if let Some(notify) = dialect::NOTIFY_RUN_EVENTS {
                diesel::sql_query(notify)
                    .bind::<Text, _>(&run_id)
                    .execute(conn)
                    .await?;
            }
            Ok(seq)
        })
        .await
    })
}

/// Hands the run `run_id` (or, with None, every run) `holder` holds back to the queue, to be
/// started again (its attempt counted) by any worker of its graph; answers how many it held.
pub async fn release(
    db: &DbPool,
    run_id: Option<String>,
    holder: String,
) -> Result<usize, DbError> {
    with_conn!(db, |conn, s| {
        conn.transaction::<_, DbError, _>(async move |conn| {
            use s::runs as r;
            // one write and no read before it: on SQLite a transaction that read first could
            // not take the write lock once another connection had written since (busy at once)
            let mut held = diesel::update(r::table)
                .filter(r::status.eq(RunStatus::Running.as_str()))
                .filter(r::holder.eq(&holder))
                .set((
                    r::status.eq(RunStatus::Pending.as_str()),
                    r::attempt.eq(r::attempt + 1),
                    r::holder.eq(None::<String>),
                    r::lease_expires_at.eq(None::<DateTime<Utc>>),
                    r::updated_at.eq(Utc::now()),
                ))
                .into_boxed();
            if let Some(run_id) = &run_id {
                held = held.filter(r::run_id.eq(run_id));
            }
            let released = held.execute(conn).await?;
            if released > 0
                && let Some(notify) = dialect::NOTIFY_QUEUE
            {
                diesel::sql_query(notify).execute(conn).await?;
            }
            Ok(released)
        })
        .await
    })
}
