//! The official discovery documents (embedded from `emulator/discovery/`): which scopes each
//! method accepts, and which property names each schema has (request bodies are trimmed to
//! those, so responses never carry a field Google would not send).

use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

const CALENDAR: &str = include_str!("../discovery/calendar.v3.json");
const PEOPLE: &str = include_str!("../discovery/people.v1.json");

/// Parsed facts from both discovery documents.
#[derive(Debug, Default)]
pub struct Discovery {
    /// method id -> accepted scope URLs.
    pub scopes: HashMap<String, Vec<String>>,
    /// "calendar.Event" / "people.Person" -> property names.
    pub properties: HashMap<String, HashSet<String>>,
}

fn walk_methods(resources: &Value, out: &mut HashMap<String, Vec<String>>) {
    let Some(map) = resources.as_object() else {
        return;
    };
    for res in map.values() {
        if let Some(methods) = res.get("methods").and_then(Value::as_object) {
            for m in methods.values() {
                if let Some(id) = m.get("id").and_then(Value::as_str) {
                    let scopes = m
                        .get("scopes")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default();
                    out.insert(id.to_string(), scopes);
                }
            }
        }
        if let Some(sub) = res.get("resources") {
            walk_methods(sub, out);
        }
    }
}

fn load(doc: &str, prefix: &str, d: &mut Discovery) {
    let Ok(v) = serde_json::from_str::<Value>(doc) else {
        tracing::error!("embedded discovery document {prefix} does not parse");
        return;
    };
    if let Some(r) = v.get("resources") {
        walk_methods(r, &mut d.scopes);
    }
    if let Some(schemas) = v.get("schemas").and_then(Value::as_object) {
        for (name, schema) in schemas {
            let props = schema
                .get("properties")
                .and_then(Value::as_object)
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            d.properties.insert(format!("{prefix}.{name}"), props);
        }
    }
}

/// The parsed discovery facts (parsed once).
pub fn get() -> &'static Discovery {
    static D: OnceLock<Discovery> = OnceLock::new();
    D.get_or_init(|| {
        let mut d = Discovery::default();
        load(CALENDAR, "calendar", &mut d);
        load(PEOPLE, "people", &mut d);
        d
    })
}

/// Scopes accepted by a discovery method id (empty if unknown).
pub fn scopes_for(method_id: &str) -> &'static [String] {
    get()
        .scopes
        .get(method_id)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Whether `schema` (e.g. `calendar.Event`) has a property `name`.
pub fn has_property(schema: &str, name: &str) -> bool {
    get()
        .properties
        .get(schema)
        .is_some_and(|p| p.contains(name))
}

/// The raw embedded documents (for tests and tooling).
pub fn documents() -> (&'static str, &'static str) {
    (CALENDAR, PEOPLE)
}
