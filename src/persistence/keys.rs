//! API keys: rows that name a principal and hold only the SHA-256 of the key. Making, hashing
//! and checking keys is `auth`'s job; this module stores and reads the rows.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{DbError, DbPool, with_conn};
use crate::model::{ApiKey, NewApiKey};

#[derive(Queryable)]
struct Row {
    key_id: String,
    name: String,
    user_id: Option<String>,
    key_hash: String,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl From<Row> for ApiKey {
    fn from(r: Row) -> Self {
        ApiKey {
            key_id: r.key_id,
            name: r.name,
            user_id: r.user_id,
            key_hash: r.key_hash,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        }
    }
}

macro_rules! columns {
    ($k:ident) => {
        (
            $k::key_id,
            $k::name,
            $k::user_id,
            $k::key_hash,
            $k::created_at,
            $k::last_used_at,
            $k::expires_at,
            $k::revoked_at,
        )
    };
}

pub async fn create(db: &DbPool, new: NewApiKey) -> Result<ApiKey, DbError> {
    let now = Utc::now();
    with_conn!(db, |conn, s| {
        use s::api_keys as k;
        diesel::insert_into(k::table)
            .values((
                k::key_id.eq(&new.key_id),
                k::name.eq(&new.name),
                k::user_id.eq(&new.user_id),
                k::key_hash.eq(&new.key_hash),
                k::created_at.eq(now),
                k::expires_at.eq(new.expires_at),
            ))
            .returning(columns!(k))
            .get_result::<Row>(&mut conn)
            .await
            .map(ApiKey::from)
            .map_err(DbError::from)
    })
}

/// One key by its public id (revoked and expired ones too: the caller tells them apart).
pub async fn find(db: &DbPool, key_id: String) -> Result<Option<ApiKey>, DbError> {
    with_conn!(db, |conn, s| {
        use s::api_keys as k;
        k::table
            .find(&key_id)
            .select(columns!(k))
            .first::<Row>(&mut conn)
            .await
            .optional()
            .map(|r| r.map(ApiKey::from))
            .map_err(DbError::from)
    })
}

/// Every key, oldest first.
pub async fn list(db: &DbPool) -> Result<Vec<ApiKey>, DbError> {
    with_conn!(db, |conn, s| {
        use s::api_keys as k;
        k::table
            .select(columns!(k))
            .order(k::created_at.asc())
            .load::<Row>(&mut conn)
            .await
            .map(|rows| rows.into_iter().map(ApiKey::from).collect())
            .map_err(DbError::from)
    })
}

/// Marks a key revoked (revoking again keeps the first time). Unknown ids are 404.
pub async fn revoke(db: &DbPool, key_id: String) -> Result<(), DbError> {
    let now = Utc::now();
    let n = with_conn!(db, |conn, s| {
        use s::api_keys as k;
        diesel::update(k::table.find(&key_id).filter(k::revoked_at.is_null()))
            .set(k::revoked_at.eq(now))
            .execute(&mut conn)
            .await?
    });
    if n == 0 && find(db, key_id.clone()).await?.is_none() {
        return Err(DbError::NotFound(format!("API key {key_id} not found")));
    }
    Ok(())
}

/// Records that a key was used (called at most once a minute per key).
pub async fn touch(db: &DbPool, key_id: String) -> Result<(), DbError> {
    let now = Utc::now();
    with_conn!(db, |conn, s| {
        use s::api_keys as k;
        diesel::update(k::table.find(&key_id))
            .set(k::last_used_at.eq(now))
            .execute(&mut conn)
            .await?;
    });
    Ok(())
}

/// The latest revocation time of any key: replicas poll it and drop their cache of verified
/// keys when it moves.
pub async fn last_revocation(db: &DbPool) -> Result<Option<DateTime<Utc>>, DbError> {
    with_conn!(db, |conn, s| {
        use s::api_keys as k;
        k::table
            .filter(k::revoked_at.is_not_null())
            .select(k::revoked_at)
            .order(k::revoked_at.desc())
            .first::<Option<DateTime<Utc>>>(&mut conn)
            .await
            .optional()
            .map(Option::flatten)
            .map_err(DbError::from)
    })
}
