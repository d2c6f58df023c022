//! What one request may ask of mnemo: the caps on input size that keep every query's cost, and
//! every stored document's readability, independent of what a caller sends. Beyond a cap the
//! answer is `422` with the cap in its text; the README lists them.
//!
//! - JSON bodies nest at most [`MAX_JSON_DEPTH`] levels and hold no `\u0000` in their strings,
//!   checked while the body streams in ([`json_body`]). mnemo stores a body a few levels deeper
//!   than it came (a run's input inside a checkpoint), and reads parse at most 128 levels, so
//!   the cap leaves room: whatever mnemo accepts it can read back. Postgres text cannot hold
//!   NUL, so neither backend accepts it.
//! - JSON containment filters (thread metadata and values, history and checkpoint searches) and
//!   store `filter`s have at most [`MAX_FILTER_CONDITIONS`] conditions: each becomes a SQL
//!   predicate, and a query is built by nesting them.
//! - Id lists (thread search and prune, run cancels, checkpoint deletes by run) hold at most
//!   [`MAX_IDS`] ids; SQLite binds each as a variable.
//! - Store namespaces and namespace patterns have at most [`MAX_NAMESPACE_LABELS`] labels.
//! - `%00` in a path names nothing (404), in a query string is refused (422) ([`refuse_nul`]).

use std::io;

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use futures_util::StreamExt;
use serde_json::Value;

use crate::error::ApiError;

/// Deepest nesting of arrays and objects a JSON body may have.
pub const MAX_JSON_DEPTH: usize = 64;
/// Most conditions (leaves) in one JSON filter.
pub const MAX_FILTER_CONDITIONS: usize = 64;
/// Most ids in one list.
pub const MAX_IDS: usize = 1000;
/// Most labels in a store namespace or namespace pattern.
pub const MAX_NAMESPACE_LABELS: usize = 32;

/// Why a JSON body was refused while it streamed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonRefusal {
    TooDeep,
    NulInString,
}

impl std::fmt::Display for JsonRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsonRefusal::TooDeep => {
                write!(f, "JSON body is nested deeper than {MAX_JSON_DEPTH} levels")
            }
            JsonRefusal::NulInString => {
                write!(f, "JSON strings cannot contain the NUL character (\\u0000)")
            }
        }
    }
}

impl std::error::Error for JsonRefusal {}

/// A streaming check of JSON text: nesting depth and `\u0000` escapes, byte by byte, so a body
/// is refused as it arrives, without parsing it twice or holding it whole. It does not validate
/// the JSON (the parser does); on invalid JSON its verdict may be either.
#[derive(Debug, Clone)]
pub struct JsonScan {
    depth: usize,
    max_depth: usize,
    in_string: bool,
    escaped: bool,
    /// Hex digits of a `\u` escape read so far, and whether all were `0`.
    unicode: Option<(u8, bool)>,
}

impl JsonScan {
    pub fn new(max_depth: usize) -> JsonScan {
        JsonScan {
            depth: 0,
            max_depth,
            in_string: false,
            escaped: false,
            unicode: None,
        }
    }

    /// Reads the next bytes of the text.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), JsonRefusal> {
        for &b in bytes {
            if self.in_string {
                if let Some((read, zero)) = self.unicode {
                    let zero = zero && b == b'0';
                    if read == 3 {
                        self.unicode = None;
                        if zero {
                            return Err(JsonRefusal::NulInString);
                        }
                    } else {
                        self.unicode = Some((read + 1, zero));
                    }
                } else if self.escaped {
                    self.escaped = false;
                    if b == b'u' {
                        self.unicode = Some((0, true));
                    }
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'[' | b'{' => {
                    self.depth += 1;
                    if self.depth > self.max_depth {
                        return Err(JsonRefusal::TooDeep);
                    }
                }
                b']' | b'}' => self.depth = self.depth.saturating_sub(1),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Middleware: a JSON body is scanned as it streams to the handler; one nested too deep or
/// holding `\u0000` ends with a payload error that [`crate::error::json_error`] turns into 422.
pub async fn json_body(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let is_json = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"));
    if is_json {
        let mut scan = JsonScan::new(MAX_JSON_DEPTH);
        let checked = req.take_payload().map(move |chunk| {
            let chunk: Bytes = chunk?;
            scan.feed(&chunk)
                .map_err(|why| actix_web::error::PayloadError::Io(io::Error::other(why)))?;
            Ok(chunk)
        });
        req.set_payload(Payload::Stream {
            payload: Box::pin(checked),
        });
    }
    next.call(req).await
}

/// Middleware: a NUL character (`%00`) in the path names nothing (404), in the query string
/// is invalid input (422), on both backends (Postgres cannot store it in text).
pub async fn refuse_nul<B: actix_web::body::MessageBody>(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<B>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::EitherBody<B>>, actix_web::Error> {
    let has_nul = |s: &str| {
        s.as_bytes()
            .windows(3)
            .any(|w| w.eq_ignore_ascii_case(b"%00"))
    };
    let refused = if has_nul(req.path()) {
        Some(ApiError::NotFound("Not Found".into()))
    } else if has_nul(req.query_string()) {
        Some(ApiError::validation(
            "the query must not contain the NUL character (%00)",
        ))
    } else {
        None
    };
    crate::error::pass_unless(req, next, refused).await
}

/// The JSON error for a body read as raw bytes that could not be read: refused by
/// [`json_body`] (422), too large (413), or cut short (400).
pub fn raw_body_error(err: &actix_web::Error) -> ApiError {
    use actix_web::error::PayloadError;
    match err.as_error::<PayloadError>() {
        Some(p) => refused(p).unwrap_or_else(|| match p {
            PayloadError::Overflow => ApiError::PayloadTooLarge("Request body is too large".into()),
            _ => ApiError::BadRequest("the request body could not be read".into()),
        }),
        None => ApiError::BadRequest("the request body could not be read".into()),
    }
}

/// The 422 for a body [`json_body`] refused, if that is what stopped it.
pub fn refused(err: &actix_web::error::PayloadError) -> Option<ApiError> {
    match err {
        actix_web::error::PayloadError::Io(e) => e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<JsonRefusal>())
            .map(|why| ApiError::Validation(why.to_string())),
        _ => None,
    }
}

/// How many SQL conditions a containment filter becomes: one per scalar, per array element and
/// per empty object or array (counted without recursion).
pub fn filter_conditions(filter: &Value) -> usize {
    let mut count = 0;
    let mut stack = vec![filter];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(o) if o.is_empty() => count += 1,
            Value::Object(o) => stack.extend(o.values()),
            Value::Array(items) => count += 1 + items.len(),
            _ => count += 1,
        }
    }
    count
}

/// Refuses a containment filter with more than [`MAX_FILTER_CONDITIONS`] conditions.
pub fn check_filter(what: &str, filter: Option<&Value>) -> Result<(), ApiError> {
    let n = filter.map_or(0, filter_conditions);
    if n > MAX_FILTER_CONDITIONS {
        return Err(ApiError::Validation(format!(
            "{what} has {n} conditions; at most {MAX_FILTER_CONDITIONS} are allowed"
        )));
    }
    Ok(())
}

/// Refuses a list of more than [`MAX_IDS`] ids.
pub fn check_ids<T>(what: &str, ids: &[T]) -> Result<(), ApiError> {
    let n = ids.len();
    if n > MAX_IDS {
        return Err(ApiError::Validation(format!(
            "{what} has {n} ids; at most {MAX_IDS} are allowed"
        )));
    }
    Ok(())
}
