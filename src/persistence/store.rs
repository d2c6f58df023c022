//! The long-term store: items under dotted namespaces, with TTLs that expire them on read and a
//! sweeper that deletes them.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;
use serde_json::Value;

use super::{DbError, DbPool, with_conn};
use crate::model::{RawJson, StoreItem, StoreSearch};

/// The columns of `Row`.
macro_rules! columns {
    ($t:ident) => {
        (
            $t::prefix,
            $t::key,
            $t::value,
            $t::created_at,
            $t::updated_at,
            $t::ttl_minutes,
        )
    };
}

/// Not expired at `now`: expired items are never returned, swept or not.
macro_rules! live {
    ($t:ident, $now:expr) => {
        $t::expires_at.is_null().or($t::expires_at.gt($now))
    };
}

type Row = (
    String,
    String,
    Value,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<f64>,
);

fn item((prefix, key, value, created_at, updated_at, _): Row) -> StoreItem {
    StoreItem {
        namespace: prefix.split('.').map(str::to_string).collect(),
        key,
        value,
        created_at,
        updated_at,
    }
}

fn expiry(now: DateTime<Utc>, ttl_minutes: f64) -> DateTime<Utc> {
    // the API caps ttl at ten years; saturate rather than overflow whatever comes in
    let ms = (ttl_minutes * 60_000.0).clamp(0.0, 1e14) as i64;
    now.checked_add_signed(Duration::milliseconds(ms))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A store write.
#[derive(Clone)]
pub struct NewItem {
    pub prefix: String,
    pub key: String,
    /// Stored as the client sent it (checked at the edge).
    pub value: RawJson,
    pub ttl_minutes: Option<f64>,
}

/// Writes `items` in one transaction, so concurrent puts share one commit; a key given twice
/// keeps its last value.
pub async fn put_many(db: DbPool, mut items: Vec<NewItem>) -> Result<(), DbError> {
    let now = Utc::now();
    let mut seen = HashSet::new();
    items.reverse();
    items.retain(|i| seen.insert((i.prefix.clone(), i.key.clone())));
    // rows in key order, so concurrent batches lock them in the same order (no deadlock)
    items.sort_by(|a, b| (&a.prefix, &a.key).cmp(&(&b.prefix, &b.key)));
    // Postgres takes the whole batch as one multi-row upsert (one round trip); diesel cannot
    // spell a multi-row upsert for SQLite, which gets one statement per row in one transaction.
    // the rows own the values: a query, and with it the last reference to a value, is gone as
    // soon as its binds are copied out, so a large value is not held once more while it is sent
    macro_rules! row {
        ($t:ident, $item:expr) => {
            (
                $t::prefix.eq($item.prefix),
                $t::key.eq($item.key),
                $t::value.eq($item.value),
                $t::created_at.eq(now),
                $t::updated_at.eq(now),
                $t::expires_at.eq($item.ttl_minutes.map(|m| expiry(now, m))),
                $t::ttl_minutes.eq($item.ttl_minutes),
            )
        };
    }
    macro_rules! upsert {
        ($t:ident, $values:expr) => {
            diesel::insert_into($t::store)
                .values($values)
                .on_conflict(($t::prefix, $t::key))
                .do_update()
                .set((
                    $t::value.eq(excluded($t::value)),
                    $t::updated_at.eq(excluded($t::updated_at)),
                    $t::expires_at.eq(excluded($t::expires_at)),
                    $t::ttl_minutes.eq(excluded($t::ttl_minutes)),
                ))
        };
    }
    match &db {
        DbPool::Pg(pool) => {
            use super::schema::pg::store::dsl as t;
            let mut conn = pool.get().await?;
            let bytes = items.iter().map(|item| item.value.get().len()).sum();
            let rows: Vec<_> = items.into_iter().map(|item| row!(t, item)).collect();
            upsert!(t, rows).execute(&mut conn).await?;
            super::close_if_large(conn, bytes);
            Ok(())
        }
        DbPool::Sqlite(pool) => {
            use super::schema::sqlite::store::dsl as t;
            let mut conn = pool.get().await?;
            // on the connection's own thread, where values are bound in place (through the
            // async wrapper each would be copied twice to cross threads)
            conn.spawn_blocking(move |conn| {
                diesel::Connection::transaction(conn, |conn| {
                    for item in items {
                        diesel::RunQueryDsl::execute(upsert!(t, row!(t, item)), conn)?;
                    }
                    Ok(())
                })
            })
            .await?;
            Ok(())
        }
    }
}

pub async fn get(
    db: &DbPool,
    prefix: String,
    key: String,
    refresh_ttl: bool,
) -> Result<Option<StoreItem>, DbError> {
    let now = Utc::now();
    with_conn!(db, |conn, s| {
        use s::store::dsl as t;
        let row: Option<Row> = t::store
            .filter(t::prefix.eq(&prefix).and(t::key.eq(&key)))
            .filter(live!(t, now))
            .select(columns!(t))
            .first(&mut conn)
            .await
            .optional()?;
        if let (true, Some((_, _, _, _, _, Some(ttl)))) = (refresh_ttl, &row) {
            diesel::update(t::store.filter(t::prefix.eq(&prefix).and(t::key.eq(&key))))
                .set(t::expires_at.eq(expiry(now, *ttl)))
                .execute(&mut conn)
                .await?;
        }
        Ok(row.map(item))
    })
}

pub async fn delete(db: &DbPool, prefix: String, key: String) -> Result<(), DbError> {
    with_conn!(db, |conn, s| {
        use s::store::dsl as t;
        diesel::delete(t::store.filter(t::prefix.eq(&prefix).and(t::key.eq(&key))))
            .execute(&mut conn)
            .await?;
    });
    Ok(())
}

pub async fn search(db: &DbPool, query: StoreSearch) -> Result<Vec<StoreItem>, DbError> {
    let now = Utc::now();
    let prefix = query.namespace_prefix.prefix();
    let branches = matches!(db, DbPool::Pg(_)) && !query.namespace_prefix.is_empty();
    with_conn!(db, |conn, s| {
        use s::store::dsl as t;
        // the live items that match the filter, newest first
        let matching = || {
            let mut q = t::store
                .select(columns!(t))
                .filter(live!(t, now))
                .into_boxed();
            if !query.filter.is_empty() {
                let fields = query.filter.iter();
                q = q.filter(super::json_filter::AllOf(
                    fields.map(dialect::field::<s::store::table>).collect(),
                ));
            }
            q.order(t::updated_at.desc())
        };
        let rows: Vec<Row> = if branches {
            // Postgres: the namespace itself and the namespaces below it as two branches, each
            // walking its own index newest first (the namespace's is (prefix, updated_at)), so
            // a page reads about as many rows as it shows, however many the namespace holds;
            // `prefix = … OR prefix LIKE …` in one scan would read them all, or walk every
            // item of the store by `updated_at`
            let n = query.limit.saturating_add(query.offset);
            let exact = matching().filter(t::prefix.eq(prefix.clone())).limit(n);
            let below = matching()
                .filter(dialect::below::<s::store::table>(&prefix))
                .limit(n);
            let mut rows: Vec<Row> = exact.union_all(below).load(&mut conn).await?;
            rows.sort_by_key(|r| std::cmp::Reverse(r.4));
            let skip = usize::try_from(query.offset).unwrap_or(usize::MAX);
            let take = usize::try_from(query.limit).unwrap_or(0);
            rows.into_iter().skip(skip).take(take).collect()
        } else {
            let mut q = matching();
            if !query.namespace_prefix.is_empty() {
                q = q.filter(dialect::subtree::<s::store::table>(&prefix));
            }
            q.limit(query.limit)
                .offset(query.offset)
                .load(&mut conn)
                .await?
        };
        if query.refresh_ttl {
            for (p, k, _, _, _, ttl) in &rows {
                if let Some(ttl) = ttl {
                    diesel::update(t::store.filter(t::prefix.eq(p).and(t::key.eq(k))))
                        .set(t::expires_at.eq(expiry(now, *ttl)))
                        .execute(&mut conn)
                        .await?;
                }
            }
        }
        Ok(rows.into_iter().map(item).collect())
    })
}

/// Distinct dotted prefixes of live items, optionally only those under `prefix`.
pub async fn list_prefixes(db: &DbPool, prefix: Option<String>) -> Result<Vec<String>, DbError> {
    let now = Utc::now();
    with_conn!(db, |conn, s| {
        use s::store::dsl as t;
        let mut q = t::store
            .select(t::prefix)
            .distinct()
            .filter(live!(t, now))
            .into_boxed();
        if let Some(p) = prefix.filter(|p| !p.is_empty()) {
            q = q.filter(
                t::prefix
                    .eq(p.clone())
                    .or(dialect::below::<s::store::table>(&p)),
            );
        }
        Ok(q.order(t::prefix.asc()).load::<String>(&mut conn).await?)
    })
}

pub async fn sweep_expired(db: &DbPool) -> Result<usize, DbError> {
    let now = Utc::now();
    let deleted = with_conn!(db, |conn, s| {
        use s::store::dsl as t;
        diesel::delete(t::store.filter(t::expires_at.le(now)))
            .execute(&mut conn)
            .await?
    });
    // statistics only steer plans: a refresh that failed is tried again at the next sweep, and
    // is no outage of the database
    if let DbPool::Sqlite(pool) = db
        && let Err(e) = pool.refresh_statistics().await
    {
        log::warn!("planner statistics not refreshed: {e}");
    }
    Ok(deleted)
}
