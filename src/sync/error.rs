//! Why a sync run could not complete, in words an admin can act on.

use crate::sync::crash::CrashPoint;
use crmsync_connectors::GoogleError;
use crmsync_schema::StoreError;

/// A run-level failure (item-level failures are recorded in the run and do not stop it).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The CRM database failed.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// Google refused our credentials: the user goes to `auth_error` until the cause is fixed.
    #[error("Google refused access for {user}: {message}")]
    Auth { user: String, message: String },
    /// Google failed in a way that stops the whole run (outage, quota after retries, ...).
    #[error("Google: {0}")]
    Google(GoogleError),
    /// The run cannot start: settings or connection missing.
    #[error("{0}")]
    NotConfigured(String),
    /// A rule the executor relies on does not hold (a bug): the run stops instead of guessing.
    #[error("internal error: {0}; the run stopped without guessing, please report it")]
    Invariant(&'static str),
    /// A test crash point fired (the run stops as if the process died there).
    #[error("simulated crash at {0:?}")]
    Crashed(CrashPoint),
}

impl SyncError {
    /// Classifies a Google error: credential problems become [`SyncError::Auth`].
    pub fn from_google(user: &str, e: GoogleError) -> SyncError {
        if e.kind == crmsync_connectors::ErrorKind::Auth {
            SyncError::Auth {
                user: user.to_string(),
                message: e.to_string(),
            }
        } else {
            SyncError::Google(e)
        }
    }
}

impl From<crate::sync::crash::Crash> for SyncError {
    fn from(c: crate::sync::crash::Crash) -> Self {
        SyncError::Crashed(c.0)
    }
}
