//! One error type for every handler: a status code, a message, and the offending field.
use axum::{
    Json,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    /// Kubernetes-style reason, e.g. `NotFound`, `Unauthorized`.
    pub reason: &'static str,
    pub message: String,
    /// Path of the request field that is wrong, e.g. `path.namespace` or `spec.targets[1]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Seconds a client should wait before retrying (`Retry-After`); every 503 and 429
    /// carries one, [`DEFAULT_RETRY_AFTER_SECS`] unless set.
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

/// `Retry-After` of a 503 or 429 that names no other delay.
pub const DEFAULT_RETRY_AFTER_SECS: u64 = 2;

impl ApiError {
    pub fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    /// Asks the client to wait `seconds` before retrying.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// 503: trying again later can succeed (the database is down or every connection busy).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "Unavailable", message)
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    pub fn bad_request(message: impl Into<String>, field: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message).with_field(field)
    }

    /// 409: the request is well formed but the state it acts on does not allow it.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", message)
    }

    /// 403: the caller may see this but not do it.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", message)
    }

    /// Internal failures are logged with their cause; the client sees only that one happened.
    pub fn internal(error: &dyn std::error::Error) -> Self {
        tracing::error!(error = %error, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "internal error; see the operator's log",
        )
    }
}

#[derive(Serialize)]
struct Body<'a> {
    code: u16,
    #[serde(flatten)]
    error: &'a ApiError,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(Body {
                code: self.status.as_u16(),
                error: &self,
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        response
    }
}

/// Gives every 503 and 429 a `Retry-After`, whichever handler or layer produced it, so
/// agents, collectors and people's clients all know to come back (and when).
pub fn ensure_retry_after(response: &mut Response) {
    let status = response.status();
    if (status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS)
        && !response.headers().contains_key(header::RETRY_AFTER)
    {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from(DEFAULT_RETRY_AFTER_SECS),
        );
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        // Every pooled connection busy (e.g. thousands of agents reconnecting at once) is
        // load, not a fault: 503 tells agents to retry, and their spool keeps the data.
        if let crate::store::StoreError::Query {
            source: sqlx::Error::PoolTimedOut,
            operation,
        } = &error
        {
            tracing::warn!(operation, "database connections exhausted; answering 503");
            return Self::unavailable("the operator is busy; retry later");
        }
        // The database is down or restarting: the client's retry will succeed later.
        if error.is_unavailable() {
            tracing::warn!(%error, "database unreachable; answering 503");
            return Self::unavailable("the database is unavailable; retry later");
        }
        Self::internal(&error)
    }
}

/// A refused backtest: 422 for the rule (the first problem's path in `field`, every
/// problem in the message), 400 for the range.
impl From<crate::alerting::backtest::BacktestError> for ApiError {
    fn from(error: crate::alerting::backtest::BacktestError) -> Self {
        use crate::alerting::backtest::BacktestError;
        match error {
            BacktestError::Invalid(ref errors) => {
                let field = errors.first().map(|e| e.path.clone()).unwrap_or_default();
                Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    error.to_string(),
                )
                .with_field(field)
            }
            BacktestError::NotReplayable(message) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "NotReplayable", message)
                    .with_field("rule.spec.metric")
            }
            BacktestError::Range { message, field } => Self::bad_request(message, field),
            BacktestError::Store(e) => e.into(),
        }
    }
}

/// A refused report: 400, 413 or 415 naming the field.
impl From<crate::ingest::Rejection> for ApiError {
    fn from(rejection: crate::ingest::Rejection) -> Self {
        use crate::ingest::error::Problem;
        let (status, reason) = match rejection.problem {
            Problem::Invalid => (StatusCode::BAD_REQUEST, "BadRequest"),
            Problem::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge"),
            Problem::UnsupportedEncoding => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType")
            }
        };
        Self::new(status, reason, rejection.message).with_field(rejection.field)
    }
}
