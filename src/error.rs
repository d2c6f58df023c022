//! The one error type that becomes an HTTP response. Every layer's error converts into
//! [`ApiError`]; the status is chosen here and nowhere else. Bodies follow the LangGraph API:
//! `{"detail": "…"}`. Internal causes are logged here, once, and never sent to the client.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, ResponseError};

use crate::auth::AuthFailure;
use crate::persistence::DbError;

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_S: &str = "1";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed request (not JSON, missing required query parameter): 400.
    #[error("{0}")]
    BadRequest(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// No credentials, or credentials mnemo refuses: 401 with `WWW-Authenticate`.
    #[error("{}", unauthorized_text(*.0))]
    Unauthorized(AuthFailure),
    /// The credentials are good but may not do this (a user naming another user): 403.
    #[error("{0}")]
    Forbidden(String),
    /// A body that is not `application/json` where JSON is parsed: 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A `Host` this server does not answer for (DNS rebinding): 421.
    #[error("{0}")]
    MisdirectedRequest(String),
    /// A principal past one of its quotas: 429 with `Retry-After`.
    #[error("{detail}")]
    TooManyRequests { detail: String, retry_after_s: u64 },
    /// Duplicate id and similar: 409.
    #[error("{0}")]
    Conflict(String),
    /// Well-formed but invalid input: 422.
    #[error("{0}")]
    Validation(String),
    /// Body over the configured limit: 413.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The database (or the persistence actor) cannot serve now: 503 with `Retry-After`.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else: an opaque 500; the cause is only logged.
    #[error("internal server error")]
    Internal(String),
}

impl ApiError {
    pub fn validation(msg: impl Into<String>) -> Self {
        ApiError::Validation(msg.into())
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::NotFound(m) => ApiError::NotFound(m),
            DbError::Conflict(m) => ApiError::Conflict(m),
            DbError::Invalid(m) => ApiError::Validation(m),
            DbError::TooMany(_) => ApiError::TooManyRequests {
                detail: e.to_string(),
                retry_after_s: 1,
            },
            DbError::Unavailable(cause) => {
                log::warn!("database unavailable: {cause}");
                ApiError::Unavailable("database unavailable".into())
            }
            DbError::ActorGone => ApiError::Unavailable("server is shutting down".into()),
            DbError::Query(cause) if refuses_nul(&format!("{cause:?}")) => nul_refused(),
            DbError::Failed(cause) if refuses_nul(&cause) => nul_refused(),
            DbError::Query(cause) => ApiError::Internal(format!("database error: {cause:?}")),
            DbError::Failed(cause) => ApiError::Internal(format!("database error: {cause}")),
        }
    }
}

/// The run layer's refusals and failures, as HTTP.
impl From<crate::runs::RunError> for ApiError {
    fn from(e: crate::runs::RunError) -> Self {
        use crate::runs::RunError;
        match e {
            RunError::Invalid(m) => ApiError::Validation(m),
            RunError::Quota(_) => ApiError::TooManyRequests {
                detail: e.to_string(),
                retry_after_s: 1,
            },
            RunError::ShuttingDown => ApiError::Unavailable(e.to_string()),
            RunError::Db(db) => db.into(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MisdirectedRequest(_) => StatusCode::MISDIRECTED_REQUEST,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status_code());
        match self {
            ApiError::Internal(cause) => log::error!("500: {cause}"),
            ApiError::Unavailable(_) => {
                resp.insert_header(("Retry-After", RETRY_AFTER_S));
            }
            ApiError::Unauthorized(failure) => {
                log::info!("401: credentials {}", failure.reason());
                resp.insert_header(("WWW-Authenticate", "Bearer realm=\"mnemo\""));
            }
            ApiError::TooManyRequests { retry_after_s, .. } => {
                resp.insert_header(("Retry-After", retry_after_s.to_string()));
            }
            _ => {}
        }
        resp.json(serde_json::json!({ "detail": self.to_string() }))
    }
}

/// A middleware's last step: the request goes on to the next service, or the refusal is its
/// answer.
pub async fn pass_unless<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
    refused: Option<ApiError>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    match refused {
        None => next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body),
        Some(e) => Ok(req.into_response(e.error_response()).map_into_right_body()),
    }
}

/// JSON bodies: syntax errors are 400, well-formed JSON of the wrong shape 422, too large 413.
pub fn json_error(err: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    if let JsonPayloadError::Payload(p) = &err
        && let Some(refused) = crate::limits::refused(p)
    {
        return refused.into();
    }
    let api = match &err {
        JsonPayloadError::Overflow { limit }
        | JsonPayloadError::OverflowKnownLength { limit, .. } => {
            ApiError::PayloadTooLarge(format!("Request body is larger than {limit} bytes"))
        }
        JsonPayloadError::ContentType => {
            ApiError::UnsupportedMediaType("Content-Type must be application/json".into())
        }
        JsonPayloadError::Deserialize(e) if e.is_data() => ApiError::Validation(e.to_string()),
        JsonPayloadError::Deserialize(e) => ApiError::BadRequest(format!("Invalid JSON: {e}")),
        other => ApiError::BadRequest(other.to_string()),
    };
    api.into()
}

/// Query strings of the wrong shape: 422.
pub fn query_error(err: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::Validation(err.to_string()).into()
}

/// Path segments that do not parse: 404 (no such resource).
pub fn path_error(err: PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::NotFound(err.to_string()).into()
}

/// Whether a database error is Postgres refusing the NUL character (in text, or as `\u0000`
/// in JSON), which SQLite stores: input mnemo refuses on both backends, never a 500.
fn refuses_nul(cause: &str) -> bool {
    (cause.contains("invalid byte sequence for encoding") && cause.contains(": 0x00"))
        || cause.contains("unsupported Unicode escape sequence")
}

fn nul_refused() -> ApiError {
    ApiError::validation("text must not contain the NUL character (\\u0000)")
}

/// What a client is told for each refusal (the reason itself is counted and logged).
fn unauthorized_text(failure: AuthFailure) -> &'static str {
    match failure {
        AuthFailure::Missing => "Authentication required: send x-api-key or Authorization: Bearer",
        AuthFailure::Expired => "Credentials expired",
        AuthFailure::Revoked => "Credentials revoked",
        AuthFailure::Disabled => "This kind of credential is not accepted by this server",
        AuthFailure::Invalid | AuthFailure::Unavailable | AuthFailure::Throttled => {
            "Invalid credentials"
        }
    }
}
