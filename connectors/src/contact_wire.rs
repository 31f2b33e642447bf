//! Contact mapping, the Google half: a People [`Person`] to and from the canonical [`Fields`] of
//! `crmsync_engine::contact_map` (whose table gives each field's People path), plus what the
//! executor reads off a `Person` (CRM marker, groups, tombstone, last change) and the update mask.
//! It lives here, beside the client crate that owns the wire types, so that the engine stays
//! free of I/O crates; the canonical rules (trimming, one primary e-mail, lower-case addresses)
//! stay in the engine and are reached through [`contact_fields`] and [`apply_to_contact`].
//!
//! Writes to Google start from the current `Person` and change only mapped values, so what the
//! CRM does not model (photos, other groups, departments, custom fields) survives an update.

use chrono::{DateTime, Utc};
use crmsync_engine::contact_map::{apply_to_contact, contact_fields};
use crmsync_engine::fields::Fields;
use crmsync_engine::model::{
    AddressKind, Birthday, ContactData, Email, EmailKind, Phone, PhoneKind, PostalAddress,
};
use google_people1::api::{
    Address, Biography, Birthday as PBirthday, ClientData, ContactGroupMembership, Date,
    EmailAddress, FieldMetadata, Membership, Name, Organization, Person, PersonMetadata,
    PhoneNumber,
};

/// The `clientData` key under which a Google contact carries its CRM id (crash-safe creates).
pub const CRM_ID_KEY: &str = "crmsync.crm_id";
/// The system group every contact created by crmsync also joins, so that leaving the sync group
/// never hits Google's "a contact must keep one group" rule.
pub const MY_CONTACTS: &str = "contactGroups/myContacts";
/// Every People field a contact update may write.
pub const ALL_UPDATE_FIELDS: &str =
    "names,emailAddresses,phoneNumbers,organizations,addresses,birthdays,biographies";

fn primary_or_first<T>(
    items: &Option<Vec<T>>,
    meta: impl Fn(&T) -> Option<&FieldMetadata>,
) -> Option<&T> {
    let items = items.as_ref()?;
    items
        .iter()
        .find(|i| {
            meta(i)
                .map(|m| m.primary == Some(true) || m.source_primary == Some(true))
                .unwrap_or(false)
        })
        .or_else(|| items.first())
}

fn email_kind(t: &Option<String>) -> EmailKind {
    match t.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("work") => EmailKind::Work,
        Some("home") => EmailKind::Home,
        _ => EmailKind::Other,
    }
}

fn phone_kind(t: &Option<String>) -> PhoneKind {
    match t.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("mobile") => PhoneKind::Mobile,
        Some("work") => PhoneKind::Work,
        Some("home") => PhoneKind::Home,
        _ => PhoneKind::Other,
    }
}

fn address_kind(t: &Option<String>) -> AddressKind {
    match t.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("work") => AddressKind::Work,
        Some("home") => AddressKind::Home,
        _ => AddressKind::Other,
    }
}

fn is_primary(m: &Option<FieldMetadata>) -> bool {
    m.as_ref()
        .map(|m| m.source_primary == Some(true) || m.primary == Some(true))
        .unwrap_or(false)
}

/// The canonical fields of a Google contact.
pub fn person_fields(p: &Person) -> Fields {
    let mut data = ContactData::default();
    if let Some(n) = primary_or_first(&p.names, |n: &Name| n.metadata.as_ref()) {
        data.given_name = n.given_name.clone().unwrap_or_default();
        data.family_name = n.family_name.clone().unwrap_or_default();
    }
    data.emails = p
        .email_addresses
        .iter()
        .flatten()
        .filter_map(|e| {
            Some(Email {
                address: e.value.clone()?,
                kind: email_kind(&e.type_),
                primary: is_primary(&e.metadata),
            })
        })
        .collect();
    data.phones = p
        .phone_numbers
        .iter()
        .flatten()
        .filter_map(|ph| {
            Some(Phone {
                number: ph.value.clone()?,
                kind: phone_kind(&ph.type_),
            })
        })
        .collect();
    if let Some(o) = primary_or_first(&p.organizations, |o: &Organization| o.metadata.as_ref()) {
        data.organization = o.name.clone();
        data.job_title = o.title.clone();
    }
    data.addresses = p
        .addresses
        .iter()
        .flatten()
        .map(|a| PostalAddress {
            kind: address_kind(&a.type_),
            street: a.street_address.clone(),
            city: a.city.clone(),
            region: a.region.clone(),
            postal_code: a.postal_code.clone(),
            country: a.country.clone(),
            country_code: a.country_code.clone(),
        })
        .collect();
    if let Some(b) = primary_or_first(&p.birthdays, |b: &PBirthday| b.metadata.as_ref()) {
        data.birthday = b.date.as_ref().and_then(|d| {
            let month = u32::try_from(d.month?).ok()?;
            let day = u32::try_from(d.day?).ok()?;
            let year = d.year.filter(|y| *y != 0);
            let s = match year {
                Some(y) => format!("{y:04}-{month:02}-{day:02}"),
                None => format!("--{month:02}-{day:02}"),
            };
            Birthday::parse(&s).ok()
        });
    }
    if let Some(b) = primary_or_first(&p.biographies, |b: &Biography| b.metadata.as_ref()) {
        data.notes = b.value.clone();
    }
    contact_fields(&data)
}

fn primary_meta(base: Option<&FieldMetadata>, primary: bool) -> Option<FieldMetadata> {
    let mut m = base.cloned().unwrap_or_default();
    m.primary = None;
    m.source_primary = primary.then_some(true);
    if m.source.is_none() && m.source_primary.is_none() && m.verified.is_none() {
        None
    } else {
        Some(m)
    }
}

/// A `Person` holding `f`, built on `base` (the current Google contact) so that what the CRM does
/// not model survives. Carries `base`'s resource name, etag and sources (needed by updates).
pub fn person_for_write(f: &Fields, base: Option<&Person>) -> Person {
    let data = apply_to_contact(f, &ContactData::default());
    let mut p = Person {
        resource_name: base.and_then(|b| b.resource_name.clone()),
        etag: base.and_then(|b| b.etag.clone()),
        metadata: base.and_then(|b| b.metadata.clone()).map(|mut m| {
            m.deleted = None;
            m.object_type = None;
            m.linked_people_resource_names = None;
            m.previous_resource_names = None;
            m
        }),
        ..Person::default()
    };
    // Names: keep middle name, prefixes, phonetics; replace given/family; derived values dropped.
    let mut name = base
        .and_then(|b| primary_or_first(&b.names, |n: &Name| n.metadata.as_ref()).cloned())
        .unwrap_or_default();
    name.given_name = Some(data.given_name.clone()).filter(|s| !s.is_empty());
    name.family_name = Some(data.family_name.clone()).filter(|s| !s.is_empty());
    name.display_name = None;
    name.display_name_last_first = None;
    name.unstructured_name = None;
    let has_name =
        name.given_name.is_some() || name.family_name.is_some() || name.middle_name.is_some();
    p.names = Some(if has_name { vec![name] } else { Vec::new() });

    let base_emails: Vec<EmailAddress> = base
        .and_then(|b| b.email_addresses.clone())
        .unwrap_or_default();
    p.email_addresses = Some(
        data.emails
            .iter()
            .map(|e| {
                let mut out = base_emails
                    .iter()
                    .find(|b| {
                        b.value
                            .as_deref()
                            .map(|v| v.eq_ignore_ascii_case(&e.address))
                            .unwrap_or(false)
                    })
                    .cloned()
                    .unwrap_or_default();
                out.value = Some(e.address.clone());
                out.type_ = Some(e.kind.as_str().to_string());
                out.formatted_type = None;
                out.metadata = primary_meta(out.metadata.as_ref(), e.primary);
                out
            })
            .collect(),
    );

    let base_phones: Vec<PhoneNumber> = base
        .and_then(|b| b.phone_numbers.clone())
        .unwrap_or_default();
    p.phone_numbers = Some(
        data.phones
            .iter()
            .map(|ph| {
                let mut out = base_phones
                    .iter()
                    .find(|b| b.value.as_deref() == Some(ph.number.as_str()))
                    .cloned()
                    .unwrap_or_default();
                out.value = Some(ph.number.clone());
                out.type_ = Some(ph.kind.as_str().to_string());
                out.formatted_type = None;
                out.canonical_form = None;
                out
            })
            .collect(),
    );

    let mut org = base
        .and_then(|b| {
            primary_or_first(&b.organizations, |o: &Organization| o.metadata.as_ref()).cloned()
        })
        .unwrap_or_default();
    org.name = data.organization.clone();
    org.title = data.job_title.clone();
    org.formatted_type = None;
    let org_has_content = org.name.is_some() || org.title.is_some() || org.department.is_some();
    let other_orgs: Vec<Organization> = base
        .and_then(|b| b.organizations.clone())
        .unwrap_or_default()
        .into_iter()
        .skip(1)
        .collect();
    let mut orgs = if org_has_content {
        vec![org]
    } else {
        Vec::new()
    };
    orgs.extend(other_orgs);
    p.organizations = Some(orgs);

    let base_addresses: Vec<Address> = base.and_then(|b| b.addresses.clone()).unwrap_or_default();
    p.addresses = Some(
        data.addresses
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let mut out = base_addresses.get(i).cloned().unwrap_or_default();
                out.type_ = Some(a.kind.as_str().to_string());
                out.formatted_type = None;
                out.formatted_value = None;
                out.street_address = a.street.clone();
                out.city = a.city.clone();
                out.region = a.region.clone();
                out.postal_code = a.postal_code.clone();
                out.country = a.country.clone();
                out.country_code = a.country_code.clone();
                out
            })
            .collect(),
    );

    p.birthdays = Some(
        data.birthday
            .map(|b| {
                vec![PBirthday {
                    date: Some(Date {
                        year: b.year,
                        month: i32::try_from(b.month).ok(),
                        day: i32::try_from(b.day).ok(),
                    }),
                    metadata: None,
                    text: None,
                }]
            })
            .unwrap_or_default(),
    );
    p.biographies = Some(
        data.notes
            .map(|n| {
                vec![Biography {
                    value: Some(n),
                    content_type: Some("TEXT_PLAIN".into()),
                    metadata: None,
                }]
            })
            .unwrap_or_default(),
    );
    p
}

/// A new Google contact for a CRM contact: its fields, its CRM id in `clientData`, and membership
/// of "My Contacts" and the sync group.
pub fn person_for_create(f: &Fields, crm_id: &str, group_resource: &str) -> Person {
    let mut p = person_for_write(f, None);
    p.client_data = Some(vec![ClientData {
        key: Some(CRM_ID_KEY.into()),
        value: Some(crm_id.into()),
        metadata: None,
    }]);
    p.memberships = Some(
        [MY_CONTACTS, group_resource]
            .iter()
            .map(|g| Membership {
                contact_group_membership: Some(ContactGroupMembership {
                    contact_group_id: None,
                    contact_group_resource_name: Some(g.to_string()),
                }),
                domain_membership: None,
                metadata: None,
            })
            .collect(),
    );
    p
}

/// What of a person is kept with its link, as JSON: what an update may replace (the fields of
/// [`ALL_UPDATE_FIELDS`], sub-fields the CRM does not map included) with the resource name, the
/// etag and the sources (etags, update times). An update built on it (see [`person_for_write`])
/// needs no read first; memberships and `clientData` are not kept (updates never write them).
pub fn kept_person(p: &Person) -> Option<String> {
    let kept = Person {
        resource_name: p.resource_name.clone(),
        etag: p.etag.clone(),
        metadata: p.metadata.as_ref().map(|m| PersonMetadata {
            sources: m.sources.clone(),
            ..Default::default()
        }),
        names: p.names.clone(),
        email_addresses: p.email_addresses.clone(),
        phone_numbers: p.phone_numbers.clone(),
        organizations: p.organizations.clone(),
        addresses: p.addresses.clone(),
        birthdays: p.birthdays.clone(),
        biographies: p.biographies.clone(),
        ..Default::default()
    };
    serde_json::to_string(&kept).ok()
}

/// A person kept by [`kept_person`] (`None` when the text is not one).
pub fn parse_kept_person(json: &str) -> Option<Person> {
    serde_json::from_str(json).ok()
}

/// The People fields (`updatePersonFields`) to send for a set of changed canonical fields.
pub fn update_mask(changed: &[String]) -> String {
    let mut masks: Vec<&str> = changed
        .iter()
        .filter_map(|c| match c.as_str() {
            "given_name" | "family_name" => Some("names"),
            "emails" => Some("emailAddresses"),
            "phones" => Some("phoneNumbers"),
            "organization" | "job_title" => Some("organizations"),
            "addresses" => Some("addresses"),
            "birthday" => Some("birthdays"),
            "notes" => Some("biographies"),
            _ => None,
        })
        .collect();
    masks.sort_unstable();
    masks.dedup();
    masks.join(",")
}

/// The contact's last modification time in Google (its CONTACT source's `updateTime`).
pub fn person_updated_at(p: &Person) -> Option<DateTime<Utc>> {
    p.metadata
        .as_ref()?
        .sources
        .as_ref()?
        .iter()
        .filter(|s| s.type_.as_deref().map(|t| t == "CONTACT").unwrap_or(true))
        .filter_map(|s| s.update_time)
        .max()
}

/// The former resource names of a person that absorbed others in a merge (Google returns them
/// with sync tokens only, so a full listing shows none).
pub fn person_previous_names(p: &Person) -> Vec<String> {
    p.metadata
        .as_ref()
        .and_then(|m| m.previous_resource_names.clone())
        .unwrap_or_default()
}

/// True for the tombstones an incremental listing returns for deleted contacts.
pub fn person_is_deleted(p: &Person) -> bool {
    p.metadata.as_ref().and_then(|m| m.deleted).unwrap_or(false)
}

/// The contact groups a person belongs to (resource names).
pub fn person_groups(p: &Person) -> Vec<String> {
    p.memberships
        .iter()
        .flatten()
        .filter_map(|m| m.contact_group_membership.as_ref())
        .filter_map(|g| {
            g.contact_group_resource_name.clone().or_else(|| {
                g.contact_group_id
                    .as_ref()
                    .map(|id| format!("contactGroups/{id}"))
            })
        })
        .collect()
}

/// The CRM id a Google contact carries (set by crmsync when it created the contact).
pub fn person_crm_marker(p: &Person) -> Option<String> {
    p.client_data
        .iter()
        .flatten()
        .find(|c| c.key.as_deref() == Some(CRM_ID_KEY))
        .and_then(|c| c.value.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> ContactData {
        crmsync_engine::fixtures::sample_contact()
    }

    #[test]
    fn crm_to_google_to_crm_is_identity() {
        let f = contact_fields(&sample());
        let p = person_for_create(&f, "42", "contactGroups/abc");
        assert_eq!(person_fields(&p), f);
        let back = apply_to_contact(&person_fields(&p), &sample());
        assert_eq!(contact_fields(&back), f);
        assert_eq!(person_crm_marker(&p).as_deref(), Some("42"));
        assert!(person_groups(&p).contains(&"contactGroups/abc".to_string()));
    }

    #[test]
    fn a_kept_person_round_trips_with_what_an_update_needs() {
        let mut p = person_for_create(&contact_fields(&sample()), "42", "contactGroups/abc");
        p.resource_name = Some("people/c1".into());
        p.etag = Some("%EgUBAgMFBw==".into());
        p.metadata = Some(PersonMetadata {
            sources: Some(vec![google_people1::api::Source {
                type_: Some("CONTACT".into()),
                id: Some("1".into()),
                etag: Some("#AQID".into()),
                update_time: "2026-12-01T10:00:00.123456Z".parse().ok(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        if let Some(orgs) = p.organizations.as_mut() {
            orgs[0].department = Some("R&D".into());
        }
        let kept = parse_kept_person(&kept_person(&p).unwrap()).unwrap();
        assert_eq!(kept.resource_name.as_deref(), Some("people/c1"));
        assert_eq!(kept.etag, p.etag);
        assert_eq!(person_fields(&kept), person_fields(&p));
        assert_eq!(
            serde_json::to_value(&kept.metadata).unwrap(),
            serde_json::to_value(&p.metadata).unwrap()
        );
        assert!(person_updated_at(&kept).is_some());
        assert_eq!(
            serde_json::to_value(&kept.organizations).unwrap(),
            serde_json::to_value(&p.organizations).unwrap()
        );
        assert!(kept.memberships.is_none() && kept.client_data.is_none());
        assert!(parse_kept_person("not json").is_none());
    }

    #[test]
    fn update_keeps_unmapped_subfields() {
        let mut base = person_for_create(&contact_fields(&sample()), "42", "contactGroups/abc");
        if let Some(orgs) = base.organizations.as_mut() {
            orgs[0].department = Some("R&D".into());
        }
        if let Some(names) = base.names.as_mut() {
            names[0].middle_name = Some("Augusta".into());
        }
        let mut f = contact_fields(&sample());
        f.insert("job_title".into(), json!("CEO"));
        let p = person_for_write(&f, Some(&base));
        let org = &p
            .organizations
            .as_ref()
            .map(|o| o[0].clone())
            .unwrap_or_default();
        assert_eq!(org.department.as_deref(), Some("R&D"));
        assert_eq!(org.title.as_deref(), Some("CEO"));
        assert_eq!(
            p.names.as_ref().map(|n| n[0].middle_name.clone()),
            Some(Some("Augusta".into()))
        );
        assert_eq!(
            update_mask(&["job_title".into(), "given_name".into()]),
            "names,organizations"
        );
    }
}
