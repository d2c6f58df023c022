//! A byte budget for the request bodies the process holds at once (`MNEMO_BODY_BUDGET_BYTES`).
//!
//! A body is charged from its first byte until its request has been answered (the parsed body
//! lives as long as the handler): a body with a `Content-Length` is charged its whole length up
//! front, and refused at once with `503` + `Retry-After` when that would exceed what is left; a
//! chunked body is charged chunk by chunk as it arrives, and the request is answered `503` as
//! soon as a chunk does not fit. What a request was charged is given back when both its answer
//! and its body are gone, whatever happened to it (refused, failed, client gone).
//!
//! Bodies larger than `MNEMO_MAX_BODY_BYTES` are not charged: they are refused with `413`
//! before they are read.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes};
use actix_web::{HttpMessage, ResponseError};
use futures_util::Stream;

use crate::error::{ApiError, pass_unless};

/// The process-wide budget, shared by every HTTP worker.
pub struct BodyBudget {
    capacity: usize,
    used: AtomicUsize,
    /// Bodies above this are refused (413) unread, so they are never charged.
    max_body: usize,
}

impl BodyBudget {
    /// A budget of `capacity` bytes, raised to `max_body` if smaller (one largest body must fit).
    pub fn new(capacity: usize, max_body: usize) -> Arc<BodyBudget> {
        Arc::new(BodyBudget {
            capacity: capacity.max(max_body),
            used: AtomicUsize::new(0),
            max_body,
        })
    }

    /// Bytes charged to bodies in flight now.
    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Charges `n` bytes if they fit.
    fn try_take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= self.capacity)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// What one request has been charged; given back when the last holder (the middleware, the
/// body stream) drops it.
struct Charge {
    budget: Arc<BodyBudget>,
    /// Bytes charged so far.
    taken: AtomicUsize,
    /// Bytes of the body seen so far (a body with a length is charged before it arrives).
    seen: AtomicUsize,
    /// A chunk did not fit: the request is answered 503 whatever its handler said.
    refused: AtomicBool,
}

impl Charge {
    /// Charges for the body's bytes up to `seen` that are not yet paid for.
    fn cover(&self, seen: usize) -> bool {
        let taken = self.taken.load(Ordering::Acquire);
        if seen <= taken {
            return true;
        }
        if self.budget.try_take(seen - taken) {
            self.taken.store(seen, Ordering::Release);
            true
        } else {
            self.refused.store(true, Ordering::Release);
            false
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.give_back(*self.taken.get_mut());
    }
}

/// The request's body, charged as it arrives.
struct ChargedBody {
    inner: Payload,
    charge: Arc<Charge>,
}

impl Stream for ChargedBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.charge.refused.load(Ordering::Acquire) {
            return Poll::Ready(Some(Err(budget_exceeded())));
        }
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &polled {
            let seen = self.charge.seen.fetch_add(chunk.len(), Ordering::AcqRel) + chunk.len();
            if !self.charge.cover(seen) {
                return Poll::Ready(Some(Err(budget_exceeded())));
            }
        }
        polled
    }
}

fn budget_exceeded() -> PayloadError {
    PayloadError::Io(std::io::Error::other("request body budget exhausted"))
}

fn refusal() -> ApiError {
    ApiError::Unavailable("too many request bodies in flight; retry later".into())
}

/// The body's announced length, `None` for a chunked body, `Some(0)` for none.
fn announced_length(req: &ServiceRequest) -> Option<usize> {
    let headers = req.headers();
    if let Some(len) = headers.get(CONTENT_LENGTH) {
        // a malformed length is refused by the HTTP layer before it gets here; be strict anyway
        return Some(
            len.to_str()
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(usize::MAX),
        );
    }
    if headers.contains_key(TRANSFER_ENCODING) {
        None
    } else {
        Some(0)
    }
}

/// Middleware: charges each request's body to the process's [`BodyBudget`].
pub async fn charge_bodies<B: MessageBody>(
    mut req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let Some(budget) = req
        .app_data::<web::Data<Arc<BodyBudget>>>()
        .map(|b| Arc::clone(b.get_ref()))
    else {
        return pass_unless(req, next, None).await;
    };
    let length = announced_length(&req);
    if length == Some(0) || length.is_some_and(|n| n > budget.max_body) {
        return pass_unless(req, next, None).await;
    }
    let charge = Arc::new(Charge {
        budget,
        taken: AtomicUsize::new(0),
        seen: AtomicUsize::new(0),
        refused: AtomicBool::new(false),
    });
    if let Some(n) = length
        && !charge.cover(n)
    {
        return Ok(req
            .into_response(refusal().error_response())
            .map_into_right_body());
    }
    let body = ChargedBody {
        inner: req.take_payload(),
        charge: Arc::clone(&charge),
    };
    req.set_payload(Payload::from(
        Box::pin(body) as Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>>
    ));
    let resp = next.call(req).await?;
    if charge.refused.load(Ordering::Acquire) {
        let (req, _) = resp.into_parts();
        return Ok(ServiceResponse::new(req, refusal().error_response()).map_into_right_body());
    }
    Ok(resp.map_into_left_body())
}
