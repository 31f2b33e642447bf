//! The web admin page: one static page (embedded in the binary, with its script at `/app.js` and
//! its style sheet at `/app.css`) that shows every user's Google connection and sync status per
//! kind (following the API's pages, one request per page of users), the recent runs and their
//! changes, a "Start synchronization" button and a "Reset connection" button. It talks to the REST
//! API with the admin token the admin pastes (kept in the browser's session storage, so it is
//! gone with the session); the page itself holds no data and needs no token to load.
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
