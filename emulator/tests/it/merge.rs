//! Contact merges as Google Contacts' "Merge" does them, driven through the control plane
//! (`POST /_emulator/merge-contacts`) and `Emulator::merge_contacts`, observed through
//! google-people1: the survivor keeps its resourceName, gains the union of fields and groups
//! and lists the absorbed names in `metadata.previousResourceNames` (incremental listings
//! only); the absorbed contacts are deleted, show as deleted in the incremental listing and
//! answer 404.

use crate::common::*;
use crate::people::person;
use google_people1::api::{
    ContactGroup, CreateContactGroupRequest, ModifyContactGroupMembersRequest, Person, PhoneNumber,
};
use google_people1::FieldMask;
use serde_json::json;

fn fields() -> FieldMask {
    FieldMask::new(&[
        "names",
        "emailAddresses",
        "phoneNumbers",
        "metadata",
        "memberships",
        "clientData",
    ])
}

/// Every page of a (full or incremental) sync listing: the people and the next sync token.
async fn sync_list(ppl: &People, sync: Option<&str>) -> (Vec<Person>, String) {
    let mut out = Vec::new();
    let mut page: Option<String> = None;
    loop {
        let mut call = ppl
            .people()
            .connections_list("people/me")
            .person_fields(fields())
            .request_sync_token(true)
            .page_size(2);
        if let Some(s) = sync {
            call = call.sync_token(s);
        }
        if let Some(p) = &page {
            call = call.page_token(p);
        }
        let (_, r) = call.doit().await.unwrap();
        out.extend(r.connections.unwrap_or_default());
        match r.next_page_token {
            Some(p) => page = Some(p),
            None => return (out, r.next_sync_token.expect("sync token on the last page")),
        }
    }
}

fn emails(p: &Person) -> Vec<String> {
    p.email_addresses
        .iter()
        .flatten()
        .filter_map(|e| e.value.clone())
        .collect()
}

fn groups(p: &Person) -> Vec<String> {
    let mut g: Vec<String> = p
        .memberships
        .iter()
        .flatten()
        .filter_map(|m| {
            m.contact_group_membership
                .as_ref()?
                .contact_group_resource_name
                .clone()
        })
        .collect();
    g.sort();
    g
}

fn previous(p: &Person) -> Vec<String> {
    p.metadata
        .as_ref()
        .and_then(|m| m.previous_resource_names.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn merged_contacts_follow_the_survivor() {
    let env = Env::new().await;
    let t = env.user("alice@example.com").await;
    let ppl = env.people(&t);
    let (_, crm) = ppl
        .contact_groups()
        .create(CreateContactGroupRequest {
            contact_group: Some(ContactGroup {
                name: Some("CRM".into()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .doit()
        .await
        .unwrap();
    let crm = crm.resource_name.unwrap();
    let (_, other) = ppl
        .contact_groups()
        .create(CreateContactGroupRequest {
            contact_group: Some(ContactGroup {
                name: Some("Friends of Ada".into()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .doit()
        .await
        .unwrap();
    let other = other.resource_name.unwrap();
    let mut names = Vec::new();
    for (i, (given, email)) in [
        ("Ada", "ada@example.com"),
        ("Ada L.", "ada@lovelace.test"),
        ("Augusta", "augusta@example.com"),
        ("Bystander", "by@example.com"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut p = person(given, "Lovelace", email);
        if i == 1 {
            p.phone_numbers = Some(vec![PhoneNumber {
                value: Some("+44 20 7946 0000".into()),
                ..Default::default()
            }]);
        }
        let (_, c) = ppl.people().create_contact(p).doit().await.unwrap();
        names.push(c.resource_name.unwrap());
    }
    let (survivor, absorbed, third, bystander) = (&names[0], &names[1], &names[2], &names[3]);
    for (group, member) in [(&crm, survivor), (&other, absorbed)] {
        ppl.contact_groups()
            .members_modify(
                ModifyContactGroupMembersRequest {
                    resource_names_to_add: Some(vec![member.clone()]),
                    ..Default::default()
                },
                group,
            )
            .doit()
            .await
            .unwrap();
    }
    let (all, sync) = sync_list(&ppl, None).await;
    assert_eq!(all.len(), 4);

    // The user merges the first two in Google Contacts.
    let (s, merged) = env
        .post(
            "/merge-contacts",
            json!({"email": "alice@example.com", "resource_names": [survivor, absorbed]}),
        )
        .await;
    assert_eq!(s, 200, "{merged}");
    assert_eq!(merged["resourceName"], json!(survivor));
    assert_eq!(
        merged["metadata"]["previousResourceNames"],
        json!([absorbed])
    );

    // Incremental listing: the survivor changed (with its former names), the absorbed deleted.
    let (changes, sync2) = sync_list(&ppl, Some(&sync)).await;
    assert_eq!(changes.len(), 2, "{changes:?}");
    let surv = changes
        .iter()
        .find(|p| p.resource_name.as_deref() == Some(survivor.as_str()))
        .expect("survivor listed as changed");
    assert_eq!(previous(surv), vec![absorbed.to_string()]);
    assert_ne!(surv.metadata.as_ref().unwrap().deleted, Some(true));
    assert_eq!(emails(surv), ["ada@example.com", "ada@lovelace.test"]);
    assert_eq!(
        surv.phone_numbers.as_ref().unwrap()[0].value.as_deref(),
        Some("+44 20 7946 0000")
    );
    // Singleton fields keep the survivor's value.
    assert_eq!(surv.names.as_ref().unwrap().len(), 1);
    assert_eq!(
        surv.names.as_ref().unwrap()[0].given_name.as_deref(),
        Some("Ada")
    );
    assert_eq!(
        surv.client_data.as_ref().unwrap().len(),
        2,
        "clientData of both"
    );
    let mut want = vec![
        crm.clone(),
        other.clone(),
        "contactGroups/myContacts".to_string(),
    ];
    want.sort();
    assert_eq!(groups(surv), want);
    let gone = changes
        .iter()
        .find(|p| p.resource_name.as_deref() == Some(absorbed.as_str()))
        .expect("absorbed listed");
    assert_eq!(gone.metadata.as_ref().unwrap().deleted, Some(true));
    assert!(!changes
        .iter()
        .any(|p| p.resource_name.as_deref() == Some(bystander.as_str())));

    // get: the survivor (previousResourceNames only in sync listings), the absorbed 404.
    let (_, got) = ppl
        .people()
        .get(survivor)
        .person_fields(fields())
        .doit()
        .await
        .unwrap();
    assert!(previous(&got).is_empty());
    assert_eq!(emails(&got).len(), 2);
    let err = ppl
        .people()
        .get(absorbed)
        .person_fields(fields())
        .doit()
        .await
        .unwrap_err();
    assert_eq!(people_reason(&err).0, 404);
    // Group membership moved to the survivor.
    let (_, g) = ppl
        .contact_groups()
        .get(&other)
        .max_members(10)
        .doit()
        .await
        .unwrap();
    assert_eq!(g.member_resource_names, Some(vec![survivor.clone()]));
    // A full listing shows the survivor without former names and not the absorbed one.
    let (full, _) = sync_list(&ppl, None).await;
    assert_eq!(full.len(), 3);
    assert!(full.iter().all(|p| previous(p).is_empty()));

    // The Rust helper: a second merge accumulates former names; the next listing shows it.
    let p = env
        .emu()
        .merge_contacts("alice@example.com", survivor, &[third.as_str()])
        .unwrap();
    assert_eq!(
        p["metadata"]["previousResourceNames"],
        json!([absorbed, third])
    );
    let (changes, _) = sync_list(&ppl, Some(&sync2)).await;
    let names: Vec<_> = changes
        .iter()
        .map(|p| (p.resource_name.clone().unwrap(), previous(p)))
        .collect();
    assert_eq!(
        names,
        [
            (survivor.clone(), vec![absorbed.clone(), third.clone()]),
            (third.clone(), vec![])
        ]
    );
    assert_eq!(env.emu().contacts("alice@example.com").len(), 2);
    env.finish().await;
}

#[tokio::test]
async fn merge_requests_are_checked() {
    let env = Env::new().await;
    let t = env.user("alice@example.com").await;
    let ppl = env.people(&t);
    let mut names = Vec::new();
    for i in 0..2 {
        let (_, c) = ppl
            .people()
            .create_contact(person(&format!("P{i}"), "X", &format!("p{i}@x.test")))
            .doit()
            .await
            .unwrap();
        names.push(c.resource_name.unwrap());
    }
    let post = |body| env.post("/merge-contacts", body);
    let (s, v) = post(json!({"email": "alice@example.com", "resource_names": [names[0]]})).await;
    assert_eq!(s, 400, "{v}");
    let (s, _) =
        post(json!({"email": "alice@example.com", "resource_names": [names[0], names[0]]})).await;
    assert_eq!(s, 400);
    let (s, _) =
        post(json!({"email": "alice@example.com", "resource_names": [names[0], "people/c123"]}))
            .await;
    assert_eq!(s, 404);
    let (s, _) =
        post(json!({"email": "alice@example.com", "resource_names": [names[0], "groups/x"]})).await;
    assert_eq!(s, 400);
    let (s, _) =
        post(json!({"email": "nobody@example.com", "resource_names": [names[0], names[1]]})).await;
    assert_eq!(s, 404);
    let (s, _) = post(
        json!({"email": "alice@example.com", "survivor": names[0], "resource_names": [names[1]]}),
    )
    .await;
    assert_eq!(s, 400, "both shapes at once");
    // Nothing changed so far.
    assert_eq!(env.emu().contacts("alice@example.com").len(), 2);
    // The other body shape.
    let (s, v) =
        post(json!({"email": "alice@example.com", "survivor": names[1], "merged": [names[0]]}))
            .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["resourceName"], json!(names[1]));
    assert_eq!(env.emu().contacts("alice@example.com").len(), 1);
    // Merging a contact that is gone.
    assert!(env
        .emu()
        .merge_contacts("alice@example.com", &names[1], &[&names[0]])
        .is_err());
    env.finish().await;
}
