//! Bookkeeping shared by every kind's run: per-item failures (recorded, retried next run, and
//! holding back the cursors so nothing is skipped) and the mass-untag guard decision.

use crate::sync::record::ItemError;
use crate::sync::{MassUntag, RunBody, RunCtx};
use crmsync_engine::guard;

/// What a run has done so far, and what must hold its cursors back.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub body: RunBody,
    /// A Google-side change could not be applied: keep the old sync token.
    pub google_incomplete: bool,
    /// The lowest CRM change that could not be applied: the CRM cursor stays below it.
    pub crm_failed_seq: Option<i64>,
}

impl Tally {
    /// Records a failed item. `crm_seq` is the CRM change it came from (if any);
    /// `google_side` says the change came from the Google listing.
    pub fn item_error(
        &mut self,
        crm_id: Option<String>,
        google_id: Option<String>,
        crm_seq: Option<i64>,
        message: String,
        google_side: bool,
    ) {
        tracing::warn!(crm = ?crm_id, google = ?google_id, %message, "item failed");
        self.body.counts.errors += 1;
        if google_side {
            self.google_incomplete = true;
        }
        if let Some(seq) = crm_seq {
            self.crm_failed_seq = Some(self.crm_failed_seq.map_or(seq, |s| s.min(seq)));
        }
        self.body.errors.push(ItemError {
            crm_id,
            google_id,
            message,
        });
    }

    /// The CRM cursor to store: everything up to `high`, unless an item failed.
    pub fn crm_cursor(&self, old: i64, high: i64) -> i64 {
        match self.crm_failed_seq {
            Some(seq) => (seq - 1).max(old),
            None => high.max(old),
        }
    }
}

/// What to do with the link ends a run collected.
pub(crate) enum GuardDecision {
    /// Carry them out.
    Proceed,
    /// Undo them (the admin cancelled a mass untag).
    Restore,
    /// Stop: the guard tripped; the message says why.
    Block(String),
}

/// Decides on `ends` link ends out of `linked` active links.
pub(crate) fn guard_decision(ctx: &RunCtx, linked: i64, ends: usize) -> GuardDecision {
    let verdict = guard::check(
        u64::try_from(linked).unwrap_or(0),
        ends as u64,
        &ctx.config.guard,
    );
    match (verdict, ctx.options.mass_untag) {
        (Err(trip), MassUntag::Guard) => {
            tracing::warn!(%trip, "mass-untag guard tripped");
            GuardDecision::Block(trip.to_string())
        }
        (_, MassUntag::Restore) => GuardDecision::Restore,
        _ => GuardDecision::Proceed,
    }
}
