//! Identity of listed Google records: which link a record belongs to (by the Google id the link
//! recorded, else by the CRM id the record carries, written there when crmsync created it), or
//! that it is one of crmsync's own duplicates, or new. Pure: the executor looks the links up and
//! carries the decision out; pairing new records with unlinked CRM records by e-mail is
//! [`crate::planner::pair_unlinked`].

use crate::fields::Fields;
use crate::ids::GoogleId;
use crate::planner::{
    empty_plan, CrmState, GoogleState, ItemPlan, LinkAction, LinkState, Presence, Rule, ScopeOp,
};

/// What is known of a link found for a listed record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownLink<'a> {
    /// The Google id the link recorded (`None` while a create awaits its answer).
    pub google_id: Option<&'a str>,
    pub state: LinkState,
}

/// How a kind treats a second record that carries an already linked CRM id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Duplicates {
    /// It is crmsync's own duplicate (a create retried after its answer was lost, with a new
    /// id): take it out of the scope, never delete it (contacts).
    Ours,
    /// Ids are deterministic, so it cannot be ours: treat it as any other new record
    /// (activities).
    NotOurs,
}

/// Which link a listed record belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    /// The link that recorded this record's Google id.
    ByGoogleId,
    /// The link of the CRM id the record carries: a create whose answer was lost (the link
    /// has no Google id yet) or the same id. The link takes this record's Google id.
    ByMarker,
    /// A second record carrying a CRM id whose link holds another live Google record.
    Duplicate,
    /// No link: a new record (paired by e-mail or imported), or one re-created by hand after
    /// its link ended.
    Unlinked,
}

/// Decides a listed record's identity from the link recorded under its Google id
/// (`by_google_id`) and the link of the CRM id it carries (`by_marker`, when it carries one).
pub fn resolve(
    google_id: &str,
    deleted: bool,
    by_google_id: Option<KnownLink<'_>>,
    by_marker: Option<KnownLink<'_>>,
    duplicates: Duplicates,
) -> Identity {
    if by_google_id.is_some() {
        return Identity::ByGoogleId;
    }
    let Some(link) = by_marker else {
        return Identity::Unlinked;
    };
    match link.google_id {
        None => Identity::ByMarker,
        Some(g) if g == google_id => Identity::ByMarker,
        // The CRM record's old link points elsewhere and is over: a record re-created by hand.
        Some(_) if link.state == LinkState::Ended => Identity::Unlinked,
        Some(_) if duplicates == Duplicates::Ours && !deleted => Identity::Duplicate,
        Some(_) => Identity::Unlinked,
    }
}

/// The plan for one of crmsync's own duplicates: it leaves the scope (nothing is deleted), no
/// link, journaled under [`Rule::DuplicateRemoved`].
pub fn remove_duplicate(google: &GoogleState) -> ItemPlan {
    let mut plan = empty_plan(None, Some(google), Rule::DuplicateRemoved);
    plan.google_id = Some(GoogleId::new(google.id.0.clone()));
    plan.google.scope = ScopeOp::Leave;
    plan
}

/// Which link a Google record that absorbed others by a merge (Google's "Merge duplicates")
/// keeps, and which links end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merge {
    /// `None`: the survivor keeps its own link (or has none and absorbed no linked record);
    /// `Some(i)`: the survivor had no link and takes over the link of absorbed record `i`.
    pub takes_over: Option<usize>,
    /// Absorbed records whose links end (their CRM records leave the sync, journaled).
    pub ended: Vec<usize>,
}

/// Decides a merge from the survivor's own link and the links of the records it absorbed (in
/// the order Google lists their former names). The first link stays: the survivor's own, else
/// the first absorbed record's; every other live link ends. Ended links are none of its
/// business.
pub fn follow_merge(survivor: Option<KnownLink<'_>>, absorbed: &[Option<KnownLink<'_>>]) -> Merge {
    let live = |l: &Option<KnownLink<'_>>| l.is_some_and(|l| l.state != LinkState::Ended);
    let survivor_live = live(&survivor);
    let mut takes_over = None;
    let mut ended = Vec::new();
    for (i, l) in absorbed.iter().enumerate() {
        if !live(l) {
            continue;
        }
        if !survivor_live && takes_over.is_none() {
            takes_over = Some(i);
        } else {
            ended.push(i);
        }
    }
    Merge { takes_over, ended }
}

/// The plan for a CRM record whose Google record was merged into another linked one: the link
/// ends (journaled under [`Rule::MergedInGoogle`]; it keeps the absorbed record's id) and the
/// CRM record leaves the sync (untagged, never deleted); Google is not written (the absorbed
/// record is gone).
pub fn merged_away(crm: &CrmState, snapshot: &Fields) -> ItemPlan {
    let mut plan = empty_plan(Some(crm), None, Rule::MergedInGoogle);
    if crm.presence == Presence::InScope {
        plan.crm.scope = ScopeOp::Leave;
    }
    plan.link = LinkAction::End {
        snapshot: snapshot.clone(),
        reason: Rule::MergedInGoogle,
    };
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::Presence;
    use chrono::{DateTime, Utc};
    use proptest::prelude::*;

    fn arb_state() -> impl Strategy<Value = LinkState> {
        prop_oneof![
            Just(LinkState::Active),
            Just(LinkState::Pending),
            Just(LinkState::Ended)
        ]
    }

    fn arb_link() -> impl Strategy<Value = Option<(Option<u8>, LinkState)>> {
        proptest::option::of((proptest::option::of(0u8..4), arb_state()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// A record is attached to a link only when that link recorded its id, or recorded no
        /// id yet, or is the link of the CRM id it carries with the same id; it is never
        /// attached to a link that holds another record; a duplicate is flagged only for kinds
        /// whose duplicates are ours, only for a live record, and only when a live link holds
        /// another record for the same CRM id.
        #[test]
        fn identity_never_steals_another_records_link(
            id in 0u8..4,
            deleted in any::<bool>(),
            by_google in arb_link(),
            by_marker in arb_link(),
            ours in any::<bool>(),
        ) {
            let name = |n: u8| format!("people/c{n}");
            let own = name(id);
            let names: Vec<Option<String>> = [by_google, by_marker]
                .iter()
                .map(|l| l.and_then(|(g, _)| g.map(name)))
                .collect();
            // The lookup by Google id only finds links that recorded this id.
            let by_google = by_google.map(|(_, state)| KnownLink { google_id: Some(own.as_str()), state });
            let by_marker = by_marker.map(|(_, state)| KnownLink { google_id: names[1].as_deref(), state });
            let policy = if ours { Duplicates::Ours } else { Duplicates::NotOurs };
            let got = resolve(&own, deleted, by_google, by_marker, policy);
            match got {
                Identity::ByGoogleId => prop_assert!(by_google.is_some()),
                Identity::ByMarker => {
                    let m = by_marker.expect("a marker link");
                    prop_assert!(by_google.is_none());
                    prop_assert!(m.google_id.is_none() || m.google_id == Some(own.as_str()));
                }
                Identity::Duplicate => {
                    let m = by_marker.expect("a marker link");
                    prop_assert!(ours && !deleted && by_google.is_none());
                    prop_assert!(m.state != LinkState::Ended);
                    prop_assert!(m.google_id.is_some() && m.google_id != Some(own.as_str()));
                }
                Identity::Unlinked => {
                    prop_assert!(by_google.is_none());
                    if let Some(m) = by_marker {
                        prop_assert!(m.google_id.is_some() && m.google_id != Some(own.as_str()));
                    }
                }
            }
        }

        /// A merge keeps exactly one live link (the survivor's own when it has one), ends every
        /// other live one, and never touches an ended link.
        #[test]
        fn a_merge_keeps_one_link_and_ends_the_others(
            own in proptest::option::of(arb_state()),
            absorbed in proptest::collection::vec(proptest::option::of(arb_state()), 0..5),
        ) {
            let link = |s: Option<LinkState>| s.map(|state| KnownLink { google_id: Some("x"), state });
            let absorbed_links: Vec<_> = absorbed.iter().map(|s| link(*s)).collect();
            let m = follow_merge(link(own), &absorbed_links);
            let live = |s: &Option<LinkState>| s.is_some_and(|s| s != LinkState::Ended);
            let live_absorbed: Vec<usize> = (0..absorbed.len()).filter(|&i| live(&absorbed[i])).collect();
            let kept = usize::from(live(&own)) + usize::from(m.takes_over.is_some());
            prop_assert_eq!(kept, usize::from(live(&own) || !live_absorbed.is_empty()));
            if live(&own) {
                prop_assert_eq!(m.takes_over, None);
            } else {
                prop_assert_eq!(m.takes_over, live_absorbed.first().copied());
            }
            let mut all: Vec<usize> = m.ended.clone();
            all.extend(m.takes_over);
            all.sort_unstable();
            prop_assert_eq!(all, live_absorbed);
        }

        /// The absorbed record's CRM side leaves the sync, nothing is written to Google, and
        /// nothing is deleted.
        #[test]
        fn merged_away_untags_and_ends_the_link(in_scope in any::<bool>()) {
            let crm = CrmState {
                id: "c1".into(),
                fields: Fields::new(),
                modified_at: DateTime::<Utc>::MIN_UTC,
                presence: if in_scope { Presence::InScope } else { Presence::OutOfScope },
            };
            let p = merged_away(&crm, &Fields::new());
            prop_assert_eq!(p.rule, Rule::MergedInGoogle);
            prop_assert!(p.google.is_noop());
            prop_assert!(!p.crm.create && p.crm.update.is_empty());
            prop_assert_eq!(p.crm.scope, if in_scope { ScopeOp::Leave } else { ScopeOp::Keep });
            prop_assert!(p.ends_link());
        }

        /// Removing a duplicate never deletes anything and never touches the CRM.
        #[test]
        fn removing_a_duplicate_only_leaves_the_scope(n in 0u32..1000) {
            let g = GoogleState {
                id: GoogleId::new(format!("people/c{n}")),
                fields: None,
                updated_at: DateTime::<Utc>::MIN_UTC,
                presence: Presence::InScope,
            };
            let p = remove_duplicate(&g);
            prop_assert_eq!(p.rule, Rule::DuplicateRemoved);
            prop_assert_eq!(p.google.scope, ScopeOp::Leave);
            prop_assert!(!p.google.create && p.google.update.is_empty());
            prop_assert!(p.crm.is_noop());
            prop_assert_eq!(p.link, crate::planner::LinkAction::None);
            prop_assert_eq!(p.google_id, Some(g.id.clone()));
        }
    }
}
