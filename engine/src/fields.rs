//! The canonical field map: the common currency of the planner. Each kind's mapping turns a CRM
//! record and a Google record into a [`Fields`] map (field name -> canonical JSON value) so the
//! three-way merge can compare them field by field without knowing what a contact or an event is.
//! An absent field and a JSON `null` mean the same thing.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// Field name -> canonical value. `BTreeMap` so serialization (and hashing) is deterministic.
pub type Fields = BTreeMap<String, Value>;

/// The value of `name` in `fields`, `Null` when absent.
pub fn get<'a>(fields: &'a Fields, name: &str) -> &'a Value {
    fields.get(name).unwrap_or(&Value::Null)
}

/// Drops `null` values so that "absent" and "null" compare equal.
pub fn normalized(fields: &Fields) -> Fields {
    fields
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// True when both maps hold the same non-null values.
pub fn same(a: &Fields, b: &Fields) -> bool {
    names(a, b).into_iter().all(|n| get(a, &n) == get(b, &n))
}

/// Every field name present (non-null) in either map, sorted.
pub fn names(a: &Fields, b: &Fields) -> BTreeSet<String> {
    a.iter()
        .chain(b.iter())
        .filter(|(_, v)| !v.is_null())
        .map(|(k, _)| k.clone())
        .collect()
}

/// Names of the fields whose values differ between `a` and `b`.
pub fn changed(a: &Fields, b: &Fields) -> Vec<String> {
    names(a, b)
        .into_iter()
        .filter(|n| get(a, n) != get(b, n))
        .collect()
}

/// A stable content hash of the normalized map (hex SHA-256 of its canonical JSON).
pub fn hash(fields: &Fields) -> String {
    let canonical = serde_json::to_string(&normalized(fields)).unwrap_or_default();
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// Serializes a map for storage (e.g. a link's snapshot).
pub fn to_json(fields: &Fields) -> String {
    serde_json::to_string(&normalized(fields)).unwrap_or_else(|_| "{}".to_string())
}

/// Parses a stored map; an unreadable snapshot is treated as empty (the next merge then behaves
/// like a first-run link: values present on one side are kept, conflicts go to the later writer).
pub fn from_json(s: &str) -> Fields {
    serde_json::from_str(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn null_and_absent_are_the_same() {
        let mut a = Fields::new();
        a.insert("x".into(), Value::Null);
        a.insert("y".into(), json!(1));
        let mut b = Fields::new();
        b.insert("y".into(), json!(1));
        assert!(same(&a, &b));
        assert_eq!(hash(&a), hash(&b));
        assert!(changed(&a, &b).is_empty());
        b.insert("z".into(), json!("v"));
        assert_eq!(changed(&a, &b), vec!["z".to_string()]);
        assert_ne!(hash(&a), hash(&b));
    }
}
