//! `ApiError`: the one error type that becomes a response, in the OpenAI-shaped envelope
//! `{"error": {"type", "code", "message", "request_id"}}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_storage::StorageError;
use serde::Serialize;

use crate::request_id;

/// Every way a request can fail. Internal causes are logged once, here, and never sent.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed input: the client's mistake, never retried.
    #[error("{message}")]
    InvalidRequest { code: &'static str, message: String },
    /// Absent, or belonging to another org: the two are indistinguishable (CF-1).
    #[error("not found")]
    NotFound { code: &'static str, message: String },
    #[error("method not allowed")]
    MethodNotAllowed,
    /// No credential, or one that is unknown, expired or revoked.
    #[error("{message}")]
    Unauthenticated { code: &'static str, message: String },
    /// Authenticated, but not allowed (`permission_denied`, `wrong_key_kind`, `mfa_required`).
    /// `required` names what the caller lacked, for the `access.denied` audit entry.
    #[error("{message}")]
    Forbidden {
        code: &'static str,
        message: String,
        required: Option<&'static str>,
    },
    #[error("payload too large")]
    PayloadTooLarge,
    /// The body did not arrive within its time.
    #[error("request timeout")]
    RequestTimeout,
    /// Too many attempts (logins) or past a key's requests or tokens per minute.
    #[error("{message}")]
    RateLimited {
        retry_after_secs: u64,
        message: String,
    },
    /// A budget would be passed (`budget_exceeded`, naming the scope), or a budget is in force
    /// and the route has no price to check it with (`price_unknown`).
    #[error("{message}")]
    PaymentRequired { code: &'static str, message: String },
    /// Every upstream target failed (502 `upstream_error`, 503 `upstream_unavailable`, 504
    /// `upstream_timeout`).
    #[error("{code}")]
    Upstream {
        status: StatusCode,
        code: &'static str,
    },
    #[error("{0}")]
    Conflict(String),
    /// A dependency (the database) is unavailable; the client may retry.
    #[error("service unavailable")]
    Unavailable { retry_after_secs: u64 },
    /// A bug or an unexpected failure. The cause is logged, the client sees a generic message.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// On a 403 answer: what was refused, for the guard's `access.denied` entry (a response
/// extension, never sent).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refused {
    pub code: &'static str,
    pub required: Option<&'static str>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    code: &'static str,
    message: &'a str,
    request_id: &'a str,
}

impl ApiError {
    pub fn not_found() -> Self {
        Self::NotFound {
            code: "not_found",
            message: "no such resource".to_owned(),
        }
    }

    pub fn unauthenticated(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unauthenticated {
            code,
            message: message.into(),
        }
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::Forbidden {
            code,
            message: message.into(),
            required: None,
        }
    }

    /// A refusal naming what the caller lacked (a role, a second factor, owning the key).
    pub fn denied(code: &'static str, message: impl Into<String>, required: &'static str) -> Self {
        Self::Forbidden {
            code,
            message: message.into(),
            required: Some(required),
        }
    }

    pub fn internal(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(cause))
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::InvalidRequest {
            code: "invalid_request",
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::PaymentRequired { .. } => StatusCode::PAYMENT_REQUIRED,
            Self::Upstream { status, .. } => *status,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A low-cardinality name for metrics labels and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidRequest { .. } => "invalid_request",
            Self::NotFound { .. } => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Unauthenticated { .. } => "unauthenticated",
            Self::Forbidden { .. } => "forbidden",
            Self::PayloadTooLarge => "payload_too_large",
            Self::RequestTimeout => "request_timeout",
            Self::RateLimited { .. } => "rate_limited",
            Self::PaymentRequired { .. } => "payment_required",
            Self::Upstream { .. } => "upstream",
            Self::Conflict(_) => "conflict",
            Self::Unavailable { .. } => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    /// The envelope's `code`.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest { code, .. }
            | Self::NotFound { code, .. }
            | Self::Unauthenticated { code, .. }
            | Self::Forbidden { code, .. }
            | Self::PaymentRequired { code, .. } => code,
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::RequestTimeout => "request_timeout",
            Self::RateLimited { .. } => "rate_limited",
            Self::Upstream { code, .. } => code,
            Self::Conflict(_) => "conflict",
            Self::Unavailable { .. } => "service_unavailable",
            Self::Internal(_) => "internal_error",
        }
    }

    /// The OpenAI `type` for this status.
    fn envelope_type(&self) -> &'static str {
        match self {
            Self::InvalidRequest { .. }
            | Self::MethodNotAllowed
            | Self::PayloadTooLarge
            | Self::RequestTimeout => "invalid_request_error",
            Self::Unauthenticated { .. } => "authentication_error",
            Self::Forbidden { .. } => "permission_error",
            Self::RateLimited { .. } => "rate_limit_error",
            Self::PaymentRequired { .. } => "insufficient_quota",
            Self::NotFound { .. } => "not_found_error",
            Self::Conflict(_) => "conflict_error",
            Self::Unavailable { .. } | Self::Internal(_) | Self::Upstream { .. } => "server_error",
        }
    }

    fn public_message(&self) -> String {
        match self {
            Self::InvalidRequest { message, .. }
            | Self::NotFound { message, .. }
            | Self::Unauthenticated { message, .. }
            | Self::Forbidden { message, .. }
            | Self::RateLimited { message, .. }
            | Self::PaymentRequired { message, .. } => message.clone(),
            Self::PayloadTooLarge => "the request body is too large".to_owned(),
            Self::RequestTimeout => "the request body did not arrive in time".to_owned(),
            Self::Upstream { code, .. } => match *code {
                "upstream_timeout" => "no upstream answered in time".to_owned(),
                "upstream_unavailable" => "no upstream is available; retry later".to_owned(),
                "loop_detected" => {
                    "the request came back through gateways too many times: a provider base URL \
                     points at a gateway"
                        .to_owned()
                }
                _ => "every upstream failed".to_owned(),
            },
            Self::MethodNotAllowed => "this route does not accept that method".to_owned(),
            Self::Conflict(message) => message.clone(),
            Self::Unavailable { .. } => "the service is temporarily unavailable".to_owned(),
            Self::Internal(_) => "internal error; quote the request id to your operator".to_owned(),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::NotFound => Self::not_found(),
            StorageError::Conflict(message) => Self::Conflict(message.to_owned()),
            StorageError::Crypto(cause) => Self::internal(cause),
            StorageError::Invalid(constraint) => {
                Self::invalid_request(format!("a value is out of range ({constraint})"))
            }
            StorageError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                Self::Unavailable {
                    retry_after_secs: 1,
                }
            }
            other => Self::Internal(Box::new(other)),
        }
    }
}

/// The shape of an error's body: this API's envelope (OpenAI's), or Anthropic's on
/// `/v1/messages`, whose clients read only that one. Status and headers are the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorShape {
    Envelope,
    Anthropic,
}

#[derive(Serialize)]
struct AnthropicError<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: AnthropicBody<'a>,
    request_id: &'a str,
}

#[derive(Serialize)]
struct AnthropicBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
    /// This API's code, beside Anthropic's type (clients ignore what they do not know).
    code: &'static str,
}

/// Anthropic's error type for a status.
fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 405 | 408 | 409 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.shaped(ErrorShape::Envelope)
    }
}

impl ApiError {
    /// The error as a response whose body has `shape`.
    pub fn shaped(self, shape: ErrorShape) -> Response {
        let status = self.status();
        if let Self::Internal(cause) = &self {
            tracing::error!(error = %cause, "request failed");
        }
        let request_id = request_id::current();
        let request_id = request_id.as_deref().unwrap_or("");
        let message = self.public_message();
        let mut response = match shape {
            ErrorShape::Envelope => {
                let envelope = Envelope {
                    error: Body {
                        kind: self.envelope_type(),
                        code: self.code(),
                        message: &message,
                        request_id,
                    },
                };
                (status, Json(envelope)).into_response()
            }
            ErrorShape::Anthropic => {
                let body = AnthropicError {
                    kind: "error",
                    error: AnthropicBody {
                        kind: anthropic_type(status),
                        message: &message,
                        code: self.code(),
                    },
                    request_id,
                };
                (status, Json(body)).into_response()
            }
        };
        if let Self::Forbidden { code, required, .. } = &self {
            response.extensions_mut().insert(Refused {
                code,
                required: *required,
            });
        }
        if let Self::Unavailable { retry_after_secs }
        | Self::RateLimited {
            retry_after_secs, ..
        } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .entry(header::RETRY_AFTER)
                .or_insert(HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<portcullis_policy::rbac::Denial> for ApiError {
    fn from(denial: portcullis_policy::rbac::Denial) -> Self {
        use portcullis_policy::rbac::Denial;
        let required = match denial {
            Denial::LastOwner => return Self::Conflict(denial.to_string()),
            Denial::RoleTooLow(role) => role.as_str(),
            Denial::OwnerOnly => "owner",
            Denial::NotOwnKey => "key owner",
        };
        Self::denied("permission_denied", denial.to_string(), required)
    }
}

impl From<portcullis_core::token::RandomnessUnavailable> for ApiError {
    fn from(error: portcullis_core::token::RandomnessUnavailable) -> Self {
        Self::internal(error)
    }
}
