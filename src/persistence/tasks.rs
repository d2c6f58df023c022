//! Tasks: each user's list, paged by key on the time-ordered task id.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::{DbError, DbPool, with_conn};
use crate::model::{NewTask, Task, TaskPatch, TaskQuery};

type Row = (
    String,
    String,
    String,
    String,
    String,
    Option<NaiveDate>,
    DateTime<Utc>,
    DateTime<Utc>,
);

/// The columns of `Row`.
macro_rules! columns {
    ($t:ident) => {
        (
            $t::task_id,
            $t::user_id,
            $t::title,
            $t::notes,
            $t::status,
            $t::due_date,
            $t::created_at,
            $t::updated_at,
        )
    };
}

fn task((task_id, user_id, title, notes, status, due_date, created_at, updated_at): Row) -> Task {
    Task {
        task_id,
        user_id,
        title,
        notes,
        status,
        due_date,
        created_at,
        updated_at,
    }
}

/// One message for "no such task for this user": another user's task is not revealed.
fn not_found(task_id: &str) -> DbError {
    DbError::NotFound(format!("Task {task_id} not found"))
}

pub async fn create(db: &DbPool, new: NewTask) -> Result<Task, DbError> {
    let now = Utc::now();
    let task_id = uuid::Uuid::now_v7().to_string();
    with_conn!(db, |conn, s| {
        use s::tasks as t;
        let row: Row = diesel::insert_into(t::table)
            .values((
                t::task_id.eq(&task_id),
                t::user_id.eq(&new.user_id),
                t::title.eq(&new.title),
                t::notes.eq(&new.notes),
                t::status.eq(new.status.as_str()),
                t::due_date.eq(new.due_date),
                t::created_at.eq(now),
                t::updated_at.eq(now),
            ))
            .returning(columns!(t))
            .get_result(&mut conn)
            .await?;
        Ok(task(row))
    })
}

pub async fn get(db: &DbPool, user_id: String, task_id: String) -> Result<Task, DbError> {
    with_conn!(db, |conn, s| {
        use s::tasks as t;
        t::table
            .filter(t::task_id.eq(&task_id))
            .filter(t::user_id.eq(&user_id))
            .select(columns!(t))
            .first::<Row>(&mut conn)
            .await
            .optional()?
            .map(task)
            .ok_or_else(|| not_found(&task_id))
    })
}

pub async fn list(db: &DbPool, query: TaskQuery) -> Result<Vec<Task>, DbError> {
    with_conn!(db, |conn, s| {
        use s::tasks as t;
        let mut q = t::table
            .filter(t::user_id.eq(query.user_id.clone()))
            .select(columns!(t))
            .into_boxed();
        if let Some(status) = query.status {
            q = q.filter(t::status.eq(status.as_str()));
        }
        if let Some(after) = &query.after {
            q = q.filter(t::task_id.gt(after.clone()));
        }
        let rows: Vec<Row> = q
            .order(t::task_id.asc())
            .limit(query.limit)
            .load(&mut conn)
            .await?;
        Ok(rows.into_iter().map(task).collect())
    })
}

pub async fn update(
    db: &DbPool,
    user_id: String,
    task_id: String,
    patch: TaskPatch,
) -> Result<Task, DbError> {
    let now = Utc::now();
    with_conn!(db, |conn, s| {
        conn.transaction::<_, DbError, _>(async move |conn| {
            use s::tasks as t;
            let this = t::table
                .filter(t::task_id.eq(&task_id))
                .filter(t::user_id.eq(&user_id));
            // the write comes first: it takes the row lock (Postgres) or the write lock (SQLite)
            if diesel::update(this)
                .set(t::updated_at.eq(now))
                .execute(conn)
                .await?
                == 0
            {
                return Err(not_found(&task_id));
            }
            if let Some(title) = &patch.title {
                diesel::update(this)
                    .set(t::title.eq(title))
                    .execute(conn)
                    .await?;
            }
            if let Some(notes) = &patch.notes {
                diesel::update(this)
                    .set(t::notes.eq(notes))
                    .execute(conn)
                    .await?;
            }
            if let Some(status) = patch.status {
                diesel::update(this)
                    .set(t::status.eq(status.as_str()))
                    .execute(conn)
                    .await?;
            }
            if let Some(due_date) = patch.due_date {
                diesel::update(this)
                    .set(t::due_date.eq(due_date))
                    .execute(conn)
                    .await?;
            }
            Ok(task(this.select(columns!(t)).first(conn).await?))
        })
        .await
    })
}

pub async fn delete(db: &DbPool, user_id: String, task_id: String) -> Result<(), DbError> {
    let n = with_conn!(db, |conn, s| {
        use s::tasks as t;
        diesel::delete(
            t::table
                .filter(t::task_id.eq(&task_id))
                .filter(t::user_id.eq(&user_id)),
        )
        .execute(&mut conn)
        .await?
    });
    if n == 0 {
        Err(not_found(&task_id))
    } else {
        Ok(())
    }
}
