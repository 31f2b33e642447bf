//! The three-way, field-level merge at the heart of the planner (SPEC section 3, "Conflicts").
//!
//! Against the last synced snapshot (the merge base), each field is decided on its own:
//! - both sides agree: that value;
//! - only one side changed it: that side's value;
//! - both changed it to different values: the side whose record was modified later wins
//!   (last writer wins); a tie goes to the CRM. The loser's value is reported as a conflict so
//!   the executor keeps it in the journal. A Google record that carries no modification time
//!   cannot be shown to be the later writer: the CRM wins, and the conflict says why
//!   ([`Decision::GoogleTimeUnknown`]) so the journal does not claim the CRM was newer.
//!
//! Without a base (two records linked for the first time, e.g. by e-mail), a value present on one
//! side only is kept, and differing values are a conflict decided the same way.

use crate::fields::{self, Fields};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One of the two sides of a sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Crm,
    Google,
}

impl Side {
    pub fn as_str(&self) -> &'static str {
        match self {
            Side::Crm => "crm",
            Side::Google => "google",
        }
    }
    pub fn other(&self) -> Side {
        match self {
            Side::Crm => Side::Google,
            Side::Google => Side::Crm,
        }
    }
}

/// Where a merged field's value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Both sides hold the same value.
    Agree,
    /// Only this side changed the field (or, without a base, only this side has a value).
    OnlyChanged(Side),
    /// Both sides changed it differently; this side was the later writer (ties: CRM).
    Conflict(Side),
    /// Two lists linked for the first time: the union of both (nothing dropped).
    Union,
}

/// How the winner of a conflict was chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The side modified later won (a tie goes to the CRM).
    #[default]
    LaterWriter,
    /// The Google record carries no modification time, so nobody can tell who wrote last: the
    /// CRM won (a conflict needs a change on the CRM side too). Journaled as such.
    GoogleTimeUnknown,
}

/// A field that both sides changed to different values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldConflict {
    pub field: String,
    pub base: Value,
    pub crm: Value,
    pub google: Value,
    pub winner: Side,
    /// How `winner` was chosen.
    #[serde(default)]
    pub decided_by: Decision,
}

impl FieldConflict {
    /// The value that lost (kept in the journal).
    pub fn loser_value(&self) -> &Value {
        match self.winner {
            Side::Crm => &self.google,
            Side::Google => &self.crm,
        }
    }
    pub fn winner_value(&self) -> &Value {
        match self.winner {
            Side::Crm => &self.crm,
            Side::Google => &self.google,
        }
    }
}

/// One side's version of a record for the merge.
#[derive(Clone, Copy, Debug)]
pub struct Version<'a> {
    pub fields: &'a Fields,
    /// When this side's record was last modified (CRM `modified_at`, Google `updateTime` /
    /// `updated`); `None` when the record carries no time (see [`conflict_winner`]).
    pub modified_at: Option<DateTime<Utc>>,
}

/// The result of a merge.
#[derive(Clone, Debug, PartialEq)]
pub struct Merged {
    pub fields: Fields,
    pub conflicts: Vec<FieldConflict>,
}

/// Which side wins a conflict: the later writer; ties go to the CRM.
pub fn later_writer(crm_time: DateTime<Utc>, google_time: DateTime<Utc>) -> Side {
    if crm_time >= google_time {
        Side::Crm
    } else {
        Side::Google
    }
}

/// Who wins a conflict, and why: the later writer when both times are known (ties: the CRM);
/// when the Google record carries no time, the CRM ([`Decision::GoogleTimeUnknown`]: an unknown
/// time is never taken for an early one silently). CRM records always carry a time; were one to
/// lack it against a timed Google record, Google would be the later writer.
pub fn conflict_winner(
    crm_time: Option<DateTime<Utc>>,
    google_time: Option<DateTime<Utc>>,
) -> (Side, Decision) {
    match (crm_time, google_time) {
        (Some(c), Some(g)) => (later_writer(c, g), Decision::LaterWriter),
        (_, None) => (Side::Crm, Decision::GoogleTimeUnknown),
        (None, Some(_)) => (Side::Google, Decision::LaterWriter),
    }
}

/// Decides one field. Returns the value and where it came from.
pub fn merge_field(
    base: Option<&Value>,
    crm: &Value,
    google: &Value,
    later: Side,
) -> (Value, Origin) {
    if crm == google {
        return (crm.clone(), Origin::Agree);
    }
    match base {
        Some(b) if b == crm => (google.clone(), Origin::OnlyChanged(Side::Google)),
        Some(b) if b == google => (crm.clone(), Origin::OnlyChanged(Side::Crm)),
        None if crm.is_null() => (google.clone(), Origin::OnlyChanged(Side::Google)),
        None if google.is_null() => (crm.clone(), Origin::OnlyChanged(Side::Crm)),
        None => match (crm.as_array(), google.as_array()) {
            (Some(c), Some(g)) => (union(c, g), Origin::Union),
            _ => match later {
                Side::Crm => (crm.clone(), Origin::Conflict(Side::Crm)),
                Side::Google => (google.clone(), Origin::Conflict(Side::Google)),
            },
        },
        _ => match later {
            Side::Crm => (crm.clone(), Origin::Conflict(Side::Crm)),
            Side::Google => (google.clone(), Origin::Conflict(Side::Google)),
        },
    }
}

/// The identity of a list element for a union: its e-mail address or number (case-insensitive)
/// when it has one, else the whole element.
fn element_key(v: &Value) -> String {
    ["address", "number", "email"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .map(str::to_lowercase)
        .unwrap_or_else(|| v.to_string())
}

/// The CRM's elements, then Google's that the CRM does not have (never marked primary).
fn union(crm: &[Value], google: &[Value]) -> Value {
    let mut out: Vec<Value> = crm.to_vec();
    let mut keys: Vec<String> = crm.iter().map(element_key).collect();
    for g in google {
        let k = element_key(g);
        if !keys.contains(&k) {
            let mut g = g.clone();
            if let Some(p) = g.get_mut("primary") {
                *p = Value::Bool(false);
            }
            out.push(g);
            keys.push(k);
        }
    }
    Value::Array(out)
}

/// Merges two versions of a record against an optional base, field by field.
pub fn merge3(base: Option<&Fields>, crm: Version<'_>, google: Version<'_>) -> Merged {
    let (later, decided_by) = conflict_winner(crm.modified_at, google.modified_at);
    let mut names = fields::names(crm.fields, google.fields);
    if let Some(b) = base {
        names.extend(
            b.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, _)| k.clone()),
        );
    }
    let mut merged = Fields::new();
    let mut conflicts = Vec::new();
    for name in names {
        let b = base.map(|b| fields::get(b, &name));
        let c = fields::get(crm.fields, &name);
        let g = fields::get(google.fields, &name);
        let (value, origin) = merge_field(b, c, g, later);
        if let Origin::Conflict(winner) = origin {
            conflicts.push(FieldConflict {
                field: name.clone(),
                base: b.cloned().unwrap_or(Value::Null),
                crm: c.clone(),
                google: g.clone(),
                winner,
                decided_by,
            });
        }
        if !value.is_null() {
            merged.insert(name, value);
        }
    }
    Merged {
        fields: merged,
        conflicts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn f(pairs: &[(&str, Value)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }
    fn v(fields: &Fields, modified_at: Option<DateTime<Utc>>) -> Version<'_> {
        Version {
            fields,
            modified_at,
        }
    }
    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn one_sided_changes_merge() {
        let base = f(&[("a", json!(1)), ("b", json!(1))]);
        let crm = f(&[("a", json!(2)), ("b", json!(1))]);
        let google = f(&[("a", json!(1)), ("b", json!(3))]);
        let m = merge3(Some(&base), v(&crm, Some(t(0))), v(&google, Some(t(5))));
        assert_eq!(m.fields, f(&[("a", json!(2)), ("b", json!(3))]));
        assert!(m.conflicts.is_empty());
    }

    #[test]
    fn same_field_later_writer_wins_ties_to_crm() {
        let base = f(&[("a", json!(1))]);
        let crm = f(&[("a", json!(2))]);
        let google = f(&[("a", json!(3))]);
        let later_google = merge3(Some(&base), v(&crm, Some(t(0))), v(&google, Some(t(1))));
        assert_eq!(later_google.fields, google);
        assert_eq!(later_google.conflicts[0].winner, Side::Google);
        assert_eq!(later_google.conflicts[0].loser_value(), &json!(2));
        let tie = merge3(Some(&base), v(&crm, Some(t(1))), v(&google, Some(t(1))));
        assert_eq!(tie.fields, crm);
    }

    /// A Google record without a time used to be given the earliest possible time, so it lost
    /// every conflict while the journal said the CRM was newer. It still cannot win (nobody can
    /// tell who wrote last), but the conflict now says why.
    #[test]
    fn a_google_record_without_a_time_loses_conflicts_and_says_so() {
        let base = f(&[("a", json!(1)), ("b", json!(1))]);
        let crm = f(&[("a", json!(2)), ("b", json!(1))]);
        let google = f(&[("a", json!(3)), ("b", json!(4))]);
        let m = merge3(Some(&base), v(&crm, Some(t(0))), v(&google, None));
        // Changed on both sides: the CRM wins, and the conflict records the reason.
        assert_eq!(m.fields["a"], json!(2));
        assert_eq!(m.conflicts.len(), 1);
        assert_eq!(m.conflicts[0].winner, Side::Crm);
        assert_eq!(m.conflicts[0].decided_by, Decision::GoogleTimeUnknown);
        // Changed in Google only: Google's value, whatever its time.
        assert_eq!(m.fields["b"], json!(4));
        // With both times known the decision is the later writer's.
        let timed = merge3(Some(&base), v(&crm, Some(t(0))), v(&google, Some(t(1))));
        assert_eq!(timed.conflicts[0].winner, Side::Google);
        assert_eq!(timed.conflicts[0].decided_by, Decision::LaterWriter);
    }

    #[test]
    fn no_base_keeps_one_sided_values() {
        let crm = f(&[("a", json!(1)), ("c", json!("x"))]);
        let google = f(&[("b", json!(2)), ("c", json!("y"))]);
        let m = merge3(None, v(&crm, Some(t(2))), v(&google, Some(t(1))));
        assert_eq!(
            m.fields,
            f(&[("a", json!(1)), ("b", json!(2)), ("c", json!("x"))])
        );
        assert_eq!(m.conflicts.len(), 1);
    }

    #[test]
    fn first_link_unions_lists() {
        let crm = f(&[("emails", json!([{"address": "a@x.org", "primary": true}]))]);
        let google = f(&[(
            "emails",
            json!([{"address": "A@x.org", "primary": true}, {"address": "b@y.org", "primary": true}]),
        )]);
        let m = merge3(None, v(&crm, Some(t(0))), v(&google, Some(t(9))));
        assert_eq!(
            m.fields["emails"],
            json!([{"address": "a@x.org", "primary": true}, {"address": "b@y.org", "primary": false}])
        );
        assert!(m.conflicts.is_empty());
    }

    #[test]
    fn deletion_of_a_value_is_a_change() {
        let base = f(&[("a", json!(1))]);
        let crm = f(&[]);
        let google = f(&[("a", json!(1))]);
        let m = merge3(Some(&base), v(&crm, Some(t(0))), v(&google, Some(t(0))));
        assert!(m.fields.is_empty());
    }
}
