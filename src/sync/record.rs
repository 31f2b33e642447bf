//! Recording what a run did: counts per side and action (what `crmsync sync` prints and the API
//! returns) and the journal entries for each carried-out item plan (every overwritten value,
//! every conflict with its winner, every create, join, leave and link change, with the rule).

use crmsync_engine::fields::{self, Fields};
use crmsync_engine::ids::{LinkId, RunId, SyncKind, UserId};
use crmsync_engine::merge::{Decision, Side};
use crmsync_engine::planner::{self, ItemPlan, LinkAction, Rule, ScopeOp};
use crmsync_schema::sync_state::JournalEntry;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Words for joining and leaving the scope, per kind and side.
#[derive(Clone, Copy, Debug)]
pub struct Labels {
    pub crm_join: &'static str,
    pub crm_leave: &'static str,
    pub google_join: &'static str,
    pub google_leave: &'static str,
}

impl Labels {
    pub fn of(kind: SyncKind) -> Labels {
        match kind {
            SyncKind::Contacts => Labels {
                crm_join: "tagged",
                crm_leave: "untagged",
                google_join: "added_to_group",
                google_leave: "removed_from_group",
            },
            SyncKind::Activities => Labels {
                crm_join: "shown_in_calendar",
                crm_leave: "hidden_from_calendar",
                google_join: "restored",
                google_leave: "cancelled",
            },
        }
    }
}

/// An item that failed; it is retried by the next run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ItemError {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crm_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub google_id: Option<String>,
    pub message: String,
}

/// What carrying out `plan` does, as `crm.<action>` / `google.<action>` (`created`, `updated`,
/// and the kind's words for joining and leaving the scope), `linked` (a new pair, or a create
/// whose answer was lost found again by the CRM id it carries) and `unlinked`.
pub fn plan_actions(plan: &ItemPlan, labels: Labels) -> Vec<String> {
    let mut out = Vec::new();
    for (name, side, join, leave) in [
        ("crm", &plan.crm, labels.crm_join, labels.crm_leave),
        (
            "google",
            &plan.google,
            labels.google_join,
            labels.google_leave,
        ),
    ] {
        if side.create {
            out.push(format!("{name}.created"));
        } else if !side.update.is_empty() {
            out.push(format!("{name}.updated"));
        }
        match side.scope {
            ScopeOp::Join => out.push(format!("{name}.{join}")),
            ScopeOp::Leave => out.push(format!("{name}.{leave}")),
            ScopeOp::Keep => {}
        }
    }
    match &plan.link {
        LinkAction::Create { .. } => out.push("linked".into()),
        LinkAction::Update { .. } if plan.rule == Rule::AdoptByMarker => out.push("linked".into()),
        LinkAction::End { .. } => out.push("unlinked".into()),
        _ => {}
    }
    out
}

/// A name to recognise a record by in a list: its title, its name, else its first e-mail.
pub fn record_label(f: &Fields) -> Option<String> {
    let text = |n: &str| {
        fields::get(f, n)
            .as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    if let Some(t) = text("title") {
        return Some(t.to_string());
    }
    let name: Vec<&str> = ["given_name", "family_name"]
        .iter()
        .filter_map(|n| text(n))
        .collect();
    if !name.is_empty() {
        return Some(name.join(" "));
    }
    let emails = fields::get(f, "emails").as_array()?;
    emails.iter().find_map(|e| {
        e.get("address")
            .and_then(|a| a.as_str())
            .map(str::to_string)
    })
}

/// Counts of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Per action on the CRM side (`created`, `updated`, `tagged`, `untagged`, ...).
    pub crm: BTreeMap<String, u64>,
    /// Per action on the Google side (`created`, `updated`, `added_to_group`, ...).
    pub google: BTreeMap<String, u64>,
    /// Links made (new pairs), links ended.
    pub linked: u64,
    pub unlinked: u64,
    /// Fields both sides changed differently (decided by last writer wins; loser journaled).
    pub conflicts: u64,
    /// Items waiting for Google to confirm a create (People sync results lag writes).
    pub awaiting_confirmation: u64,
    /// Items examined that needed no change.
    pub unchanged: u64,
    pub errors: u64,
}

impl Counts {
    fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
        *map.entry(key.to_string()).or_insert(0) += 1;
    }

    /// Adds what carrying out `plan` did.
    pub fn add_plan(&mut self, plan: &ItemPlan, labels: Labels) {
        if plan.deferred {
            self.awaiting_confirmation += 1;
            return;
        }
        if plan.is_noop() {
            self.unchanged += 1;
            return;
        }
        for action in plan_actions(plan, labels) {
            match action.split_once('.') {
                Some(("crm", a)) => Counts::bump(&mut self.crm, a),
                Some((_, a)) => Counts::bump(&mut self.google, a),
                None if action == "linked" => self.linked += 1,
                None => self.unlinked += 1,
            }
        }
        self.conflicts += plan.conflicts.len() as u64;
    }

    /// Total writes on both sides.
    pub fn writes(&self) -> u64 {
        self.crm.values().sum::<u64>() + self.google.values().sum::<u64>()
    }
}

/// Identifies the run in journal entries.
#[derive(Clone, Copy, Debug)]
pub struct JournalCtx {
    pub run: RunId,
    pub user: UserId,
    pub kind: SyncKind,
    pub labels: Labels,
}

fn side_name(s: Side) -> &'static str {
    s.as_str()
}

/// The journal entries describing a carried-out plan.
pub fn journal_entries(
    ctx: &JournalCtx,
    plan: &ItemPlan,
    link_id: Option<LinkId>,
    crm_id: Option<&str>,
    google_id: Option<&str>,
) -> Vec<JournalEntry> {
    let base = |side: &str, action: &str, rule: &str| JournalEntry {
        run_id: ctx.run,
        user_id: ctx.user,
        kind: ctx.kind,
        link_id,
        crm_id: crm_id.map(str::to_string),
        google_id: google_id.map(str::to_string),
        side: side.to_string(),
        action: action.to_string(),
        rule: rule.to_string(),
        field: None,
        winner: None,
        before: None,
        after: None,
    };
    let mut out = Vec::new();
    let item_rule = plan.rule.as_str();
    for c in &plan.conflicts {
        let mut e = base("link", "conflict", planner::conflict_rule(c).as_str());
        e.field = Some(c.field.clone());
        e.winner = Some(side_name(c.winner).to_string());
        let mut before = json!({"base": c.base, "crm": c.crm, "google": c.google});
        if c.decided_by == Decision::GoogleTimeUnknown {
            before["note"] = json!(
                "Google gave no modification time for this record, so the later writer cannot be told: the CRM's change was kept and Google's value is the one overwritten"
            );
        }
        e.before = Some(before);
        e.after = Some(c.winner_value().clone());
        out.push(e);
    }
    for (side, sp, join, leave) in [
        (
            Side::Crm,
            &plan.crm,
            ctx.labels.crm_join,
            ctx.labels.crm_leave,
        ),
        (
            Side::Google,
            &plan.google,
            ctx.labels.google_join,
            ctx.labels.google_leave,
        ),
    ] {
        let name = side_name(side);
        if sp.create {
            let mut e = base(name, "create", item_rule);
            e.after = Some(serde_json::to_value(&sp.target).unwrap_or(Value::Null));
            out.push(e);
        }
        for o in plan.overwrites.iter().filter(|o| o.side == side) {
            let mut e = base(name, "update", o.rule.as_str());
            e.field = Some(o.field.clone());
            e.before = Some(o.before.clone());
            e.after = Some(o.after.clone());
            out.push(e);
        }
        match sp.scope {
            ScopeOp::Join => out.push(base(name, join, item_rule)),
            ScopeOp::Leave => out.push(base(name, leave, item_rule)),
            ScopeOp::Keep => {}
        }
    }
    match &plan.link {
        LinkAction::Create { .. } => out.push(base("link", "link", item_rule)),
        LinkAction::End { snapshot, reason } => {
            let mut e = base("link", "unlink", reason.as_str());
            e.before = Some(serde_json::to_value(snapshot).unwrap_or(Value::Null));
            out.push(e);
        }
        LinkAction::Update { .. } | LinkAction::None => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use crmsync_engine::fields::Fields;
    use crmsync_engine::ids::GoogleId;
    use crmsync_engine::planner::{
        CrmState, GoogleObs, GoogleState, Item, LinkRecord, LinkState, PlanPolicy, Presence,
    };

    fn title(t: &str) -> Fields {
        [("title".to_string(), json!(t))].into_iter().collect()
    }

    /// A Google record without a time used to be given the earliest possible time: its edit
    /// lost every conflict and the journal said "lww_crm_newer", as if the CRM had been edited
    /// later. Now the CRM still wins (its change is known, Google's time is not) and the journal
    /// says why.
    #[test]
    fn a_conflict_with_an_untimed_google_record_is_journaled_as_such() {
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
        let item = Item {
            link: Some(LinkRecord {
                id: LinkId::new_random(),
                crm_id: "c1".into(),
                google_id: Some(GoogleId::new("g1")),
                state: LinkState::Active,
                snapshot: title("base"),
                pending_since: None,
            }),
            crm: Some(CrmState {
                id: "c1".into(),
                fields: title("crm"),
                modified_at: now,
                presence: Presence::InScope,
            }),
            google: GoogleObs::Seen(GoogleState {
                id: GoogleId::new("g1"),
                fields: Some(title("google")),
                updated_at: planner::google_time(None),
                presence: Presence::InScope,
            }),
            paired: None,
        };
        let plan = planner::plan_item(&item, &PlanPolicy::default(), now);
        assert_eq!(plan.rule, Rule::GoogleTimeUnknown);
        assert_eq!(plan.google.target["title"], json!("crm"));
        let ctx = JournalCtx {
            run: RunId::new_random(),
            user: UserId::new_random(),
            kind: SyncKind::Activities,
            labels: Labels::of(SyncKind::Activities),
        };
        let entries = journal_entries(&ctx, &plan, None, Some("c1"), Some("g1"));
        let conflict = entries
            .iter()
            .find(|e| e.action == "conflict")
            .expect("the conflict is journaled");
        assert_eq!(conflict.rule, "google_time_unknown");
        assert_eq!(conflict.winner.as_deref(), Some("crm"));
        let before = conflict.before.as_ref().expect("the three values");
        assert_eq!(before["google"], json!("google"));
        assert!(before["note"]
            .as_str()
            .is_some_and(|n| n.contains("no modification time")));
        // Google's overwritten value is in the journal under the same rule.
        let overwrite = entries
            .iter()
            .find(|e| e.action == "update" && e.side == "google")
            .expect("Google's value is journaled as overwritten");
        assert_eq!(overwrite.rule, "google_time_unknown");
        assert_eq!(overwrite.before, Some(json!("google")));

        // With a time, the later writer wins as before.
        let mut timed = item.clone();
        if let GoogleObs::Seen(g) = &mut timed.google {
            g.updated_at = planner::google_time(Some(now + chrono::Duration::seconds(1)));
        }
        let plan = planner::plan_item(&timed, &PlanPolicy::default(), now);
        assert_eq!(plan.rule, Rule::LwwGoogleNewer);
        let entries = journal_entries(&ctx, &plan, None, Some("c1"), Some("g1"));
        let conflict = entries.iter().find(|e| e.action == "conflict").unwrap();
        assert_eq!(conflict.rule, "lww_google_newer");
        assert!(conflict.before.as_ref().unwrap().get("note").is_none());
    }
}
