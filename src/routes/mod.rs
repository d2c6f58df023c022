//! Every HTTP route, registered in one place. Handlers are thin: parse the wire type into a
//! domain type, make one call on the `Persistence` handle, shape the response.

mod assistants;
mod checkpoints;
mod openapi;
mod ops;
mod ownership;
mod runs;
mod store;
mod tasks;
mod threads;
mod workers;

use actix_web::{HttpResponse, web};

use crate::error::ApiError;
use crate::model::RawJson;
pub use openapi::{ApiDoc, ErrorBody};

/// Registers all routes (more specific paths before the `{id}` ones they would shadow).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(crate::metrics::export)
        .service(ops::ok)
        .service(ops::info)
        .service(ops::health)
        .service(ops::ready)
        .service(openapi::spec)
        .service(openapi::docs)
        .service(openapi::docs_file)
        .service(assistants::create)
        .service(assistants::search)
        .service(assistants::count)
        .service(assistants::get_schemas)
        .service(assistants::drawing)
        .service(assistants::subgraphs)
        .service(assistants::subgraphs_in)
        .service(assistants::versions)
        .service(assistants::set_latest)
        .service(assistants::get)
        .service(assistants::update)
        .service(assistants::remove)
        .service(workers::register)
        .service(workers::claim)
        .service(workers::events)
        .service(workers::heartbeat)
        .service(workers::finish)
        .service(workers::release)
        .service(workers::release_all)
        .service(store::put_item)
        .service(store::get_item)
        .service(store::delete_item)
        .service(store::search_items)
        .service(store::list_namespaces)
        .service(tasks::create)
        .service(tasks::list)
        .service(tasks::get)
        .service(tasks::update)
        .service(tasks::delete)
        .service(runs::agent_stream)
        .service(runs::create_stateless)
        .service(runs::create_on_thread)
        .service(runs::join)
        .service(runs::join_stream)
        .service(runs::cancel_many)
        .service(runs::cancel)
        .service(runs::delete_run)
        .service(runs::wait_stateless)
        .service(runs::stream_stateless)
        .service(runs::stream_on_thread)
        .service(runs::wait_on_thread)
        .service(runs::list)
        .service(runs::get)
        .service(threads::create)
        .service(threads::search)
        .service(threads::count)
        .service(threads::prune)
        .service(checkpoints::delete_for_runs)
        .service(checkpoints::put)
        .service(checkpoints::put_writes)
        .service(checkpoints::latest)
        .service(checkpoints::search)
        .service(checkpoints::get)
        .service(checkpoints::delete)
        .service(threads::get_state)
        .service(threads::update_state)
        .service(threads::state_at_checkpoint)
        .service(threads::state_at_checkpoint_post)
        .service(threads::history_post)
        .service(threads::history_get)
        .service(threads::copy)
        .service(threads::get)
        .service(threads::patch)
        .service(threads::delete);
}

/// Unknown paths get the same JSON error shape as everything else.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("Not Found".into()))
}

/// A JSON containment filter: an object (or nothing), within the filter caps.
pub(crate) fn filter_or_none(
    v: Option<serde_json::Value>,
    what: &str,
) -> Result<Option<serde_json::Value>, ApiError> {
    let filter = object_or_none(v, what)?;
    crate::limits::check_filter(what, filter.as_ref())?;
    Ok(filter)
}

/// What a create does when the id is taken: `raise` (409, the default) or `do_nothing` (answer
/// what is there).
#[derive(serde::Deserialize, utoipa::ToSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum IfExists {
    Raise,
    DoNothing,
}

/// `limit` and `offset` as the API accepts them.
pub(crate) fn page(limit: i64, offset: i64, max: i64) -> Result<(i64, i64), ApiError> {
    if !(1..=max).contains(&limit) {
        return Err(ApiError::validation(format!(
            "limit must be between 1 and {max}"
        )));
    }
    if offset < 0 {
        return Err(ApiError::validation("offset must not be negative"));
    }
    Ok((limit, offset))
}

/// A JSON array answer built one row at a time: each row's JSON tree is dropped once written,
/// so a page costs its rows and its bytes, not also every row's tree at once.
pub(crate) fn json_array<T>(
    rows: Vec<T>,
    render: impl Fn(&T) -> serde_json::Value,
) -> HttpResponse {
    let mut body = Vec::with_capacity(2);
    body.push(b'[');
    for (i, row) in rows.into_iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        // a Value always serialises (its keys are strings)
        let _ = serde_json::to_writer(&mut body, &render(&row));
    }
    body.push(b']');
    HttpResponse::Ok()
        .content_type(actix_web::http::header::ContentType::json())
        .body(body)
}

/// A metadata-style filter must be a JSON object.
/// A JSON object kept as text (checked, see [`RawJson::checked_object`]); absent or null is `{}`.
pub(crate) fn raw_object(v: Option<RawJson>, what: &str) -> Result<RawJson, ApiError> {
    match v {
        None => Ok(RawJson::empty_object()),
        Some(raw) => raw.checked_object(what).map_err(ApiError::Validation),
    }
}

pub(crate) fn object_or_none(
    v: Option<serde_json::Value>,
    what: &str,
) -> Result<Option<serde_json::Value>, ApiError> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v @ serde_json::Value::Object(_)) => Ok(Some(v)),
        Some(_) => Err(ApiError::validation(format!("{what} must be an object"))),
    }
}
