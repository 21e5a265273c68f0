//! [`ApiError`]: every way a request can fail, and its OpenAI-shaped body.
//!
//! Each variant fixes the HTTP status, the error `type` and the `code` a client
//! sees, so the router and the backend cannot disagree about them:
//!
//! ```text
//! {"error": {"message": "...", "type": "invalid_request_error", "param": "max_tokens", "code": null}}
//! ```

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A failed API request; serialized in the OpenAI error format.
///
/// The router produces most variants itself; a backend returns the ones that
/// only it can decide (unknown key, insufficient balance, unknown task, busy).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or a value is out of range (400).
    #[error("{message}")]
    BadRequest {
        /// What was expected and what was found.
        message: String,
        /// The offending request field (`"max_tokens"`, `"messages[1].content"`), if one.
        param: Option<String>,
    },
    /// No `Authorization: Bearer KEY` header (401).
    #[error("missing API key: send it as `Authorization: Bearer KEY`")]
    MissingApiKey,
    /// The `Authorization` header is present but not a usable bearer key (401).
    #[error("malformed API key: {reason}")]
    MalformedApiKey {
        /// Why the header was refused.
        reason: String,
    },
    /// The key maps to no payer account (401).
    #[error("incorrect API key provided")]
    InvalidApiKey,
    /// The payer account cannot pay for the request (402).
    #[error("insufficient balance: {message}")]
    InsufficientBalance {
        /// The price and the balance, as the backend words them.
        message: String,
    },
    /// The requested model is not served by this node (404).
    #[error("the model `{model}` does not exist or is not served by this node")]
    ModelNotFound {
        /// The model id the client asked for.
        model: String,
    },
    /// Something other than a model was not found: a route, a task (404).
    #[error("{message}")]
    NotFound {
        /// What was looked for.
        message: String,
    },
    /// The route exists but not for this HTTP method (405).
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The path requested.
        path: String,
    },
    /// The request body exceeds the configured limit (413).
    #[error("request body exceeds the limit of {limit_bytes} bytes")]
    RequestTooLarge {
        /// The configured body limit.
        limit_bytes: usize,
    },
    /// Too many requests in flight on this node, or the backend queue is full (429).
    #[error("server busy: {message}")]
    Busy {
        /// Which limit was hit.
        message: String,
    },
    /// The backend cannot take requests now, e.g. the node is syncing or shutting down (503).
    #[error("backend unavailable: {message}")]
    Unavailable {
        /// Why.
        message: String,
    },
    /// A bug or an unexpected failure inside the node (500).
    #[error("internal error: {message}")]
    Internal {
        /// What failed.
        message: String,
    },
}

impl ApiError {
    /// A 400 error about one request field.
    pub fn bad_param(param: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::BadRequest { message: message.into(), param: Some(param.into()) }
    }

    /// A 400 error about the request as a whole.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest { message: message.into(), param: None }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::MissingApiKey | ApiError::MalformedApiKey { .. } | ApiError::InvalidApiKey => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::InsufficientBalance { .. } => StatusCode::PAYMENT_REQUIRED,
            ApiError::ModelNotFound { .. } | ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RequestTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Busy { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The OpenAI error `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. }
            | ApiError::MethodNotAllowed { .. }
            | ApiError::RequestTooLarge { .. } => "invalid_request_error",
            ApiError::MissingApiKey | ApiError::MalformedApiKey { .. } | ApiError::InvalidApiKey => {
                "authentication_error"
            }
            ApiError::InsufficientBalance { .. } => "insufficient_quota",
            ApiError::ModelNotFound { .. } | ApiError::NotFound { .. } => "not_found_error",
            ApiError::Busy { .. } => "rate_limit_error",
            ApiError::Unavailable { .. } | ApiError::Internal { .. } => "server_error",
        }
    }

    /// The OpenAI error `code`, a stable machine-readable tag, where one applies.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            ApiError::BadRequest { .. } | ApiError::NotFound { .. } | ApiError::Internal { .. } => None,
            ApiError::MissingApiKey => Some("missing_api_key"),
            ApiError::MalformedApiKey { .. } | ApiError::InvalidApiKey => Some("invalid_api_key"),
            ApiError::InsufficientBalance { .. } => Some("insufficient_balance"),
            ApiError::ModelNotFound { .. } => Some("model_not_found"),
            ApiError::MethodNotAllowed { .. } => Some("method_not_allowed"),
            ApiError::RequestTooLarge { .. } => Some("request_too_large"),
            ApiError::Busy { .. } => Some("server_busy"),
            ApiError::Unavailable { .. } => Some("backend_unavailable"),
        }
    }

    /// The OpenAI error `param`: the request field at fault, if one.
    pub fn param(&self) -> Option<&str> {
        match self {
            ApiError::BadRequest { param, .. } => param.as_deref(),
            ApiError::ModelNotFound { .. } => Some("model"),
            _ => None,
        }
    }

    /// The `{"error": {...}}` object a client receives, as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.body()).unwrap_or(serde_json::Value::Null)
    }

    pub(super) fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            error: ErrorObject {
                message: self.to_string(),
                kind: self.kind(),
                param: self.param(),
                code: self.code(),
            },
        }
    }
}

/// The OpenAI error envelope.
#[derive(Debug, Serialize)]
pub(super) struct ErrorBody<'a> {
    error: ErrorObject<'a>,
}

#[derive(Debug, Serialize)]
struct ErrorObject<'a> {
    message: String,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<&'a str>,
    code: Option<&'static str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(%status, error = %self, "api request failed");
        } else {
            tracing::debug!(%status, error = %self, "api request refused");
        }
        (status, Json(self.body())).into_response()
    }
}
