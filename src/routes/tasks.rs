//! `/tasks`: the task list mnemo's agent manages, as REST. Every task belongs to a user: a user
//! principal's are its own (naming another `user_id` is 403); a service names the user it acts
//! for, `user_id` in the body of `POST`, as a query parameter everywhere else. Another user's
//! task is a 404.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::NaiveDate;
use serde::{Deserialize, Deserializer};
use serde_json::json;

use super::page;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::model::{NewTask, TaskPatch, TaskQuery, TaskStatus};
use crate::persistence::Persistence;

const MAX_TITLE: usize = 500;
const MAX_NOTES: usize = 10_000;

/// The user whose tasks the request reaches.
fn user(principal: &Principal, user_id: Option<String>) -> Result<String, ApiError> {
    principal
        .acting_user(user_id.as_deref())?
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| ApiError::validation("user_id is required"))
}

fn title(t: String) -> Result<String, ApiError> {
    let t = t.trim().to_string();
    if t.is_empty() || t.chars().count() > MAX_TITLE {
        return Err(ApiError::validation(format!(
            "title must be 1 to {MAX_TITLE} characters"
        )));
    }
    Ok(t)
}

fn notes(n: String) -> Result<String, ApiError> {
    if n.chars().count() > MAX_NOTES {
        return Err(ApiError::validation(format!(
            "notes must be at most {MAX_NOTES} characters"
        )));
    }
    Ok(n)
}

/// A present field, even when it is `null` (so `"due_date": null` clears the date).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A task to add to a user's list.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = TaskCreateRequest)]
pub struct CreateBody {
    /// The user whose list it goes on: required of a service; a user may name only itself.
    user_id: Option<String>,
    /// 1 to 500 characters (not counting surrounding spaces).
    #[schema(max_length = 500)]
    title: String,
    #[serde(default)]
    #[schema(max_length = 10000)]
    notes: String,
    status: Option<TaskStatus>,
    due_date: Option<NaiveDate>,
}

#[utoipa::path(
    tag = "tasks",
    request_body = CreateBody,
    responses(
        (status = 201, body = crate::model::Task),
        (status = 403, description = "A user naming another user", body = super::ErrorBody),
    ),
)]
#[post("/tasks")]
pub async fn create(
    principal: Principal,
    db: web::Data<Persistence>,
    body: web::Json<CreateBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let new = NewTask {
        user_id: user(&principal, body.user_id)?,
        title: title(body.title)?,
        notes: notes(body.notes)?,
        status: body.status.unwrap_or(TaskStatus::Todo),
        due_date: body.due_date,
    };
    Ok(HttpResponse::Created().json(db.create_task(new).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    /// The user whose task it is: required of a service; a user may name only itself.
    user_id: Option<String>,
}

fn default_limit() -> i64 {
    50
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// The user whose tasks to list: required of a service; a user may name only itself.
    user_id: Option<String>,
    status: Option<TaskStatus>,
    /// The cursor: list tasks after this task id (`next_after` of the previous page).
    after: Option<String>,
    #[serde(default = "default_limit")]
    #[param(default = 50, minimum = 1, maximum = 200)]
    limit: i64,
}

#[utoipa::path(
    tag = "tasks",
    params(ListQuery),
    responses(
        (status = 200, body = super::openapi::TaskPage),
        (status = 403, description = "A user naming another user", body = super::ErrorBody),
    ),
)]
#[get("/tasks")]
pub async fn list(
    principal: Principal,
    db: web::Data<Persistence>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let (limit, _) = page(q.limit, 0, 200)?;
    let query = TaskQuery {
        user_id: user(&principal, q.user_id)?,
        status: q.status,
        after: q.after,
        limit,
    };
    let tasks = db.list_tasks(query).await?;
    let next = if tasks.len() as i64 == limit {
        tasks.last().map(|t| t.task_id.clone())
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(json!({ "tasks": tasks, "next_after": next })))
}

#[utoipa::path(
    tag = "tasks",
    params(("task_id" = String, Path), UserQuery),
    responses(
        (status = 200, body = crate::model::Task),
        (status = 403, description = "A user naming another user", body = super::ErrorBody),
        (status = 404, description = "No such task on the user's list", body = super::ErrorBody),
    ),
)]
#[get("/tasks/{task_id}")]
pub async fn get(
    principal: Principal,
    db: web::Data<Persistence>,
    path: web::Path<String>,
    q: web::Query<UserQuery>,
) -> Result<HttpResponse, ApiError> {
    let user_id = user(&principal, q.into_inner().user_id)?;
    Ok(HttpResponse::Ok().json(db.get_task(user_id, path.into_inner()).await?))
}

/// Changes to a task; absent fields stay as they are, `"due_date": null` clears the date.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = TaskPatchRequest)]
pub struct PatchBody {
    title: Option<String>,
    notes: Option<String>,
    status: Option<TaskStatus>,
    #[serde(default, deserialize_with = "present")]
    due_date: Option<Option<NaiveDate>>,
}

#[utoipa::path(
    tag = "tasks",
    params(("task_id" = String, Path), UserQuery),
    request_body = PatchBody,
    responses(
        (status = 200, body = crate::model::Task),
        (status = 403, description = "A user naming another user", body = super::ErrorBody),
        (status = 404, description = "No such task on the user's list", body = super::ErrorBody),
    ),
)]
#[patch("/tasks/{task_id}")]
pub async fn update(
    principal: Principal,
    db: web::Data<Persistence>,
    path: web::Path<String>,
    q: web::Query<UserQuery>,
    body: web::Json<PatchBody>,
) -> Result<HttpResponse, ApiError> {
    let user_id = user(&principal, q.into_inner().user_id)?;
    let body = body.into_inner();
    let patch = TaskPatch {
        title: body.title.map(title).transpose()?,
        notes: body.notes.map(notes).transpose()?,
        status: body.status,
        due_date: body.due_date,
    };
    Ok(HttpResponse::Ok().json(db.update_task(user_id, path.into_inner(), patch).await?))
}

#[utoipa::path(
    tag = "tasks",
    params(("task_id" = String, Path), UserQuery),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "A user naming another user", body = super::ErrorBody),
        (status = 404, description = "No such task on the user's list", body = super::ErrorBody),
    ),
)]
#[delete("/tasks/{task_id}")]
pub async fn delete(
    principal: Principal,
    db: web::Data<Persistence>,
    path: web::Path<String>,
    q: web::Query<UserQuery>,
) -> Result<HttpResponse, ApiError> {
    let user_id = user(&principal, q.into_inner().user_id)?;
    db.delete_task(user_id, path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}
