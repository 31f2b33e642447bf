//! The web admin page (SPEC 6.5): one static page (embedded in the binary, with its script at
//! `/app.js` and its style sheet at `/app.css`) where a CRM admin does every job without curl:
//! connect Google (upload the service-account key and check its scopes for a chosen user, or set
//! the OAuth client and send a user the Connect link); per user and kind set auto-sync, an
//! interval or cron expression (checked as typed, with the next run times), the contact sync tag
//! (or a new one), `synchronize_from`, trigger words, the Google alias and time zone; press "Start
//! synchronization"; see the last and next sync time, the last error, the failing records and a
//! user's health; carry out or undo a run the mass-untag guard stopped; resume a user in
//! `auth_error`; pause all sync; read runs, their changes and a record's history; manage webhooks
//! and their deliveries. The user list is read one page at a time from the bulk status route (one
//! request per screen, not one per user). It talks to the REST API with the admin token the
//! admin pastes (kept in the browser's session storage, so it is gone with the session); the page
//! itself holds no data and needs no token to load.
//!
//! The page runs no inline script and loads nothing from elsewhere: its Content-Security-Policy
//! allows scripts, styles and requests from its own origin only, and no site may frame it.

use axum::http::header;
use axum::response::{Html, IntoResponse};

const INDEX: &str = include_str!("web/index.html");
const SCRIPT: &str = include_str!("web/app.js");
const STYLE: &str = include_str!("web/app.css");

/// The Content-Security-Policy of the page.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The headers of the page and its files.
fn headers() -> [(header::HeaderName, &'static str); 5] {
    [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CONTENT_SECURITY_POLICY, PAGE_CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ]
}

/// `GET /`: the admin page.
pub async fn index() -> impl IntoResponse {
    (headers(), Html(INDEX))
}

/// `GET /app.js`: the page's script.
pub async fn script() -> impl IntoResponse {
    (
        headers(),
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

/// `GET /app.css`: the page's style sheet.
pub async fn style() -> impl IntoResponse {
    (
        headers(),
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLE,
    )
}
