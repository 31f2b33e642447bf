//! Building the sync engine from the command line and environment: where Google is (Google
//! itself, or an emulator through `--google-endpoint`), how hard to retry, and the engine policy.
//! Shared by `serve`, `worker`, `sync` and `demo`.

use crate::clock::SharedClock;
use crate::sync::google::{AccountOptions, AccountProvider};
use crate::sync::{SyncConfig, SyncEngine};
use crmsync_connectors::{GoogleEndpoints, RetryPolicy, SendUpdates};
use crmsync_schema::Store;

/// How to reach Google.
#[derive(Clone, Debug, Default)]
pub struct GoogleSettings {
    /// Base URL of an emulator (every API and the token endpoint); `None` = Google.
    pub endpoint: Option<String>,
    /// Notifications for sync-originated Calendar writes (default: none).
    pub send_updates: Option<SendUpdates>,
}

impl GoogleSettings {
    pub fn endpoints(&self) -> GoogleEndpoints {
        match &self.endpoint {
            Some(url) => GoogleEndpoints::emulator(url.trim_end_matches('/')),
            None => GoogleEndpoints::google(),
        }
    }
}

/// A sync engine over `store` talking to the configured Google.
pub fn engine(
    store: &Store,
    clock: SharedClock,
    google: &GoogleSettings,
    config: SyncConfig,
) -> SyncEngine {
    engine_at(
        store,
        clock,
        google.endpoints(),
        google.send_updates.unwrap_or(SendUpdates::None),
        config,
    )
}

/// A sync engine over `store` talking to Google at `endpoints`.
pub fn engine_at(
    store: &Store,
    clock: SharedClock,
    endpoints: GoogleEndpoints,
    send_updates: SendUpdates,
    config: SyncConfig,
) -> SyncEngine {
    let accounts = AccountProvider::new(
        store.clone(),
        AccountOptions {
            endpoints,
            retry: RetryPolicy::default(),
            // A little under Google's 600/min so boundary effects never cause 429 storms.
            calendar_rate_per_minute: Some(590),
            people_rate_per_minute: None,
            send_updates,
        },
    );
    SyncEngine::new(store.clone(), accounts, config, clock)
}
