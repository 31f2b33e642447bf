//! Property tests of the planner (CanopyCheck style, `sync-testing-plan.md` B1 and B7.3 L0): from
//! random but correlated base / CRM / Google states and link states, the plan converges in one
//! round (a second plan after applying it is empty), no field edit is lost (it ends up in a record
//! or in the journal; for linked items and for unlinked ones paired on their first link alike),
//! deleted records are never written, and the plans of a whole world of records (links, records
//! paired by marker or e-mail, new records on either side) do not depend on the order in which
//! the records are listed.
//!
//! No property checks that "nothing is deleted": an [`ItemPlan`] cannot express a delete (a side
//! is created, updated, joins or leaves), so that holds by construction. What can go wrong (a
//! write to a deleted record) is asserted in [`apply`]; the simulations in `tests/it` delete on
//! both sides and check end to end that the sync deletes nothing.

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
    prop_oneof![
        3 => Just(Value::Null),
        4 => (0i64..4).prop_map(Value::from),
        // Lists (e-mails, phones): a first link unites them instead of picking a side.
        1 => proptest::collection::vec(0i64..3, 1..3).prop_map(Value::from),
    ]
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
        // 0: unlinked (a third of the worlds, so the first-link merge is exercised as much as
        // a linked one), 1: pending, 2: ended, 3: active.
        prop_oneof![2 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8), 2 => Just(3u8)],
        proptest::bool::weighted(0.75),
        proptest::bool::weighted(0.75),
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

/// One record of a world of several records (for identity and pairing).
#[derive(Clone, Debug)]
struct Listed {
    id: String,
    /// E-mail addresses (what unlinked records are paired on).
    keys: Vec<String>,
    /// Google records only: the CRM id written into it when crmsync created it.
    marker: Option<String>,
    fields: Fields,
    presence: Presence,
    modified: DateTime<Utc>,
}

/// Several records on each side; the first few of each side are linked (active links).
#[derive(Clone, Debug)]
struct Multi {
    crm: Vec<Listed>,
    google: Vec<Listed>,
    /// (CRM id, Google id, snapshot).
    links: Vec<(String, String, Fields)>,
}

type ListedParts = (Vec<u8>, Option<u8>, Fields, Presence, i64);

fn arb_listed_parts() -> impl Strategy<Value = ListedParts> {
    (
        // Few addresses, so that several records compete for the same one.
        proptest::collection::vec(0u8..4, 0..3),
        proptest::option::weighted(0.3, 0u8..6),
        arb_fields(),
        arb_presence(),
        0i64..3,
    )
}

fn arb_multi() -> impl Strategy<Value = Multi> {
    (
        proptest::collection::vec(arb_listed_parts(), 0..6),
        proptest::collection::vec(arb_listed_parts(), 0..6),
        0usize..4,
        proptest::collection::vec(arb_fields(), 4),
    )
        .prop_map(|(crm, google, n_links, snapshots)| {
            let listed = |id: String,
                          (keys, marker, fields, presence, tm): ListedParts,
                          google: bool| Listed {
                id,
                keys: keys.into_iter().map(|k| format!("e{k}")).collect(),
                marker: if google {
                    marker.map(|m| format!("c{m}"))
                } else {
                    None
                },
                fields,
                presence,
                modified: t(tm),
            };
            let crm: Vec<Listed> = crm
                .into_iter()
                .enumerate()
                .map(|(i, parts)| listed(format!("c{i}"), parts, false))
                .collect();
            let google: Vec<Listed> = google
                .into_iter()
                .enumerate()
                .map(|(i, parts)| listed(format!("people/g{i}"), parts, true))
                .collect();
            let n = n_links.min(crm.len()).min(google.len());
            let links = (0..n)
                .map(|k| {
                    (
                        crm[k].id.clone(),
                        google[k].id.clone(),
                        snapshots[k].clone(),
                    )
                })
                .collect();
            Multi { crm, google, links }
        })
}

/// What the executor does with a world as listed: each link is planned with its two records;
/// the unlinked records in scope on both sides are paired ([`pair_unlinked`]: by marker, then by
/// e-mail) and each pair, and each record left alone, is planned as one item. The records come
/// in the order given (a listing's order, or the CRM change feed's).
fn plan_multi(
    crm: &[Listed],
    google: &[Listed],
    links: &[(String, String, Fields)],
) -> Vec<ItemPlan> {
    let crm_state = |r: &Listed| CrmState {
        id: r.id.clone(),
        fields: r.fields.clone(),
        modified_at: r.modified,
        presence: r.presence,
    };
    let google_state = |r: &Listed| GoogleState {
        id: GoogleId::new(r.id.clone()),
        fields: (r.presence != Presence::Deleted).then(|| r.fields.clone()),
        updated_at: r.modified,
        presence: r.presence,
    };
    let mut items = Vec::new();
    for (c, g, snapshot) in links {
        let n: u128 = c.trim_start_matches('c').parse().unwrap_or_default();
        items.push(Item {
            link: Some(LinkRecord {
                id: LinkId::from(uuid::Uuid::from_u128(n + 1)),
                crm_id: c.clone(),
                google_id: Some(GoogleId::new(g.clone())),
                state: LinkState::Active,
                snapshot: snapshot.clone(),
                pending_since: None,
            }),
            crm: crm.iter().find(|r| &r.id == c).map(crm_state),
            google: google
                .iter()
                .find(|r| &r.id == g)
                .map(|r| GoogleObs::Seen(google_state(r)))
                .unwrap_or(GoogleObs::Missing),
            paired: None,
        });
    }
    let linked = |id: &str| links.iter().any(|(c, g, _)| c == id || g == id);
    let unlinked_crm: Vec<&Listed> = crm.iter().filter(|r| !linked(&r.id)).collect();
    let unlinked_google: Vec<&Listed> = google.iter().filter(|r| !linked(&r.id)).collect();
    // Only records in scope on both sides are paired (tagged CRM contacts, group members).
    let free_crm: Vec<&Listed> = unlinked_crm
        .iter()
        .copied()
        .filter(|r| r.presence == Presence::InScope)
        .collect();
    let free_google: Vec<&Listed> = unlinked_google
        .iter()
        .copied()
        .filter(|r| r.presence == Presence::InScope)
        .collect();
    let pairs = pair_unlinked(
        &free_crm
            .iter()
            .map(|r| (r.id.clone(), r.keys.clone()))
            .collect::<Vec<_>>(),
        &free_google
            .iter()
            .map(|r| (r.id.clone(), r.marker.clone(), r.keys.clone()))
            .collect::<Vec<_>>(),
    );
    let mut paired_ids = std::collections::BTreeSet::new();
    for (ci, gi, reason) in pairs {
        paired_ids.insert(free_crm[ci].id.clone());
        paired_ids.insert(free_google[gi].id.clone());
        items.push(Item {
            link: None,
            crm: Some(crm_state(free_crm[ci])),
            google: GoogleObs::Seen(google_state(free_google[gi])),
            paired: Some(reason),
        });
    }
    for r in unlinked_crm.iter().filter(|r| !paired_ids.contains(&r.id)) {
        items.push(Item {
            link: None,
            crm: Some(crm_state(r)),
            google: GoogleObs::NotObserved,
            paired: None,
        });
    }
    for r in unlinked_google
        .iter()
        .filter(|r| !paired_ids.contains(&r.id))
    {
        items.push(Item {
            link: None,
            crm: None,
            google: GoogleObs::Seen(google_state(r)),
            paired: None,
        });
    }
    plan(&items, &policy(), t(NOW))
}

/// The plans as a sorted list (the same plans in any order compare equal).
fn plan_set(plans: &[ItemPlan]) -> Vec<String> {
    let mut v: Vec<String> = plans.iter().map(|p| format!("{p:?}")).collect();
    v.sort();
    v
}

/// A deterministic shuffle from `seed`.
fn shuffled<T: Clone>(items: &[T], seed: u64) -> Vec<T> {
    let mut out = items.to_vec();
    let mut s = seed;
    for i in (1..out.len()).rev() {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.swap(i, (s >> 33) as usize % (i + 1));
    }
    out
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

        // No edit lost (an edit never loses to a concurrent delete or untag; every
        // acknowledged write survives in a record or in the journal): every value a side
        // changed since the base is in a record or in the journal. Without a link there is no
        // base, so every value either side holds counts as an edit: records paired by e-mail
        // or marker on their first link keep both sides' values (in the merged target or as
        // overwritten / losing values in the journal), and a record alone on its side is
        // created on the other one with all its values.
        let empty = Fields::new();
        let base = w.link.as_ref().map(|(_, base, _)| base).unwrap_or(&empty);
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

    /// The plans of a whole world (links, unlinked records paired by marker or e-mail, records
    /// alone on their side) are the same whatever order the records are listed in, and they
    /// never give one record two links nor leave two unpaired records that share an e-mail
    /// address to be created across (which would duplicate them on both sides).
    #[test]
    fn world_plans_do_not_depend_on_listing_order(m in arb_multi(), seed in any::<u64>()) {
        let forward = plan_multi(&m.crm, &m.google, &m.links);
        let crm = shuffled(&m.crm, seed);
        let google = shuffled(&m.google, seed.rotate_left(21) ^ 0x9e37_79b9_7f4a_7c15);
        let links = shuffled(&m.links, seed.rotate_left(42));
        let other = plan_multi(&crm, &google, &links);
        prop_assert_eq!(plan_set(&forward), plan_set(&other), "world {:?}\nreordered crm {:?}\ngoogle {:?}", m, crm, google);

        // Every record is planned exactly once.
        let mut crm_ids: Vec<&String> = forward.iter().filter_map(|p| p.crm_id.as_ref()).collect();
        crm_ids.sort();
        let mut all_crm: Vec<&String> = m.crm.iter().map(|r| &r.id).collect();
        all_crm.sort();
        prop_assert_eq!(crm_ids, all_crm);
        let mut google_ids: Vec<&str> = forward.iter().filter_map(|p| p.google_id.as_ref().map(|g| g.as_str())).collect();
        google_ids.sort();
        let mut all_google: Vec<&str> = m.google.iter().map(|r| r.id.as_str()).collect();
        all_google.sort();
        prop_assert_eq!(google_ids, all_google);

        let by_id = |list: &[Listed], id: &str| list.iter().find(|r| r.id == id).cloned();
        let mut linked_crm = std::collections::BTreeSet::new();
        let mut linked_google = std::collections::BTreeSet::new();
        for p in &forward {
            // One record, one link.
            let holds_link = match &p.link {
                LinkAction::Create { .. } | LinkAction::Update { .. } => true,
                LinkAction::None => p.link_id.is_some(),
                LinkAction::End { .. } => false,
            };
            if holds_link {
                if let Some(c) = &p.crm_id {
                    prop_assert!(linked_crm.insert(c.clone()), "CRM record {} gets two links: {:?}", c, forward);
                }
                if let Some(g) = &p.google_id {
                    prop_assert!(linked_google.insert(g.clone()), "Google record {:?} gets two links: {:?}", g, forward);
                }
            }
            // A pair shares what it was paired on, and both records take part in the sync.
            if p.link_id.is_none() && matches!(p.rule, Rule::LinkByEmail | Rule::AdoptByMarker) {
                let c = by_id(&m.crm, p.crm_id.as_deref().unwrap_or_default()).expect("paired CRM record");
                let g = by_id(&m.google, p.google_id.as_ref().map(|g| g.as_str()).unwrap_or_default()).expect("paired Google record");
                prop_assert!(c.presence == Presence::InScope && g.presence == Presence::InScope);
                match p.rule {
                    Rule::AdoptByMarker => prop_assert_eq!(g.marker.as_ref(), Some(&c.id)),
                    _ => prop_assert!(c.keys.iter().any(|k| g.keys.contains(k)), "paired without a shared address: {:?} {:?}", c, g),
                }
            }
        }
        // No duplicate: a CRM record sent to Google as new and a Google record imported as new
        // never share an address (they should have been paired).
        for p in forward.iter().filter(|p| p.rule == Rule::NewInCrm) {
            let c = by_id(&m.crm, p.crm_id.as_deref().unwrap_or_default()).expect("CRM record");
            for q in forward.iter().filter(|q| q.rule == Rule::NewInGoogle) {
                let g = by_id(&m.google, q.google_id.as_ref().map(|g| g.as_str()).unwrap_or_default()).expect("Google record");
                prop_assert!(!c.keys.iter().any(|k| g.keys.contains(k)), "{:?} and {:?} share an address and both become new records", c, g);
            }
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
