//! The long-term store: items under dotted namespaces, with TTLs that expire them on read and a
//! sweeper that deletes them.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;
use serde_json::Value;

use super::{DbError, DbPool, with_conn};
use crate::model::{StoreItem, StoreSearch};

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
    now + Duration::milliseconds((ttl_minutes * 60_000.0) as i64)
}

/// `LIKE` pattern for "below this prefix".
fn below(prefix: &str) -> String {
    let escaped = prefix
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("{escaped}.%")
}

pub async fn put(
    db: &DbPool,
    prefix: String,
    key: String,
    value: Value,
    ttl_minutes: Option<f64>,
) -> Result<(), DbError> {
    let now = Utc::now();
    let expires_at = ttl_minutes.map(|m| expiry(now, m));
    with_conn!(db, |conn, s| {
        use s::store::dsl as t;
        diesel::insert_into(t::store)
            .values((
                t::prefix.eq(&prefix),
                t::key.eq(&key),
                t::value.eq(&value),
                t::created_at.eq(now),
                t::updated_at.eq(now),
                t::expires_at.eq(expires_at),
                t::ttl_minutes.eq(ttl_minutes),
            ))
            .on_conflict((t::prefix, t::key))
            .do_update()
            .set((
                t::value.eq(excluded(t::value)),
                t::updated_at.eq(excluded(t::updated_at)),
                t::expires_at.eq(excluded(t::expires_at)),
                t::ttl_minutes.eq(excluded(t::ttl_minutes)),
            ))
            .execute(&mut conn)
            .await?;
    });
    Ok(())
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
            .filter(t::expires_at.is_null().or(t::expires_at.gt(now)))
            .select((
                t::prefix,
                t::key,
                t::value,
                t::created_at,
                t::updated_at,
                t::ttl_minutes,
            ))
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
    with_conn!(db, |conn, s| {
        use s::store::dsl as t;
        let mut q = t::store
            .select((
                t::prefix,
                t::key,
                t::value,
                t::created_at,
                t::updated_at,
                t::ttl_minutes,
            ))
            .filter(t::expires_at.is_null().or(t::expires_at.gt(now)))
            .into_boxed();
        if !query.namespace_prefix.is_empty() {
            q = q.filter(
                t::prefix
                    .eq(prefix.clone())
                    .or(t::prefix.like(below(&prefix)).escape('\\')),
            );
        }
        for f in &query.filter {
            q = q.filter(dialect::field::<s::store::table>(f));
        }
        let rows: Vec<Row> = q
            .order(t::updated_at.desc())
            .limit(query.limit)
            .offset(query.offset)
            .load(&mut conn)
            .await?;
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
            .filter(t::expires_at.is_null().or(t::expires_at.gt(now)))
            .into_boxed();
        if let Some(p) = prefix.filter(|p| !p.is_empty()) {
            q = q.filter(
                t::prefix
                    .eq(p.clone())
                    .or(t::prefix.like(below(&p)).escape('\\')),
            );
        }
        Ok(q.order(t::prefix.asc()).load::<String>(&mut conn).await?)
    })
}

pub async fn sweep_expired(db: &DbPool) -> Result<usize, DbError> {
    let now = Utc::now();
    with_conn!(db, |conn, s| {
        use s::store::dsl as t;
        Ok(diesel::delete(t::store.filter(t::expires_at.le(now)))
            .execute(&mut conn)
            .await?)
    })
}
