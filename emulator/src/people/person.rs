//! The Person resource: field masks (`personFields`, `updatePersonFields`, `readMask`),
//! which fields are writable and which are singletons, trimming of client input, and
//! rendering with per-item `metadata`, derived output-only fields, `metadata.sources` and
//! person/source etags.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

use crate::clock::fmt_micros;
use crate::errors::ApiError;

/// Every field `personFields` accepts.
pub const PERSON_FIELDS: &[&str] = &[
    "addresses",
    "ageRanges",
    "biographies",
    "birthdays",
    "calendarUrls",
    "clientData",
    "coverPhotos",
    "emailAddresses",
    "events",
    "externalIds",
    "genders",
    "imClients",
    "interests",
    "locales",
    "locations",
    "memberships",
    "metadata",
    "miscKeywords",
    "names",
    "nicknames",
    "occupations",
    "organizations",
    "phoneNumbers",
    "photos",
    "relations",
    "sipAddresses",
    "skills",
    "urls",
    "userDefined",
];

/// Fields `updatePersonFields` (and createContact) accept.
pub const WRITABLE_FIELDS: &[&str] = &[
    "addresses",
    "biographies",
    "birthdays",
    "calendarUrls",
    "clientData",
    "emailAddresses",
    "events",
    "externalIds",
    "genders",
    "imClients",
    "interests",
    "locales",
    "locations",
    "memberships",
    "miscKeywords",
    "names",
    "nicknames",
    "occupations",
    "organizations",
    "phoneNumbers",
    "relations",
    "sipAddresses",
    "urls",
    "userDefined",
];

/// Fields that hold at most one value on a contact.
pub const SINGLETONS: &[&str] = &["names", "biographies", "birthdays", "genders"];

/// Output-only item fields dropped from client input.
const OUTPUT_ONLY: &[&str] = &[
    "metadata",
    "formattedType",
    "canonicalForm",
    "displayName",
    "displayNameLastFirst",
    "unstructuredName",
    "formattedProtocol",
    "phoneticFullName",
    "contactGroupId",
    "domainMembership",
    "ageRange",
];

/// The stored data of one contact version.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactData {
    /// personField -> array of items (without metadata).
    pub fields: Map<String, Value>,
    /// Group ids (`myContacts`, `abc123`, …).
    pub groups: BTreeSet<String>,
    pub deleted: bool,
    pub etag_n: u64,
    pub update_time: DateTime<Utc>,
    /// Resource names of contacts merged into this one (`metadata.previousResourceNames`,
    /// rendered only in incremental `connections.list` results, as Google documents).
    pub previous_resource_names: Vec<String>,
}

/// Which mask parameter a mask came from (for error messages).
#[derive(Debug, Clone, Copy)]
pub enum MaskKind {
    PersonFields,
    ReadMask,
    UpdatePersonFields,
    UpdateMask,
}

impl MaskKind {
    fn name(self) -> &'static str {
        match self {
            MaskKind::PersonFields => "personFields",
            MaskKind::ReadMask => "readMask",
            MaskKind::UpdatePersonFields => "updatePersonFields",
            MaskKind::UpdateMask => "updateMask",
        }
    }
}

/// Parses a field mask; `None`/empty is an error unless `allow_empty`.
pub fn parse_mask(
    value: Option<&str>,
    kind: MaskKind,
    allow_empty: bool,
    doc: &str,
) -> Result<Vec<String>, ApiError> {
    let raw = value.unwrap_or("").trim();
    if raw.is_empty() {
        if allow_empty {
            return Ok(Vec::new());
        }
        return Err(ApiError::invalid_argument(format!(
            "{} mask is required. Please specify one or more valid paths. Valid paths are documented at https://developers.google.com/people/api/rest/v1/{doc}.",
            kind.name()
        )));
    }
    let writable = matches!(kind, MaskKind::UpdatePersonFields | MaskKind::UpdateMask);
    let mut out = Vec::new();
    for p in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let p = p.strip_prefix("person.").unwrap_or(p);
        let ok = if writable {
            WRITABLE_FIELDS.contains(&p)
        } else {
            PERSON_FIELDS.contains(&p)
        };
        if !ok {
            return Err(ApiError::invalid_argument(format!(
                "Invalid {} mask path: \"{p}\". Valid paths are documented at https://developers.google.com/people/api/rest/v1/{doc}.",
                kind.name()
            )));
        }
        if !out.iter().any(|x| x == p) {
            out.push(p.to_string());
        }
    }
    Ok(out)
}

/// All readable fields (the default mask of write methods).
pub fn all_fields() -> Vec<String> {
    PERSON_FIELDS.iter().map(|s| s.to_string()).collect()
}

fn strip_item(v: &Value) -> Option<Value> {
    let obj = v.as_object()?;
    let mut out = Map::new();
    for (k, val) in obj {
        if OUTPUT_ONLY.contains(&k.as_str()) || val.is_null() {
            continue;
        }
        out.insert(k.clone(), val.clone());
    }
    Some(Value::Object(out))
}

/// Extracts writable fields (`only` = the update mask, or all) from a Person body.
/// Returns the field map and the requested group resource names (if `memberships` given).
/// Writable fields of a Person body, and the group names of its `memberships` (if given).
pub type InputFields = (Map<String, Value>, Option<Vec<String>>);

pub fn input_fields(
    person: &Map<String, Value>,
    only: Option<&[String]>,
) -> Result<InputFields, ApiError> {
    let mut fields = Map::new();
    let mut groups = None;
    for &f in WRITABLE_FIELDS {
        if only.is_some_and(|m| !m.iter().any(|x| x == f)) {
            continue;
        }
        let Some(v) = person.get(f) else { continue };
        if v.is_null() {
            continue;
        }
        let arr = v.as_array().ok_or_else(|| {
            ApiError::invalid_argument(format!("Invalid value at 'person.{f}', expected a list."))
        })?;
        if SINGLETONS.contains(&f) && arr.len() > 1 {
            return Err(ApiError::invalid_argument(format!(
                "Invalid value at 'person.{f}': only one value is allowed for a singleton field."
            )));
        }
        if f == "memberships" {
            let mut names = Vec::new();
            for m in arr {
                let rn = m
                    .get("contactGroupMembership")
                    .and_then(|g| g.get("contactGroupResourceName").or_else(|| g.get("contactGroupId")))
                    .and_then(Value::as_str)
                    .ok_or_else(|| ApiError::invalid_argument("Invalid membership: contactGroupMembership.contactGroupResourceName is required."))?;
                names.push(rn.to_string());
            }
            groups = Some(names);
            continue;
        }
        let items: Vec<Value> = arr.iter().filter_map(strip_item).collect();
        if !items.is_empty() {
            fields.insert(f.to_string(), Value::Array(items));
        }
    }
    Ok((fields, groups))
}

/// Person etag and source etag of a version.
pub fn etags(etag_n: u64) -> (String, String) {
    let b = etag_n.to_be_bytes();
    (
        format!("%Eg{}", STANDARD.encode([&[0x12, 0x01][..], &b].concat())),
        format!("#{}", STANDARD.encode(b)),
    )
}

fn title_case(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn derive(field: &str, item: &mut Map<String, Value>) {
    if let Some(t) = item.get("type").and_then(Value::as_str) {
        if matches!(
            field,
            "emailAddresses"
                | "phoneNumbers"
                | "addresses"
                | "urls"
                | "events"
                | "relations"
                | "imClients"
                | "sipAddresses"
                | "calendarUrls"
                | "externalIds"
                | "genders"
        ) {
            let ft = match t {
                "mobile" => "Mobile".to_string(),
                "homeFax" => "Home Fax".to_string(),
                "workFax" => "Work Fax".to_string(),
                "otherFax" => "Other Fax".to_string(),
                "workMobile" => "Work Mobile".to_string(),
                other => title_case(other),
            };
            if field == "genders" {
                item.insert(
                    "formattedValue".into(),
                    json!(title_case(
                        item.get("value").and_then(Value::as_str).unwrap_or(t)
                    )),
                );
            } else {
                item.insert("formattedType".into(), json!(ft));
            }
        }
    }
    match field {
        "names" => {
            let g = item
                .get("givenName")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let m = item
                .get("middleName")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let f = item
                .get("familyName")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let display = [g.as_str(), m.as_str(), f.as_str()]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(" ");
            let display = if display.is_empty() {
                item.get("unstructuredName")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            } else {
                display
            };
            if !display.is_empty() {
                let last_first = match (f.is_empty(), g.is_empty()) {
                    (false, false) => format!(
                        "{f}, {g}{}",
                        if m.is_empty() {
                            String::new()
                        } else {
                            format!(" {m}")
                        }
                    ),
                    _ => display.clone(),
                };
                item.insert("displayName".into(), json!(display));
                item.insert("displayNameLastFirst".into(), json!(last_first));
                item.entry("unstructuredName").or_insert(json!(display));
            }
        }
        "phoneNumbers" => {
            if let Some(v) = item.get("value").and_then(Value::as_str) {
                if v.trim_start().starts_with('+') {
                    let digits: String = v.chars().filter(char::is_ascii_digit).collect();
                    item.insert("canonicalForm".into(), json!(format!("+{digits}")));
                }
            }
        }
        "addresses" if !item.contains_key("formattedValue") => {
            let parts: Vec<String> = [
                "streetAddress",
                "extendedAddress",
                "city",
                "region",
                "postalCode",
                "country",
            ]
            .iter()
            .filter_map(|k| item.get(*k).and_then(Value::as_str))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
            if !parts.is_empty() {
                item.insert("formattedValue".into(), json!(parts.join("\n")));
            }
        }
        _ => {}
    }
}

/// Renders a Person. `deleted_stub` renders the incremental-sync tombstone.
pub fn render(resource_name: &str, source_id: &str, d: &ContactData, mask: &[String]) -> Value {
    let (etag, source_etag) = etags(d.etag_n);
    let mut p = Map::new();
    p.insert("resourceName".into(), json!(resource_name));
    p.insert("etag".into(), json!(etag));
    let source = json!({"type": "CONTACT", "id": source_id});
    if d.deleted {
        p.insert("metadata".into(), json!({
            "sources": [{"type": "CONTACT", "id": source_id, "etag": source_etag, "updateTime": fmt_micros(d.update_time)}],
            "objectType": "PERSON",
            "deleted": true,
        }));
        return Value::Object(p);
    }
    for f in mask {
        match f.as_str() {
            "metadata" => {
                p.insert("metadata".into(), json!({
                    "sources": [{"type": "CONTACT", "id": source_id, "etag": source_etag, "updateTime": fmt_micros(d.update_time)}],
                    "objectType": "PERSON",
                }));
            }
            "memberships" => {
                let items: Vec<Value> = d
                    .groups
                    .iter()
                    .map(|g| json!({
                        "metadata": {"source": source},
                        "contactGroupMembership": {"contactGroupId": g, "contactGroupResourceName": format!("contactGroups/{g}")},
                    }))
                    .collect();
                if !items.is_empty() {
                    p.insert("memberships".into(), Value::Array(items));
                }
            }
            other => {
                let Some(Value::Array(items)) = d.fields.get(other) else {
                    continue;
                };
                let rendered: Vec<Value> = items
                    .iter()
                    .enumerate()
                    .map(|(i, it)| {
                        let mut m = it.as_object().cloned().unwrap_or_default();
                        derive(other, &mut m);
                        let mut meta = json!({"source": source});
                        if i == 0 && other != "clientData" {
                            meta["primary"] = json!(true);
                            meta["sourcePrimary"] = json!(true);
                        }
                        m.insert("metadata".into(), meta);
                        Value::Object(m)
                    })
                    .collect();
                p.insert(other.to_string(), Value::Array(rendered));
            }
        }
    }
    Value::Object(p)
}

/// The sort key for FIRST_NAME_ASCENDING / LAST_NAME_ASCENDING.
pub fn name_key(d: &ContactData, last: bool) -> String {
    let n = d.fields.get("names").and_then(|v| v.get(0));
    let get = |k: &str| {
        n.and_then(|n| n.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_lowercase()
    };
    if last {
        format!("{}\u{0}{}", get("familyName"), get("givenName"))
    } else {
        format!("{}\u{0}{}", get("givenName"), get("familyName"))
    }
}
