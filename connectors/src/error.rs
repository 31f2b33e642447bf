//! Error normalization. Every failure of a Google call (HTTP status and error envelope of
//! Calendar or People, OAuth token-endpoint errors, transport failures, lost responses) becomes
//! one [`GoogleError`] with an [`ErrorKind`] the sync executor can act on, Google's own message,
//! and a `Display` that says what happened and what to do.
//!
//! Google's two envelopes (facts 4.5) are both read: Calendar's legacy
//! `{"error":{"errors":[{"reason"}],"code","message"}}` and People's `google.rpc.Status`
//! `{"error":{"code","message","status","details":[{"@type":"…ErrorInfo","reason"}]}}`. The
//! reason is `errors[0].reason`, else the ErrorInfo reason, else the canonical `status`.

use serde_json::Value;
use std::fmt;

/// What kind of failure this was, i.e. what the caller should do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A temporary server or network failure (5xx, transport). Already retried; try next run.
    Transient,
    /// Google throttled the call (429, 403 `rateLimitExceeded`/`userRateLimitExceeded`).
    RateLimited,
    /// A usage limit that does not recover within minutes (403 `quotaExceeded`, daily limits).
    QuotaExceeded,
    /// The credentials were refused: HTTP 401, `invalid_grant`, `unauthorized_client`, a key
    /// that cannot sign, or no token at all. The user's connection goes to `auth_error`.
    Auth,
    /// HTTP 403 other than rate limits: no access to this resource or API.
    Forbidden,
    /// HTTP 404.
    NotFound,
    /// HTTP 409: the identifier (event id, group name) already exists.
    Duplicate,
    /// HTTP 410 other than an expired sync token: the resource was already deleted.
    Gone,
    /// The sync token is no longer valid (Calendar 410 `fullSyncRequired`, People 400
    /// `EXPIRED_SYNC_TOKEN`): clear it and run a full sync.
    SyncTokenExpired,
    /// The record changed since it was read (HTTP 412, People 400 `FAILED_PRECONDITION` on a
    /// stale etag): re-read, merge, write again.
    PreconditionFailed,
    /// Any other 4xx: the request itself is wrong.
    BadRequest,
    /// A non-idempotent write was sent but its outcome is unknown (transport error, 5xx or an
    /// unreadable response after sending). Resolve by reading Google before writing again.
    Indeterminate,
    /// A success response that could not be decoded.
    Decode,
}

impl ErrorKind {
    /// A short stable name (`rate_limited`, `sync_token_expired`, …) for logs and journals.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Transient => "transient",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::QuotaExceeded => "quota_exceeded",
            ErrorKind::Auth => "auth",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Duplicate => "duplicate",
            ErrorKind::Gone => "gone",
            ErrorKind::SyncTokenExpired => "sync_token_expired",
            ErrorKind::PreconditionFailed => "precondition_failed",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::Indeterminate => "indeterminate",
            ErrorKind::Decode => "decode",
        }
    }

    /// Whether the same request may succeed later without any change (the next run retries).
    pub fn is_temporary(self) -> bool {
        matches!(
            self,
            ErrorKind::Transient | ErrorKind::RateLimited | ErrorKind::QuotaExceeded
        )
    }

    fn headline(self) -> &'static str {
        match self {
            ErrorKind::Transient => "Google had a temporary failure",
            ErrorKind::RateLimited => "Google rate-limited the call",
            ErrorKind::QuotaExceeded => "a Google usage limit was exceeded",
            ErrorKind::Auth => "Google refused the credentials",
            ErrorKind::Forbidden => "Google denied access",
            ErrorKind::NotFound => "not found in Google",
            ErrorKind::Duplicate => "the identifier already exists in Google",
            ErrorKind::Gone => "the resource was already deleted in Google",
            ErrorKind::SyncTokenExpired => "Google's sync token expired",
            ErrorKind::PreconditionFailed => {
                "the record changed in Google since it was read (stale etag)"
            }
            ErrorKind::BadRequest => "Google rejected the request as invalid",
            ErrorKind::Indeterminate => {
                "the write may or may not have been applied in Google: its response was lost"
            }
            ErrorKind::Decode => "Google's response could not be read",
        }
    }

    fn default_advice(self) -> &'static str {
        match self {
            ErrorKind::Transient => "the next sync run will try again",
            ErrorKind::RateLimited => {
                "lower the client-side rate (calendar/people rate per minute) or raise the per-user quota in the Google Cloud console; the next run continues"
            }
            ErrorKind::QuotaExceeded => {
                "wait for the quota to reset (often the next day) or request a higher quota in the Google Cloud console"
            }
            ErrorKind::Auth => {
                "fix the Google connection (reconnect the user or correct the service-account delegation), then start the sync again"
            }
            ErrorKind::Forbidden => {
                "check that the user may access this calendar or contact and that the API is enabled for the Cloud project"
            }
            ErrorKind::NotFound => "re-read the record; it was probably deleted in Google",
            ErrorKind::Duplicate => "update the existing record instead of creating it",
            ErrorKind::Gone => "no action is needed",
            ErrorKind::SyncTokenExpired => {
                "clear the stored sync token and run a full sync (it reconciles against the stored links)"
            }
            ErrorKind::PreconditionFailed => {
                "re-read the record, merge, and write again with its fresh etag"
            }
            ErrorKind::BadRequest => "check the values being sent; this is a bug if it repeats",
            ErrorKind::Indeterminate => {
                "read Google before writing again (a contact is adopted through its clientData on the next run)"
            }
            ErrorKind::Decode => {
                "the server returned an unexpected shape; report it with the message above"
            }
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One failed Google call, normalized.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{}", self.render())]
pub struct GoogleError {
    /// What kind of failure (drives the executor's reaction).
    pub kind: ErrorKind,
    /// The HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// Google's reason (`rateLimitExceeded`, `EXPIRED_SYNC_TOKEN`, `invalid_grant`, …).
    pub reason: Option<String>,
    /// Google's own message (or a description of the transport failure).
    pub message: String,
    /// The discovery method id (`calendar.events.insert`, `people.people.connections.list`,
    /// `oauth2.token`, …).
    pub method: &'static str,
    /// How many HTTP attempts were made (0 when nothing was sent).
    pub attempts: u32,
    /// Whose credentials, e.g. "the service account for alice@example.com".
    pub(crate) subject: Option<Box<str>>,
    /// What to do, when more specific than the kind's default advice.
    pub(crate) advice: Option<Box<str>>,
}

impl GoogleError {
    /// An error produced without a server response (validation, configuration).
    pub fn local(kind: ErrorKind, method: &'static str, message: impl Into<String>) -> Self {
        GoogleError {
            kind,
            status: None,
            reason: None,
            message: message.into(),
            method,
            attempts: 0,
            subject: None,
            advice: None,
        }
    }

    /// Sets the advice shown after the message.
    pub fn with_advice(mut self, advice: impl Into<String>) -> Self {
        self.advice = Some(advice.into().into_boxed_str());
        self
    }

    /// Sets whose credentials were involved.
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into().into_boxed_str());
        self
    }

    /// What to do about it (specific advice, else the kind's default).
    pub fn advice(&self) -> &str {
        self.advice
            .as_deref()
            .unwrap_or_else(|| self.kind.default_advice())
    }

    /// Whose credentials were involved, e.g. "the service account for alice@example.com".
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// Builds the error for an HTTP error response of a Google API.
    pub fn from_response(method: &'static str, status: Option<u16>, body: Option<&Value>) -> Self {
        let parsed = body.map(ErrorBody::parse).unwrap_or_default();
        let status = status.or(parsed.code);
        let kind = classify(status, &parsed);
        let message = parsed.message.clone().unwrap_or_else(|| match status {
            Some(s) => format!("HTTP {s} without a Google error body"),
            None => "error without a status or body".to_string(),
        });
        GoogleError {
            kind,
            status,
            reason: parsed.reason,
            message,
            method,
            attempts: 0,
            subject: None,
            advice: None,
        }
    }

    /// Whether this is an HTTP 401 from an API (the token may be stale: refresh once).
    pub(crate) fn is_unauthorized(&self) -> bool {
        self.status == Some(401)
    }

    fn render(&self) -> String {
        let mut out = String::new();
        match (&self.kind, &self.subject) {
            (ErrorKind::Auth, Some(subject)) => {
                out.push_str("Google refused ");
                out.push_str(subject);
            }
            (kind, _) => out.push_str(kind.headline()),
        }
        out.push_str(" (");
        out.push_str(self.method);
        if let Some(s) = self.status {
            out.push_str(&format!(", HTTP {s}"));
        }
        if self.attempts > 1 {
            out.push_str(&format!(", after {} attempts", self.attempts));
        }
        out.push_str("): ");
        if let Some(r) = &self.reason {
            if !self.message.starts_with(r.as_str()) {
                out.push_str(r);
                out.push_str(": ");
            }
        }
        out.push_str(self.message.trim_end());
        out.push_str(" — ");
        out.push_str(self.advice());
        out
    }
}

/// The fields of a Google error envelope that matter, from either shape.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ErrorBody {
    pub code: Option<u16>,
    pub message: Option<String>,
    /// `errors[0].reason` ?? ErrorInfo `reason` ?? `status`.
    pub reason: Option<String>,
    /// The canonical `google.rpc.Code` name, when present (`FAILED_PRECONDITION`, …).
    pub status: Option<String>,
    /// Every reason found (legacy errors[], ErrorInfo details), for matching.
    pub all_reasons: Vec<String>,
}

impl ErrorBody {
    /// Reads `{"error": {...}}` (either API shape) or an OAuth `{"error": "code",
    /// "error_description": "..."}` body.
    pub fn parse(v: &Value) -> Self {
        let mut out = ErrorBody::default();
        match v.get("error") {
            Some(Value::Object(e)) => {
                out.code = e
                    .get("code")
                    .and_then(Value::as_u64)
                    .and_then(|c| u16::try_from(c).ok());
                out.message = e.get("message").and_then(Value::as_str).map(str::to_string);
                out.status = e.get("status").and_then(Value::as_str).map(str::to_string);
                if let Some(errors) = e.get("errors").and_then(Value::as_array) {
                    for item in errors {
                        if let Some(r) = item.get("reason").and_then(Value::as_str) {
                            out.all_reasons.push(r.to_string());
                        }
                        if out.message.is_none() {
                            out.message = item
                                .get("message")
                                .and_then(Value::as_str)
                                .map(str::to_string);
                        }
                    }
                }
                if let Some(details) = e.get("details").and_then(Value::as_array) {
                    for d in details {
                        let is_info = d
                            .get("@type")
                            .and_then(Value::as_str)
                            .is_some_and(|t| t.ends_with("google.rpc.ErrorInfo"));
                        if let (true, Some(r)) = (is_info, d.get("reason").and_then(Value::as_str))
                        {
                            out.all_reasons.push(r.to_string());
                        }
                    }
                }
                out.reason = out
                    .all_reasons
                    .first()
                    .cloned()
                    .or_else(|| out.status.clone());
            }
            Some(Value::String(code)) => {
                out.reason = Some(code.clone());
                out.all_reasons.push(code.clone());
                out.message = Some(
                    v.get("error_description")
                        .and_then(Value::as_str)
                        .map(|d| format!("{code}: {d}"))
                        .unwrap_or_else(|| code.clone()),
                );
            }
            _ => {}
        }
        out
    }

    fn has_reason(&self, wanted: &[&str]) -> bool {
        self.all_reasons
            .iter()
            .any(|r| wanted.iter().any(|w| r.eq_ignore_ascii_case(w)))
    }
}

const RATE_LIMIT_REASONS: &[&str] = &[
    "rateLimitExceeded",
    "userRateLimitExceeded",
    "RATE_LIMIT_EXCEEDED",
];
const QUOTA_REASONS: &[&str] = &[
    "quotaExceeded",
    "dailyLimitExceeded",
    "dailyLimitExceededUnreg",
];

/// Maps an HTTP status and error body to an [`ErrorKind`].
pub(crate) fn classify(status: Option<u16>, body: &ErrorBody) -> ErrorKind {
    let Some(status) = status else {
        return ErrorKind::Transient;
    };
    let msg = body.message.as_deref().unwrap_or("");
    match status {
        400 => {
            if body.has_reason(&["EXPIRED_SYNC_TOKEN"])
                || msg.to_ascii_lowercase().contains("sync token is expired")
            {
                ErrorKind::SyncTokenExpired
            } else if body.status.as_deref() == Some("FAILED_PRECONDITION")
                || body.has_reason(&["failedPrecondition", "FAILED_PRECONDITION"])
            {
                ErrorKind::PreconditionFailed
            } else {
                ErrorKind::BadRequest
            }
        }
        401 => ErrorKind::Auth,
        403 => {
            if body.has_reason(RATE_LIMIT_REASONS) {
                ErrorKind::RateLimited
            } else if body.has_reason(QUOTA_REASONS) {
                ErrorKind::QuotaExceeded
            } else {
                ErrorKind::Forbidden
            }
        }
        404 => ErrorKind::NotFound,
        409 => ErrorKind::Duplicate,
        410 => {
            if body.has_reason(&["fullSyncRequired"]) {
                ErrorKind::SyncTokenExpired
            } else {
                ErrorKind::Gone
            }
        }
        412 => ErrorKind::PreconditionFailed,
        429 => ErrorKind::RateLimited,
        500..=599 => ErrorKind::Transient,
        _ => ErrorKind::BadRequest,
    }
}

/// HTTP status for a `google.rpc.Code` number (per-item statuses in People batch responses).
pub(crate) fn rpc_code_to_http(code: i32) -> u16 {
    match code {
        0 => 200,
        1 => 499,
        3 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        9 => 400,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500,
    }
}

/// The canonical name of a `google.rpc.Code` number.
pub(crate) fn rpc_code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        14 => "UNAVAILABLE",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kind_of(status: u16, body: Value) -> GoogleError {
        GoogleError::from_response("test.method", Some(status), Some(&body))
    }

    #[test]
    fn calendar_sync_token_410() {
        let e = kind_of(
            410,
            json!({"error":{"errors":[{"domain":"calendar","reason":"fullSyncRequired",
                "message":"Sync token is no longer valid, a full sync is required.",
                "locationType":"parameter","location":"syncToken"}],
                "code":410,"message":"Sync token is no longer valid, a full sync is required."}}),
        );
        assert_eq!(e.kind, ErrorKind::SyncTokenExpired);
        assert_eq!(e.reason.as_deref(), Some("fullSyncRequired"));
        assert_eq!(
            e.message,
            "Sync token is no longer valid, a full sync is required."
        );
    }

    #[test]
    fn calendar_deleted_410_is_gone() {
        let e = kind_of(
            410,
            json!({"error":{"errors":[{"domain":"global","reason":"deleted","message":"Resource has been deleted"}],
                "code":410,"message":"Resource has been deleted"}}),
        );
        assert_eq!(e.kind, ErrorKind::Gone);
    }

    #[test]
    fn people_expired_sync_token() {
        let e = kind_of(
            400,
            json!({"error":{"code":400,
                "message":"Sync token is expired. Clear local cache and retry call without the sync token.",
                "status":"FAILED_PRECONDITION",
                "details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"EXPIRED_SYNC_TOKEN","domain":"people.googleapis.com"}]}}),
        );
        assert_eq!(e.kind, ErrorKind::SyncTokenExpired);
        assert_eq!(e.reason.as_deref(), Some("EXPIRED_SYNC_TOKEN"));
    }

    #[test]
    fn people_stale_etag_is_precondition_failed() {
        let e = kind_of(
            400,
            json!({"error":{"code":400,"message":"Request person.etag is different than the current person.etag. Clear local cache and get the latest person.","status":"FAILED_PRECONDITION"}}),
        );
        assert_eq!(e.kind, ErrorKind::PreconditionFailed);
        assert_eq!(e.reason.as_deref(), Some("FAILED_PRECONDITION"));
    }

    #[test]
    fn calendar_412() {
        let e = kind_of(
            412,
            json!({"error":{"errors":[{"domain":"global","reason":"conditionNotMet","message":"Precondition Failed","locationType":"header","location":"If-Match"}],"code":412,"message":"Precondition Failed"}}),
        );
        assert_eq!(e.kind, ErrorKind::PreconditionFailed);
    }

    #[test]
    fn rate_limits_and_quotas() {
        let cal403 = kind_of(
            403,
            json!({"error":{"errors":[{"domain":"usageLimits","reason":"userRateLimitExceeded","message":"User Rate Limit Exceeded"}],"code":403,"message":"User Rate Limit Exceeded"}}),
        );
        assert_eq!(cal403.kind, ErrorKind::RateLimited);
        let cal429 = kind_of(
            429,
            json!({"error":{"errors":[{"domain":"usageLimits","reason":"rateLimitExceeded","message":"Rate Limit Exceeded"}],"code":429,"message":"Rate Limit Exceeded"}}),
        );
        assert_eq!(cal429.kind, ErrorKind::RateLimited);
        let people429 = kind_of(
            429,
            json!({"error":{"code":429,"message":"Quota exceeded for quota metric 'Critical write requests'","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"RATE_LIMIT_EXCEEDED","domain":"googleapis.com","metadata":{"quota_limit":"CriticalWritesPerMinutePerProjectPerUser"}}]}}),
        );
        assert_eq!(people429.kind, ErrorKind::RateLimited);
        assert_eq!(people429.reason.as_deref(), Some("RATE_LIMIT_EXCEEDED"));
        let quota = kind_of(
            403,
            json!({"error":{"errors":[{"domain":"usageLimits","reason":"quotaExceeded","message":"Calendar usage limits exceeded."}],"code":403,"message":"Calendar usage limits exceeded."}}),
        );
        assert_eq!(quota.kind, ErrorKind::QuotaExceeded);
        let forbidden = kind_of(
            403,
            json!({"error":{"errors":[{"domain":"calendar","reason":"forbiddenForNonOrganizer","message":"Shared properties can only be changed by the organizer of the event."}],"code":403,"message":"Shared properties can only be changed by the organizer of the event."}}),
        );
        assert_eq!(forbidden.kind, ErrorKind::Forbidden);
    }

    #[test]
    fn auth_duplicate_notfound_server() {
        let e401 = kind_of(
            401,
            json!({"error":{"errors":[{"domain":"global","reason":"authError","message":"Invalid Credentials","locationType":"header","location":"Authorization"}],"code":401,"message":"Invalid Credentials","status":"UNAUTHENTICATED"}}),
        );
        assert_eq!(e401.kind, ErrorKind::Auth);
        assert!(e401.is_unauthorized());
        let dup = kind_of(
            409,
            json!({"error":{"errors":[{"domain":"global","reason":"duplicate","message":"The requested identifier already exists."}],"code":409,"message":"The requested identifier already exists."}}),
        );
        assert_eq!(dup.kind, ErrorKind::Duplicate);
        let nf = kind_of(
            404,
            json!({"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND"}}),
        );
        assert_eq!(nf.kind, ErrorKind::NotFound);
        let be = kind_of(
            500,
            json!({"error":{"errors":[{"domain":"global","reason":"backendError","message":"Backend Error"}],"code":500,"message":"Backend Error"}}),
        );
        assert_eq!(be.kind, ErrorKind::Transient);
        let bad = kind_of(
            400,
            json!({"error":{"errors":[{"domain":"global","reason":"timeRangeEmpty","message":"The specified time range is empty."}],"code":400,"message":"The specified time range is empty."}}),
        );
        assert_eq!(bad.kind, ErrorKind::BadRequest);
    }

    #[test]
    fn status_from_body_when_transport_status_missing() {
        let e = GoogleError::from_response(
            "m",
            None,
            Some(
                &json!({"error":{"code":503,"message":"The service is currently unavailable.","status":"UNAVAILABLE"}}),
            ),
        );
        assert_eq!(e.status, Some(503));
        assert_eq!(e.kind, ErrorKind::Transient);
        let no_body = GoogleError::from_response("m", Some(502), None);
        assert_eq!(no_body.kind, ErrorKind::Transient);
        assert!(no_body.message.contains("502"));
    }

    #[test]
    fn oauth_error_body() {
        let b = ErrorBody::parse(
            &json!({"error":"unauthorized_client","error_description":"Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested."}),
        );
        assert_eq!(b.reason.as_deref(), Some("unauthorized_client"));
        assert!(b
            .message
            .unwrap()
            .starts_with("unauthorized_client: Client is unauthorized"));
    }

    #[test]
    fn display_says_what_and_what_to_do() {
        let mut e = kind_of(
            410,
            json!({"error":{"errors":[{"reason":"fullSyncRequired","message":"Sync token is no longer valid, a full sync is required."}],"code":410,"message":"Sync token is no longer valid, a full sync is required."}}),
        );
        e.method = "calendar.events.list";
        let s = e.to_string();
        assert!(s.contains("sync token expired"), "{s}");
        assert!(s.contains("calendar.events.list, HTTP 410"), "{s}");
        assert!(
            s.contains("fullSyncRequired: Sync token is no longer valid"),
            "{s}"
        );
        assert!(s.contains("run a full sync"), "{s}");

        let auth = GoogleError::local(ErrorKind::Auth, "oauth2.token", "unauthorized_client: Client is unauthorized")
            .with_subject("the service account for alice@example.com")
            .with_advice("authorize client id 123 for scopes https://www.googleapis.com/auth/contacts in the Admin console");
        let s = auth.to_string();
        assert!(s.starts_with("Google refused the service account for alice@example.com (oauth2.token): unauthorized_client: Client is unauthorized — authorize client id 123"), "{s}");
    }

    #[test]
    fn rpc_codes() {
        assert_eq!(rpc_code_to_http(9), 400);
        assert_eq!(rpc_code_to_http(5), 404);
        assert_eq!(rpc_code_name(9), "FAILED_PRECONDITION");
    }
}
