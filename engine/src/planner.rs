//! The three-way, field-level planner (SPEC sections 3-5, 7): a pure function from what each side
//! holds, the link between them (with the last synced snapshot) and the policy to a plan of
//! operations per item. The executor performs each [`ItemPlan`] and records it; nothing here does
//! I/O or reads a clock (`now` is an argument).
//!
//! Vocabulary shared by contacts and activities:
//! - *in scope*: the record takes part in the sync (contact: carries the sync tag / is a member of
//!   the sync group; activity: shown in the calendar / an event the user organizes);
//! - *join* / *leave*: the side-specific way of entering or leaving the scope (tag, untag; add to
//!   or remove from the group; set or clear `display_in_calendar`; restore or cancel the event).
//!   A sync never hard-deletes anything: a delete on one side becomes a *leave* on the other.

use crate::fields::{self, Fields};
use crate::ids::{GoogleId, LinkId};
use crate::merge::{self, Decision, FieldConflict, Side, Version};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Whether a record takes part in the sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    InScope,
    /// Exists but is outside the scope (untagged, not in the group, not displayed, ...).
    OutOfScope,
    /// Deleted on that side.
    Deleted,
}

/// The CRM side of an item.
#[derive(Clone, Debug, PartialEq)]
pub struct CrmState {
    /// The CRM record id (a UUID as text).
    pub id: String,
    /// Canonical fields. For a deleted record: its tombstone's last values.
    pub fields: Fields,
    pub modified_at: DateTime<Utc>,
    pub presence: Presence,
}

/// The Google side of an item, as observed in this run.
#[derive(Clone, Debug, PartialEq)]
pub struct GoogleState {
    pub id: GoogleId,
    /// Canonical fields; `None` when Google only told us it is deleted.
    pub fields: Option<Fields>,
    /// When Google last changed the record; [`GOOGLE_TIME_UNKNOWN`] when the record carries no
    /// time (see [`google_time`]).
    pub updated_at: DateTime<Utc>,
    pub presence: Presence,
}

/// The `updated_at` of a Google record that carries no modification time. The planner never
/// takes it for a time: a field both sides changed goes to the CRM (nobody can tell who wrote
/// last, and the CRM's change is known) and the conflict is journaled under
/// [`Rule::GoogleTimeUnknown`], not as if the CRM had been the later writer. A field changed in
/// Google only still takes Google's value.
pub const GOOGLE_TIME_UNKNOWN: DateTime<Utc> = DateTime::<Utc>::MIN_UTC;

/// The `updated_at` of a Google record whose time is `t` (`None`: it carries none).
pub fn google_time(t: Option<DateTime<Utc>>) -> DateTime<Utc> {
    t.unwrap_or(GOOGLE_TIME_UNKNOWN)
}

/// What this run knows about the Google side of an item.
#[derive(Clone, Debug, PartialEq)]
pub enum GoogleObs {
    /// Not in this run's change listing: unchanged since the last sync.
    NotObserved,
    /// Observed (in the listing or fetched).
    Seen(GoogleState),
    /// Known not to exist any more (absent from a complete listing and confirmed by a read).
    Missing,
}

/// State of a link row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// A create in Google was sent (or is about to be) and is not yet confirmed.
    Pending,
    Active,
    /// One side left the scope; the pair is remembered so that it can come back.
    Ended,
}

impl LinkState {
    pub fn as_str(&self) -> &'static str {
        match self {
            LinkState::Pending => "pending",
            LinkState::Active => "active",
            LinkState::Ended => "ended",
        }
    }
}

/// A stored link between one CRM record and one Google record.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkRecord {
    pub id: LinkId,
    pub crm_id: String,
    pub google_id: Option<GoogleId>,
    pub state: LinkState,
    /// The fields as last synced (the merge base); for a pending link, what was sent.
    pub snapshot: Fields,
    pub pending_since: Option<DateTime<Utc>>,
}

/// Why two unlinked records were paired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairReason {
    /// The Google record carries this CRM record's id (a create whose answer was lost).
    Marker,
    /// They share an e-mail address (first-run linking instead of a duplicate).
    Email,
}

/// Everything the planner needs about one item.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub link: Option<LinkRecord>,
    /// Required whenever `link` is set (a CRM record that no longer exists at all is passed as
    /// `Deleted` with the snapshot's fields).
    pub crm: Option<CrmState>,
    pub google: GoogleObs,
    /// Set when `link` is `None` and both sides are present.
    pub paired: Option<PairReason>,
}

/// Kind-specific choices the planner honours.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanPolicy {
    /// A pending Google create that has not shown up after this long is sent again
    /// (People sync results may lag writes by minutes).
    pub pending_confirm_after: Duration,
    /// When a record leaves the scope on one side, write the merged fields into the surviving
    /// record on the other side before it leaves too (contacts: yes, so no edit is lost;
    /// activities: the event is cancelled, so only the journal keeps the snapshot).
    pub update_google_before_leave: bool,
}

impl Default for PlanPolicy {
    fn default() -> Self {
        PlanPolicy {
            pending_confirm_after: Duration::minutes(10),
            update_google_before_leave: true,
        }
    }
}

/// How a side's scope membership changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeOp {
    Keep,
    Join,
    Leave,
}

/// What to do to one side.
#[derive(Clone, Debug, PartialEq)]
pub struct SidePlan {
    /// Create the record (inside the scope) with `target`.
    pub create: bool,
    /// Write these fields (names) of `target` into the existing record.
    pub update: Vec<String>,
    pub scope: ScopeOp,
    /// The fields this side holds once the plan is carried out.
    pub target: Fields,
}

impl SidePlan {
    /// Nothing written: the side keeps `current`.
    pub fn none(current: Fields) -> Self {
        SidePlan {
            create: false,
            update: Vec::new(),
            scope: ScopeOp::Keep,
            target: current,
        }
    }
    /// Create the record, inside the scope, with `target`.
    pub fn create(target: Fields) -> Self {
        SidePlan {
            create: true,
            update: Vec::new(),
            scope: ScopeOp::Keep,
            target,
        }
    }
    /// Write the fields named in `update` of `target` into the existing record.
    pub fn update(update: Vec<String>, target: Fields) -> Self {
        SidePlan {
            create: false,
            update,
            scope: ScopeOp::Keep,
            target,
        }
    }
    /// True when nothing is written to this side.
    pub fn is_noop(&self) -> bool {
        !self.create && self.update.is_empty() && self.scope == ScopeOp::Keep
    }
}

/// What happens to the link row.
#[derive(Clone, Debug, PartialEq)]
pub enum LinkAction {
    None,
    /// A new link. Pending while the Google record is being created.
    Create {
        state: LinkState,
        snapshot: Fields,
        replaces: Option<LinkId>,
    },
    /// Existing link: new snapshot and state (Pending -> Active, Ended -> Active, ...).
    Update {
        state: LinkState,
        snapshot: Fields,
    },
    /// The pair leaves the sync; the snapshot is kept for the journal and for a later rejoin.
    End {
        snapshot: Fields,
        reason: Rule,
    },
}

/// The rule that decided an item or a field, recorded in the journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    NoChange,
    CrmOnlyChange,
    GoogleOnlyChange,
    LwwCrmNewer,
    LwwGoogleNewer,
    BothAgree,
    NewInCrm,
    NewInGoogle,
    LinkByEmail,
    AdoptByMarker,
    CrmLeftScope,
    CrmDeleted,
    GoogleLeftScope,
    GoogleDeleted,
    Rejoin,
    PendingCreateUnconfirmed,
    PendingCreateRetry,
    PendingCreateAbandoned,
    NeedsGoogleRead,
    MergeIntoSurvivor,
    /// One of crmsync's own duplicates (see [`crate::identity`]) taken out of the scope.
    DuplicateRemoved,
    /// A field both sides changed, decided for the CRM because the Google record carries no
    /// modification time ([`GOOGLE_TIME_UNKNOWN`]).
    GoogleTimeUnknown,
    /// Two linked contacts merged into one in Google: the link of the absorbed one ends.
    MergedInGoogle,
}

impl Rule {
    pub fn as_str(&self) -> &'static str {
        match self {
            Rule::NoChange => "no_change",
            Rule::CrmOnlyChange => "crm_only_change",
            Rule::GoogleOnlyChange => "google_only_change",
            Rule::LwwCrmNewer => "lww_crm_newer",
            Rule::LwwGoogleNewer => "lww_google_newer",
            Rule::BothAgree => "both_agree",
            Rule::NewInCrm => "new_in_crm",
            Rule::NewInGoogle => "new_in_google",
            Rule::LinkByEmail => "link_by_email",
            Rule::AdoptByMarker => "adopt_by_marker",
            Rule::CrmLeftScope => "crm_left_scope",
            Rule::CrmDeleted => "crm_deleted",
            Rule::GoogleLeftScope => "google_left_scope",
            Rule::GoogleDeleted => "google_deleted",
            Rule::Rejoin => "rejoin",
            Rule::PendingCreateUnconfirmed => "pending_create_unconfirmed",
            Rule::PendingCreateRetry => "pending_create_retry",
            Rule::PendingCreateAbandoned => "pending_create_abandoned",
            Rule::NeedsGoogleRead => "needs_google_read",
            Rule::MergeIntoSurvivor => "merge_into_survivor",
            Rule::DuplicateRemoved => "duplicate_removed",
            Rule::GoogleTimeUnknown => "google_time_unknown",
            Rule::MergedInGoogle => "merged_in_google",
        }
    }
}

/// One field value overwritten on one side (kept in the journal so nothing is lost).
#[derive(Clone, Debug, PartialEq)]
pub struct Overwrite {
    pub side: Side,
    pub field: String,
    pub before: Value,
    pub after: Value,
    pub rule: Rule,
}

/// The plan for one item.
#[derive(Clone, Debug, PartialEq)]
pub struct ItemPlan {
    pub link_id: Option<LinkId>,
    pub crm_id: Option<String>,
    pub google_id: Option<GoogleId>,
    /// The rule that decided the item as a whole.
    pub rule: Rule,
    pub crm: SidePlan,
    pub google: SidePlan,
    pub link: LinkAction,
    pub conflicts: Vec<FieldConflict>,
    pub overwrites: Vec<Overwrite>,
    /// Nothing can be decided in this run (e.g. a create awaiting confirmation).
    pub deferred: bool,
}

impl ItemPlan {
    /// True when carrying out the plan writes nothing anywhere.
    pub fn is_noop(&self) -> bool {
        self.crm.is_noop() && self.google.is_noop() && self.link == LinkAction::None
    }
    /// True when this plan ends a link because one side left the scope (for the mass-untag guard).
    pub fn ends_link(&self) -> bool {
        matches!(self.link, LinkAction::End { .. })
    }
}

/// Plans every item. Each item is planned on its own, so the result does not depend on order.
pub fn plan(items: &[Item], policy: &PlanPolicy, now: DateTime<Utc>) -> Vec<ItemPlan> {
    items.iter().map(|i| plan_item(i, policy, now)).collect()
}

/// Plans one item.
pub fn plan_item(item: &Item, policy: &PlanPolicy, now: DateTime<Utc>) -> ItemPlan {
    match &item.link {
        None => plan_unlinked(item),
        Some(link) => plan_linked(link, item, policy, now),
    }
}

pub(crate) fn empty_plan(
    crm: Option<&CrmState>,
    google: Option<&GoogleState>,
    rule: Rule,
) -> ItemPlan {
    ItemPlan {
        link_id: None,
        crm_id: crm.map(|c| c.id.clone()),
        google_id: google.map(|g| g.id.clone()),
        rule,
        crm: SidePlan::none(crm.map(|c| c.fields.clone()).unwrap_or_default()),
        google: SidePlan::none(google.and_then(|g| g.fields.clone()).unwrap_or_default()),
        link: LinkAction::None,
        conflicts: Vec::new(),
        overwrites: Vec::new(),
        deferred: false,
    }
}

fn plan_unlinked(item: &Item) -> ItemPlan {
    let google = match &item.google {
        GoogleObs::Seen(g) => Some(g),
        _ => None,
    };
    match (&item.crm, google) {
        (Some(c), Some(g))
            if c.presence == Presence::InScope && g.presence == Presence::InScope =>
        {
            let rule = match item.paired {
                Some(PairReason::Marker) => Rule::AdoptByMarker,
                _ => Rule::LinkByEmail,
            };
            let g_fields = g.fields.clone().unwrap_or_default();
            let mut p = merge_both(None, c, &g_fields, g.updated_at, rule);
            p.google_id = Some(g.id.clone());
            p.link = LinkAction::Create {
                state: LinkState::Active,
                snapshot: p.crm.target.clone(),
                replaces: None,
            };
            p
        }
        (Some(c), None) if c.presence == Presence::InScope => {
            let mut p = empty_plan(Some(c), None, Rule::NewInCrm);
            p.google = SidePlan::create(c.fields.clone());
            p.link = LinkAction::Create {
                state: LinkState::Pending,
                snapshot: c.fields.clone(),
                replaces: None,
            };
            p
        }
        (None, Some(g)) if g.presence == Presence::InScope => {
            let g_fields = g.fields.clone().unwrap_or_default();
            let mut p = empty_plan(None, Some(g), Rule::NewInGoogle);
            p.crm = SidePlan::create(g_fields.clone());
            p.link = LinkAction::Create {
                state: LinkState::Active,
                snapshot: g_fields,
                replaces: None,
            };
            p
        }
        // Out of scope on the only side we have (or paired records not both in scope):
        // not ours to sync.
        (c, g) => empty_plan(c.as_ref(), g, Rule::NoChange),
    }
}

/// Merges both sides against `base` and plans the field writes for both (no scope change).
fn merge_both(
    base: Option<&Fields>,
    crm: &CrmState,
    google_fields: &Fields,
    google_updated: DateTime<Utc>,
    rule: Rule,
) -> ItemPlan {
    let merged = merge::merge3(
        base,
        Version {
            fields: &crm.fields,
            modified_at: Some(crm.modified_at),
        },
        Version {
            fields: google_fields,
            modified_at: (google_updated != GOOGLE_TIME_UNKNOWN).then_some(google_updated),
        },
    );
    let crm_changed = fields::changed(&crm.fields, &merged.fields);
    let google_changed = fields::changed(google_fields, &merged.fields);
    let mut overwrites = Vec::new();
    for (side, current, changed) in [
        (Side::Crm, &crm.fields, &crm_changed),
        (Side::Google, google_fields, &google_changed),
    ] {
        for name in changed {
            let field_rule = merged
                .conflicts
                .iter()
                .find(|c| &c.field == name)
                .map(conflict_rule)
                .unwrap_or(match side {
                    Side::Crm => Rule::GoogleOnlyChange,
                    Side::Google => Rule::CrmOnlyChange,
                });
            overwrites.push(Overwrite {
                side,
                field: name.clone(),
                before: fields::get(current, name).clone(),
                after: fields::get(&merged.fields, name).clone(),
                rule: field_rule,
            });
        }
    }
    ItemPlan {
        link_id: None,
        crm_id: Some(crm.id.clone()),
        google_id: None,
        rule,
        crm: SidePlan::update(crm_changed, merged.fields.clone()),
        google: SidePlan::update(google_changed, merged.fields),
        link: LinkAction::None,
        conflicts: merged.conflicts,
        overwrites,
        deferred: false,
    }
}

fn plan_linked(
    link: &LinkRecord,
    item: &Item,
    policy: &PlanPolicy,
    now: DateTime<Utc>,
) -> ItemPlan {
    // A link without its CRM record: the record is gone entirely; treat it as deleted with the
    // snapshot's values (so nothing is "changed" on the CRM side).
    let crm = item.crm.clone().unwrap_or_else(|| CrmState {
        id: link.crm_id.clone(),
        fields: link.snapshot.clone(),
        modified_at: DateTime::<Utc>::MIN_UTC,
        presence: Presence::Deleted,
    });
    let mut p = match link.state {
        LinkState::Pending => plan_pending(link, &crm, &item.google, policy, now),
        LinkState::Active => plan_active(link, &crm, &item.google, policy),
        // An abandoned pending create that shows up after all: an ordinary link from here on.
        LinkState::Ended
            if link.google_id.is_none() && matches!(item.google, GoogleObs::Seen(_)) =>
        {
            plan_active(link, &crm, &item.google, policy)
        }
        LinkState::Ended => plan_ended(link, &crm, &item.google),
    };
    p.link_id = Some(link.id);
    if p.google_id.is_none() {
        p.google_id = link.google_id.clone();
    }
    p
}

fn plan_pending(
    link: &LinkRecord,
    crm: &CrmState,
    google: &GoogleObs,
    policy: &PlanPolicy,
    now: DateTime<Utc>,
) -> ItemPlan {
    match google {
        // The create arrived: from here on it is an ordinary link whose base is what we sent.
        GoogleObs::Seen(_) => {
            let mut p = plan_active(link, crm, google, policy);
            if p.rule == Rule::NoChange {
                p.rule = Rule::AdoptByMarker;
            }
            if p.link == LinkAction::None {
                p.link = LinkAction::Update {
                    state: LinkState::Active,
                    snapshot: p.crm.target.clone(),
                };
            }
            p
        }
        GoogleObs::NotObserved | GoogleObs::Missing => {
            let waited_enough = match (google, link.pending_since) {
                (GoogleObs::Missing, _) => true,
                (_, Some(since)) => now - since >= policy.pending_confirm_after,
                (_, None) => true,
            };
            let mut p = empty_plan(Some(crm), None, Rule::PendingCreateUnconfirmed);
            if !waited_enough {
                p.deferred = true;
                return p;
            }
            if crm.presence == Presence::InScope {
                p.rule = Rule::PendingCreateRetry;
                p.google = SidePlan::create(crm.fields.clone());
                p.link = LinkAction::Update {
                    state: LinkState::Pending,
                    snapshot: crm.fields.clone(),
                };
            } else {
                p.rule = Rule::PendingCreateAbandoned;
                p.link = LinkAction::End {
                    snapshot: link.snapshot.clone(),
                    reason: Rule::PendingCreateAbandoned,
                };
            }
            p
        }
    }
}

/// The Google state to merge against when the listing did not mention a linked record.
fn assumed_google(
    link: &LinkRecord,
    google: &GoogleObs,
) -> (Fields, DateTime<Utc>, Presence, Option<GoogleId>) {
    match google {
        GoogleObs::Seen(g) => (
            g.fields.clone().unwrap_or_else(|| link.snapshot.clone()),
            g.updated_at,
            g.presence,
            Some(g.id.clone()),
        ),
        GoogleObs::NotObserved => (
            link.snapshot.clone(),
            DateTime::<Utc>::MIN_UTC,
            Presence::InScope,
            link.google_id.clone(),
        ),
        GoogleObs::Missing => (
            link.snapshot.clone(),
            DateTime::<Utc>::MIN_UTC,
            Presence::Deleted,
            link.google_id.clone(),
        ),
    }
}

fn plan_active(
    link: &LinkRecord,
    crm: &CrmState,
    google: &GoogleObs,
    policy: &PlanPolicy,
) -> ItemPlan {
    let (g_fields, g_updated, g_presence, g_id) = assumed_google(link, google);
    let mut p = merge_both(
        Some(&link.snapshot),
        crm,
        &g_fields,
        g_updated,
        Rule::NoChange,
    );
    p.google_id = g_id;
    let crm_in = crm.presence == Presence::InScope;
    let google_in = g_presence == Presence::InScope;
    match (crm_in, google_in) {
        (true, true) => {
            p.rule = item_rule(&p);
            if !fields::same(&p.crm.target, &link.snapshot) || link.state != LinkState::Active {
                p.link = LinkAction::Update {
                    state: LinkState::Active,
                    snapshot: p.crm.target.clone(),
                };
            }
        }
        _ => {
            // One side (or both) left: the link ends. Pending edits are merged into every record
            // that survives first, so nothing is lost.
            let crm_exists = crm.presence != Presence::Deleted;
            let google_exists = g_presence != Presence::Deleted;
            let reason = if !crm_in {
                if crm_exists {
                    Rule::CrmLeftScope
                } else {
                    Rule::CrmDeleted
                }
            } else if google_exists {
                Rule::GoogleLeftScope
            } else {
                Rule::GoogleDeleted
            };
            p.rule = reason;
            if !crm_exists {
                p.crm.update.clear();
                p.overwrites.retain(|o| o.side != Side::Crm);
            } else if crm_in {
                p.crm.scope = ScopeOp::Leave;
            }
            if !google_exists || !policy.update_google_before_leave {
                p.google.update.clear();
                p.overwrites.retain(|o| o.side != Side::Google);
            }
            if google_in {
                p.google.scope = ScopeOp::Leave;
            }
            p.link = LinkAction::End {
                snapshot: p.crm.target.clone(),
                reason,
            };
        }
    }
    p
}

/// The rule that decided a conflict (journaled with it).
pub fn conflict_rule(c: &FieldConflict) -> Rule {
    match (c.decided_by, c.winner) {
        (Decision::GoogleTimeUnknown, _) => Rule::GoogleTimeUnknown,
        (Decision::LaterWriter, Side::Crm) => Rule::LwwCrmNewer,
        (Decision::LaterWriter, Side::Google) => Rule::LwwGoogleNewer,
    }
}

fn item_rule(p: &ItemPlan) -> Rule {
    let crm_writes = !p.crm.update.is_empty();
    let google_writes = !p.google.update.is_empty();
    if let Some(c) = p.conflicts.first() {
        conflict_rule(c)
    } else {
        match (crm_writes, google_writes) {
            (false, false) => Rule::NoChange,
            (true, false) => Rule::GoogleOnlyChange,
            (false, true) => Rule::CrmOnlyChange,
            (true, true) => Rule::MergeIntoSurvivor,
        }
    }
}

fn plan_ended(link: &LinkRecord, crm: &CrmState, google: &GoogleObs) -> ItemPlan {
    let crm_exists = crm.presence != Presence::Deleted;
    let crm_in = crm.presence == Presence::InScope;
    match google {
        GoogleObs::NotObserved => {
            let mut p = empty_plan(Some(crm), None, Rule::NoChange);
            if crm_in {
                // The CRM record came back; the executor must read the Google record first.
                p.rule = Rule::NeedsGoogleRead;
                p.deferred = true;
            }
            p
        }
        GoogleObs::Missing => {
            let mut p = empty_plan(Some(crm), None, Rule::NoChange);
            if crm_in {
                // Came back, but the Google record is gone: create a new one for the same link.
                p.rule = Rule::NewInCrm;
                p.google = SidePlan::create(crm.fields.clone());
                p.link = LinkAction::Update {
                    state: LinkState::Pending,
                    snapshot: crm.fields.clone(),
                };
            }
            p
        }
        GoogleObs::Seen(g) => {
            let google_in = g.presence == Presence::InScope;
            let google_exists = g.presence != Presence::Deleted;
            if !(crm_in || google_in) {
                return empty_plan(Some(crm), Some(g), Rule::NoChange);
            }
            if crm_exists && google_exists {
                // Links come back: the side still outside joins again; edits from both sides
                // since the link ended are merged.
                let g_fields = g.fields.clone().unwrap_or_else(|| link.snapshot.clone());
                let mut p = merge_both(
                    Some(&link.snapshot),
                    crm,
                    &g_fields,
                    g.updated_at,
                    Rule::Rejoin,
                );
                p.google_id = Some(g.id.clone());
                if !crm_in {
                    p.crm.scope = ScopeOp::Join;
                }
                if !google_in {
                    p.google.scope = ScopeOp::Join;
                }
                p.link = LinkAction::Update {
                    state: LinkState::Active,
                    snapshot: p.crm.target.clone(),
                };
                return p;
            }
            if crm_in {
                // The Google record was deleted while unlinked: create a new one.
                let mut p = empty_plan(Some(crm), None, Rule::NewInCrm);
                p.google = SidePlan::create(crm.fields.clone());
                p.link = LinkAction::Update {
                    state: LinkState::Pending,
                    snapshot: crm.fields.clone(),
                };
                return p;
            }
            // The Google record is in scope again but its CRM record was deleted: import it as a
            // new CRM record (the deleted one stays deleted) with a new link replacing this one.
            let g_fields = g.fields.clone().unwrap_or_default();
            let mut p = empty_plan(None, Some(g), Rule::NewInGoogle);
            p.crm = SidePlan::create(g_fields.clone());
            p.link = LinkAction::Create {
                state: LinkState::Active,
                snapshot: g_fields,
                replaces: Some(link.id),
            };
            p
        }
    }
}

/// Pairs unlinked CRM and Google records that are the same thing: first by the CRM id a Google
/// record carries (a create whose answer was lost), then by a shared key (e-mail). Deterministic:
/// candidates are visited in id order, so the result does not depend on input order.
///
/// `crm` and `google` are `(id, keys)`; returns `(crm index, google index, reason)`.
pub fn pair_unlinked(
    crm: &[(String, Vec<String>)],
    google: &[(String, Option<String>, Vec<String>)],
) -> Vec<(usize, usize, PairReason)> {
    let mut crm_order: Vec<usize> = (0..crm.len()).collect();
    crm_order.sort_by(|a, b| crm[*a].0.cmp(&crm[*b].0));
    let mut google_order: Vec<usize> = (0..google.len()).collect();
    google_order.sort_by(|a, b| google[*a].0.cmp(&google[*b].0));
    let mut crm_taken = vec![false; crm.len()];
    let mut google_taken = vec![false; google.len()];
    let mut pairs = Vec::new();
    for &gi in &google_order {
        if let Some(marker) = &google[gi].1 {
            if let Some(&ci) = crm_order
                .iter()
                .find(|&&ci| !crm_taken[ci] && &crm[ci].0 == marker)
            {
                crm_taken[ci] = true;
                google_taken[gi] = true;
                pairs.push((ci, gi, PairReason::Marker));
            }
        }
    }
    for &ci in &crm_order {
        if crm_taken[ci] || crm[ci].1.is_empty() {
            continue;
        }
        let found = google_order
            .iter()
            .copied()
            .find(|&gi| !google_taken[gi] && google[gi].2.iter().any(|k| crm[ci].1.contains(k)));
        if let Some(gi) = found {
            crm_taken[ci] = true;
            google_taken[gi] = true;
            pairs.push((ci, gi, PairReason::Email));
        }
    }
    pairs
}
