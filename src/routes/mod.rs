//! Every HTTP route, registered in one place. Handlers are thin: parse the wire type into a
//! domain type, make one call on the `Persistence` handle, shape the response.

mod assistants;
mod checkpoints;
mod ops;
mod ownership;
mod runs;
mod store;
mod tasks;
mod threads;

use actix_web::{HttpResponse, web};

use crate::error::ApiError;

/// Registers all routes (more specific paths before the `{id}` ones they would shadow).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(crate::metrics::export)
        .service(ops::ok)
        .service(ops::info)
        .service(ops::health)
        .service(ops::ready)
        .service(assistants::search)
        .service(assistants::count)
        .service(assistants::schemas)
        .service(assistants::graph)
        .service(assistants::get)
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

/// Postgres cannot store a NUL character in JSON text, SQLite can: refuse it on both, so a
/// document means the same wherever it is stored.
pub(crate) fn without_nul(v: &serde_json::Value, what: &str) -> Result<(), ApiError> {
    use serde_json::Value;
    let has_nul = |s: &str| s.contains('\0');
    let bad = match v {
        Value::String(s) => has_nul(s),
        Value::Array(items) => return items.iter().try_for_each(|i| without_nul(i, what)),
        Value::Object(map) => {
            if map.keys().any(|k| has_nul(k)) {
                true
            } else {
                return map.values().try_for_each(|i| without_nul(i, what));
            }
        }
        _ => false,
    };
    if bad {
        Err(ApiError::validation(format!(
            "{what} must not contain the NUL character (\\u0000)"
        )))
    } else {
        Ok(())
    }
}
