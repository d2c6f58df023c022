//! Assistants: a graph with its configuration, versioned. Every change is a new version; the
//! assistant's row holds the version in use. A user's assistants are its own; a service's and the
//! system's are everyone's to read and run.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde_json::Value;

use super::{DbError, DbPool, with_conn};
use crate::model::{Assistant, AssistantPatch, AssistantQuery, AssistantSort, NewAssistant};

type Row = (
    String,
    String,
    Option<String>,
    i32,
    String,
    Option<String>,
    Value,
    Value,
    Value,
    DateTime<Utc>,
    DateTime<Utc>,
);

macro_rules! columns {
    ($a:ident) => {
        (
            $a::assistant_id,
            $a::graph_id,
            $a::owner,
            $a::version,
            $a::name,
            $a::description,
            $a::config,
            $a::context,
            $a::metadata,
            $a::created_at,
            $a::updated_at,
        )
    };
}

fn assistant(
    (
        assistant_id,
        graph_id,
        owner,
        version,
        name,
        description,
        config,
        context,
        metadata,
        created_at,
        updated_at,
    ): Row,
) -> Assistant {
    Assistant {
        assistant_id,
        graph_id,
        owner,
        version,
        name,
        description,
        config,
        context,
        metadata,
        created_at,
        updated_at,
    }
}

/// A version's row: its number, graph, name, description, config, context, metadata and time.
type VersionRow = (
    i32,
    String,
    String,
    Option<String>,
    Value,
    Value,
    Value,
    DateTime<Utc>,
);

fn not_found(id: &str) -> DbError {
    DbError::NotFound(format!("Assistant {id} not found"))
}

/// The assistants `viewer` may see (`None`: a service, every one): its own, and those with no
/// owner (the system's and services').
macro_rules! visible {
    ($q:expr, $a:ident, $viewer:expr) => {{
        let mut q = $q;
        if let Some(user) = $viewer {
            q = q.filter($a::owner.is_null().or($a::owner.eq(user.clone())));
        }
        q
    }};
}

/// Only what `editor` may change (`None`: a service, any): its own.
macro_rules! editable {
    ($q:expr, $a:ident, $editor:expr) => {{
        let mut q = $q;
        if let Some(user) = $editor {
            q = q.filter($a::owner.eq(user.clone()));
        }
        q
    }};
}

/// The statement that writes `$new` (a `NewAssistant`) as a new assistant at version 1, unless
/// its id is taken.
macro_rules! insert_assistant {
    ($a:ident, $new:expr, $now:expr) => {
        diesel::insert_into($a::table)
            .values((
                $a::assistant_id.eq(&$new.assistant_id),
                $a::graph_id.eq(&$new.graph_id),
                $a::owner.eq(&$new.owner),
                $a::version.eq(1),
                $a::name.eq(&$new.name),
                $a::description.eq(&$new.description),
                $a::config.eq(&$new.config),
                $a::context.eq(&$new.context),
                $a::metadata.eq(&$new.metadata),
                $a::created_at.eq($now),
                $a::updated_at.eq($now),
            ))
            .on_conflict_do_nothing()
    };
}

/// The statement that records version `$version` of assistant `$id`, made of `$x`'s fields
/// (`graph_id`, `name`, `description`, `config`, `context`, `metadata`).
macro_rules! insert_version {
    ($v:ident, $id:expr, $version:expr, $x:expr, $now:expr) => {
        diesel::insert_into($v::table).values((
            $v::assistant_id.eq($id),
            $v::version.eq($version),
            $v::graph_id.eq(&$x.graph_id),
            $v::name.eq(&$x.name),
            $v::description.eq(&$x.description),
            $v::config.eq(&$x.config),
            $v::context.eq(&$x.context),
            $v::metadata.eq(&$x.metadata),
            $v::created_at.eq($now),
        ))
    };
}

/// The statement that puts version `$version`, made of `$x`'s fields, in use for assistant `$id`,
/// answering its row.
macro_rules! put_in_use {
    ($a:ident, $id:expr, $version:expr, $x:expr, $now:expr) => {
        diesel::update($a::table.find($id))
            .set((
                $a::version.eq($version),
                $a::graph_id.eq(&$x.graph_id),
                $a::name.eq(&$x.name),
                $a::description.eq(&$x.description),
                $a::config.eq(&$x.config),
                $a::context.eq(&$x.context),
                $a::metadata.eq(&$x.metadata),
                $a::updated_at.eq($now),
            ))
            .returning(columns!($a))
    };
}

/// The fields a version of an assistant keeps.
struct Fields {
    graph_id: String,
    name: String,
    description: Option<String>,
    config: Value,
    context: Value,
    metadata: Value,
}

/// Writes the system assistants (one per graph) unless they exist.
pub async fn ensure_system(db: &DbPool, system: Vec<NewAssistant>) -> Result<(), DbError> {
    let now = Utc::now();
    with_conn!(db, |conn, s| {
        conn.transaction::<_, DbError, _>(async move |conn| {
            use s::{assistant_versions as v, assistants as a};
            for new in &system {
                let inserted = insert_assistant!(a, new, now).execute(conn).await?;
                if inserted > 0 {
                    insert_version!(v, &new.assistant_id, 1, new, now)
                        .execute(conn)
                        .await?;
                }
            }
            Ok(())
        })
        .await
    })
}

/// Creates an assistant (version 1). An id that exists is a conflict, or with `if_exists:
/// do_nothing` answers the assistant there (when its creator may see it).
pub async fn create(db: &DbPool, new: NewAssistant) -> Result<Assistant, DbError> {
    let now = Utc::now();
    with_conn!(db, |conn, s| {
        conn.transaction::<_, DbError, _>(async move |conn| {
            use s::{assistant_versions as v, assistants as a};
            let inserted: Option<Row> = insert_assistant!(a, new, now)
                .returning(columns!(a))
                .get_result(conn)
                .await
                .optional()?;
            let Some(row) = inserted else {
                let there = visible!(a::table.find(&new.assistant_id).into_boxed(), a, &new.owner)
                    .select(columns!(a))
                    .first::<Row>(conn)
                    .await
                    .optional()?;
                return match there {
                    Some(row) if new.do_nothing_if_exists => Ok(assistant(row)),
                    _ => Err(DbError::Conflict(format!(
                        "Assistant {} already exists",
                        new.assistant_id
                    ))),
                };
            };
            insert_version!(v, &new.assistant_id, 1, new, now)
                .execute(conn)
                .await?;
            Ok(assistant(row))
        })
        .await
    })
}

/// One assistant `viewer` may see (`None`: a service).
pub async fn get(
    db: &DbPool,
    assistant_id: String,
    viewer: Option<String>,
) -> Result<Assistant, DbError> {
    with_conn!(db, |conn, s| {
        use s::assistants as a;
        visible!(a::table.find(&assistant_id).into_boxed(), a, &viewer)
            .select(columns!(a))
            .first::<Row>(&mut conn)
            .await
            .optional()?
            .map(assistant)
            .ok_or_else(|| not_found(&assistant_id))
    })
}

/// A page of the assistants a query matches, and how many match in all.
pub async fn search(db: &DbPool, q: AssistantQuery) -> Result<(Vec<Assistant>, i64), DbError> {
    with_conn!(db, |conn, s| {
        use s::assistants as a;
        macro_rules! matching {
            () => {{
                let mut query = visible!(a::table.into_boxed(), a, &q.viewer);
                if let Some(graph_id) = &q.graph_id {
                    query = query.filter(a::graph_id.eq(graph_id.clone()));
                }
                if let Some(name) = &q.name {
                    let escaped = name
                        .replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_");
                    query = query.filter(a::name.like(format!("%{escaped}%")).escape('\\'));
                }
                if let Some(m) = &q.metadata {
                    let preds = dialect::contains::<a::table>("metadata", m);
                    query = query.filter(super::json_filter::AllOf(preds));
                }
                query
            }};
        }
        let total: i64 = matching!().count().get_result(&mut conn).await?;
        let mut page = matching!();
        page = match (q.sort_by, q.descending) {
            (AssistantSort::AssistantId, false) => page.order(a::assistant_id.asc()),
            (AssistantSort::AssistantId, true) => page.order(a::assistant_id.desc()),
            (AssistantSort::CreatedAt, false) => page.order(a::created_at.asc()),
            (AssistantSort::CreatedAt, true) => page.order(a::created_at.desc()),
            (AssistantSort::UpdatedAt, false) => page.order(a::updated_at.asc()),
            (AssistantSort::UpdatedAt, true) => page.order(a::updated_at.desc()),
            (AssistantSort::Name, false) => page.order(a::name.asc()),
            (AssistantSort::Name, true) => page.order(a::name.desc()),
            (AssistantSort::GraphId, false) => page.order(a::graph_id.asc()),
            (AssistantSort::GraphId, true) => page.order(a::graph_id.desc()),
        };
        let rows: Vec<Row> = page
            .then_order_by(a::assistant_id.asc())
            .limit(q.limit)
            .offset(q.offset)
            .select(columns!(a))
            .load(&mut conn)
            .await?;
        Ok((rows.into_iter().map(assistant).collect(), total))
    })
}

/// Changes an assistant: a new version, made of the one in use with the patch's fields over it
/// (`metadata` merged key by key), and put in use. Only `editor`'s own (`None`: a service, any
/// assistant but the system's, which the caller refuses).
pub async fn patch(
    db: &DbPool,
    assistant_id: String,
    editor: Option<String>,
    patch: AssistantPatch,
) -> Result<Assistant, DbError> {
    let now = Utc::now();
    with_conn!(db, |conn, s| {
        conn.transaction::<_, DbError, _>(async move |conn| {
            use s::{assistant_versions as v, assistants as a};
            if let Some(lock) = dialect::TAKE_WRITE_LOCK {
                diesel::sql_query(lock).execute(conn).await?;
            }
            let current: Row = editable!(a::table.find(&assistant_id).into_boxed(), a, &editor)
                .select(columns!(a))
                .first(conn)
                .await
                .optional()?
                .ok_or_else(|| not_found(&assistant_id))?;
            let mut current = assistant(current);
            let latest: Option<i32> = v::table
                .filter(v::assistant_id.eq(&assistant_id))
                .select(diesel::dsl::max(v::version))
                .first(conn)
                .await?;
            let version = latest.unwrap_or(current.version) + 1;
            if let Some(graph_id) = patch.graph_id {
                current.graph_id = graph_id;
            }
            if let Some(config) = patch.config {
                current.config = config;
            }
            if let Some(context) = patch.context {
                current.context = context;
            }
            if let (Some(Value::Object(add)), Value::Object(m)) =
                (patch.metadata, &mut current.metadata)
            {
                m.extend(add);
            }
            if let Some(name) = patch.name {
                current.name = name;
            }
            if let Some(description) = patch.description {
                current.description = Some(description);
            }
            insert_version!(v, &assistant_id, version, current, now)
                .execute(conn)
                .await?;
            let row: Row = put_in_use!(a, &assistant_id, version, current, now)
                .get_result(conn)
                .await?;
            Ok(assistant(row))
        })
        .await
    })
}

/// Puts an earlier version of an assistant back in use (only `editor`'s own; `None`: a service).
pub async fn set_latest(
    db: &DbPool,
    assistant_id: String,
    editor: Option<String>,
    version: i32,
) -> Result<Assistant, DbError> {
    let now = Utc::now();
    with_conn!(db, |conn, s| {
        conn.transaction::<_, DbError, _>(async move |conn| {
            use s::{assistant_versions as v, assistants as a};
            if let Some(lock) = dialect::TAKE_WRITE_LOCK {
                diesel::sql_query(lock).execute(conn).await?;
            }
            let exists: Option<String> =
                editable!(a::table.find(&assistant_id).into_boxed(), a, &editor)
                    .select(a::assistant_id)
                    .first(conn)
                    .await
                    .optional()?;
            if exists.is_none() {
                return Err(not_found(&assistant_id));
            }
            type Version = (String, String, Option<String>, Value, Value, Value);
            let chosen: Version = v::table
                .find((&assistant_id, version))
                .select((
                    v::graph_id,
                    v::name,
                    v::description,
                    v::config,
                    v::context,
                    v::metadata,
                ))
                .first(conn)
                .await
                .optional()?
                .ok_or_else(|| {
                    DbError::NotFound(format!("Assistant {assistant_id} has no version {version}"))
                })?;
            let (graph_id, name, description, config, context, metadata) = chosen;
            let chosen = Fields {
                graph_id,
                name,
                description,
                config,
                context,
                metadata,
            };
            let row: Row = put_in_use!(a, &assistant_id, version, chosen, now)
                .get_result(conn)
                .await?;
            Ok(assistant(row))
        })
        .await
    })
}

/// An assistant's versions, newest first (only one `viewer` may see; `None`: a service).
pub async fn versions(
    db: &DbPool,
    assistant_id: String,
    viewer: Option<String>,
    metadata: Option<Value>,
    limit: i64,
    offset: i64,
) -> Result<Vec<Assistant>, DbError> {
    let current = get(db, assistant_id.clone(), viewer).await?;
    with_conn!(db, |conn, s| {
        use s::assistant_versions as v;
        let mut query = v::table
            .filter(v::assistant_id.eq(&assistant_id))
            .into_boxed();
        if let Some(m) = &metadata {
            let preds = dialect::contains::<v::table>("metadata", m);
            query = query.filter(super::json_filter::AllOf(preds));
        }
        let rows: Vec<VersionRow> = query
            .order(v::version.desc())
            .limit(limit)
            .offset(offset)
            .select((
                v::version,
                v::graph_id,
                v::name,
                v::description,
                v::config,
                v::context,
                v::metadata,
                v::created_at,
            ))
            .load(&mut conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(version, graph_id, name, description, config, context, metadata, at)| Assistant {
                    assistant_id: assistant_id.clone(),
                    graph_id,
                    owner: current.owner.clone(),
                    version,
                    name,
                    description,
                    config,
                    context,
                    metadata,
                    created_at: at,
                    updated_at: at,
                },
            )
            .collect())
    })
}

/// Deletes an assistant with its versions (only `editor`'s own; `None`: a service).
pub async fn delete(
    db: &DbPool,
    assistant_id: String,
    editor: Option<String>,
) -> Result<(), DbError> {
    with_conn!(db, |conn, s| {
        use s::assistants as a;
        let deleting = diesel::delete(a::table)
            .filter(a::assistant_id.eq(&assistant_id))
            .into_boxed();
        match editable!(deleting, a, &editor).execute(&mut conn).await? {
            0 => Err(not_found(&assistant_id)),
            _ => Ok(()),
        }
    })
}
