//! Activities sync (in progress).
use crate::sync::error::SyncError;
use crate::sync::{RunBody, RunCtx};

pub(crate) async fn run(_ctx: &RunCtx) -> Result<RunBody, SyncError> {
    Err(SyncError::NotConfigured(
        "activities sync is not available yet".into(),
    ))
}
