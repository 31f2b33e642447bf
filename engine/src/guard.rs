//! The mass-untag guard (SPEC section 3 and rule N5): a run that would end more than a configured
//! share of the linked records stops before ending any, and reports it for an admin to confirm or
//! cancel. Protects against an emptied group, a wrong account or a bulk mistake being propagated
//! as thousands of untags.

use crate::planner::{ItemPlan, LinkAction, LinkState, Rule, ScopeOp, SidePlan};
use serde::{Deserialize, Serialize};

/// When the guard trips.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GuardPolicy {
    /// Trip when more than this share of the linked records would be untagged (0.25 = 25%).
    pub max_share: f64,
    /// ... and at least this many.
    pub min_count: u64,
}

impl Default for GuardPolicy {
    fn default() -> Self {
        GuardPolicy {
            max_share: 0.25,
            min_count: 10,
        }
    }
}

/// A tripped guard: what the run would have done.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GuardTrip {
    pub would_untag: u64,
    pub linked: u64,
    pub max_share: f64,
}

impl std::fmt::Display for GuardTrip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "mass-untag guard: this run would untag {} of {} linked records (more than {:.0}%); nothing was untagged. \
             Check the Google group or the CRM tag, then run again with the untags confirmed, or restore them",
            self.would_untag,
            self.linked,
            self.max_share * 100.0
        )
    }
}

/// Checks a run's planned untags against the guard.
pub fn check(linked: u64, would_untag: u64, policy: &GuardPolicy) -> Result<(), GuardTrip> {
    let over_share = (would_untag as f64) > policy.max_share * (linked as f64);
    if would_untag >= policy.min_count && over_share {
        Err(GuardTrip {
            would_untag,
            linked,
            max_share: policy.max_share,
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_only_above_share_and_count() {
        let p = GuardPolicy::default();
        assert!(check(100, 25, &p).is_ok());
        assert!(check(100, 26, &p).is_err());
        assert!(check(20, 9, &p).is_ok(), "fewer than 10 never trips");
        assert!(check(20, 10, &p).is_err());
        assert!(check(0, 0, &p).is_ok());
    }
}

/// How undoing a link end puts back a record that left Google's scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejoinGoogle {
    /// Put the record back into the scope (contacts: re-add it to the sync group).
    Rejoin,
    /// Create it again (activities: insert the event again; a cancelled one is restored).
    Recreate,
}

/// The undoing of a link end, when the admin cancels a mass change: the side that left comes
/// back (re-tagged, re-added, re-created, shown again) and the link stays, journaled as
/// [`Rule::Rejoin`]. `None` when the end stands: a record deleted in the CRM stays deleted, and
/// a plan that ends no link has nothing to undo.
pub fn undo_end(plan: &ItemPlan, google_left: RejoinGoogle) -> Option<ItemPlan> {
    let LinkAction::End { snapshot, reason } = &plan.link else {
        return None;
    };
    let mut p = plan.clone();
    let back_in = |snapshot: &crate::fields::Fields| LinkAction::Update {
        state: LinkState::Active,
        snapshot: snapshot.clone(),
    };
    let recreate = |p: &mut ItemPlan| {
        p.crm.scope = ScopeOp::Keep;
        p.google = SidePlan::create(snapshot.clone());
        p.link = LinkAction::Update {
            state: LinkState::Pending,
            snapshot: snapshot.clone(),
        };
    };
    match (reason, google_left) {
        (Rule::GoogleLeftScope, RejoinGoogle::Rejoin) => {
            p.crm.scope = ScopeOp::Keep;
            p.google.scope = ScopeOp::Join;
            p.link = back_in(snapshot);
        }
        (Rule::GoogleLeftScope, RejoinGoogle::Recreate) | (Rule::GoogleDeleted, _) => {
            recreate(&mut p)
        }
        (Rule::CrmLeftScope, _) => {
            p.google.scope = ScopeOp::Keep;
            p.crm.scope = ScopeOp::Join;
            p.link = back_in(snapshot);
        }
        _ => return None,
    }
    p.rule = Rule::Rejoin;
    Some(p)
}
