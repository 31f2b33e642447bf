//! Contact merges as Google Contacts' "Merge" / "Merge duplicates" does them (a user action,
//! not an API method, so it is driven through the control plane): the survivor keeps its
//! `resourceName`, takes the union of the absorbed contacts' fields and group memberships,
//! and lists their resource names in `metadata.previousResourceNames`; the absorbed contacts
//! are deleted. Incremental `connections.list` then shows the survivor as changed (with
//! `previousResourceNames`) and the absorbed ones as deleted.

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use super::person::{all_fields, render, ContactData, SINGLETONS};
use super::store::PeopleStore;

/// Why a merge was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeError {
    /// A resource name is not a live contact of the user.
    NotFound(String),
    /// The request itself is wrong (nothing to merge, survivor listed twice, bad name).
    Invalid(String),
}

impl std::fmt::Display for MergeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MergeError::NotFound(m) | MergeError::Invalid(m) => f.write_str(m),
        }
    }
}

/// `people/c123` or `c123` → `c123`.
fn id_of(name: &str) -> Result<String, MergeError> {
    let id = name.trim().strip_prefix("people/").unwrap_or(name.trim());
    if id.len() > 1 && id.starts_with('c') && id[1..].bytes().all(|b| b.is_ascii_digit()) {
        Ok(id.to_string())
    } else {
        Err(MergeError::Invalid(format!(
            "{name:?} is not a contact resource name (people/c…)"
        )))
    }
}

/// Whether two items of field `field` are the same value (emails case-insensitively, phone
/// numbers by their digits, everything else by equal JSON).
fn same_item(field: &str, a: &Value, b: &Value) -> bool {
    let value = |v: &Value| {
        v.get("value")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    match field {
        "emailAddresses" => value(a).eq_ignore_ascii_case(&value(b)),
        "phoneNumbers" => {
            let digits = |s: String| s.chars().filter(char::is_ascii_digit).collect::<String>();
            let (x, y) = (digits(value(a)), digits(value(b)));
            !x.is_empty() && x == y
        }
        _ => a == b,
    }
}

/// The survivor's data after absorbing `others`: repeated fields take the union (survivor's
/// items first, duplicates dropped), singleton fields (`names`, `biographies`, `birthdays`,
/// `genders`) keep the survivor's value and take the first absorbed one only when the
/// survivor has none; memberships are the union of all groups.
pub fn merged_data(survivor: &ContactData, others: &[(String, ContactData)]) -> ContactData {
    let mut out = survivor.clone();
    for (_, other) in others {
        for (field, items) in &other.fields {
            let Some(items) = items.as_array() else {
                continue;
            };
            let entry = out
                .fields
                .entry(field.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            let Some(have) = entry.as_array_mut() else {
                continue;
            };
            for item in items {
                if SINGLETONS.contains(&field.as_str()) {
                    if have.is_empty() {
                        have.push(item.clone());
                    }
                    continue;
                }
                if !have.iter().any(|h| same_item(field, h, item)) {
                    have.push(item.clone());
                }
            }
        }
        out.groups.extend(other.groups.iter().cloned());
    }
    for (name, other) in others {
        for prev in other
            .previous_resource_names
            .iter()
            .chain(std::iter::once(name))
        {
            if !out.previous_resource_names.contains(prev) {
                out.previous_resource_names.push(prev.clone());
            }
        }
    }
    out
}

/// Merges the contacts `merged` into `survivor` in one user's store. Returns the survivor as
/// the control plane shows it (all fields, `metadata.previousResourceNames`).
pub fn merge_contacts(
    store: &mut PeopleStore,
    survivor: &str,
    merged: &[String],
    now: DateTime<Utc>,
    delay: Duration,
) -> Result<Value, MergeError> {
    let survivor_id = id_of(survivor)?;
    if merged.is_empty() {
        return Err(MergeError::Invalid(
            "nothing to merge: give the survivor and at least one other contact".into(),
        ));
    }
    let live = |store: &PeopleStore, id: &str| {
        store
            .live(id)
            .map(|c| c.current().data.clone())
            .ok_or_else(|| {
                MergeError::NotFound(format!("people/{id} is not a contact of this user"))
            })
    };
    let survivor_data = live(store, &survivor_id)?;
    let mut others: Vec<(String, ContactData)> = Vec::with_capacity(merged.len());
    for name in merged {
        let id = id_of(name)?;
        if id == survivor_id {
            return Err(MergeError::Invalid(format!(
                "people/{id} is the survivor and cannot also be merged into itself"
            )));
        }
        let rn = format!("people/{id}");
        if others.iter().any(|(n, _)| *n == rn) {
            return Err(MergeError::Invalid(format!("{rn} is listed twice")));
        }
        others.push((rn, live(store, &id)?));
    }
    let data = merged_data(&survivor_data, &others);
    // The survivor's change comes first in the change order, then the deletions.
    store.write(Some(&survivor_id), data, now, delay);
    for (rn, d) in others {
        let id = rn.trim_start_matches("people/").to_string();
        let mut gone = d;
        gone.deleted = true;
        store.write(Some(&id), gone, now, delay);
    }
    let c = store
        .contact(&survivor_id)
        .ok_or_else(|| MergeError::NotFound(format!("people/{survivor_id} vanished")))?;
    let mut p = render(
        &c.resource_name(),
        &c.source_id,
        &c.current().data,
        &all_fields(),
    );
    add_previous_resource_names(&mut p, &c.current().data);
    Ok(p)
}

/// Adds `metadata.previousResourceNames` to a rendered person (when it has any and the
/// rendering includes `metadata`).
pub fn add_previous_resource_names(person: &mut Value, data: &ContactData) {
    if data.deleted || data.previous_resource_names.is_empty() {
        return;
    }
    if let Some(Value::Object(meta)) = person.get_mut("metadata") {
        meta.insert(
            "previousResourceNames".into(),
            json!(data.previous_resource_names),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;
    use std::collections::BTreeSet;

    fn data(fields: Value, groups: &[&str]) -> ContactData {
        let fields: Map<String, Value> = fields.as_object().cloned().unwrap_or_default();
        ContactData {
            fields,
            groups: groups
                .iter()
                .map(|g| g.to_string())
                .collect::<BTreeSet<_>>(),
            deleted: false,
            etag_n: 1,
            update_time: Utc::now(),
            previous_resource_names: Vec::new(),
        }
    }

    #[test]
    fn union_of_fields_and_groups() {
        let a = data(
            json!({"names": [{"givenName": "Ada"}], "emailAddresses": [{"value": "ada@x.test"}]}),
            &["myContacts", "g1"],
        );
        let b = data(
            json!({"names": [{"givenName": "A."}], "emailAddresses": [{"value": "ADA@x.test"}, {"value": "ada@y.test"}],
                   "phoneNumbers": [{"value": "+1 555 0100"}], "biographies": [{"value": "note"}]}),
            &["myContacts", "g2"],
        );
        let mut b_prev = b.clone();
        b_prev.previous_resource_names = vec!["people/c9".into()];
        let m = merged_data(&a, &[("people/c2".into(), b_prev)]);
        assert_eq!(m.fields["names"], json!([{"givenName": "Ada"}]));
        assert_eq!(
            m.fields["emailAddresses"],
            json!([{"value": "ada@x.test"}, {"value": "ada@y.test"}])
        );
        assert_eq!(m.fields["phoneNumbers"], json!([{"value": "+1 555 0100"}]));
        assert_eq!(m.fields["biographies"], json!([{"value": "note"}]));
        assert_eq!(
            m.groups.iter().map(String::as_str).collect::<Vec<_>>(),
            ["g1", "g2", "myContacts"]
        );
        assert_eq!(m.previous_resource_names, ["people/c9", "people/c2"]);
    }
}
