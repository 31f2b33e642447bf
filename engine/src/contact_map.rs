//! Contact mapping, the CRM half: a CRM [`ContactData`] to and from the canonical [`Fields`] the
//! planner merges, and the match keys of first-run linking. The Google half (a People `Person` to
//! and from the same fields) lives in `crmsync_connectors::contact_wire`, next to the client
//! crate that owns the wire types, so the engine needs no I/O crate. Canonical contact fields:
//!
//! | field | CRM | People |
//! |---|---|---|
//! | `given_name`, `family_name` | given/family name | `names[0].givenName/familyName` |
//! | `emails` | `[{address, kind, primary}]` | `emailAddresses[].value/type/metadata.sourcePrimary` |
//! | `phones` | `[{number, kind}]` | `phoneNumbers[].value/type` |
//! | `organization`, `job_title` | organization, job title | `organizations[0].name/title` |
//! | `addresses` | postal addresses | `addresses[]` (street, city, region, postal code, country, code, type) |
//! | `birthday` | `YYYY-MM-DD` / `--MM-DD` | `birthdays[0].date` |
//! | `notes` | notes | `biographies[0].value` (plain text) |
//!
//! E-mail addresses are lower-cased and exactly one is primary; text is trimmed and an empty
//! value is absent, so both sides produce the same fields for the same contact.

use crate::fields::Fields;
use crate::model::{
    AddressKind, Birthday, ContactData, Email, EmailKind, Phone, PhoneKind, PostalAddress,
};
use serde_json::{json, Value};

fn text(s: &Option<String>) -> Option<String> {
    s.as_ref()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn put(fields: &mut Fields, name: &str, value: Option<Value>) {
    if let Some(v) = value {
        fields.insert(name.to_string(), v);
    }
}

fn canonical_emails(emails: &[Email]) -> Option<Value> {
    let list: Vec<&Email> = emails
        .iter()
        .filter(|e| !e.address.trim().is_empty())
        .collect();
    if list.is_empty() {
        return None;
    }
    // Exactly one primary: the first marked one, else the first.
    let primary = list.iter().position(|e| e.primary).unwrap_or(0);
    Some(Value::Array(
        list.iter()
            .enumerate()
            // Addresses compare case-insensitively; the canonical form is lower-case.
            .map(|(i, e)| json!({"address": e.address.trim().to_lowercase(), "kind": e.kind.as_str(), "primary": i == primary}))
            .collect(),
    ))
}

fn canonical_phones(phones: &[Phone]) -> Option<Value> {
    let list: Vec<Value> = phones
        .iter()
        .filter(|p| !p.number.trim().is_empty())
        .map(|p| json!({"number": p.number.trim(), "kind": p.kind.as_str()}))
        .collect();
    (!list.is_empty()).then_some(Value::Array(list))
}

fn canonical_address(a: &PostalAddress) -> Option<Value> {
    let parts = [
        ("street", text(&a.street)),
        ("city", text(&a.city)),
        ("region", text(&a.region)),
        ("postal_code", text(&a.postal_code)),
        ("country", text(&a.country)),
        ("country_code", text(&a.country_code)),
    ];
    if parts.iter().all(|(_, v)| v.is_none()) {
        return None;
    }
    let mut obj = serde_json::Map::new();
    obj.insert("kind".into(), json!(a.kind.as_str()));
    for (k, v) in parts {
        if let Some(v) = v {
            obj.insert(k.into(), json!(v));
        }
    }
    Some(Value::Object(obj))
}

fn canonical_addresses(addresses: &[PostalAddress]) -> Option<Value> {
    let list: Vec<Value> = addresses.iter().filter_map(canonical_address).collect();
    (!list.is_empty()).then_some(Value::Array(list))
}

/// The canonical fields of a CRM contact.
pub fn contact_fields(c: &ContactData) -> Fields {
    let mut f = Fields::new();
    put(
        &mut f,
        "given_name",
        text(&Some(c.given_name.clone())).map(Value::from),
    );
    put(
        &mut f,
        "family_name",
        text(&Some(c.family_name.clone())).map(Value::from),
    );
    put(&mut f, "emails", canonical_emails(&c.emails));
    put(&mut f, "phones", canonical_phones(&c.phones));
    put(
        &mut f,
        "organization",
        text(&c.organization).map(Value::from),
    );
    put(&mut f, "job_title", text(&c.job_title).map(Value::from));
    put(&mut f, "addresses", canonical_addresses(&c.addresses));
    put(
        &mut f,
        "birthday",
        c.birthday.map(|b| Value::from(b.to_string())),
    );
    put(&mut f, "notes", text(&c.notes).map(Value::from));
    f
}

fn field_str(f: &Fields, name: &str) -> Option<String> {
    f.get(name).and_then(|v| v.as_str()).map(str::to_string)
}

fn field_list<'a>(f: &'a Fields, name: &str) -> &'a [Value] {
    f.get(name)
        .and_then(|v| v.as_array())
        .map(|a| a.as_slice())
        .unwrap_or(&[])
}

fn obj_str(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(|x| x.as_str()).map(str::to_string)
}

/// The e-mails held in canonical fields.
pub fn emails_of(f: &Fields) -> Vec<Email> {
    field_list(f, "emails")
        .iter()
        .filter_map(|v| {
            Some(Email {
                address: obj_str(v, "address")?,
                kind: obj_str(v, "kind")
                    .and_then(|k| k.parse().ok())
                    .unwrap_or(EmailKind::Other),
                primary: v.get("primary").and_then(|p| p.as_bool()).unwrap_or(false),
            })
        })
        .collect()
}

fn phones_of(f: &Fields) -> Vec<Phone> {
    field_list(f, "phones")
        .iter()
        .filter_map(|v| {
            Some(Phone {
                number: obj_str(v, "number")?,
                kind: obj_str(v, "kind")
                    .and_then(|k| k.parse().ok())
                    .unwrap_or(PhoneKind::Other),
            })
        })
        .collect()
}

fn addresses_of(f: &Fields) -> Vec<PostalAddress> {
    field_list(f, "addresses")
        .iter()
        .map(|v| PostalAddress {
            kind: obj_str(v, "kind")
                .and_then(|k| k.parse().ok())
                .unwrap_or(AddressKind::Other),
            street: obj_str(v, "street"),
            city: obj_str(v, "city"),
            region: obj_str(v, "region"),
            postal_code: obj_str(v, "postal_code"),
            country: obj_str(v, "country"),
            country_code: obj_str(v, "country_code"),
        })
        .collect()
}

/// Writes canonical fields into a CRM contact; what the canonical form does not carry (the
/// display name) is kept from `base`.
pub fn apply_to_contact(f: &Fields, base: &ContactData) -> ContactData {
    ContactData {
        given_name: field_str(f, "given_name").unwrap_or_default(),
        family_name: field_str(f, "family_name").unwrap_or_default(),
        display_name: base.display_name.clone(),
        emails: emails_of(f),
        phones: phones_of(f),
        organization: field_str(f, "organization"),
        job_title: field_str(f, "job_title"),
        addresses: addresses_of(f),
        birthday: field_str(f, "birthday").and_then(|b| Birthday::parse(&b).ok()),
        notes: field_str(f, "notes"),
    }
}

/// Normalized e-mail addresses, the key for first-run linking.
pub fn match_keys(f: &Fields) -> Vec<String> {
    emails_of(f)
        .iter()
        .map(|e| crate::model::normalize_email(&e.address))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ContactData {
        crate::fixtures::sample_contact()
    }

    #[test]
    fn no_primary_means_first_is_primary() {
        let mut c = sample();
        for e in c.emails.iter_mut() {
            e.primary = false;
        }
        let f = contact_fields(&c);
        let emails = emails_of(&f);
        assert!(emails[0].primary && !emails[1].primary);
    }
}
