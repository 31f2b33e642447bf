//! Bookkeeping shared by every kind's run: per-item failures (recorded, retried next run, and
//! holding back the cursors so nothing is skipped, until a record that keeps failing is parked:
//! see `crmsync_schema::parked`) and the mass-untag guard decision.

use crate::sync::record::ItemError;
use crate::sync::{MassUntag, RunBody, RunCtx};
use crmsync_engine::guard;
use crmsync_schema::parked::{FailingItem, ItemSide};
use std::collections::{BTreeMap, HashMap};

/// A failing record: where its change came from, and its id on that side.
pub(crate) type ItemKey = (ItemSide, String);

/// What a run has done so far, and what must hold its cursors back.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub body: RunBody,
    /// A Google-side change could not be applied: keep the old sync token.
    pub google_incomplete: bool,
    /// The lowest CRM change that could not be applied: the CRM cursor stays below it.
    pub crm_failed_seq: Option<i64>,
    /// Set while the Google listing is processed: any failure then came from the listing.
    pub in_google_pass: bool,
    /// Records that failed in earlier runs: attempts so far, and whether parked.
    pub known_failures: HashMap<ItemKey, (i32, bool)>,
    /// Attempts after which a failing record is parked (0: never).
    pub park_after: i32,
    /// Records that failed in this run, with the last message.
    pub failed: BTreeMap<ItemKey, String>,
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
        let google_side = google_side || self.in_google_pass;
        let key: Option<ItemKey> = google_id
            .clone()
            .filter(|_| google_side)
            .map(|g| (ItemSide::Google, g))
            .or_else(|| crm_id.clone().map(|c| (ItemSide::Crm, c)))
            .or_else(|| google_id.clone().map(|g| (ItemSide::Google, g)));
        let (before, was_parked) = key
            .as_ref()
            .and_then(|k| self.known_failures.get(k).copied())
            .unwrap_or((0, false));
        let parked =
            key.is_some() && (was_parked || (self.park_after > 0 && before + 1 >= self.park_after));
        tracing::warn!(crm = ?crm_id, google = ?google_id, %message, parked, "item failed");
        self.body.counts.errors += 1;
        if !parked {
            if google_side {
                self.google_incomplete = true;
            }
            if let Some(seq) = crm_seq {
                self.crm_failed_seq = Some(self.crm_failed_seq.map_or(seq, |s| s.min(seq)));
            }
        }
        if let Some(k) = key {
            self.failed.insert(k, message.clone());
        }
        let message = if parked {
            format!(
                "{message} (failed in {} runs: parked; every run retries it, the others are not held back)",
                before + 1
            )
        } else {
            message
        };
        self.body.errors.push(ItemError {
            crm_id,
            google_id,
            message,
        });
    }

    /// Takes in the records that failed in earlier runs.
    pub fn load_failures(&mut self, items: Vec<FailingItem>, park_after: i32) {
        self.park_after = park_after;
        self.known_failures = items
            .into_iter()
            .map(|f| ((f.side, f.item_id), (f.attempts, f.parked_at.is_some())))
            .collect();
    }

    /// Parked records of one side, to retry by id.
    pub fn parked(&self, side: ItemSide) -> Vec<String> {
        self.known_failures
            .iter()
            .filter(|((s, _), (_, parked))| *s == side && *parked)
            .map(|((_, id), _)| id.clone())
            .collect()
    }

    /// This run's outcome for failing records: those that failed, and the earlier ones that
    /// did not fail again (they were listed, fed or retried again, and went through).
    pub fn failure_outcome(&self) -> (Vec<(ItemSide, String, String)>, Vec<ItemKey>) {
        let failed = self
            .failed
            .iter()
            .map(|((s, id), m)| (*s, id.clone(), m.clone()))
            .collect();
        let cleared = self
            .known_failures
            .keys()
            .filter(|k| !self.failed.contains_key(*k))
            .cloned()
            .collect();
        (failed, cleared)
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
