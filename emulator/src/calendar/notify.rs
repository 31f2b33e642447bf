//! Push notifications for `events.watch` channels: after every change to a calendar, each
//! live channel gets an HTTP POST with Google's `X-Goog-*` headers and no body (`sync` right
//! after the watch, `exists` on changes). Delivery is best-effort and asynchronous, like
//! Google's; only `http://` loopback addresses can be reached from the emulator.

use axum::body::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::OnceLock;

use super::store::Channel;
use crate::state::{Emulator, UserState};

fn client() -> &'static Client<HttpConnector, Empty<Bytes>> {
    static C: OnceLock<Client<HttpConnector, Empty<Bytes>>> = OnceLock::new();
    C.get_or_init(|| Client::builder(TokioExecutor::new()).build_http())
}

/// Notifies every live channel of `user`'s calendar that something changed.
pub fn changed(emu: &Emulator, user: &UserState) {
    let now_ms = emu.now().timestamp_millis();
    let channels: Vec<Channel> = {
        let mut s = user.calendar();
        if s.channels.is_empty() {
            return;
        }
        s.channels.retain(|_, c| c.expiration_ms > now_ms);
        s.channels
            .values_mut()
            .map(|c| {
                c.message_number += 1;
                c.clone()
            })
            .collect()
    };
    for c in channels {
        send(c, "exists");
    }
}

/// Sends one notification (in the background).
pub fn send(ch: Channel, state: &'static str) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if !ch.address.starts_with("http://") {
        tracing::debug!(address = %ch.address, "notification not delivered: only http loopback is reachable");
        return;
    }
    handle.spawn(async move {
        let expiration = chrono::DateTime::from_timestamp_millis(ch.expiration_ms)
            .map(|t| t.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
            .unwrap_or_default();
        let mut b = hyper::Request::post(ch.address.as_str())
            .header("X-Goog-Channel-ID", ch.id.as_str())
            .header("X-Goog-Channel-Expiration", expiration)
            .header("X-Goog-Message-Number", ch.message_number.to_string())
            .header("X-Goog-Resource-ID", ch.resource_id.as_str())
            .header("X-Goog-Resource-URI", ch.resource_uri.as_str())
            .header("X-Goog-Resource-State", state)
            .header("Content-Length", "0");
        if let Some(t) = &ch.token {
            b = b.header("X-Goog-Channel-Token", t.as_str());
        }
        let Ok(req) = b.body(Empty::new()) else {
            return;
        };
        match client().request(req).await {
            Ok(resp) => {
                tracing::debug!(status = %resp.status(), channel = %ch.id, "notification delivered")
            }
            Err(e) => tracing::debug!(error = %e, channel = %ch.id, "notification failed"),
        }
    });
}
