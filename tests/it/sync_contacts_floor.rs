//! Small-change contacts runs at the floor of People calls (issue 18): after a settled sync,
//! a run carrying ten edits on each side makes two calls (the connections listing and one batch
//! update); the group's resource name is kept with the cursor (re-resolved only when Google says
//! it is gone), and updates go out with the etag and the Google record kept with the link (a
//! person Google refuses as stale is read again, re-planned and retried).

use crate::sync_support::*;
use crmsync_engine::model::{Phone, PhoneKind};
use crmsync_schema::db_test;
use serde_json::Value;
use std::collections::BTreeMap;

/// People calls per method since `before`.
fn people_calls(w: &SyncWorld, before: &crmsync_emulator::Stats) -> BTreeMap<String, u64> {
    let now = w.emu.emulator().stats();
    now.methods
        .keys()
        .filter(|m| m.starts_with("people."))
        .map(|m| (m.clone(), now.count(m) - before.count(m)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn by_email<'a>(people: &'a [Value], email: &str) -> Option<&'a Value> {
    people
        .iter()
        .find(|p| emails_of(std::slice::from_ref(*p)).contains(&email.to_string()))
}

fn rn_of(w: &SyncWorld, email: &str) -> String {
    by_email(&w.google_contacts(), email).unwrap()["resourceName"]
        .as_str()
        .unwrap()
        .to_string()
}

db_test!(async fn contacts_small_change_round_makes_two_people_calls(db) {
    let w = SyncWorld::new(db).await;
    let contacts: Vec<_> = (0..30)
        .map(|i| w.crm_contact("P", &format!("N{i}"), &format!("p{i:02}@example.org")))
        .collect();
    w.sync_contacts().await;
    let r = w.sync_contacts().await;
    assert_eq!(r.counts.writes(), 0, "not settled: {r:?}");
    let g = w.google_as("alice@example.com").await;
    // A Google-only detail on p00 the CRM does not map: its organization's department.
    let rn0 = rn_of(&w, "p00@example.org");
    let mut p0 = g.people().get(&rn0).await.unwrap().unwrap();
    p0.organizations = Some(vec![crmsync_connectors::people1::api::Organization {
        department: Some("R&D".into()),
        ..Default::default()
    }]);
    g.people().update_contact(p0, "organizations").await.unwrap();
    w.sync_contacts().await;
    w.sync_contacts().await;

    // Ten CRM edits (0-9) and ten Google edits (10-19).
    for c in &contacts[0..10] {
        w.crm_update(c.id, |d| d.job_title = Some("Curator".into()));
    }
    for i in 10..20 {
        let rn = rn_of(&w, &format!("p{i:02}@example.org"));
        let p = g.people().get(&rn).await.unwrap().unwrap();
        let p = with_phone(p, &format!("+44 20 0000 00{i}"));
        g.people().update_contact(p, "phoneNumbers").await.unwrap();
    }
    let before = w.emu.emulator().stats();
    let r = w.sync_contacts().await;
    let calls = people_calls(&w, &before);
    eprintln!("small-change round: {calls:?}");
    assert_eq!(r.counts.errors, 0, "{r:?}");
    assert_eq!(
        calls.values().sum::<u64>(),
        2,
        "a small-change round makes the listing and one batch update: {calls:?}"
    );
    assert_eq!(calls.get("people.people.connections.list"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("people.people.batchUpdateContacts"), Some(&1), "{calls:?}");

    // Both sides carry both edits; the Google-only detail survived the CRM edit.
    let people = w.google_contacts();
    for i in 0..10 {
        let p = by_email(&people, &format!("p{i:02}@example.org")).unwrap();
        assert_eq!(p["organizations"][0]["title"], "Curator", "p{i:02}");
    }
    let p0 = by_email(&people, "p00@example.org").unwrap();
    assert_eq!(p0["organizations"][0]["department"], "R&D", "{p0}");
    for (i, c) in contacts.iter().enumerate().take(20).skip(10) {
        let phones: Vec<Phone> = w.crm_get(c.id).data.phones;
        assert_eq!(phones.len(), 1, "p{i:02}: {phones:?}");
        assert_eq!(phones[0].number, format!("+44 20 0000 00{i}"));
        assert_eq!(phones[0].kind, PhoneKind::Mobile);
    }
    // Settled: the next run lists and writes nothing.
    let before = w.emu.emulator().stats();
    let r = w.sync_contacts().await;
    assert_eq!(r.counts.writes(), 0, "{r:?}");
    assert_eq!(people_calls(&w, &before).values().sum::<u64>(), 1);
});

db_test!(async fn contacts_a_google_edit_after_the_listing_is_refused_as_stale_reread_and_merged(db) {
    // Google shows edits to sync listings only after a propagation delay: an edit made just
    // before the run is not listed, so the CRM edit of the same contact goes out on the kept
    // record with its old etag. Google refuses it as stale; the contact is read again,
    // re-planned field by field and written once more, and nothing is lost on either side.
    let w = SyncWorld::new(db).await;
    let contacts: Vec<_> = (0..6)
        .map(|i| w.crm_contact("P", &format!("N{i}"), &format!("p{i:02}@example.org")))
        .collect();
    w.sync_contacts().await;
    w.sync_contacts().await;
    let g = w.google_as("alice@example.com").await;
    w.emu.emulator().set_people_propagation_delay(60);
    let rn0 = rn_of(&w, "p00@example.org");
    let p = g.people().get(&rn0).await.unwrap().unwrap();
    g.people()
        .update_contact(with_phone(p, "+44 20 7946 0000"), "phoneNumbers")
        .await
        .unwrap();
    w.crm_update(contacts[0].id, |d| d.job_title = Some("Curator".into()));
    w.crm_update(contacts[1].id, |d| d.job_title = Some("Keeper".into()));

    let before = w.emu.emulator().stats();
    let r = w.sync_contacts().await;
    let calls = people_calls(&w, &before);
    eprintln!("stale round: {calls:?}");
    assert_eq!(r.counts.errors, 0, "{r:?}");
    let stats = w.emu.emulator().stats();
    let refused = stats.count_status("people.people.batchUpdateContacts", 400)
        - before.count_status("people.people.batchUpdateContacts", 400)
        + stats.count_status("people.people.updateContact", 400)
        - before.count_status("people.people.updateContact", 400);
    assert!(refused >= 1, "the kept etag was refused as stale: {calls:?}");
    assert_eq!(calls.get("people.people.getBatchGet"), Some(&1), "only the stale one is read: {calls:?}");

    // Both edits on both sides.
    let people = w.google_contacts();
    let p0 = by_email(&people, "p00@example.org").unwrap();
    assert_eq!(p0["organizations"][0]["title"], "Curator", "{p0}");
    assert_eq!(p0["phoneNumbers"][0]["value"], "+44 20 7946 0000", "{p0}");
    let p1 = by_email(&people, "p01@example.org").unwrap();
    assert_eq!(p1["organizations"][0]["title"], "Keeper", "{p1}");
    let c0 = w.crm_get(contacts[0].id);
    assert_eq!(c0.data.job_title.as_deref(), Some("Curator"));
    assert_eq!(c0.data.phones.len(), 1, "{:?}", c0.data.phones);
    assert_eq!(c0.data.phones[0].number, "+44 20 7946 0000");

    // Once the listing shows the edits, nothing is left to do.
    w.emu.emulator().advance_clock(chrono::Duration::seconds(120));
    w.sync_contacts().await;
    let r = w.sync_contacts().await;
    assert_eq!((r.counts.writes(), r.counts.errors), (0, 0), "{r:?}");
    let c0 = w.crm_get(contacts[0].id);
    assert_eq!(c0.data.job_title.as_deref(), Some("Curator"));
    assert_eq!(c0.data.phones[0].number, "+44 20 7946 0000");
});

/// Sends a contact-group request as Alice (edits "by the user" in Google).
async fn group_call(w: &SyncWorld, method: reqwest::Method, group: &str, body: Option<Value>) {
    let token = w
        .emu
        .emulator()
        .mint_access_token("alice@example.com", &SCOPES.map(String::from))
        .unwrap();
    let mut req = reqwest::Client::new()
        .request(method, format!("{}/v1/{group}", w.emu.base_url()))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    assert!(
        resp.status().is_success(),
        "{}",
        resp.text().await.unwrap_or_default()
    );
}

fn member_names(w: &SyncWorld, group: &str) -> Vec<String> {
    w.google_contacts()
        .iter()
        .filter(|p| {
            p["memberships"].as_array().is_some_and(|m| {
                m.iter()
                    .any(|x| x["contactGroupMembership"]["contactGroupResourceName"] == group)
            })
        })
        .filter_map(|p| p["resourceName"].as_str().map(String::from))
        .collect()
}

db_test!(async fn contacts_a_group_deleted_in_google_is_re_created_with_every_linked_contact(db) {
    // The group's resource name is kept with the cursor and not asked for again; when Google
    // deletes the group (taking its members out), the listing shows linked contacts out of it,
    // Google confirms the group is gone, and it is re-created with every linked contact put back:
    // nothing is untagged, and the run's CRM edit reaches Google.
    let w = SyncWorld::new(db).await;
    let contacts: Vec<_> = (0..5)
        .map(|i| w.crm_contact("P", &format!("N{i}"), &format!("p{i:02}@example.org")))
        .collect();
    w.sync_contacts().await;
    let old = w.group().unwrap();
    group_call(&w, reqwest::Method::DELETE, &old, None).await;
    assert!(w.group().is_none());
    w.crm_update(contacts[0].id, |d| d.job_title = Some("Curator".into()));
    let before = w.emu.emulator().stats();
    let r = w.sync_contacts().await;
    assert_eq!(r.counts.errors, 0, "{r:?}");
    let calls = people_calls(&w, &before);
    assert_eq!(calls.get("people.contactGroups.get"), Some(&1), "{calls:?}");
    let new = w.group().expect("the group was re-created");
    assert_ne!(new, old);
    assert_eq!(member_names(&w, &new).len(), 5);
    for c in &contacts {
        assert!(w.crm_get(c.id).tags.contains(&w.tag.id), "{} was untagged", c.id);
    }
    let p0 = by_email(&w.google_contacts(), "p00@example.org").unwrap().clone();
    assert_eq!(p0["organizations"][0]["title"], "Curator");
    // Settled on the new group.
    w.sync_contacts().await;
    let r = w.sync_contacts().await;
    assert_eq!((r.counts.writes(), r.counts.errors), (0, 0), "{r:?}");
    assert_eq!(member_names(&w, &new).len(), 5);
});

db_test!(async fn contacts_a_group_gone_unseen_is_re_created_before_a_create(db) {
    // The group is deleted while the listing cannot show it yet (propagation delay): the run's
    // create names the group, so the group is confirmed first, found gone and re-created (the
    // linked contacts put back), and the new contact joins it.
    let w = SyncWorld::new(db).await;
    for i in 0..3 {
        w.crm_contact("P", &format!("N{i}"), &format!("p{i:02}@example.org"));
    }
    w.sync_contacts().await;
    w.sync_contacts().await;
    let old = w.group().unwrap();
    w.emu.emulator().set_people_propagation_delay(60);
    group_call(&w, reqwest::Method::DELETE, &old, None).await;
    let new_contact = w.crm_contact("New", "One", "new@example.org");
    let r = w.sync_contacts().await;
    assert_eq!(r.counts.errors, 0, "{r:?}");
    let new = w.group().expect("the group was re-created");
    assert_ne!(new, old);
    let members = member_names(&w, &new);
    assert_eq!(members.len(), 4, "{members:?}");
    assert!(by_email(&w.google_contacts(), "new@example.org").is_some());
    w.emu.emulator().advance_clock(chrono::Duration::seconds(120));
    w.sync_contacts().await;
    let r = w.sync_contacts().await;
    assert_eq!((r.counts.writes(), r.counts.errors), (0, 0), "{r:?}");
    assert_eq!(member_names(&w, &new).len(), 4);
    assert!(w.crm_get(new_contact.id).tags.contains(&w.tag.id));
    assert_eq!(w.crm_all().iter().filter(|c| c.tags.contains(&w.tag.id)).count(), 4);
});

db_test!(async fn contacts_a_renamed_group_stays_the_sync_group(db) {
    // The group is known by its resource name: renamed in Google, it stays the sync group (no
    // second "CRM" group, nobody untagged), and a small change still costs two calls.
    let w = SyncWorld::new(db).await;
    let contacts: Vec<_> = (0..3)
        .map(|i| w.crm_contact("P", &format!("N{i}"), &format!("p{i:02}@example.org")))
        .collect();
    w.sync_contacts().await;
    let group = w.group().unwrap();
    group_call(
        &w,
        reqwest::Method::PUT,
        &group,
        Some(serde_json::json!({"contactGroup": {"name": "Clients (CRM)"}})),
    )
    .await;
    w.sync_contacts().await;
    w.crm_update(contacts[1].id, |d| d.job_title = Some("Keeper".into()));
    let before = w.emu.emulator().stats();
    let r = w.sync_contacts().await;
    assert_eq!(r.counts.errors, 0, "{r:?}");
    assert_eq!(people_calls(&w, &before).values().sum::<u64>(), 2);
    assert!(w.group().is_none(), "a second group was created");
    assert_eq!(member_names(&w, &group).len(), 3);
    let p1 = by_email(&w.google_contacts(), "p01@example.org").unwrap().clone();
    assert_eq!(p1["organizations"][0]["title"], "Keeper");
    for c in &contacts {
        assert!(w.crm_get(c.id).tags.contains(&w.tag.id));
    }
});
