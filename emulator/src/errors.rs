//! Errors: the crate's own [`EmulatorError`] (start-up and control-plane failures) and
//! [`ApiError`], a Google API error rendered in the envelope of the API that produced it
//! (Calendar's legacy `{"error":{"errors":[…],"code","message"}}` shape or People's
//! `google.rpc.Status` shape with `status` and `details[ErrorInfo]`).

use axum::http::StatusCode;
use serde_json::{json, Value};

/// Failures of the emulator itself (not Google API errors).
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The listening socket could not be bound.
    #[error("could not bind the emulator to {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// A user email was malformed (must look like `name@domain`).
    #[error("invalid user email {0:?}: expected name@domain")]
    InvalidEmail(String),
    /// The user does not exist in the emulated domain.
    #[error("unknown user {0:?}: create it first with POST /_emulator/users")]
    UnknownUser(String),
    /// Generating or encoding a service-account key failed.
    #[error("could not create a service-account key: {0}")]
    Key(String),
    /// A control-plane request was malformed.
    #[error("invalid control-plane request: {0}")]
    BadRequest(String),
    /// A control-plane request named a resource (contact, event) that does not exist.
    #[error("not found: {0}")]
    NotFound(String),
}

/// Which Google API (and therefore which error envelope) a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    Calendar,
    People,
}

impl Api {
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Calendar => "calendar",
            Api::People => "people",
        }
    }
}

/// A Google API error. `reason` is the Calendar `errors[0].reason` or the People ErrorInfo
/// reason; `status` (People only) is the canonical `google.rpc.Code` name.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub message: String,
    /// Reason, domain, location, status and metadata (boxed to keep `Result`s small).
    pub detail: Box<ErrorDetail>,
}

/// The optional parts of an [`ApiError`].
#[derive(Debug, Clone, Default)]
pub struct ErrorDetail {
    /// Calendar: `errors[0].reason`; People: ErrorInfo reason (optional).
    pub reason: Option<String>,
    /// Calendar: `errors[0].domain` (default `global`); People: ErrorInfo domain.
    pub domain: Option<String>,
    /// Calendar: `locationType` and `location`.
    pub location: Option<(String, String)>,
    /// People canonical status (`INVALID_ARGUMENT`, …). Derived from `code` when absent.
    pub status: Option<String>,
    /// People ErrorInfo metadata.
    pub metadata: Option<Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            detail: Box::new(ErrorDetail {
                reason: if reason.is_empty() {
                    None
                } else {
                    Some(reason.to_string())
                },
                ..Default::default()
            }),
        }
    }

    pub fn domain(mut self, domain: &str) -> Self {
        self.detail.domain = Some(domain.to_string());
        self
    }

    pub fn location(mut self, kind: &str, location: &str) -> Self {
        self.detail.location = Some((kind.to_string(), location.to_string()));
        self
    }

    pub fn status(mut self, status: &str) -> Self {
        self.detail.status = Some(status.to_string());
        self
    }

    pub fn metadata(mut self, metadata: Value) -> Self {
        self.detail.metadata = Some(metadata);
        self
    }

    // ----- Calendar-flavoured constructors -----

    pub fn cal_bad_request(message: &str) -> Self {
        ApiError::new(400, "badRequest", message)
    }

    pub fn cal_invalid(message: &str, location: &str) -> Self {
        ApiError::new(400, "invalid", message).location("parameter", location)
    }

    pub fn cal_required(message: &str) -> Self {
        ApiError::new(400, "required", message)
    }

    pub fn cal_not_found() -> Self {
        ApiError::new(404, "notFound", "Not Found")
    }

    // ----- People-flavoured constructors -----

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        ApiError::new(400, "", message).status("INVALID_ARGUMENT")
    }

    pub fn failed_precondition(message: impl Into<String>) -> Self {
        ApiError::new(400, "", message).status("FAILED_PRECONDITION")
    }

    pub fn people_not_found() -> Self {
        ApiError::new(404, "", "Requested entity was not found.").status("NOT_FOUND")
    }

    /// The canonical `google.rpc.Code` name for an HTTP status.
    pub fn canonical_status(code: u16) -> &'static str {
        match code {
            400 => "INVALID_ARGUMENT",
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "NOT_FOUND",
            409 => "ALREADY_EXISTS",
            412 => "FAILED_PRECONDITION",
            429 => "RESOURCE_EXHAUSTED",
            499 => "CANCELLED",
            500 => "INTERNAL",
            501 => "UNIMPLEMENTED",
            503 => "UNAVAILABLE",
            504 => "DEADLINE_EXCEEDED",
            _ => "UNKNOWN",
        }
    }

    /// Default Calendar reason and message for a status (used by injected faults).
    pub fn calendar_default(code: u16) -> (&'static str, &'static str, &'static str) {
        // (domain, reason, message)
        match code {
            400 => ("global", "badRequest", "Bad Request"),
            401 => ("global", "authError", "Invalid Credentials"),
            403 => ("global", "forbidden", "Forbidden"),
            404 => ("global", "notFound", "Not Found"),
            409 => ("global", "conflict", "Conflict"),
            410 => ("global", "deleted", "Resource has been deleted"),
            412 => ("global", "conditionNotMet", "Precondition Failed"),
            429 => ("usageLimits", "rateLimitExceeded", "Rate Limit Exceeded"),
            500 => ("global", "backendError", "Backend Error"),
            502 => ("global", "badGateway", "Bad Gateway"),
            503 => ("global", "backendError", "Service Unavailable"),
            504 => ("global", "backendError", "Gateway Timeout"),
            _ => ("global", "unknownError", "Unknown Error"),
        }
    }

    /// The Calendar envelope.
    pub fn calendar_body(&self) -> Value {
        let mut item = serde_json::Map::new();
        let (default_domain, default_reason, _) = ApiError::calendar_default(self.code);
        item.insert(
            "domain".into(),
            json!(self.detail.domain.as_deref().unwrap_or(default_domain)),
        );
        item.insert(
            "reason".into(),
            json!(self.detail.reason.as_deref().unwrap_or(default_reason)),
        );
        item.insert("message".into(), json!(self.message));
        if let Some((kind, loc)) = &self.detail.location {
            item.insert("locationType".into(), json!(kind));
            item.insert("location".into(), json!(loc));
        }
        json!({"error": {"errors": [Value::Object(item)], "code": self.code, "message": self.message}})
    }

    /// The People (`google.rpc.Status`) envelope.
    pub fn people_body(&self) -> Value {
        let status = self
            .detail
            .status
            .clone()
            .unwrap_or_else(|| ApiError::canonical_status(self.code).to_string());
        let mut error = serde_json::Map::new();
        error.insert("code".into(), json!(self.code));
        error.insert("message".into(), json!(self.message));
        error.insert("status".into(), json!(status));
        if let Some(reason) = &self.detail.reason {
            let mut info = serde_json::Map::new();
            info.insert(
                "@type".into(),
                json!("type.googleapis.com/google.rpc.ErrorInfo"),
            );
            info.insert("reason".into(), json!(reason));
            info.insert(
                "domain".into(),
                json!(self
                    .detail
                    .domain
                    .as_deref()
                    .unwrap_or("people.googleapis.com")),
            );
            if let Some(m) = &self.detail.metadata {
                info.insert("metadata".into(), m.clone());
            }
            error.insert("details".into(), json!([Value::Object(info)]));
        }
        json!({ "error": Value::Object(error) })
    }

    /// The body in the envelope of `api`.
    pub fn body(&self, api: Api) -> Value {
        match api {
            Api::Calendar => self.calendar_body(),
            Api::People => self.people_body(),
        }
    }

    pub fn http_status(&self) -> StatusCode {
        StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// 401 for a missing (`missing = true`), unknown, revoked or expired access token.
/// Calendar: `required` "Login Required." without a token, `authError` "Invalid
/// Credentials" otherwise. People: UNAUTHENTICATED with ErrorInfo `CREDENTIALS_MISSING`,
/// `ACCESS_TOKEN_EXPIRED` or `ACCESS_TOKEN_TYPE_UNSUPPORTED`.
pub fn unauthenticated(api: Api, missing: bool, expired: bool) -> ApiError {
    match api {
        Api::Calendar if missing => {
            ApiError::new(401, "required", "Login Required.").location("header", "Authorization")
        }
        Api::Calendar => ApiError::new(401, "authError", "Invalid Credentials")
            .location("header", "Authorization"),
        Api::People => {
            let (reason, message) = if missing {
                ("CREDENTIALS_MISSING", "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.")
            } else if expired {
                ("ACCESS_TOKEN_EXPIRED", "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.")
            } else {
                ("ACCESS_TOKEN_TYPE_UNSUPPORTED", "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.")
            };
            ApiError::new(401, reason, message)
                .status("UNAUTHENTICATED")
                .domain("googleapis.com")
                .metadata(json!({"service": "people.googleapis.com"}))
        }
    }
}

/// 403 for a token lacking every scope the method accepts.
pub fn insufficient_scope(api: Api, method_id: &str) -> ApiError {
    match api {
        Api::Calendar => ApiError::new(
            403,
            "insufficientPermissions",
            "Request had insufficient authentication scopes.",
        ),
        Api::People => ApiError::new(
            403,
            "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
            "Request had insufficient authentication scopes.",
        )
        .status("PERMISSION_DENIED")
        .domain("googleapis.com")
        .metadata(json!({"service": "people.googleapis.com", "method": method_id})),
    }
}

impl ApiError {
    /// Whether `s` is a canonical `google.rpc.Code` name.
    pub fn is_canonical(s: &str) -> bool {
        matches!(
            s,
            "OK" | "CANCELLED"
                | "UNKNOWN"
                | "INVALID_ARGUMENT"
                | "DEADLINE_EXCEEDED"
                | "NOT_FOUND"
                | "ALREADY_EXISTS"
                | "PERMISSION_DENIED"
                | "RESOURCE_EXHAUSTED"
                | "FAILED_PRECONDITION"
                | "ABORTED"
                | "OUT_OF_RANGE"
                | "UNIMPLEMENTED"
                | "INTERNAL"
                | "UNAVAILABLE"
                | "DATA_LOSS"
                | "UNAUTHENTICATED"
        )
    }
}
