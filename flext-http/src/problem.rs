//! The one table from a flext [`Error`] to an HTTP status, and the RFC 9457 problem
//! details body every error is answered with.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flext_runtime::{Error, ErrorKind, RuleViolation, codes};
use serde::Serialize;
use uuid::Uuid;

/// The status an error is answered with. One table, keyed by the error's kind and, where
/// one kind covers two answers, its code:
///
/// | error | status |
/// | --- | --- |
/// | `Validation` with a `flext.input.*` code (malformed JSON, a field of the wrong type, a missing or unknown field) | 400 |
/// | `Validation` with any other code, `RuleViolation` | 422 |
/// | `NotFound` (and a query that answers `None`), a message by name of the other kind | 404 |
/// | `Conflict` (an expected-version conflict, a saga id reused or in flight) | 409 |
/// | `Unauthorized` with no principal on the request / with one | 401 / 403 |
/// | `flext.input.too_large` | 413 |
/// | `Infrastructure` (an open circuit, a store that is down) | 503 |
/// | `Timeout` | 504 |
/// | `CompensationFailed`, `Internal`, and a message with no handler | 500, detail masked |
///
/// ```
/// use flext::http::status_of;
/// use flext::Error;
/// assert_eq!(status_of(&Error::conflict("account.version", "moved on"), false).as_u16(), 409);
/// assert_eq!(status_of(&Error::validation("account.zero", "at least 1 cent"), false).as_u16(), 422);
/// ```
pub fn status_of(error: &Error, authenticated: bool) -> StatusCode {
    let code = error.code();
    match error.kind() {
        _ if code == codes::INPUT_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
        _ if code == codes::BUS_NO_HANDLER => StatusCode::INTERNAL_SERVER_ERROR,
        _ if code == codes::BUS_WRONG_KIND => StatusCode::NOT_FOUND,
        ErrorKind::Validation if code.starts_with("flext.input.") => StatusCode::BAD_REQUEST,
        ErrorKind::Validation | ErrorKind::RuleViolation => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Unauthorized if authenticated => StatusCode::FORBIDDEN,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Infrastructure => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An RFC 9457 problem details body (`application/problem+json`), with flext's code, the
/// request's correlation id and, for a rule violation, every violation.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Problem {
    /// `urn:flext:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The status's reason phrase.
    pub title: String,
    /// The status code.
    pub status: u16,
    /// What went wrong; for a 5xx, only that it did and the correlation id to look for.
    pub detail: String,
    /// The flext error code (`flext::codes` or the application's own).
    pub code: String,
    /// The correlation id, also in the `x-correlation-id` response header.
    pub correlation_id: Uuid,
    /// Every violated rule, for a 422.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<RuleViolation>,
}

impl Problem {
    /// The problem for `error`, answered with [`status_of`]. A 5xx's message is logged
    /// with the correlation id and not sent.
    pub fn from_error(error: &Error, correlation_id: Uuid, authenticated: bool) -> Problem {
        let status = status_of(error, authenticated);
        let detail = if status.is_server_error() {
            tracing::error!(%correlation_id, code = error.code(), error = %error, "request failed");
            format!("the server failed; look for correlation id {correlation_id} in its log")
        } else {
            error.message().to_owned()
        };
        Problem {
            kind: format!("urn:flext:problem:{}", error.code()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            code: error.code().to_owned(),
            correlation_id,
            violations: error.violations().to_vec(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}
