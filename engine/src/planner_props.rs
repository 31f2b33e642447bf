//! Property tests of the planner (CanopyCheck style, `sync-testing-plan.md` B1 and B7.3 L0): from
//! random but correlated base / CRM / Google states and link states, the plan converges in one
//! round (a second plan after applying it is empty), no field edit is lost (it ends up in a record
//! or in the journal), no record is deleted, deleted records are never written, and the result
//! does not depend on the order of items.

use crate::fields::{self, Fields};
use crate::ids::{GoogleId, LinkId};
use crate::merge::Side;
use crate::planner::*;
use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::Value;

const FIELD_NAMES: [&str; 4] = ["a", "b", "c", "d"];

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + s, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn arb_value() -> impl Strategy<Value = Value> {
    prop_oneof![Just(Value::Null), (0i64..4).prop_map(Value::from)]
}

fn arb_fields() -> impl Strategy<Value = Fields> {
    proptest::collection::vec(arb_value(), FIELD_NAMES.len()).prop_map(|vals| {
        FIELD_NAMES
            .iter()
            .zip(vals)
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    })
}

/// `base` with each field independently kept or changed.
fn perturb(base: Fields) -> impl Strategy<Value = Fields> {
    (
        proptest::collection::vec(proptest::bool::weighted(0.35), FIELD_NAMES.len()),
        proptest::collection::vec(arb_value(), FIELD_NAMES.len()),
    )
        .prop_map(move |(change, vals)| {
            let mut out = base.clone();
            for (i, name) in FIELD_NAMES.iter().enumerate() {
                if change[i] {
                    if vals[i].is_null() {
                        out.remove(*name);
                    } else {
                        out.insert(name.to_string(), vals[i].clone());
                    }
                }
            }
            out
        })
}

fn arb_presence() -> impl Strategy<Value = Presence> {
    prop_oneof![4 => Just(Presence::InScope), 1 => Just(Presence::OutOfScope), 1 => Just(Presence::Deleted)]
}

/// A record in the model world.
#[derive(Clone, Debug)]
struct Rec {
    fields: Fields,
    presence: Presence,
    modified: DateTime<Utc>,
}

/// One item of the model world: the CRM record, the Google record and the link.
#[derive(Clone, Debug)]
struct World {
    crm: Option<Rec>,
    google: Option<Rec>,
    link: Option<(LinkState, Fields, DateTime<Utc>)>,
    /// The Google side was changed since the last sync (so it shows up in the listing).
    google_seen: bool,
}

fn arb_world() -> impl Strategy<Value = World> {
    (
        arb_fields(),
        0u8..4,
        any::<bool>(),
        any::<bool>(),
        arb_presence(),
        arb_presence(),
        0i64..3,
        0i64..3,
        any::<bool>(),
        0i64..20,
    )
        .prop_flat_map(
            |(base, link_kind, has_crm, has_google, cp, gp, tc, tg, seen, pending_age)| {
                (perturb(base.clone()), perturb(base.clone())).prop_map(move |(c, g)| {
                    let link = match link_kind {
                        0 => None,
                        1 => Some((LinkState::Pending, base.clone(), t(-pending_age * 60))),
                        2 => Some((LinkState::Ended, base.clone(), t(0))),
                        _ => Some((LinkState::Active, base.clone(), t(0))),
                    };
                    let linked = link.is_some();
                    let pending = matches!(link, Some((LinkState::Pending, ..)));
                    World {
                        // A linked item always has its CRM record (possibly a tombstone).
                        crm: (has_crm || linked).then(|| Rec {
                            fields: c.clone(),
                            presence: cp,
                            modified: t(tc),
                        }),
                        // A pending create may or may not have reached Google.
                        google: (has_google || (linked && !pending)).then(|| Rec {
                            fields: g.clone(),
                            presence: gp,
                            modified: t(tg),
                        }),
                        link,
                        google_seen: seen,
                    }
                })
            },
        )
}

const NOW: i64 = 600;

fn policy() -> PlanPolicy {
    PlanPolicy {
        pending_confirm_after: Duration::minutes(10),
        update_google_before_leave: true,
    }
}

/// What the executor would hand the planner for this world.
fn observe(w: &World) -> Item {
    let link = w.link.as_ref().map(|(state, snap, since)| LinkRecord {
        id: LinkId::from(uuid::Uuid::nil()),
        crm_id: "crm-1".into(),
        google_id: match (state, &w.google) {
            (LinkState::Pending, _) => None,
            (_, Some(_)) => Some(GoogleId::new("people/c1")),
            (_, None) => Some(GoogleId::new("people/c1")),
        },
        state: *state,
        snapshot: snap.clone(),
        pending_since: (*state == LinkState::Pending).then_some(*since),
    });
    let crm = w.crm.as_ref().map(|r| CrmState {
        id: "crm-1".into(),
        fields: r.fields.clone(),
        modified_at: r.modified,
        presence: r.presence,
    });
    let seen = |r: &Rec| {
        GoogleObs::Seen(GoogleState {
            id: GoogleId::new("people/c1"),
            fields: (r.presence != Presence::Deleted).then(|| r.fields.clone()),
            updated_at: r.modified,
            presence: r.presence,
        })
    };
    let google = match (&w.google, &link) {
        (None, Some(l)) if l.state != LinkState::Pending => GoogleObs::Missing,
        (None, _) => GoogleObs::NotObserved,
        (Some(r), Some(l))
            if l.state == LinkState::Active
                && !w.google_seen
                && r.presence == Presence::InScope =>
        {
            // Unchanged since the last sync: not in the listing. Only valid if it really equals
            // the snapshot, so make the world consistent.
            if fields::same(&r.fields, &l.snapshot) {
                GoogleObs::NotObserved
            } else {
                seen(r)
            }
        }
        // The executor reads the Google record of a link that comes back.
        (Some(r), _) => seen(r),
    };
    let paired = match (&link, &crm, &google) {
        (None, Some(_), GoogleObs::Seen(_)) => Some(PairReason::Email),
        _ => None,
    };
    Item {
        link,
        crm,
        google,
        paired,
    }
}

/// Journal of values that were overwritten or lost a conflict.
#[derive(Default)]
struct Journal {
    values: Vec<(String, Value)>,
}

/// Carries out a plan in the model, as the executor does.
fn apply(w: &World, p: &ItemPlan, journal: &mut Journal) -> World {
    let mut out = w.clone();
    out.google_seen = false;
    for o in &p.overwrites {
        journal.values.push((o.field.clone(), o.before.clone()));
    }
    for c in &p.conflicts {
        journal
            .values
            .push((c.field.clone(), c.loser_value().clone()));
    }
    if let LinkAction::End { snapshot, .. } = &p.link {
        for (k, v) in snapshot {
            journal.values.push((k.clone(), v.clone()));
        }
    }
    let write = |rec: &mut Option<Rec>, side: &SidePlan, when: DateTime<Utc>| {
        if side.create {
            *rec = Some(Rec {
                fields: fields::normalized(&side.target),
                presence: Presence::InScope,
                modified: when,
            });
            return;
        }
        if let Some(r) = rec.as_mut() {
            assert!(
                side.is_noop() || r.presence != Presence::Deleted,
                "a deleted record must never be written: {side:?}"
            );
            for name in &side.update {
                match side.target.get(name) {
                    Some(v) if !v.is_null() => {
                        r.fields.insert(name.clone(), v.clone());
                    }
                    _ => {
                        r.fields.remove(name);
                    }
                }
            }
            match side.scope {
                ScopeOp::Join => r.presence = Presence::InScope,
                ScopeOp::Leave => r.presence = Presence::OutOfScope,
                ScopeOp::Keep => {}
            }
            if !side.is_noop() {
                r.modified = when;
            }
        } else {
            assert!(
                side.is_noop(),
                "write planned to a record that does not exist: {side:?}"
            );
        }
    };
    let when = t(NOW);
    write(&mut out.crm, &p.crm, when);
    write(&mut out.google, &p.google, when);
    if p.google.create || p.google.scope != ScopeOp::Keep || !p.google.update.is_empty() {
        out.google_seen = true;
    }
    match &p.link {
        LinkAction::None => {}
        // A create's answer arrives in the same run: the executor activates the link.
        LinkAction::Create {
            state, snapshot, ..
        }
        | LinkAction::Update { state, snapshot } => {
            let state = if *state == LinkState::Pending && p.google.create {
                LinkState::Active
            } else {
                *state
            };
            out.link = Some((state, fields::normalized(snapshot), when));
        }
        LinkAction::End { snapshot, .. } => {
            out.link = Some((LinkState::Ended, fields::normalized(snapshot), when))
        }
    }
    out
}

fn values_of(r: &Option<Rec>) -> Vec<(String, Value)> {
    r.as_ref()
        .map(|r| {
            r.fields
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000)
    ))]

    #[test]
    fn one_round_converges_and_loses_nothing(w in arb_world()) {
        let now = t(NOW);
        let first = plan_item(&observe(&w), &policy(), now);
        let mut journal = Journal::default();
        let after = apply(&w, &first, &mut journal);

        // No record disappears (N1: a sync never hard-deletes).
        prop_assert!(w.crm.is_none() || after.crm.is_some());
        // (A create next to a deleted CRM record is a new record; the tombstone stays.)
        if let (Some(before), Some(now_rec), false) = (&w.crm, &after.crm, first.crm.create) {
            prop_assert!(before.presence != Presence::Deleted || now_rec.presence == Presence::Deleted);
        }

        // A second plan after applying the first is empty (N6).
        let second = plan_item(&observe(&after), &policy(), now);
        prop_assert!(second.is_noop(), "second plan not empty:\nworld {:?}\nfirst {:?}\nafter {:?}\nsecond {:?}", w, first, after, second);

        // Converged: an active link means both sides hold the snapshot and are in scope.
        if let Some((LinkState::Active, snap, _)) = &after.link {
            let c = after.crm.as_ref().map(|r| r.fields.clone()).unwrap_or_default();
            let g = after.google.as_ref().map(|r| r.fields.clone()).unwrap_or_default();
            prop_assert!(fields::same(&c, snap) && fields::same(&g, snap), "active link not converged: {:?}", after);
        }

        // When a link ends, pending edits from both sides are merged into every record that
        // survives (SPEC 3, "Links come back").
        if let LinkAction::End { snapshot, .. } = &first.link {
            if first.rule != Rule::PendingCreateAbandoned {
                for rec in [&after.crm, &after.google].into_iter().flatten() {
                    if rec.presence != Presence::Deleted {
                        prop_assert!(fields::same(&rec.fields, snapshot), "survivor not merged: {:?} -> {:?}", w, after);
                    }
                }
            }
        }

        // No edit lost (N2/N3): every value a side changed since the base is in a record or
        // in the journal.
        if let Some((_, base, _)) = &w.link {
            let kept: Vec<(String, Value)> = values_of(&after.crm)
                .into_iter()
                .chain(values_of(&after.google))
                .chain(journal.values.iter().cloned())
                .collect();
            for rec in [&w.crm, &w.google].into_iter().flatten() {
                if rec.presence == Presence::Deleted {
                    continue;
                }
                for (k, v) in &rec.fields {
                    if fields::get(base, k) != v {
                        prop_assert!(kept.contains(&(k.clone(), v.clone())), "edit {}={} lost: {:?} -> {:?}", k, v, w, after);
                    }
                }
            }
        }
    }

    #[test]
    fn planning_does_not_depend_on_item_order(worlds in proptest::collection::vec(arb_world(), 1..8), seed in any::<u64>()) {
        let now = t(NOW);
        let items: Vec<Item> = worlds.iter().map(observe).collect();
        let plans = plan(&items, &policy(), now);
        let mut order: Vec<usize> = (0..items.len()).collect();
        // A deterministic shuffle from the seed.
        let mut s = seed;
        for i in (1..order.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (s >> 33) as usize % (i + 1));
        }
        let shuffled: Vec<Item> = order.iter().map(|&i| items[i].clone()).collect();
        let plans_shuffled = plan(&shuffled, &policy(), now);
        for (pos, &i) in order.iter().enumerate() {
            prop_assert_eq!(&plans_shuffled[pos], &plans[i]);
        }
    }

    #[test]
    fn pairing_does_not_depend_on_order(
        crm in proptest::collection::vec((0u8..6, proptest::collection::vec(0u8..4, 0..3)), 0..6),
        google in proptest::collection::vec((0u8..6, proptest::option::of(0u8..6), proptest::collection::vec(0u8..4, 0..3)), 0..6),
    ) {
        let mut crm: Vec<(String, Vec<String>)> = crm.into_iter().map(|(id, k)| (format!("c{id}"), k.into_iter().map(|x| format!("e{x}")).collect())).collect();
        crm.sort();
        crm.dedup_by(|a, b| a.0 == b.0);
        let mut google: Vec<(String, Option<String>, Vec<String>)> = google.into_iter().map(|(id, m, k)| (format!("g{id}"), m.map(|m| format!("c{m}")), k.into_iter().map(|x| format!("e{x}")).collect())).collect();
        google.sort();
        google.dedup_by(|a, b| a.0 == b.0);
        let named = |pairs: Vec<(usize, usize, PairReason)>, c: &[(String, Vec<String>)], g: &[(String, Option<String>, Vec<String>)]| {
            let mut v: Vec<(String, String, PairReason)> = pairs.into_iter().map(|(ci, gi, r)| (c[ci].0.clone(), g[gi].0.clone(), r)).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let forward = named(pair_unlinked(&crm, &google), &crm, &google);
        let mut crm_rev = crm.clone();
        crm_rev.reverse();
        let mut google_rev = google.clone();
        google_rev.reverse();
        let backward = named(pair_unlinked(&crm_rev, &google_rev), &crm_rev, &google_rev);
        prop_assert_eq!(&forward, &backward);
        // One-to-one.
        let mut cs: Vec<&String> = forward.iter().map(|p| &p.0).collect();
        cs.dedup();
        prop_assert_eq!(cs.len(), forward.len());
    }
}

#[test]
fn conflict_loser_goes_to_the_journal() {
    let base: Fields = [("a".to_string(), Value::from(1))].into_iter().collect();
    let w = World {
        crm: Some(Rec {
            fields: [("a".to_string(), Value::from(2))].into_iter().collect(),
            presence: Presence::InScope,
            modified: t(1),
        }),
        google: Some(Rec {
            fields: [("a".to_string(), Value::from(3))].into_iter().collect(),
            presence: Presence::InScope,
            modified: t(2),
        }),
        link: Some((LinkState::Active, base, t(0))),
        google_seen: true,
    };
    let p = plan_item(&observe(&w), &policy(), t(NOW));
    assert_eq!(p.rule, Rule::LwwGoogleNewer);
    assert_eq!(p.conflicts.len(), 1);
    assert_eq!(p.conflicts[0].winner, Side::Google);
    assert_eq!(p.conflicts[0].loser_value(), &Value::from(2));
    assert_eq!(p.crm.update, vec!["a".to_string()]);
    assert!(p.google.update.is_empty());
}
