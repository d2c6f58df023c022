//! Whose data a request reaches. A user principal reaches only the threads it owns (and their
//! runs, checkpoints, state and history), its own tasks and its own store namespaces; another
//! owner's thread answers 404, exactly like a missing one, so existence does not leak. Services
//! reach everything.
//!
//! Every route under `/threads/{thread_id}` takes an [`OwnedThread`] before anything else: the
//! check runs once, with the same path decoding as the handler's own `web::Path`.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload, http::Method, web};
use serde::Deserialize;

use crate::auth::{AuthFailure, Principal};
use crate::error::ApiError;
use crate::model::{NewThread, RawJson};
use crate::persistence::Persistence;

fn thread_not_found(thread_id: &str) -> ApiError {
    ApiError::NotFound(format!("Thread with ID {thread_id} not found"))
}

/// 404 unless `principal` may reach the thread. A thread that does not exist passes: the
/// operation itself says 404, or creates it (for a user, owned by that user).
pub async fn check_thread(
    db: &Persistence,
    principal: &Principal,
    thread_id: &str,
) -> Result<(), ApiError> {
    if principal.is_service() {
        return Ok(());
    }
    match db.thread_owner(thread_id.to_string()).await? {
        Some(owner) if !principal.owns(owner.as_deref()) => Err(thread_not_found(thread_id)),
        _ => Ok(()),
    }
}

/// Proof that the request's principal may reach the thread in its path.
pub struct OwnedThread;

#[derive(Deserialize)]
struct ThreadPath {
    thread_id: String,
}

impl FromRequest for OwnedThread {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<OwnedThread, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let principal = req.extensions().get::<Principal>().cloned();
        let db = req.app_data::<web::Data<Persistence>>().cloned();
        let thread_id = web::Path::<ThreadPath>::extract(req).into_inner();
        // a raw checkpointer's put makes its thread: a user's is made as the user's own
        let creates = req.method() == Method::PUT;
        Box::pin(async move {
            let principal = principal.ok_or(ApiError::Unauthorized(AuthFailure::Missing))?;
            let db = db.ok_or_else(|| ApiError::Internal("persistence missing".into()))?;
            let thread_id = thread_id
                .map_err(|e| ApiError::NotFound(e.to_string()))?
                .into_inner()
                .thread_id;
            let Some(user) = principal.bound_user() else {
                return Ok(OwnedThread);
            };
            let owner = match db.thread_owner(thread_id.clone()).await? {
                None if creates => {
                    let new = NewThread {
                        thread_id: thread_id.clone(),
                        metadata: RawJson::empty_object(),
                        owner: Some(user.to_string()),
                        do_nothing_if_exists: true,
                    };
                    db.create_thread(new).await?.owner
                }
                None => return Ok(OwnedThread),
                Some(owner) => owner,
            };
            if principal.owns(owner.as_deref()) {
                Ok(OwnedThread)
            } else {
                Err(thread_not_found(&thread_id))
            }
        })
    }
}
