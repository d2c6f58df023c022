//! Checkpoints, their channel blobs and pending writes: LangGraph's checkpointer, in SQL.
//!
//! Listing is keyset-paginated on the time-ordered checkpoint id (never OFFSET) and loads one
//! page: the page's rows, then its blobs and writes in one query each, whatever the page size.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde_json::{Map, Value, json};

use super::{DbError, DbPool, with_conn};
use crate::model::{
    Blob, CheckpointQuery, CheckpointRecord, NewCheckpoint, NewWrites, PendingWrite, RawWrite,
    StateUpdate, format_ts, write_index,
};

type Row = (
    String,
    String,
    String,
    Option<String>,
    Value,
    Value,
    DateTime<Utc>,
);
type BlobRow = (String, String, String, String, Option<Vec<u8>>);
type WriteRow = (String, String, String, i32, String, String, Vec<u8>, String);

/// The columns of `Row`.
macro_rules! columns {
    ($c:ident) => {
        (
            $c::thread_id,
            $c::checkpoint_ns,
            $c::checkpoint_id,
            $c::parent_checkpoint_id,
            $c::checkpoint,
            $c::metadata,
            $c::created_at,
        )
    };
}

/// (channel, version) pairs a checkpoint's `channel_versions` names.
fn versions(checkpoint: &Value) -> Vec<(String, String)> {
    checkpoint
        .get("channel_versions")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(ch, v)| {
                    (
                        ch.clone(),
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Joins rows with the blobs and writes loaded for them.
fn assemble(rows: Vec<Row>, blobs: Vec<BlobRow>, writes: Vec<WriteRow>) -> Vec<CheckpointRecord> {
    let mut blob_map: HashMap<(String, String, String), Blob> = HashMap::new();
    for (ns, channel, version, type_, data) in blobs {
        blob_map.insert(
            (ns, channel.clone(), version.clone()),
            Blob {
                channel,
                version,
                type_,
                data,
            },
        );
    }
    let mut write_map: HashMap<(String, String), Vec<PendingWrite>> = HashMap::new();
    for (ns, checkpoint_id, task_id, idx, channel, type_, data, task_path) in writes {
        write_map
            .entry((ns, checkpoint_id))
            .or_default()
            .push(PendingWrite {
                task_id,
                task_path,
                idx,
                channel,
                type_,
                data,
            });
    }
    rows.into_iter()
        .map(
            |(
                thread_id,
                checkpoint_ns,
                checkpoint_id,
                parent_checkpoint_id,
                checkpoint,
                metadata,
                created_at,
            )| {
                let blobs = versions(&checkpoint)
                    .into_iter()
                    .filter_map(|(ch, v)| blob_map.get(&(checkpoint_ns.clone(), ch, v)).cloned())
                    .collect();
                let pending_writes = write_map
                    .remove(&(checkpoint_ns.clone(), checkpoint_id.clone()))
                    .unwrap_or_default();
                CheckpointRecord {
                    thread_id,
                    checkpoint_ns,
                    checkpoint_id,
                    parent_checkpoint_id,
                    checkpoint,
                    metadata,
                    created_at,
                    blobs,
                    pending_writes,
                }
            },
        )
        .collect()
}

/// Loads the blobs and pending writes of `rows` (all of one thread) and assembles them.
macro_rules! load_page {
    ($conn:expr, $s:ident, $thread_id:expr, $rows:expr) => {{
        use $s::{checkpoint_blobs as b, checkpoint_writes as w};
        let rows: Vec<Row> = $rows;
        let mut channels = HashSet::new();
        let mut vers = HashSet::new();
        for r in &rows {
            for (ch, v) in versions(&r.4) {
                channels.insert(ch);
                vers.insert(v);
            }
        }
        let blobs: Vec<BlobRow> = if channels.is_empty() {
            Vec::new()
        } else {
            b::table
                .filter(b::thread_id.eq($thread_id))
                .filter(b::channel.eq_any(channels.into_iter().collect::<Vec<_>>()))
                .filter(b::version.eq_any(vers.into_iter().collect::<Vec<_>>()))
                .select((b::checkpoint_ns, b::channel, b::version, b::type_, b::blob))
                .load($conn)
                .await?
        };
        let ids: Vec<String> = rows.iter().map(|r| r.2.clone()).collect();
        let writes: Vec<WriteRow> = if ids.is_empty() {
            Vec::new()
        } else {
            w::table
                .filter(w::thread_id.eq($thread_id))
                .filter(w::checkpoint_id.eq_any(ids))
                .order((w::task_id.asc(), w::idx.asc()))
                .select((
                    w::checkpoint_ns,
                    w::checkpoint_id,
                    w::task_id,
                    w::idx,
                    w::channel,
                    w::type_,
                    w::blob,
                    w::task_path,
                ))
                .load($conn)
                .await?
        };
        assemble(rows, blobs, writes)
    }};
}

/// Inserts the thread row unless it exists, so raw checkpointer callers need not create it.
macro_rules! ensure_thread {
    ($conn:expr, $s:ident, $thread_id:expr, $now:expr) => {{
        use $s::threads as t;
        diesel::insert_into(t::table)
            .values((
                t::thread_id.eq($thread_id),
                t::metadata.eq(json!({})),
                t::status.eq("idle"),
                t::config.eq(json!({})),
                t::created_at.eq($now),
                t::updated_at.eq($now),
                t::state_updated_at.eq($now),
            ))
            .on_conflict_do_nothing()
            .execute($conn)
            .await?;
    }};
}

/// On Postgres a checkpoint put is one statement (one round trip, one commit): the thread row,
/// the blobs and the checkpoint row are written by data-modifying CTEs. The foreign keys are
/// checked at the end of the statement, when the thread row exists.
const PG_PUT_CHECKPOINT: &str = "\
WITH thread AS (
    INSERT INTO threads (thread_id, metadata, status, config, created_at, updated_at, state_updated_at)
    VALUES ($1, '{}', 'idle', '{}', $2, $2, $2) ON CONFLICT DO NOTHING
), blobs AS (
    INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
    SELECT $1, $3, b.channel, b.version, b.type, b.blob
    FROM unnest($4::text[], $5::text[], $6::text[], $7::bytea[]) AS b(channel, version, type, blob)
    ON CONFLICT DO NOTHING
)
INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata, created_at)
VALUES ($1, $3, $8, $9, $10, $11, $2)
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id)
DO UPDATE SET checkpoint = EXCLUDED.checkpoint, metadata = EXCLUDED.metadata";

pub async fn put(db: &DbPool, new: NewCheckpoint) -> Result<(), DbError> {
    let now = Utc::now();
    if let DbPool::Pg(pool) = db {
        use diesel::sql_types::{Array, Bytea, Jsonb, Nullable, Text, Timestamptz};
        let mut conn = pool.get().await?;
        let column = |f: fn(&Blob) -> String| new.blobs.iter().map(f).collect::<Vec<_>>();
        diesel::sql_query(PG_PUT_CHECKPOINT)
            .bind::<Text, _>(&new.thread_id)
            .bind::<Timestamptz, _>(now)
            .bind::<Text, _>(&new.checkpoint_ns)
            .bind::<Array<Text>, _>(column(|b| b.channel.clone()))
            .bind::<Array<Text>, _>(column(|b| b.version.clone()))
            .bind::<Array<Text>, _>(column(|b| b.type_.clone()))
            .bind::<Array<Nullable<Bytea>>, _>(
                new.blobs.iter().map(|b| b.data.clone()).collect::<Vec<_>>(),
            )
            .bind::<Text, _>(&new.checkpoint_id)
            .bind::<Nullable<Text>, _>(&new.parent_checkpoint_id)
            .bind::<Jsonb, _>(&new.checkpoint)
            .bind::<Jsonb, _>(&new.metadata)
            .execute(&mut conn)
            .await?;
        return Ok(());
    }
    // SQLite: the same writes, one statement each, in one transaction
    with_conn!(db, |conn, s| {
        conn.transaction::<_, DbError, _>(async move |conn| {
            {
                use s::{checkpoint_blobs as b, checkpoints as c};
                ensure_thread!(conn, s, &new.thread_id, now);
                // one row per statement: SQLite has no multi-row INSERT … ON CONFLICT in diesel
                for bl in &new.blobs {
                    diesel::insert_into(b::table)
                        .values((
                            b::thread_id.eq(&new.thread_id),
                            b::checkpoint_ns.eq(&new.checkpoint_ns),
                            b::channel.eq(&bl.channel),
                            b::version.eq(&bl.version),
                            b::type_.eq(&bl.type_),
                            b::blob.eq(bl.data.as_deref()),
                        ))
                        .on_conflict_do_nothing()
                        .execute(conn)
                        .await?;
                }
                diesel::insert_into(c::table)
                    .values((
                        c::thread_id.eq(&new.thread_id),
                        c::checkpoint_ns.eq(&new.checkpoint_ns),
                        c::checkpoint_id.eq(&new.checkpoint_id),
                        c::parent_checkpoint_id.eq(&new.parent_checkpoint_id),
                        c::checkpoint.eq(&new.checkpoint),
                        c::metadata.eq(&new.metadata),
                        c::created_at.eq(now),
                    ))
                    .on_conflict((c::thread_id, c::checkpoint_ns, c::checkpoint_id))
                    .do_update()
                    .set((
                        c::checkpoint.eq(excluded(c::checkpoint)),
                        c::metadata.eq(excluded(c::metadata)),
                    ))
                    .execute(conn)
                    .await?;
                Ok(())
            }
        })
        .await
    })
}

/// Pending writes on Postgres: one statement, like a checkpoint put. `{conflict}` is the
/// first-write-wins or the replace clause.
const PG_PUT_WRITES: &str = "\
WITH thread AS (
    INSERT INTO threads (thread_id, metadata, status, config, created_at, updated_at, state_updated_at)
    VALUES ($1, '{}', 'idle', '{}', $2, $2, $2) ON CONFLICT DO NOTHING
)
INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob)
SELECT $1, $3, $4, $5, $6, w.idx, w.channel, w.type, w.blob
FROM unnest($7::int[], $8::text[], $9::text[], $10::bytea[]) AS w(idx, channel, type, blob)
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) ";

pub async fn put_writes(db: &DbPool, new: NewWrites) -> Result<(), DbError> {
    let now = Utc::now();
    let all_special = new.writes.iter().all(|(ch, _, _)| write_index(ch, 0) < 0);
    if let DbPool::Pg(pool) = db {
        use diesel::sql_types::{Array, Bytea, Integer, Text, Timestamptz};
        if new.writes.is_empty() {
            return Ok(());
        }
        let conflict = if all_special {
            // special channels (error, interrupt, resume…) are replaced by a retry
            "DO UPDATE SET channel = EXCLUDED.channel, type = EXCLUDED.type, blob = EXCLUDED.blob"
        } else {
            // the first write of an index wins: retries are idempotent
            "DO NOTHING"
        };
        let mut writes: Vec<(i32, &RawWrite)> = new
            .writes
            .iter()
            .enumerate()
            .map(|(i, w)| (write_index(&w.0, i), w))
            .collect();
        if all_special {
            // one statement cannot update a row twice: the last write of an index stands
            let mut seen = HashSet::new();
            writes.reverse();
            writes.retain(|(idx, _)| seen.insert(*idx));
        }
        let mut conn = pool.get().await?;
        let idx: Vec<i32> = writes.iter().map(|(i, _)| *i).collect();
        diesel::sql_query(format!("{PG_PUT_WRITES}{conflict}"))
            .bind::<Text, _>(&new.thread_id)
            .bind::<Timestamptz, _>(now)
            .bind::<Text, _>(&new.checkpoint_ns)
            .bind::<Text, _>(&new.checkpoint_id)
            .bind::<Text, _>(&new.task_id)
            .bind::<Text, _>(&new.task_path)
            .bind::<Array<Integer>, _>(idx)
            .bind::<Array<Text>, _>(writes.iter().map(|(_, w)| w.0.clone()).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(writes.iter().map(|(_, w)| w.1.clone()).collect::<Vec<_>>())
            .bind::<Array<Bytea>, _>(writes.iter().map(|(_, w)| w.2.clone()).collect::<Vec<_>>())
            .execute(&mut conn)
            .await?;
        return Ok(());
    }
    // SQLite: one statement per write, in one transaction
    with_conn!(db, |conn, s| {
        conn.transaction::<_, DbError, _>(async move |conn| {
            {
                use s::checkpoint_writes as w;
                ensure_thread!(conn, s, &new.thread_id, now);
                for (i, (channel, type_, data)) in new.writes.iter().enumerate() {
                    let insert = diesel::insert_into(w::table).values((
                        w::thread_id.eq(&new.thread_id),
                        w::checkpoint_ns.eq(&new.checkpoint_ns),
                        w::checkpoint_id.eq(&new.checkpoint_id),
                        w::task_id.eq(&new.task_id),
                        w::idx.eq(write_index(channel, i)),
                        w::channel.eq(channel),
                        w::type_.eq(type_),
                        w::blob.eq(data),
                        w::task_path.eq(&new.task_path),
                    ));
                    if all_special {
                        // special channels (error, interrupt, resume…) are replaced by a retry
                        insert
                            .on_conflict((
                                w::thread_id,
                                w::checkpoint_ns,
                                w::checkpoint_id,
                                w::task_id,
                                w::idx,
                            ))
                            .do_update()
                            .set((
                                w::channel.eq(excluded(w::channel)),
                                w::type_.eq(excluded(w::type_)),
                                w::blob.eq(excluded(w::blob)),
                            ))
                            .execute(conn)
                            .await?;
                    } else {
                        // the first write of an index wins: retries are idempotent
                        insert.on_conflict_do_nothing().execute(conn).await?;
                    }
                }
                Ok(())
            }
        })
        .await
    })
}

pub async fn get(
    db: &DbPool,
    thread_id: String,
    checkpoint_ns: String,
    checkpoint_id: Option<String>,
) -> Result<Option<CheckpointRecord>, DbError> {
    with_conn!(db, |conn, s| {
        use s::checkpoints as c;
        let mut q = c::table
            .filter(c::thread_id.eq(&thread_id))
            .filter(c::checkpoint_ns.eq(&checkpoint_ns))
            .select(columns!(c))
            .into_boxed();
        if let Some(id) = &checkpoint_id {
            q = q.filter(c::checkpoint_id.eq(id.clone()));
        }
        let row: Option<Row> = q
            .order(c::checkpoint_id.desc())
            .first(&mut conn)
            .await
            .optional()?;
        let Some(row) = row else { return Ok(None) };
        Ok(load_page!(&mut conn, s, &thread_id, vec![row]).pop())
    })
}

pub async fn list(db: &DbPool, query: CheckpointQuery) -> Result<Vec<CheckpointRecord>, DbError> {
    with_conn!(db, |conn, s| {
        use s::checkpoints as c;
        let mut q = c::table
            .filter(c::thread_id.eq(query.thread_id.clone()))
            .select(columns!(c))
            .into_boxed();
        if let Some(ns) = &query.checkpoint_ns {
            q = q.filter(c::checkpoint_ns.eq(ns.clone()));
        }
        if let Some(before) = &query.before {
            q = q.filter(c::checkpoint_id.lt(before.clone()));
        }
        if let Some(m) = &query.metadata {
            for p in dialect::contains::<c::table>("metadata", m) {
                q = q.filter(p);
            }
        }
        let rows: Vec<Row> = q
            .order(c::checkpoint_id.desc())
            .limit(query.limit)
            .load(&mut conn)
            .await?;
        Ok(load_page!(&mut conn, s, &query.thread_id, rows))
    })
}

/// Deletes a thread and everything under it; deleting nothing is not an error.
pub async fn delete_thread(db: &DbPool, thread_id: String) -> Result<(), DbError> {
    with_conn!(db, |conn, s| {
        use s::threads as t;
        diesel::delete(t::table.find(&thread_id))
            .execute(&mut conn)
            .await?;
    });
    Ok(())
}

/// A fresh time-ordered checkpoint id that sorts after `after`.
fn next_checkpoint_id(after: Option<&str>) -> String {
    let node: [u8; 6] = *uuid::Uuid::new_v4()
        .as_bytes()
        .first_chunk()
        .unwrap_or(&[0; 6]);
    let mut id = uuid::Uuid::now_v6(&node).to_string();
    for _ in 0..100 {
        match after {
            Some(a) if id.as_str() <= a => {
                std::thread::sleep(std::time::Duration::from_micros(1));
                id = uuid::Uuid::now_v6(&node).to_string();
            }
            _ => break,
        }
    }
    id
}

/// The next channel version after every version in `versions`, in LangGraph's sortable format.
fn next_version(versions: &Map<String, Value>) -> String {
    let max = versions
        .values()
        .filter_map(|v| match v {
            Value::String(s) => s.split('.').next().and_then(|n| n.parse::<u64>().ok()),
            Value::Number(n) => n.as_u64(),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    format!("{:032}.{:016}", max + 1, 0)
}

pub async fn update_state(db: &DbPool, update: StateUpdate) -> Result<CheckpointRecord, DbError> {
    let now = Utc::now();
    let Value::Object(changes) = update.values else {
        return Err(DbError::Invalid("values must be an object".into()));
    };
    let base = get(
        db,
        update.thread_id.clone(),
        String::new(),
        update.checkpoint_id.clone(),
    )
    .await?;
    if update.checkpoint_id.is_some() && base.is_none() {
        return Err(DbError::NotFound("Checkpoint not found".into()));
    }
    let base_checkpoint = base
        .as_ref()
        .map(|b| b.checkpoint.clone())
        .unwrap_or_else(|| json!({}));
    let mut channel_values = base_checkpoint
        .get("channel_values")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut channel_versions = base_checkpoint
        .get("channel_versions")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let version = next_version(&channel_versions);
    for (k, v) in &changes {
        channel_values.insert(k.clone(), v.clone());
        // the value is inline now: no blob of this version exists, so reads keep the inline one
        channel_versions.insert(k.clone(), Value::String(version.clone()));
    }
    let checkpoint_id = next_checkpoint_id(base.as_ref().map(|b| b.checkpoint_id.as_str()));
    let step = base
        .as_ref()
        .and_then(|b| b.metadata.get("step"))
        .and_then(Value::as_i64)
        .unwrap_or(-1)
        + 1;
    let checkpoint = json!({
        "v": 4,
        "id": checkpoint_id,
        "ts": format_ts(&now),
        "channel_values": channel_values,
        "channel_versions": channel_versions,
        "versions_seen": base_checkpoint.get("versions_seen").cloned().unwrap_or_else(|| json!({})),
        "updated_channels": changes.keys().collect::<Vec<_>>(),
    });
    let as_node = update.as_node.clone().unwrap_or_else(|| "__input__".into());
    let metadata = json!({
        "source": "update",
        "step": step,
        "writes": { as_node: Value::Object(changes) },
        "parents": {},
    });
    let record = CheckpointRecord {
        thread_id: update.thread_id.clone(),
        checkpoint_ns: String::new(),
        checkpoint_id: checkpoint_id.clone(),
        parent_checkpoint_id: base.as_ref().map(|b| b.checkpoint_id.clone()),
        checkpoint,
        metadata,
        created_at: now,
        blobs: base.map(|b| b.blobs).unwrap_or_default(),
        pending_writes: Vec::new(),
    };
    let values = record.values();
    let rec = record.clone();
    with_conn!(db, |conn, s| {
        conn.transaction::<_, DbError, _>(async move |conn| {
            use s::{checkpoints as c, threads as t};
            let n = diesel::update(t::table.find(&rec.thread_id))
                .set((
                    t::state_values.eq(&values),
                    t::state_updated_at.eq(now),
                    t::updated_at.eq(now),
                ))
                .execute(conn)
                .await?;
            if n == 0 {
                return Err(DbError::NotFound(format!(
                    "Thread with ID {} not found",
                    rec.thread_id
                )));
            }
            diesel::insert_into(c::table)
                .values((
                    c::thread_id.eq(&rec.thread_id),
                    c::checkpoint_ns.eq(""),
                    c::checkpoint_id.eq(&rec.checkpoint_id),
                    c::parent_checkpoint_id.eq(&rec.parent_checkpoint_id),
                    c::checkpoint.eq(&rec.checkpoint),
                    c::metadata.eq(&rec.metadata),
                    c::created_at.eq(now),
                ))
                .execute(conn)
                .await?;
            Ok(())
        })
        .await
    })?;
    Ok(record)
}
