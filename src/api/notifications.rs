//! `POST /google/notifications`: Google Calendar's push notifications for the watch channels
//! `push.rs` makes (outside `/api/v1`, no bearer token: each channel's own random token
//! authenticates it). An unknown channel or a wrong token answers 404 and starts nothing; a
//! replayed message number and the first `sync` message answer 200 and start nothing; a change
//! requests a debounced push run of the channel's user.

use super::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use crmsync_schema::channels::{self, Notification};

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// `POST /google/notifications`.
pub async fn google_notification(State(st): State<AppState>, headers: HeaderMap) -> StatusCode {
    let Some(channel) = header(&headers, "x-goog-channel-id").map(str::to_string) else {
        return StatusCode::NOT_FOUND;
    };
    let token = header(&headers, "x-goog-channel-token")
        .unwrap_or_default()
        .to_string();
    let state = header(&headers, "x-goog-resource-state")
        .unwrap_or("exists")
        .to_string();
    let number = header(&headers, "x-goog-message-number").and_then(|n| n.parse::<i64>().ok());
    let now = st.now();
    let taken = st
        .write_async(move |c| {
            channels::accept_notification(c, &channel, &token, &state, number, now)
        })
        .await;
    match taken {
        Ok(Notification::Unknown) => StatusCode::NOT_FOUND,
        Ok(Notification::Changed { user, requested }) => {
            tracing::info!(%user, requested, "calendar notification");
            StatusCode::OK
        }
        Ok(Notification::Started | Notification::Replayed) => StatusCode::OK,
        Err(e) => {
            tracing::warn!(error = %e.message, "could not take a calendar notification");
            e.status
        }
    }
}
