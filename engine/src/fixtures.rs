//! Fixtures for tests and examples in every crate: records with every field filled in.

use crate::model::{
    AddressKind, Birthday, ContactData, Email, EmailKind, Phone, PhoneKind, PostalAddress,
};

/// A contact with every field set (two e-mails, the second primary; a phone; an address; a
/// birthday without a year; notes).
pub fn sample_contact() -> ContactData {
    ContactData {
        given_name: "Ada".into(),
        family_name: "Lovelace".into(),
        display_name: Some("Countess".into()),
        emails: vec![
            Email {
                address: "ada@example.com".into(),
                kind: EmailKind::Work,
                primary: false,
            },
            Email {
                address: "ada@home.example".into(),
                kind: EmailKind::Home,
                primary: true,
            },
        ],
        phones: vec![Phone {
            number: "+1 555 0100".into(),
            kind: PhoneKind::Mobile,
        }],
        organization: Some("Analytical Engines".into()),
        job_title: Some("CTO".into()),
        addresses: vec![PostalAddress {
            kind: AddressKind::Work,
            street: Some("1 Main St".into()),
            city: Some("London".into()),
            country_code: Some("GB".into()),
            ..Default::default()
        }],
        birthday: Birthday::parse("--12-10").ok(),
        notes: Some("Met at the Royal Society".into()),
    }
}
