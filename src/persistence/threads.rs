//! Threads: the rows that own checkpoints. Deleting one cascades to its whole history.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde_json::{Value, json};

use super::{DbError, DbPool, with_conn};
use crate::model::{NewThread, RawJson, Thread, ThreadFilter, ThreadSearch, ThreadSortBy};

type Row = (
    String,
    RawJson,
    String,
    Value,
    Option<Value>,
    DateTime<Utc>,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<String>,
);

fn thread(
    (thread_id, metadata, status, config, values, created_at, updated_at, state_updated_at, owner): Row,
) -> Thread {
    Thread {
        thread_id,
        created_at,
        updated_at,
        state_updated_at,
        metadata,
        status,
        config,
        values,
        interrupts: json!({}),
        owner,
    }
}

fn not_found(id: &str) -> DbError {
    DbError::NotFound(format!("Thread with ID {id} not found"))
}

/// The columns of `Row`, for the backend schema `$s`.
macro_rules! columns {
    ($t:ident) => {
        (
            $t::thread_id,
            $t::metadata,
            $t::status,
            $t::config,
            $t::state_values,
            $t::created_at,
            $t::updated_at,
            $t::state_updated_at,
            $t::owner,
        )
    };
}

/// Applies a `ThreadFilter` to a boxed query over `threads`.
macro_rules! filtered {
    ($q:expr, $f:expr, $t:ident, $s:ident) => {{
        let mut q = $q;
        let f: &ThreadFilter = $f;
        let mut preds = Vec::new();
        if let Some(m) = &f.metadata {
            preds.extend(dialect::contains::<$s::threads::table>("metadata", m));
        }
        if let Some(v) = &f.values {
            preds.extend(dialect::contains::<$s::threads::table>("state_values", v));
        }
        if !preds.is_empty() {
            q = q.filter($crate::persistence::json_filter::AllOf(preds));
        }
        if let Some(ids) = &f.ids {
            q = q.filter($t::thread_id.eq_any(ids.clone()));
        }
        if let Some(status) = f.status {
            q = q.filter($t::status.eq(status.as_str()));
        }
        if let Some(owner) = &f.owner {
            q = q.filter($t::owner.eq(owner.clone()));
        }
        q
    }};
}

/// Creates a thread; the answer carries the metadata as it was sent (not read back: it may be
/// large).
pub async fn create(db: &DbPool, new: NewThread) -> Result<Thread, DbError> {
    // as stored: to the microsecond
    let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
    macro_rules! insert {
        ($t:ident, $new:expr) => {
            diesel::insert_into($t::threads)
                .values((
                    $t::thread_id.eq(&$new.thread_id),
                    $t::metadata.eq(&$new.metadata),
                    $t::owner.eq(&$new.owner),
                    $t::status.eq("idle"),
                    $t::config.eq(json!({})),
                    $t::created_at.eq(now),
                    $t::updated_at.eq(now),
                    $t::state_updated_at.eq(now),
                ))
                .on_conflict_do_nothing()
                .returning($t::thread_id)
        };
    }
    let inserted: Option<String> = match db {
        DbPool::Pg(pool) => {
            use super::schema::pg::threads::dsl as t;
            let mut conn = pool.get().await?;
            let inserted = insert!(t, new).get_result(&mut conn).await.optional()?;
            super::close_if_large(conn, new.metadata.get().len());
            inserted
        }
        // on the connection's own thread, where the metadata is bound in place (see
        // checkpoints::put_many)
        DbPool::Sqlite(pool) => {
            let mut conn = pool.get().await?;
            let row = new.clone();
            conn.spawn_blocking(move |conn| {
                use super::schema::sqlite::threads::dsl as t;
                diesel::RunQueryDsl::get_result(insert!(t, row), conn).optional()
            })
            .await?
        }
    };
    match inserted {
        Some(thread_id) => Ok(Thread {
            thread_id,
            created_at: now,
            updated_at: now,
            state_updated_at: now,
            metadata: new.metadata,
            status: "idle".into(),
            config: json!({}),
            values: None,
            interrupts: json!({}),
            owner: new.owner,
        }),
        None if new.do_nothing_if_exists => get(db, new.thread_id).await,
        None => Err(DbError::Conflict(format!(
            "Thread with ID {} already exists",
            new.thread_id
        ))),
    }
}

pub async fn get(db: &DbPool, thread_id: String) -> Result<Thread, DbError> {
    with_conn!(db, |conn, s| {
        use s::threads::dsl as t;
        t::threads
            .find(&thread_id)
            .select(columns!(t))
            .first::<Row>(&mut conn)
            .await
            .optional()?
            .map(thread)
            .ok_or_else(|| not_found(&thread_id))
    })
}

/// Who owns a thread: `None` when there is no such thread, `Some(None)` for a service's.
pub async fn owner(db: &DbPool, thread_id: String) -> Result<Option<Option<String>>, DbError> {
    with_conn!(db, |conn, s| {
        use s::threads::dsl as t;
        Ok(t::threads
            .find(&thread_id)
            .select(t::owner)
            .first::<Option<String>>(&mut conn)
            .await
            .optional()?)
    })
}

/// Merges `metadata` into the thread's (top-level keys; the new value wins).
pub async fn patch(db: &DbPool, thread_id: String, metadata: RawJson) -> Result<Thread, DbError> {
    let now = Utc::now();
    with_conn!(db, |conn, s| {
        use s::threads::dsl as t;
        conn.transaction::<_, DbError, _>(async move |conn| {
            {
                // write first: it takes the row lock (Postgres) or the write lock (SQLite)
                let n = diesel::update(t::threads.find(&thread_id))
                    .set(t::updated_at.eq(now))
                    .execute(conn)
                    .await?;
                if n == 0 {
                    return Err(not_found(&thread_id));
                }
                let current: RawJson = t::threads
                    .find(&thread_id)
                    .select(t::metadata)
                    .first(conn)
                    .await?;
                let mut merged = current.to_value();
                if let (Some(cur), Value::Object(new)) =
                    (merged.as_object_mut(), metadata.to_value())
                {
                    cur.extend(new);
                }
                let row: Row = diesel::update(t::threads.find(&thread_id))
                    .set(t::metadata.eq(RawJson::from_value(&merged)))
                    .returning(columns!(t))
                    .get_result(conn)
                    .await?;
                Ok(thread(row))
            }
        })
        .await
    })
}

pub async fn delete(db: &DbPool, thread_id: String) -> Result<(), DbError> {
    let n = with_conn!(db, |conn, s| {
        use s::threads::dsl as t;
        diesel::delete(t::threads.find(&thread_id))
            .execute(&mut conn)
            .await?
    });
    if n == 0 {
        Err(not_found(&thread_id))
    } else {
        Ok(())
    }
}

/// One page of threads and the total count: at most `limit`, and no more once the page holds
/// `max_bytes` (at least one). Rows are read in chunks sized by the bytes left.
pub async fn search(db: &DbPool, query: ThreadSearch) -> Result<(Vec<Thread>, i64), DbError> {
    let limit = usize::try_from(query.limit).unwrap_or(0);
    with_conn!(db, |conn, s| {
        use s::threads::dsl as t;
        let mut out: Vec<Thread> = Vec::new();
        let mut bytes = 0usize;
        let mut chunk = limit.min(crate::model::FIRST_CHUNK);
        'page: while chunk > 0 {
            let q = filtered!(
                t::threads.select(columns!(t)).into_boxed(),
                &query.filter,
                t,
                s
            );
            let q = match (query.sort_by, query.descending) {
                (ThreadSortBy::ThreadId, false) => q.order(t::thread_id.asc()),
                (ThreadSortBy::ThreadId, true) => q.order(t::thread_id.desc()),
                (ThreadSortBy::Status, false) => q.order(t::status.asc()),
                (ThreadSortBy::Status, true) => q.order(t::status.desc()),
                (ThreadSortBy::CreatedAt, false) => q.order(t::created_at.asc()),
                (ThreadSortBy::CreatedAt, true) => q.order(t::created_at.desc()),
                (ThreadSortBy::UpdatedAt, false) => q.order(t::updated_at.asc()),
                (ThreadSortBy::UpdatedAt, true) => q.order(t::updated_at.desc()),
                (ThreadSortBy::StateUpdatedAt, false) => q.order(t::state_updated_at.asc()),
                (ThreadSortBy::StateUpdatedAt, true) => q.order(t::state_updated_at.desc()),
            };
            let rows: Vec<Row> = q
                .then_order_by(t::thread_id.asc())
                .limit(chunk as i64)
                .offset(query.offset + out.len() as i64)
                .load(&mut conn)
                .await?;
            let got = rows.len();
            for row in rows {
                let thread = thread(row);
                let size = thread.approx_bytes();
                if !out.is_empty() && bytes + size > query.max_bytes {
                    break 'page;
                }
                bytes += size;
                out.push(thread);
            }
            if got < chunk || out.len() >= limit {
                break;
            }
            chunk = crate::model::next_chunk(out.len(), bytes, query.max_bytes, limit - out.len());
        }
        let total: i64 = filtered!(t::threads.count().into_boxed(), &query.filter, t, s)
            .get_result(&mut conn)
            .await?;
        Ok((out, total))
    })
}

pub async fn count(db: &DbPool, filter: ThreadFilter) -> Result<i64, DbError> {
    with_conn!(db, |conn, s| {
        use s::threads::dsl as t;
        Ok(filtered!(t::threads.count().into_boxed(), &filter, t, s)
            .get_result(&mut conn)
            .await?)
    })
}

/// Copies a thread and its whole history (checkpoints, blobs, writes) under `new_id`.
pub async fn copy(db: &DbPool, thread_id: String, new_id: String) -> Result<Thread, DbError> {
    let now = Utc::now();
    with_conn!(db, |conn, s| {
        conn.transaction::<_, DbError, _>(async move |conn| {
            use s::{
                checkpoint_blobs as b, checkpoint_writes as w, checkpoints as c, threads as t,
            };
            // a write first, so SQLite takes its write lock now: a read-then-write transaction
            // fails at once (no busy wait) when another connection wrote in between
            let src: Row = diesel::update(t::table.find(&thread_id))
                .set(t::updated_at.eq(t::updated_at))
                .returning(columns!(t))
                .get_result(conn)
                .await
                .optional()?
                .ok_or_else(|| not_found(&thread_id))?;
            let row: Row = diesel::insert_into(t::table)
                .values((
                    t::thread_id.eq(&new_id),
                    t::metadata.eq(&src.1),
                    t::status.eq("idle"),
                    t::config.eq(&src.3),
                    t::state_values.eq(&src.4),
                    t::created_at.eq(now),
                    t::updated_at.eq(now),
                    t::state_updated_at.eq(src.7),
                    t::owner.eq(&src.8),
                ))
                .returning(columns!(t))
                .get_result(conn)
                .await?;
            // INSERT … SELECT of every row of the thread, with the new id in place of the old
            macro_rules! copy_rows {
                ($table:ident: $($col:ident),*) => {
                    diesel::insert_into($table::table)
                        .values(
                            $table::table
                                .filter($table::thread_id.eq(&thread_id))
                                .select((new_id.clone().into_sql::<Text>(), $($table::$col),*)),
                        )
                        .into_columns(($table::thread_id, $($table::$col),*))
                        .execute(conn)
                        .await?
                };
            }
            copy_rows!(c: checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata, created_at);
            copy_rows!(b: checkpoint_ns, channel, version, type_, blob, value);
            copy_rows!(w: checkpoint_ns, checkpoint_id, task_id, idx, channel, type_, blob, task_path);
            Ok(thread(row))
        })
        .await
    })
}
