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

use super::{DbError, DbPool, close_if_large, ensure_thread, with_conn};
use crate::graphs::{self, Graph};
use crate::model::{
    Blob, CheckpointQuery, CheckpointRecord, NewCheckpoint, NewWrites, PendingWrite, RawJson,
    RawWrite, StateUpdate, format_ts, write_index,
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
type BlobRow = (
    String,
    String,
    String,
    String,
    Option<Vec<u8>>,
    Option<Value>,
);
type WriteRow = (
    String,
    String,
    String,
    i32,
    String,
    String,
    Vec<u8>,
    String,
    Option<Value>,
);

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

/// The columns of `WriteRow`.
macro_rules! write_columns {
    ($w:ident) => {
        (
            $w::checkpoint_ns,
            $w::checkpoint_id,
            $w::task_id,
            $w::idx,
            $w::channel,
            $w::type_,
            $w::blob,
            $w::task_path,
            $w::value,
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
    for (ns, channel, version, type_, data, value) in blobs {
        blob_map.insert(
            (ns, channel.clone(), version.clone()),
            Blob {
                channel,
                version,
                type_,
                data,
                value,
            },
        );
    }
    let mut write_map: HashMap<(String, String), Vec<PendingWrite>> = HashMap::new();
    for (ns, checkpoint_id, task_id, idx, channel, type_, data, task_path, value) in writes {
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
                value,
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
        let namespaces: Vec<String> = rows
            .iter()
            .map(|r| r.1.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
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
                .filter(b::checkpoint_ns.eq_any(namespaces.clone()))
                .filter(b::channel.eq_any(channels.into_iter().collect::<Vec<_>>()))
                .filter(b::version.eq_any(vers.into_iter().collect::<Vec<_>>()))
                .select((
                    b::checkpoint_ns,
                    b::channel,
                    b::version,
                    b::type_,
                    b::blob,
                    b::value,
                ))
                .load($conn)
                .await?
        };
        let ids: Vec<String> = rows.iter().map(|r| r.2.clone()).collect();
        let writes: Vec<WriteRow> = if ids.is_empty() {
            Vec::new()
        } else {
            w::table
                .filter(w::thread_id.eq($thread_id))
                .filter(w::checkpoint_ns.eq_any(namespaces))
                .filter(w::checkpoint_id.eq_any(ids))
                .order((w::task_path.asc(), w::task_id.asc(), w::idx.asc()))
                .select(write_columns!(w))
                .load($conn)
                .await?
        };
        assemble(rows, blobs, writes)
    }};
}

/// Deletes the blobs of `threads` that none of their remaining checkpoints names: what deleting
/// checkpoints leaves behind.
macro_rules! drop_unused_blobs {
    ($conn:expr, $s:ident, $threads:expr) => {{
        use $s::{checkpoint_blobs as b, checkpoints as c};
        let threads: &[String] = $threads;
        let remaining: Vec<(String, String, Value)> = c::table
            .filter(c::thread_id.eq_any(threads))
            .select((c::thread_id, c::checkpoint_ns, c::checkpoint))
            .load($conn)
            .await?;
        let used: HashSet<(String, String, String, String)> = remaining
            .into_iter()
            .flat_map(|(t, ns, cp)| {
                versions(&cp)
                    .into_iter()
                    .map(move |(ch, v)| (t.clone(), ns.clone(), ch, v))
            })
            .collect();
        let stored: Vec<(String, String, String, String)> = b::table
            .filter(b::thread_id.eq_any(threads))
            .select((b::thread_id, b::checkpoint_ns, b::channel, b::version))
            .load($conn)
            .await?;
        let mut unused: HashMap<(String, String, String), Vec<String>> = HashMap::new();
        for key in stored {
            if !used.contains(&key) {
                let (t, ns, ch, v) = key;
                unused.entry((t, ns, ch)).or_default().push(v);
            }
        }
        for ((t, ns, ch), vs) in unused {
            diesel::delete(
                b::table
                    .filter(b::thread_id.eq(t))
                    .filter(b::checkpoint_ns.eq(ns))
                    .filter(b::channel.eq(ch))
                    .filter(b::version.eq_any(vs)),
            )
            .execute($conn)
            .await?;
        }
    }};
}

/// Deletes the checkpoints `doomed` names (thread, namespace, id) with their pending writes.
macro_rules! delete_checkpoints {
    ($conn:expr, $s:ident, $doomed:expr) => {{
        use $s::{checkpoint_writes as w, checkpoints as c};
        let mut by_ns: HashMap<(String, String), Vec<String>> = HashMap::new();
        for (t, ns, id) in $doomed {
            by_ns.entry((t, ns)).or_default().push(id);
        }
        for ((t, ns), ids) in by_ns {
            diesel::delete(
                w::table
                    .filter(w::thread_id.eq(&t))
                    .filter(w::checkpoint_ns.eq(&ns))
                    .filter(w::checkpoint_id.eq_any(&ids)),
            )
            .execute($conn)
            .await?;
            diesel::delete(
                c::table
                    .filter(c::thread_id.eq(&t))
                    .filter(c::checkpoint_ns.eq(&ns))
                    .filter(c::checkpoint_id.eq_any(&ids)),
            )
            .execute($conn)
            .await?;
        }
    }};
}

/// The start of every Postgres batch write: the thread rows `$2` names, created unless they
/// exist (timestamps `$1`). The foreign keys are checked at the end of the statement, when the
/// thread rows exist.
const PG_ENSURE_THREADS: &str = "\
WITH thread AS (
    INSERT INTO threads (thread_id, metadata, status, config, created_at, updated_at, state_updated_at)
    SELECT DISTINCT t, '{}'::jsonb, 'idle', '{}'::jsonb, $1, $1, $1 FROM unnest($2::text[]) AS t
    ON CONFLICT DO NOTHING
)";

/// On Postgres a batch of checkpoint puts is one statement (one round trip, one commit): the
/// thread rows, the blobs and the checkpoint rows are written by data-modifying CTEs over arrays.
const PG_PUT_CHECKPOINTS: &str = ", blobs AS (
    INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob, value)
    SELECT * FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bytea[], $9::jsonb[])
    ON CONFLICT DO NOTHING
)
INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata, created_at)
SELECT c.*, $1 FROM unnest($10::text[], $11::text[], $12::text[], $13::text[], $14::jsonb[], $15::jsonb[]) AS c
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id)
DO UPDATE SET checkpoint = EXCLUDED.checkpoint, metadata = EXCLUDED.metadata";

/// The blob columns of a batch of checkpoint puts, as Postgres arrays.
#[derive(Default)]
struct BlobColumns {
    thread_id: Vec<String>,
    checkpoint_ns: Vec<String>,
    channel: Vec<String>,
    version: Vec<String>,
    type_: Vec<String>,
    data: Vec<Option<Vec<u8>>>,
    value: Vec<Option<Value>>,
}

/// The checkpoint columns of a batch of checkpoint puts, as Postgres arrays.
#[derive(Default)]
struct CheckpointColumns {
    thread_id: Vec<String>,
    checkpoint_ns: Vec<String>,
    checkpoint_id: Vec<String>,
    parent_checkpoint_id: Vec<Option<String>>,
    checkpoint: Vec<RawJson>,
    metadata: Vec<RawJson>,
}

/// Stores checkpoints with their blobs (the group-commit task's flush); a checkpoint given twice
/// keeps its last version.
pub async fn put_many(db: DbPool, mut items: Vec<NewCheckpoint>) -> Result<(), DbError> {
    let now = Utc::now();
    let mut seen = HashSet::new();
    items.reverse();
    items.retain(|c| {
        seen.insert((
            c.thread_id.clone(),
            c.checkpoint_ns.clone(),
            c.checkpoint_id.clone(),
        ))
    });
    // rows in key order, so concurrent batches lock them in the same order (no deadlock)
    items.sort_by(|a, b| {
        (&a.thread_id, &a.checkpoint_ns, &a.checkpoint_id).cmp(&(
            &b.thread_id,
            &b.checkpoint_ns,
            &b.checkpoint_id,
        ))
    });
    match &db {
        DbPool::Pg(pool) => {
            use diesel::sql_types::{Array, Bytea, Jsonb, Nullable, Text, Timestamptz};
            let bytes = items.iter().map(NewCheckpoint::payload_bytes).sum();
            // the binds own every payload: the query, and with it the last reference to each, is
            // gone as soon as its binds are copied out, so a large one is not held once more
            let mut blobs: Vec<(String, String, Blob)> = items
                .iter_mut()
                .flat_map(|c| {
                    let (thread, ns) = (c.thread_id.clone(), c.checkpoint_ns.clone());
                    std::mem::take(&mut c.blobs)
                        .into_iter()
                        .map(move |b| (thread.clone(), ns.clone(), b))
                })
                .collect();
            blobs.sort_by(|(t1, ns1, b1), (t2, ns2, b2)| {
                (t1, ns1, &b1.channel, &b1.version).cmp(&(t2, ns2, &b2.channel, &b2.version))
            });
            let mut b = BlobColumns::default();
            for (thread, ns, blob) in blobs {
                b.thread_id.push(thread);
                b.checkpoint_ns.push(ns);
                b.channel.push(blob.channel);
                b.version.push(blob.version);
                b.type_.push(blob.type_);
                b.data.push(blob.data);
                b.value.push(blob.value);
            }
            let mut c = CheckpointColumns::default();
            for item in items {
                c.thread_id.push(item.thread_id);
                c.checkpoint_ns.push(item.checkpoint_ns);
                c.checkpoint_id.push(item.checkpoint_id);
                c.parent_checkpoint_id.push(item.parent_checkpoint_id);
                c.checkpoint.push(item.checkpoint);
                c.metadata.push(item.metadata);
            }
            let mut conn = pool.get().await?;
            diesel::sql_query(format!("{PG_ENSURE_THREADS}{PG_PUT_CHECKPOINTS}"))
                .bind::<Timestamptz, _>(now)
                .bind::<Array<Text>, _>(c.thread_id.clone())
                .bind::<Array<Text>, _>(b.thread_id)
                .bind::<Array<Text>, _>(b.checkpoint_ns)
                .bind::<Array<Text>, _>(b.channel)
                .bind::<Array<Text>, _>(b.version)
                .bind::<Array<Text>, _>(b.type_)
                .bind::<Array<Nullable<Bytea>>, _>(b.data)
                .bind::<Array<Nullable<Jsonb>>, _>(b.value)
                .bind::<Array<Text>, _>(c.thread_id)
                .bind::<Array<Text>, _>(c.checkpoint_ns)
                .bind::<Array<Text>, _>(c.checkpoint_id)
                .bind::<Array<Nullable<Text>>, _>(c.parent_checkpoint_id)
                .bind::<Array<Jsonb>, _>(c.checkpoint)
                .bind::<Array<Jsonb>, _>(c.metadata)
                .execute(&mut conn)
                .await?;
            close_if_large(conn, bytes);
        }
        // SQLite: the same writes, one statement each, in one transaction, on the connection's
        // own thread, where payloads are bound in place (through the async wrapper a large one
        // would be copied twice more to cross threads)
        DbPool::Sqlite(pool) => {
            let mut conn = pool.get().await?;
            conn.spawn_blocking(move |conn| sqlite_blocking::put_many(conn, &items, now))
                .await?;
        }
    }
    Ok(())
}

/// SQLite reads and writes made on the connection's own thread, through diesel's blocking API.
mod sqlite_blocking {
    use chrono::{DateTime, Utc};
    use diesel::prelude::*;
    use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
    use diesel::sql_types::{Binary, Json, Nullable, Text};
    use diesel::sqlite::{Sqlite, SqliteConnection};
    use diesel::upsert::excluded;
    use serde_json::{Map, Value};

    use super::super::ensure_thread;
    use super::super::schema::sqlite as s;
    use super::{BlobRow, CheckpointKey, Row, WriteRow, assemble, versions};
    use crate::model::{CheckpointRecord, NewCheckpoint};

    /// [`super::get_many`]'s reads: for each key, its row, then its blobs and writes. Every
    /// statement has a fixed text, so each is parsed and planned once per connection: an `IN`
    /// list is a new statement for every length, and parsing was a fifth of a state read.
    pub fn get_many(
        conn: &mut SqliteConnection,
        keys: Vec<CheckpointKey>,
    ) -> QueryResult<Vec<Option<CheckpointRecord>>> {
        use s::{checkpoint_writes as w, checkpoints as c};
        // one read transaction: every statement sees the same snapshot (a checkpoint with the
        // blobs and writes of that moment), and the WAL's read lock is taken once
        conn.transaction(|conn| {
            let mut out = Vec::with_capacity(keys.len());
            for k in keys {
                let this = c::table
                    .filter(c::thread_id.eq(&k.thread_id))
                    .filter(c::checkpoint_ns.eq(&k.checkpoint_ns));
                let row: Option<Row> = match &k.checkpoint_id {
                    Some(id) => this
                        .filter(c::checkpoint_id.eq(id))
                        .select(columns!(c))
                        .first(conn),
                    None => this
                        .order(c::checkpoint_id.desc())
                        .select(columns!(c))
                        .first(conn),
                }
                .optional()?;
                let Some(row) = row else {
                    out.push(None);
                    continue;
                };
                let named: Map<String, Value> = versions(&row.4)
                    .into_iter()
                    .map(|(ch, v)| (ch, Value::String(v)))
                    .collect();
                let blobs: Vec<BlobRow> = if named.is_empty() {
                    Vec::new()
                } else {
                    BlobsOf {
                        thread_id: &k.thread_id,
                        checkpoint_ns: &k.checkpoint_ns,
                        versions: Value::Object(named).to_string(),
                    }
                    .load(conn)?
                };
                let writes: Vec<WriteRow> = if k.with_writes {
                    w::table
                        .filter(w::thread_id.eq(&k.thread_id))
                        .filter(w::checkpoint_ns.eq(&k.checkpoint_ns))
                        .filter(w::checkpoint_id.eq(&row.2))
                        .order((w::task_path.asc(), w::task_id.asc(), w::idx.asc()))
                        .select(write_columns!(w))
                        .load(conn)?
                } else {
                    Vec::new()
                };
                out.push(assemble(vec![row], blobs, writes).pop());
            }
            Ok(out)
        })
    }

    /// The blobs of one checkpoint's namespace that its `channel_versions` names, bound as a
    /// JSON object of version strings and walked with `json_each`: one lookup on the primary key
    /// per channel, in a statement whose text does not depend on how many channels there are.
    struct BlobsOf<'a> {
        thread_id: &'a str,
        checkpoint_ns: &'a str,
        versions: String,
    }

    impl QueryId for BlobsOf<'_> {
        type QueryId = BlobsOf<'static>;
        const HAS_STATIC_QUERY_ID: bool = true;
    }

    impl Query for BlobsOf<'_> {
        type SqlType = (Text, Text, Text, Text, Nullable<Binary>, Nullable<Json>);
    }

    impl QueryFragment<Sqlite> for BlobsOf<'_> {
        fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
            // CROSS JOIN keeps json_each outside: SQLite does not reorder a CROSS JOIN
            out.push_sql(
                "SELECT b.checkpoint_ns, b.channel, b.version, b.type, b.blob, b.value \
                 FROM json_each(",
            );
            out.push_bind_param::<Text, _>(&self.versions)?;
            out.push_sql(") v CROSS JOIN checkpoint_blobs b WHERE b.thread_id = ");
            out.push_bind_param::<Text, _>(self.thread_id)?;
            out.push_sql(" AND b.checkpoint_ns = ");
            out.push_bind_param::<Text, _>(self.checkpoint_ns)?;
            out.push_sql(" AND b.channel = v.key AND b.version = v.value");
            Ok(())
        }
    }

    impl RunQueryDsl<SqliteConnection> for BlobsOf<'_> {}

    /// [`super::put_many`]'s writes, in one transaction.
    pub fn put_many(
        conn: &mut SqliteConnection,
        items: &[NewCheckpoint],
        now: DateTime<Utc>,
    ) -> QueryResult<()> {
        use s::{checkpoint_blobs as b, checkpoints as c};
        conn.transaction(|conn| {
            for new in items {
                ensure_thread!(s, &new.thread_id, None::<String>, now).execute(conn)?;
                for bl in &new.blobs {
                    diesel::insert_into(b::table)
                        .values((
                            b::thread_id.eq(&new.thread_id),
                            b::checkpoint_ns.eq(&new.checkpoint_ns),
                            b::channel.eq(&bl.channel),
                            b::version.eq(&bl.version),
                            b::type_.eq(&bl.type_),
                            b::blob.eq(bl.data.as_deref()),
                            b::value.eq(bl.value.as_ref()),
                        ))
                        .on_conflict_do_nothing()
                        .execute(conn)?;
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
                    .execute(conn)?;
            }
            Ok(())
        })
    }
}

/// Pending writes on Postgres: one statement per conflict rule for a whole batch, after
/// `PG_ENSURE_THREADS`; then comes the first-write-wins or the replace clause.
const PG_PUT_WRITES: &str = "
INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob, value)
SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int[], $8::text[], $9::text[], $10::bytea[], $11::jsonb[])
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) ";

/// One row of `checkpoint_writes`: the task's writes with their indexes.
struct WriteRowIn<'a> {
    task: &'a NewWrites,
    idx: i32,
    write: &'a RawWrite,
}

/// Writes whose task writes only special channels (error, interrupt, resume…) replace what a
/// retry wrote before; all others keep the first write of an index, so retries are idempotent.
fn is_replacing(task: &NewWrites) -> bool {
    task.writes.iter().all(|(ch, ..)| write_index(ch, 0) < 0)
}

/// Stores tasks' pending writes (the group-commit task's flush).
pub async fn put_writes_many(db: DbPool, tasks: Vec<NewWrites>) -> Result<(), DbError> {
    let now = Utc::now();
    let rows = |replacing: bool| {
        let mut rows: Vec<WriteRowIn> = tasks
            .iter()
            .filter(|t| is_replacing(t) == replacing)
            .flat_map(|task| {
                task.writes
                    .iter()
                    .enumerate()
                    .map(move |(i, write)| WriteRowIn {
                        task,
                        idx: write_index(&write.0, i),
                        write,
                    })
            })
            .collect();
        // rows in key order, so concurrent batches lock them in the same order (no deadlock);
        // the sort is stable, so the order of writes to one key is kept
        rows.sort_by(|a, b| {
            (
                &a.task.thread_id,
                &a.task.checkpoint_ns,
                &a.task.checkpoint_id,
                &a.task.task_id,
                a.idx,
            )
                .cmp(&(
                    &b.task.thread_id,
                    &b.task.checkpoint_ns,
                    &b.task.checkpoint_id,
                    &b.task.task_id,
                    b.idx,
                ))
        });
        if replacing {
            // one statement cannot update a row twice: the last write of a key stands
            let mut seen = HashSet::new();
            rows.reverse();
            rows.retain(|r| {
                seen.insert((
                    &r.task.thread_id,
                    &r.task.checkpoint_ns,
                    &r.task.checkpoint_id,
                    &r.task.task_id,
                    r.idx,
                ))
            });
        }
        rows
    };
    if let DbPool::Pg(pool) = &db {
        use diesel::sql_types::{Array, Bytea, Integer, Jsonb, Nullable, Text, Timestamptz};
        let mut conn = pool.get().await?;
        for (replacing, conflict) in [
            (false, "DO NOTHING"),
            (
                true,
                "DO UPDATE SET channel = EXCLUDED.channel, type = EXCLUDED.type, blob = EXCLUDED.blob, value = EXCLUDED.value",
            ),
        ] {
            let rows = rows(replacing);
            if rows.is_empty() {
                continue;
            }
            let col = |f: fn(&WriteRowIn) -> String| rows.iter().map(f).collect::<Vec<_>>();
            diesel::sql_query(format!("{PG_ENSURE_THREADS}{PG_PUT_WRITES}{conflict}"))
                .bind::<Timestamptz, _>(now)
                .bind::<Array<Text>, _>(col(|r| r.task.thread_id.clone()))
                .bind::<Array<Text>, _>(col(|r| r.task.checkpoint_ns.clone()))
                .bind::<Array<Text>, _>(col(|r| r.task.checkpoint_id.clone()))
                .bind::<Array<Text>, _>(col(|r| r.task.task_id.clone()))
                .bind::<Array<Text>, _>(col(|r| r.task.task_path.clone()))
                .bind::<Array<Integer>, _>(rows.iter().map(|r| r.idx).collect::<Vec<_>>())
                .bind::<Array<Text>, _>(col(|r| r.write.0.clone()))
                .bind::<Array<Text>, _>(col(|r| r.write.1.clone()))
                .bind::<Array<Bytea>, _>(rows.iter().map(|r| r.write.2.clone()).collect::<Vec<_>>())
                .bind::<Array<Nullable<Jsonb>>, _>(
                    rows.iter().map(|r| r.write.3.clone()).collect::<Vec<_>>(),
                )
                .execute(&mut conn)
                .await?;
        }
        return Ok(());
    }
    // SQLite: one statement per write, in one transaction
    let (keep_first, replace) = (rows(false), rows(true));
    with_conn!(&db, |conn, s| {
        conn.transaction::<_, DbError, _>(async move |conn| {
            use s::checkpoint_writes as w;
            for (replacing, rows) in [(false, keep_first), (true, replace)] {
                for r in rows {
                    ensure_thread!(s, &r.task.thread_id, None::<String>, now)
                        .execute(conn)
                        .await?;
                    let insert = diesel::insert_into(w::table).values((
                        w::thread_id.eq(&r.task.thread_id),
                        w::checkpoint_ns.eq(&r.task.checkpoint_ns),
                        w::checkpoint_id.eq(&r.task.checkpoint_id),
                        w::task_id.eq(&r.task.task_id),
                        w::idx.eq(r.idx),
                        w::channel.eq(&r.write.0),
                        w::type_.eq(&r.write.1),
                        w::blob.eq(&r.write.2),
                        w::task_path.eq(&r.task.task_path),
                        w::value.eq(&r.write.3),
                    ));
                    if replacing {
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
                                w::value.eq(excluded(w::value)),
                            ))
                            .execute(conn)
                            .await?;
                    } else {
                        insert.on_conflict_do_nothing().execute(conn).await?;
                    }
                }
            }
            Ok(())
        })
        .await
    })
}

/// Which checkpoint to read: one of a thread's namespace by id, or its latest; with its pending
/// writes or without (what a new step builds on needs none).
#[derive(Debug, Clone)]
pub struct CheckpointKey {
    pub thread_id: String,
    pub checkpoint_ns: String,
    pub checkpoint_id: Option<String>,
    pub with_writes: bool,
}

/// Postgres: the checkpoints of many keys, each with its blobs and writes, in one statement (one
/// round trip, one plan) however many keys there are. Blobs are found through the checkpoint's
/// own `channel_versions`, so each is one index lookup, whatever the thread's size (a checkpoint
/// whose `channel_versions` is not an object names none, and fails no other key of its batch).
/// Split around its four binds (see [`GetCheckpoints`]).
const PG_GET_CHECKPOINTS: [&str; 5] = [
    "SELECT k.i, c.thread_id, c.checkpoint_ns, c.checkpoint_id,
    c.parent_checkpoint_id, c.checkpoint, c.metadata, c.created_at,
    bl.channels, bl.versions, bl.types, bl.blobs, bl.values,
    wr.task_ids, wr.idxs, wr.channels AS w_channels, wr.types AS w_types, wr.blobs AS w_blobs,
    wr.task_paths, wr.values AS w_values
FROM unnest(",
    "::text[], ",
    "::text[], ",
    "::text[], ",
    "::bool[]) WITH ORDINALITY
    AS k(thread_id, checkpoint_ns, checkpoint_id, with_writes, i)
CROSS JOIN LATERAL (
    (SELECT * FROM checkpoints c WHERE c.thread_id = k.thread_id
        AND c.checkpoint_ns = k.checkpoint_ns AND c.checkpoint_id = k.checkpoint_id)
    UNION ALL
    (SELECT * FROM checkpoints c WHERE k.checkpoint_id IS NULL AND c.thread_id = k.thread_id
        AND c.checkpoint_ns = k.checkpoint_ns ORDER BY c.checkpoint_id DESC LIMIT 1)
) c
CROSS JOIN LATERAL (
    SELECT array_agg(b.channel) AS channels, array_agg(b.version) AS versions,
        array_agg(b.type) AS types, array_agg(b.blob) AS blobs, array_agg(b.value) AS values
    FROM jsonb_each_text(CASE jsonb_typeof(c.checkpoint -> 'channel_versions')
        WHEN 'object' THEN c.checkpoint -> 'channel_versions' ELSE '{}' END) v
    JOIN checkpoint_blobs b ON b.thread_id = c.thread_id AND b.checkpoint_ns = c.checkpoint_ns
        AND b.channel = v.key AND b.version = v.value
) bl
CROSS JOIN LATERAL (
    SELECT array_agg(w.task_id ORDER BY w.task_path, w.task_id, w.idx) AS task_ids,
        array_agg(w.idx ORDER BY w.task_path, w.task_id, w.idx) AS idxs,
        array_agg(w.channel ORDER BY w.task_path, w.task_id, w.idx) AS channels,
        array_agg(w.type ORDER BY w.task_path, w.task_id, w.idx) AS types,
        array_agg(w.blob ORDER BY w.task_path, w.task_id, w.idx) AS blobs,
        array_agg(w.task_path ORDER BY w.task_path, w.task_id, w.idx) AS task_paths,
        array_agg(w.value ORDER BY w.task_path, w.task_id, w.idx) AS values
    FROM checkpoint_writes w WHERE k.with_writes AND w.thread_id = c.thread_id
        AND w.checkpoint_ns = c.checkpoint_ns AND w.checkpoint_id = c.checkpoint_id
) wr",
];

/// [`PG_GET_CHECKPOINTS`] with its four arrays bound. A query of its own type rather than a
/// `sql_query`, which diesel parses and plans on every call: this one is prepared once per
/// connection and its plan reused.
struct GetCheckpoints {
    threads: Vec<String>,
    namespaces: Vec<String>,
    ids: Vec<Option<String>>,
    with_writes: Vec<bool>,
}

impl diesel::query_builder::QueryId for GetCheckpoints {
    type QueryId = GetCheckpoints;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::Query for GetCheckpoints {
    type SqlType = diesel::sql_types::Untyped;
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for GetCheckpoints {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{Array, Bool, Nullable, Text};
        let [select, ns, id, writes, rest] = PG_GET_CHECKPOINTS;
        out.push_sql(select);
        out.push_bind_param::<Array<Text>, _>(&self.threads)?;
        out.push_sql(ns);
        out.push_bind_param::<Array<Text>, _>(&self.namespaces)?;
        out.push_sql(id);
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.ids)?;
        out.push_sql(writes);
        out.push_bind_param::<Array<Bool>, _>(&self.with_writes)?;
        out.push_sql(rest);
        Ok(())
    }
}

/// One row of [`PG_GET_CHECKPOINTS`]: a checkpoint with its blobs and writes as arrays.
#[derive(diesel::QueryableByName)]
struct PgCheckpointRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    i: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    thread_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    checkpoint_ns: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    checkpoint_id: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    parent_checkpoint_id: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Jsonb)]
    checkpoint: Value,
    #[diesel(sql_type = diesel::sql_types::Jsonb)]
    metadata: Value,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = pg_arrays::Texts)]
    channels: Option<Vec<String>>,
    #[diesel(sql_type = pg_arrays::Texts)]
    versions: Option<Vec<String>>,
    #[diesel(sql_type = pg_arrays::Texts)]
    types: Option<Vec<String>>,
    #[diesel(sql_type = pg_arrays::NullableBytes)]
    blobs: Option<Vec<Option<Vec<u8>>>>,
    #[diesel(sql_type = pg_arrays::NullableJsons)]
    values: Option<Vec<Option<Value>>>,
    #[diesel(sql_type = pg_arrays::Texts)]
    task_ids: Option<Vec<String>>,
    #[diesel(sql_type = pg_arrays::Ints)]
    idxs: Option<Vec<i32>>,
    #[diesel(sql_type = pg_arrays::Texts)]
    w_channels: Option<Vec<String>>,
    #[diesel(sql_type = pg_arrays::Texts)]
    w_types: Option<Vec<String>>,
    #[diesel(sql_type = pg_arrays::Bytes)]
    w_blobs: Option<Vec<Vec<u8>>>,
    #[diesel(sql_type = pg_arrays::Texts)]
    task_paths: Option<Vec<String>>,
    #[diesel(sql_type = pg_arrays::NullableJsons)]
    w_values: Option<Vec<Option<Value>>>,
}

/// The array column types of [`PgCheckpointRow`] (`NULL` when a checkpoint has none).
mod pg_arrays {
    use diesel::sql_types::{Array, Bytea, Integer, Jsonb, Nullable, Text};
    pub type Texts = Nullable<Array<Text>>;
    pub type Ints = Nullable<Array<Integer>>;
    pub type Bytes = Nullable<Array<Bytea>>;
    pub type NullableBytes = Nullable<Array<Nullable<Bytea>>>;
    pub type NullableJsons = Nullable<Array<Nullable<Jsonb>>>;
}

impl PgCheckpointRow {
    fn into_record(self) -> Option<CheckpointRecord> {
        let ns = self.checkpoint_ns.clone();
        let blobs: Vec<BlobRow> = zip5(
            self.channels.unwrap_or_default(),
            self.versions.unwrap_or_default(),
            self.types.unwrap_or_default(),
            self.blobs.unwrap_or_default(),
            self.values.unwrap_or_default(),
        )
        .map(|(channel, version, type_, data, value)| {
            (ns.clone(), channel, version, type_, data, value)
        })
        .collect();
        let mut writes: Vec<WriteRow> = Vec::new();
        let mut task_ids = self.task_ids.unwrap_or_default().into_iter();
        let mut idxs = self.idxs.unwrap_or_default().into_iter();
        let mut channels = self.w_channels.unwrap_or_default().into_iter();
        let mut types = self.w_types.unwrap_or_default().into_iter();
        let mut data = self.w_blobs.unwrap_or_default().into_iter();
        let mut paths = self.task_paths.unwrap_or_default().into_iter();
        let mut values = self.w_values.unwrap_or_default().into_iter();
        while let (Some(task_id), Some(idx), Some(channel), Some(type_), Some(blob), Some(path)) = (
            task_ids.next(),
            idxs.next(),
            channels.next(),
            types.next(),
            data.next(),
            paths.next(),
        ) {
            let value = values.next().flatten();
            writes.push((
                ns.clone(),
                self.checkpoint_id.clone(),
                task_id,
                idx,
                channel,
                type_,
                blob,
                path,
                value,
            ));
        }
        let row: Row = (
            self.thread_id,
            self.checkpoint_ns,
            self.checkpoint_id,
            self.parent_checkpoint_id,
            self.checkpoint,
            self.metadata,
            self.created_at,
        );
        assemble(vec![row], blobs, writes).pop()
    }
}

/// Five columns read together, row by row (as long as the shortest).
fn zip5<A, B, C, D, E>(
    a: Vec<A>,
    b: Vec<B>,
    c: Vec<C>,
    d: Vec<D>,
    e: Vec<E>,
) -> impl Iterator<Item = (A, B, C, D, E)> {
    a.into_iter()
        .zip(b)
        .zip(c)
        .zip(d)
        .zip(e)
        .map(|((((a, b), c), d), e)| (a, b, c, d, e))
}

/// Reads the checkpoints of `keys`, answered in the keys' order: on Postgres in one statement
/// (the actor coalesces concurrent reads into one call); on SQLite one key after another.
pub async fn get_many(
    db: DbPool,
    keys: Vec<CheckpointKey>,
) -> Result<Vec<Option<CheckpointRecord>>, DbError> {
    match &db {
        DbPool::Pg(pool) => {
            let mut conn = pool.get().await?;
            let n = keys.len();
            let mut query = GetCheckpoints {
                threads: Vec::with_capacity(n),
                namespaces: Vec::with_capacity(n),
                ids: Vec::with_capacity(n),
                with_writes: Vec::with_capacity(n),
            };
            for k in keys {
                query.threads.push(k.thread_id);
                query.namespaces.push(k.checkpoint_ns);
                query.ids.push(k.checkpoint_id);
                query.with_writes.push(k.with_writes);
            }
            let rows: Vec<PgCheckpointRow> = query.load(&mut conn).await?;
            let mut out: Vec<Option<CheckpointRecord>> = (0..n).map(|_| None).collect();
            let mut bytes = 0;
            for row in rows {
                let at = usize::try_from(row.i - 1).ok();
                if let (Some(rec), Some(slot)) =
                    (row.into_record(), at.and_then(|i| out.get_mut(i)))
                {
                    bytes += rec.approx_bytes();
                    *slot = Some(rec);
                }
            }
            close_if_large(conn, bytes);
            Ok(out)
        }
        // SQLite: the row, its blobs and its writes, on the connection's own thread in one go
        DbPool::Sqlite(pool) => {
            let mut conn = pool.get().await?;
            Ok(conn
                .spawn_blocking(move |conn| sqlite_blocking::get_many(conn, keys))
                .await?)
        }
    }
}

/// Lists checkpoints newest first: at most `limit`, and no more once the page holds
/// `max_bytes` (at least one). Rows are read in chunks sized by the bytes left, so memory follows
/// the byte bound, not `limit` × the size of a state.
pub async fn list(db: &DbPool, query: CheckpointQuery) -> Result<Vec<CheckpointRecord>, DbError> {
    let limit = usize::try_from(query.limit).unwrap_or(0);
    with_conn!(db, |conn, s| {
        use s::checkpoints as c;
        let mut out: Vec<CheckpointRecord> = Vec::new();
        let mut bytes = 0usize;
        let mut before = query.before.clone();
        let mut chunk = limit.min(crate::model::FIRST_CHUNK);
        while chunk > 0 {
            let mut q = c::table
                .filter(c::thread_id.eq(query.thread_id.clone()))
                .select(columns!(c))
                .into_boxed();
            if let Some(ns) = &query.checkpoint_ns {
                q = q.filter(c::checkpoint_ns.eq(ns.clone()));
            }
            if let Some(before) = &before {
                q = q.filter(c::checkpoint_id.lt(before.clone()));
            }
            if let Some(m) = &query.metadata {
                q = q.filter(super::json_filter::AllOf(dialect::contains::<c::table>(
                    "metadata", m,
                )));
            }
            let rows: Vec<Row> = q
                .order(c::checkpoint_id.desc())
                .limit(chunk as i64)
                .load(&mut conn)
                .await?;
            let got = rows.len();
            before = rows.last().map(|r| r.2.clone());
            for rec in load_page!(&mut conn, s, &query.thread_id, rows) {
                let size = rec.approx_bytes();
                if !out.is_empty() && bytes + size > query.max_bytes {
                    return Ok(out);
                }
                bytes += size;
                out.push(rec);
            }
            if got < chunk || out.len() >= limit {
                break;
            }
            chunk = crate::model::next_chunk(out.len(), bytes, query.max_bytes, limit - out.len());
        }
        Ok(out)
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

/// A fresh time-ordered checkpoint id that sorts after `after`; `None` when no new id can
/// (a raw caller's own ids may sort after any time-ordered one).
fn next_checkpoint_id(after: Option<&str>) -> Option<String> {
    let node: [u8; 6] = *uuid::Uuid::new_v4()
        .as_bytes()
        .first_chunk()
        .unwrap_or(&[0; 6]);
    // v6 ids from one process increase (the clock sequence moves within a tick): a few tries
    // only matter when `after` came from another clock
    (0..3)
        .map(|_| uuid::Uuid::now_v6(&node).to_string())
        .find(|id| after.is_none_or(|a| id.as_str() > a))
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
    format!("{:032}.{:016}", max.saturating_add(1), 0)
}

/// The checkpoint an update writes on top of `base`: its values updated key by key. `base` is
/// taken apart, not copied: a chat's state is cloned once per step at most.
fn updated(
    thread_id: &str,
    graph: Option<&Graph>,
    base: Option<CheckpointRecord>,
    changes: Map<String, Value>,
    as_node: Option<String>,
    now: DateTime<Utc>,
) -> Result<CheckpointRecord, DbError> {
    let (base_id, base_step, mut base_checkpoint, base_blobs) = match base {
        Some(b) => {
            let step = b.metadata.get("step").and_then(Value::as_i64);
            (Some(b.checkpoint_id), step, b.checkpoint, b.blobs)
        }
        None => (None, None, json!({}), Vec::new()),
    };
    let mut take = |name: &str| match base_checkpoint.get_mut(name).map(Value::take) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let (mut channel_values, mut channel_versions) =
        (take("channel_values"), take("channel_versions"));
    let versions_seen = take("versions_seen");
    let version = next_version(&channel_versions);
    for (k, v) in &changes {
        // the channel's current value: inline, or a JSON blob of the base
        let current = channel_values.remove(k).or_else(|| {
            base_blobs
                .iter()
                .find(|b| b.channel == *k && b.type_ == "json")
                .and_then(|b| b.data.as_deref())
                .and_then(|d| serde_json::from_slice(d).ok())
        });
        // a thread of one of mnemo's graphs applies its reducers; any other keeps values as given
        let v = match graph {
            Some(g) => g.reduce(k, current, v),
            None => v.clone(),
        };
        channel_values.insert(k.clone(), v);
        // the value is inline now: no blob of this version exists, so reads keep the inline one
        channel_versions.insert(k.clone(), Value::String(version.clone()));
    }
    let checkpoint_id = next_checkpoint_id(base_id.as_deref()).ok_or_else(|| {
        DbError::Conflict("the latest checkpoint's id sorts after any new time-ordered id".into())
    })?;
    let step = base_step.unwrap_or(-1) + 1;
    let checkpoint = json!({
        "v": 4,
        "id": checkpoint_id,
        "ts": format_ts(&now),
        "channel_values": channel_values,
        "channel_versions": channel_versions,
        "versions_seen": versions_seen,
        "updated_channels": changes.keys().collect::<Vec<_>>(),
    });
    // the base's blobs still hold the channels this update did not touch
    let blobs = base_blobs
        .into_iter()
        .filter(|bl| !changes.contains_key(&bl.channel))
        .collect();
    let as_node = as_node.unwrap_or_else(|| "__input__".into());
    Ok(CheckpointRecord {
        thread_id: thread_id.to_string(),
        checkpoint_ns: String::new(),
        checkpoint_id,
        parent_checkpoint_id: base_id,
        checkpoint,
        metadata: json!({ "source": "update", "step": step, "writes": { as_node: Value::Object(changes) }, "parents": {} }),
        created_at: now,
        blobs,
        pending_writes: Vec::new(),
    })
}

/// The checkpoint a state update makes of `base` (none for a thread's first): `changes` applied
/// through the graph's reducers, the next time-ordered id, `source` and `extra` in its metadata.
/// Nothing is written.
pub fn next_state(
    thread_id: &str,
    graph: Option<&Graph>,
    base: Option<CheckpointRecord>,
    changes: Map<String, Value>,
    as_node: Option<String>,
    source: &str,
    extra: Map<String, Value>,
) -> Result<CheckpointRecord, DbError> {
    let mut record = updated(thread_id, graph, base, changes, as_node, Utc::now())?;
    if let Some(m) = record.metadata.as_object_mut() {
        m.insert("source".into(), json!(source));
        m.extend(extra);
    }
    Ok(record)
}

/// Writes a new checkpoint on top of the latest (or the named) one. The thread row is locked
/// first, so concurrent updates of one thread chain instead of forking.
pub async fn update_state(db: &DbPool, update: StateUpdate) -> Result<CheckpointRecord, DbError> {
    let now = Utc::now();
    let StateUpdate {
        thread_id,
        values,
        as_node,
        checkpoint_id,
        source,
        metadata: extra,
    } = update;
    let Value::Object(changes) = values else {
        return Err(DbError::Invalid("values must be an object".into()));
    };
    with_conn!(db, |conn, s| {
        conn.transaction::<_, DbError, _>(async move |conn| {
            use s::{checkpoints as c, threads as t};
            let metadata: Option<Value> = diesel::update(t::table.find(&thread_id))
                .set(t::updated_at.eq(now))
                .returning(t::metadata)
                .get_result(conn)
                .await
                .optional()?;
            let Some(metadata) = metadata else {
                return Err(DbError::NotFound(format!(
                    "Thread with ID {thread_id} not found"
                )));
            };
            let graph = graphs::of_thread(&metadata);
            let this = c::table
                .filter(c::thread_id.eq(&thread_id))
                .filter(c::checkpoint_ns.eq(""));
            let row: Option<Row> = match &checkpoint_id {
                Some(id) => {
                    this.filter(c::checkpoint_id.eq(id))
                        .select(columns!(c))
                        .first(conn)
                        .await
                }
                None => {
                    this.order(c::checkpoint_id.desc())
                        .select(columns!(c))
                        .first(conn)
                        .await
                }
            }
            .optional()?;
            let base = match row {
                Some(row) => load_page!(conn, s, &thread_id, vec![row]).pop(),
                None if checkpoint_id.is_some() => {
                    return Err(DbError::NotFound("Checkpoint not found".into()));
                }
                None => None,
            };
            // the checkpoint names its graph, as a run's do (its `next` follows the graph)
            let mut extra = extra;
            if let Some(g) = graph {
                extra.entry("graph_id").or_insert_with(|| json!(g.id));
            }
            let record = next_state(&thread_id, graph, base, changes, as_node, source, extra)?;
            diesel::insert_into(c::table)
                .values((
                    c::thread_id.eq(&record.thread_id),
                    c::checkpoint_ns.eq(""),
                    c::checkpoint_id.eq(&record.checkpoint_id),
                    c::parent_checkpoint_id.eq(&record.parent_checkpoint_id),
                    c::checkpoint.eq(&record.checkpoint),
                    c::metadata.eq(&record.metadata),
                    c::created_at.eq(now),
                ))
                .execute(conn)
                .await?;
            diesel::update(t::table.find(&thread_id))
                .set((
                    t::state_values.eq(record.values()),
                    t::state_updated_at.eq(now),
                ))
                .execute(conn)
                .await?;
            Ok(record)
        })
        .await
    })
}

/// Undoes a run: deletes the checkpoints it wrote (they carry its `run_id`) with their pending
/// writes, then the run itself; the thread's values become its latest remaining checkpoint's,
/// and with `free_thread` (the run held it) the thread becomes idle.
pub async fn rollback_run(
    db: &DbPool,
    thread_id: String,
    run_id: String,
    free_thread: bool,
) -> Result<(), DbError> {
    let now = Utc::now();
    with_conn!(db, |conn, s| {
        conn.transaction::<_, DbError, _>(async move |conn| {
            use s::{checkpoints as c, runs as r, threads as t};
            // a write first, so SQLite takes its write lock now (an upgrade later could fail)
            diesel::update(t::table.find(&thread_id))
                .set(t::updated_at.eq(now))
                .execute(conn)
                .await?;
            let since: Option<DateTime<Utc>> = r::table
                .find(&run_id)
                .select(r::created_at)
                .first(conn)
                .await
                .optional()?;
            let Some(since) = since else {
                return Ok(());
            };
            let written: Vec<(String, String, String)> = c::table
                .filter(c::thread_id.eq(&thread_id))
                .filter(c::created_at.ge(since))
                .filter(dialect::run_id_in::<c::table>(std::slice::from_ref(
                    &run_id,
                )))
                .select((c::thread_id, c::checkpoint_ns, c::checkpoint_id))
                .load(conn)
                .await?;
            delete_checkpoints!(conn, s, written);
            diesel::delete(r::table.find(&run_id)).execute(conn).await?;
            let latest: Option<Row> = c::table
                .filter(c::thread_id.eq(&thread_id))
                .filter(c::checkpoint_ns.eq(""))
                .order(c::checkpoint_id.desc())
                .select(columns!(c))
                .first(conn)
                .await
                .optional()?;
            let latest = match latest {
                Some(row) => load_page!(conn, s, &thread_id, vec![row])
                    .pop()
                    .map(|r| r.values()),
                None => None,
            };
            diesel::update(t::table.find(&thread_id))
                .set((
                    t::state_values.eq(latest),
                    t::updated_at.eq(now),
                    t::state_updated_at.eq(now),
                ))
                .execute(conn)
                .await?;
            if free_thread {
                diesel::update(t::table.find(&thread_id))
                    .set(t::status.eq("idle"))
                    .execute(conn)
                    .await?;
            }
            if let Some(notify) = dialect::NOTIFY_THREAD {
                diesel::sql_query(notify)
                    .bind::<diesel::sql_types::Text, _>(&thread_id)
                    .execute(conn)
                    .await?;
            }
            Ok(())
        })
        .await
    })
}

/// How `prune` treats each thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prune {
    /// The thread goes, with everything under it.
    Delete,
    /// Only the latest checkpoint of each namespace stays, with its pending writes and blobs.
    KeepLatest,
}

/// Prunes the threads named; returns how many of them existed.
pub async fn prune(
    db: &DbPool,
    thread_ids: Vec<String>,
    strategy: Prune,
    owner: Option<String>,
) -> Result<i64, DbError> {
    if thread_ids.is_empty() {
        return Ok(0);
    }
    let now = Utc::now();
    with_conn!(db, |conn, s| {
        conn.transaction::<_, DbError, _>(async move |conn| {
            use s::{checkpoints as c, threads as t};
            // a write statement first, even one that matches no row: SQLite takes its write
            // lock when the statement starts (an upgrade after the read below could fail)
            diesel::update(t::table.filter(t::thread_id.eq("")))
                .set(t::updated_at.eq(now))
                .execute(conn)
                .await?;
            // a user prunes only its own threads; the others are as if they did not exist
            let thread_ids: Vec<String> = match &owner {
                None => thread_ids,
                Some(owner) => {
                    t::table
                        .filter(t::thread_id.eq_any(&thread_ids))
                        .filter(t::owner.eq(owner))
                        .select(t::thread_id)
                        .load(conn)
                        .await?
                }
            };
            let threads = t::table.filter(t::thread_id.eq_any(&thread_ids));
            if strategy == Prune::Delete {
                return Ok(diesel::delete(threads).execute(conn).await? as i64);
            }
            // a write first, so SQLite takes its write lock now (an upgrade later could fail)
            let n = diesel::update(threads)
                .set(t::updated_at.eq(now))
                .execute(conn)
                .await?;
            let rows: Vec<(String, String, String)> = c::table
                .filter(c::thread_id.eq_any(&thread_ids))
                .select((c::thread_id, c::checkpoint_ns, c::checkpoint_id))
                .load(conn)
                .await?;
            let mut latest: HashMap<(String, String), String> = HashMap::new();
            for (t, ns, id) in &rows {
                let best = latest
                    .entry((t.clone(), ns.clone()))
                    .or_insert_with(|| id.clone());
                if id > best {
                    *best = id.clone();
                }
            }
            let doomed = rows
                .into_iter()
                .filter(|(t, ns, id)| latest.get(&(t.clone(), ns.clone())) != Some(id));
            delete_checkpoints!(conn, s, doomed);
            drop_unused_blobs!(conn, s, &thread_ids);
            Ok(n as i64)
        })
        .await
    })
}

/// Deletes the checkpoints the runs named wrote (their metadata's `run_id`), in every thread and
/// namespace, with their pending writes and the blobs nothing else names; returns how many.
pub async fn delete_for_runs(
    db: &DbPool,
    run_ids: Vec<String>,
    owner: Option<String>,
) -> Result<i64, DbError> {
    if run_ids.is_empty() {
        return Ok(0);
    }
    let now = Utc::now();
    with_conn!(db, |conn, s| {
        conn.transaction::<_, DbError, _>(async move |conn| {
            use s::{checkpoints as c, threads as t};
            // a write statement first, even one that matches no row: SQLite takes its write
            // lock when the statement starts (an upgrade later could fail)
            diesel::update(t::table.filter(t::thread_id.eq("")))
                .set(t::updated_at.eq(now))
                .execute(conn)
                .await?;
            let mut doomed: Vec<(String, String, String)> = c::table
                .filter(dialect::run_id_in::<c::table>(&run_ids))
                .select((c::thread_id, c::checkpoint_ns, c::checkpoint_id))
                .load(conn)
                .await?;
            if let Some(owner) = &owner {
                let touched: HashSet<&String> = doomed.iter().map(|(t, _, _)| t).collect();
                let owned: HashSet<String> = t::table
                    .filter(t::thread_id.eq_any(touched))
                    .filter(t::owner.eq(owner))
                    .select(t::thread_id)
                    .load::<String>(conn)
                    .await?
                    .into_iter()
                    .collect();
                doomed.retain(|(t, _, _)| owned.contains(t));
            }
            let n = doomed.len() as i64;
            let threads: Vec<String> = doomed
                .iter()
                .map(|(t, _, _)| t.clone())
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            delete_checkpoints!(conn, s, doomed);
            drop_unused_blobs!(conn, s, &threads);
            Ok(n)
        })
        .await
    })
}
