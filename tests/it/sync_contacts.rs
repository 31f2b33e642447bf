//! End-to-end contacts sync (SPEC section 3, rules N1-N7), one test per rule, on SQLite and
//! PostgreSQL, against the emulator through the real People client crate.

use crate::sync_support::*;
use crmsync::sync::{MassUntag, RunOptions, RunState};
use crmsync_engine::model::{Phone, PhoneKind};
use crmsync_schema::db_test;
use crmsync_schema::sync_state;
use serde_json::Value;

fn phone_of(p: &Value) -> Option<String> {
    p["phoneNumbers"][0]["value"].as_str().map(String::from)
}

fn given_of(p: &Value) -> Option<String> {
    p["names"][0]["givenName"].as_str().map(String::from)
}

fn by_email<'a>(people: &'a [Value], email: &str) -> Vec<&'a Value> {
    people
        .iter()
        .filter(|p| emails_of(std::slice::from_ref(*p)).contains(&email.to_string()))
        .collect()
}

db_test!(async fn first_run_links_by_email_and_syncs_both_ways(db) {
    let w = SyncWorld::new(db).await;
    let ada = w.crm_contact("Ada", "Lovelace", "ada@example.org");
    let bob = w.crm_contact("Bob", "Babbage", "bob@example.org");
    // An untagged CRM contact stays out of Google.
    let untagged = w.store.write(|c| crmsync_schema::contacts::create_contact(c, &contact_data("Una", "Tagged", "una@example.org"), &[], now())).unwrap();
    // Google already has Bob (with a phone) and Cy in the group "CRM".
    let g = w.google_as("alice@example.com").await;
    let group = g.people().ensure_group("CRM").await.unwrap().resource_name.unwrap();
    let created = g.people().batch_create(vec![with_phone(person("Bob", "Babbage", "BOB@example.org"), "+44 20 7946 0000"), person("Cy", "Cyan", "cy@example.org")]).await.unwrap();
    let names: Vec<String> = created.iter().map(|p| p.resource_name.clone().unwrap()).collect();
    g.people().modify_members(&group, &names, &[]).await.unwrap();

    let r = w.sync_contacts().await;
    assert_eq!(r.state, RunState::Succeeded);
    assert_eq!(r.counts.google.get("created"), Some(&1), "only Ada is created in Google: {:?}", r.counts);
    assert_eq!(r.counts.crm.get("created"), Some(&1), "only Cy is imported: {:?}", r.counts);

    let members = w.group_members();
    assert_eq!(emails_of(&members), vec!["ada@example.org", "bob@example.org", "cy@example.org"]);
    assert_eq!(by_email(&w.google_contacts(), "bob@example.org").len(), 1, "Bob was linked, not duplicated");
    // Values present on one side only are kept on both.
    assert_eq!(w.crm_get(bob.id).data.phones, vec![Phone { number: "+44 20 7946 0000".into(), kind: PhoneKind::Mobile }]);
    let crm = w.crm_all();
    let cy: Vec<_> = crm.iter().filter(|c| c.data.given_name == "Cy").collect();
    assert_eq!(cy.len(), 1);
    assert!(cy[0].tags.contains(&w.tag.id), "imported contacts carry the sync tag");
    assert!(by_email(&w.google_contacts(), "una@example.org").is_empty());
    assert!(w.crm_get(untagged.id).tags.is_empty());
    assert!(w.crm_get(ada.id).tags.contains(&w.tag.id));

    // N6: a second run after convergence writes nothing anywhere.
    let writes = w.people_writes();
    let r2 = w.sync_contacts().await;
    assert_eq!(w.people_writes(), writes, "second run wrote to Google: {:?}", r2.counts);
    assert_eq!(r2.counts.writes(), 0, "{:?}", r2.counts);
    assert_eq!(w.emu.emulator().stats().count("people.people.connections.list") >= 2, true);
});

db_test!(async fn incremental_changes_flow_each_way(db) {
    let w = SyncWorld::new(db).await;
    let ada = w.crm_contact("Ada", "Lovelace", "ada@example.org");
    w.sync_contacts().await;
    // CRM -> Google.
    w.crm_update(ada.id, |d| d.job_title = Some("Countess".into()));
    let r = w.sync_contacts().await;
    assert_eq!(r.counts.google.get("updated"), Some(&1), "{:?}", r.counts);
    let p = &by_email(&w.google_contacts(), "ada@example.org")[0].clone();
    assert_eq!(p["organizations"][0]["title"], "Countess");
    // Google -> CRM.
    let g = w.google_as("alice@example.com").await;
    let rn = p["resourceName"].as_str().unwrap().to_string();
    let current = g.people().get(&rn).await.unwrap().unwrap();
    let mut edited = current.clone();
    edited.phone_numbers = with_phone(person("x", "y", "z@z"), "+1 555 0100").phone_numbers;
    g.people().update_contact(edited, "phoneNumbers").await.unwrap();
    let r = w.sync_contacts().await;
    assert_eq!(r.counts.crm.get("updated"), Some(&1), "{:?}", r.counts);
    assert_eq!(w.crm_get(ada.id).data.phones[0].number, "+1 555 0100");
    assert_eq!(w.crm_get(ada.id).data.job_title.as_deref(), Some("Countess"));
});

db_test!(async fn different_fields_changed_on_both_sides_are_merged(db) {
    let w = SyncWorld::new(db).await;
    let ada = w.crm_contact("Ada", "Lovelace", "ada@example.org");
    w.sync_contacts().await;
    w.crm_update(ada.id, |d| d.given_name = "Augusta".into());
    let g = w.google_as("alice@example.com").await;
    let rn = by_email(&w.google_contacts(), "ada@example.org")[0]["resourceName"].as_str().unwrap().to_string();
    let mut p = g.people().get(&rn).await.unwrap().unwrap();
    p.phone_numbers = with_phone(person("x", "y", "z@z"), "+1 555 0199").phone_numbers;
    g.people().update_contact(p, "phoneNumbers").await.unwrap();
    let r = w.sync_contacts().await;
    assert_eq!(r.counts.conflicts, 0);
    let crm = w.crm_get(ada.id);
    assert_eq!(crm.data.given_name, "Augusta");
    assert_eq!(crm.data.phones[0].number, "+1 555 0199");
    let gp = by_email(&w.google_contacts(), "ada@example.org")[0].clone();
    assert_eq!(given_of(&gp).as_deref(), Some("Augusta"));
    assert_eq!(phone_of(&gp).as_deref(), Some("+1 555 0199"));
});

db_test!(async fn same_field_changed_on_both_sides_goes_to_the_later_writer(db) {
    let w = SyncWorld::new(db).await;
    let ada = w.crm_contact("Ada", "Lovelace", "ada@example.org");
    w.sync_contacts().await;
    // CRM first, Google later: Google wins, the CRM value is kept in the journal.
    w.crm_update(ada.id, |d| d.job_title = Some("Analyst".into()));
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let g = w.google_as("alice@example.com").await;
    let rn = by_email(&w.google_contacts(), "ada@example.org")[0]["resourceName"].as_str().unwrap().to_string();
    let mut p = g.people().get(&rn).await.unwrap().unwrap();
    if let Some(orgs) = p.organizations.as_mut() {
        orgs[0].title = Some("Programmer".into());
    } else {
        p.organizations = Some(vec![crmsync_connectors::people1::api::Organization { title: Some("Programmer".into()), ..Default::default() }]);
    }
    g.people().update_contact(p, "organizations").await.unwrap();
    let r = w.sync_contacts().await;
    assert_eq!(r.counts.conflicts, 1, "{:?}", r.counts);
    assert_eq!(w.crm_get(ada.id).data.job_title.as_deref(), Some("Programmer"));
    let journal = w.store.read(|c| sync_state::journal_of_run(c, r.run_id)).unwrap();
    let conflict = journal.iter().find(|e| e.entry.action == "conflict").expect("a conflict entry");
    assert_eq!(conflict.entry.field.as_deref(), Some("job_title"));
    assert_eq!(conflict.entry.winner.as_deref(), Some("google"));
    assert_eq!(conflict.entry.before.as_ref().unwrap()["crm"], "Analyst", "the losing value is journaled");
    let overwrite = journal.iter().find(|e| e.entry.side == "crm" && e.entry.action == "update").unwrap();
    assert_eq!(overwrite.entry.before, Some(Value::from("Analyst")));
});

db_test!(async fn google_delete_and_group_removal_untag_in_the_crm(db) {
    let w = SyncWorld::new(db).await;
    let ada = w.crm_contact("Ada", "Lovelace", "ada@example.org");
    let bob = w.crm_contact("Bob", "Babbage", "bob@example.org");
    w.sync_contacts().await;
    let g = w.google_as("alice@example.com").await;
    let group = w.group().unwrap();
    let ada_rn = by_email(&w.google_contacts(), "ada@example.org")[0]["resourceName"].as_str().unwrap().to_string();
    let bob_rn = by_email(&w.google_contacts(), "bob@example.org")[0]["resourceName"].as_str().unwrap().to_string();
    // Ada deleted in Google, Bob removed from the group (after an edit that must not be lost).
    let mut bp = g.people().get(&bob_rn).await.unwrap().unwrap();
    bp.phone_numbers = with_phone(person("x", "y", "z@z"), "+49 30 1234").phone_numbers;
    g.people().update_contact(bp, "phoneNumbers").await.unwrap();
    g.people().modify_members(&group, &[], &[bob_rn.clone()]).await.unwrap();
    w.google_delete_contact(&ada_rn).await;
    let r = w.sync_contacts().await;
    assert_eq!(r.counts.crm.get("untagged"), Some(&2), "{:?}", r.counts);
    // N1: nothing deleted in the CRM; data kept.
    let a = w.crm_get(ada.id);
    assert!(a.deleted_at.is_none() && a.tags.is_empty());
    assert_eq!(a.data.given_name, "Ada");
    let b = w.crm_get(bob.id);
    assert!(b.tags.is_empty());
    assert_eq!(b.data.phones[0].number, "+49 30 1234", "the Google edit before the removal reached the CRM");
    // A third run changes nothing.
    let r = w.sync_contacts().await;
    assert_eq!(r.counts.writes(), 0, "{:?}", r.counts);
});

db_test!(async fn crm_untag_and_delete_take_the_contact_out_of_the_group_without_deleting_it(db) {
    let w = SyncWorld::new(db).await;
    let ada = w.crm_contact("Ada", "Lovelace", "ada@example.org");
    let bob = w.crm_contact("Bob", "Babbage", "bob@example.org");
    w.sync_contacts().await;
    w.store.write(|c| crmsync_schema::contacts::untag_contact(c, ada.id, w.tag.id, now())).unwrap();
    w.crm_update(bob.id, |d| d.job_title = Some("Engineer".into()));
    w.store.write(|c| crmsync_schema::contacts::delete_contact(c, bob.id, now())).unwrap();
    let writes_before = w.emu.emulator().stats().count("people.people.deleteContact") + w.emu.emulator().stats().count("people.people.batchDeleteContacts");
    let r = w.sync_contacts().await;
    assert_eq!(r.counts.google.get("removed_from_group"), Some(&2), "{:?}", r.counts);
    assert!(w.group_members().is_empty());
    let all = w.google_contacts();
    assert_eq!(emails_of(&all), vec!["ada@example.org", "bob@example.org"], "never deleted in Google");
    assert_eq!(by_email(&all, "bob@example.org")[0]["organizations"][0]["title"], "Engineer", "the CRM edit before the delete reached Google");
    let deletes = w.emu.emulator().stats().count("people.people.deleteContact") + w.emu.emulator().stats().count("people.people.batchDeleteContacts");
    assert_eq!(deletes, writes_before);
    for p in &all {
        let groups: Vec<&str> = p["memberships"].as_array().unwrap().iter().filter_map(|m| m["contactGroupMembership"]["contactGroupResourceName"].as_str()).collect();
        assert!(groups.contains(&"contactGroups/myContacts"), "stays in My Contacts: {groups:?}");
    }
});

db_test!(async fn last_group_contact_stays_in_my_contacts_when_untagged(db) {
    let w = SyncWorld::new(db).await;
    // A contact that is only in the CRM group (not in My Contacts).
    let g = w.google_as("alice@example.com").await;
    let group = g.people().ensure_group("CRM").await.unwrap().resource_name.unwrap();
    let created = g.people().batch_create(vec![person("Dee", "Solo", "dee@example.org")]).await.unwrap();
    let rn = created[0].resource_name.clone().unwrap();
    g.people().modify_members(&group, &[rn.clone()], &[]).await.unwrap();
    g.people().modify_members("contactGroups/myContacts", &[], &[rn.clone()]).await.unwrap();
    w.sync_contacts().await;
    let dee = w.crm_all().into_iter().find(|c| c.data.given_name == "Dee").expect("imported");
    w.store.write(|c| crmsync_schema::contacts::untag_contact(c, dee.id, w.tag.id, now())).unwrap();
    w.sync_contacts().await;
    assert!(w.group_members().is_empty());
    let p = by_email(&w.google_contacts(), "dee@example.org")[0].clone();
    let groups: Vec<&str> = p["memberships"].as_array().unwrap().iter().filter_map(|m| m["contactGroupMembership"]["contactGroupResourceName"].as_str()).collect();
    assert_eq!(groups, vec!["contactGroups/myContacts"]);
});

db_test!(async fn links_come_back_without_duplicates(db) {
    let w = SyncWorld::new(db).await;
    let ada = w.crm_contact("Ada", "Lovelace", "ada@example.org");
    w.sync_contacts().await;
    w.store.write(|c| crmsync_schema::contacts::untag_contact(c, ada.id, w.tag.id, now())).unwrap();
    w.sync_contacts().await;
    assert!(w.group_members().is_empty());
    // Re-tag: the same Google contact goes back into the group.
    w.store.write(|c| crmsync_schema::contacts::tag_contact(c, ada.id, w.tag.id, now())).unwrap();
    let r = w.sync_contacts().await;
    assert_eq!(r.counts.google.get("added_to_group"), Some(&1), "{:?}", r.counts);
    assert_eq!(w.google_contacts().len(), 1);
    assert_eq!(w.group_members().len(), 1);
    // Removed from the group in Google, then re-added: the CRM contact is re-tagged.
    let g = w.google_as("alice@example.com").await;
    let rn = w.group_members()[0]["resourceName"].as_str().unwrap().to_string();
    let group = w.group().unwrap();
    g.people().modify_members(&group, &[], &[rn.clone()]).await.unwrap();
    w.sync_contacts().await;
    assert!(w.crm_get(ada.id).tags.is_empty());
    g.people().modify_members(&group, &[rn], &[]).await.unwrap();
    let r = w.sync_contacts().await;
    assert_eq!(r.counts.crm.get("tagged"), Some(&1), "{:?}", r.counts);
    assert!(w.crm_get(ada.id).tags.contains(&w.tag.id));
    assert_eq!(w.crm_all().len(), 1, "no second CRM record");
});

db_test!(async fn mass_untag_guard_stops_a_run_that_empties_the_group(db) {
    let w = SyncWorld::new(db).await;
    for i in 0..12 {
        w.crm_contact("P", &format!("N{i}"), &format!("p{i}@example.org"));
    }
    w.sync_contacts().await;
    let g = w.google_as("alice@example.com").await;
    let group = w.group().unwrap();
    let all: Vec<String> = w.group_members().iter().map(|p| p["resourceName"].as_str().unwrap().to_string()).collect();
    g.people().modify_members(&group, &[], &all).await.unwrap();
    let r = w.sync_contacts().await;
    assert_eq!(r.state, RunState::Blocked, "{:?}", r);
    assert!(r.message.as_deref().unwrap_or("").contains("12 of 12"), "{:?}", r.message);
    assert!(w.crm_all().iter().all(|c| c.tags.contains(&w.tag.id)), "nothing untagged");
    // Blocked again until an admin decides; "restore" puts the contacts back in the group.
    assert_eq!(w.sync_contacts().await.state, RunState::Blocked);
    let r = w.sync_contacts_with(RunOptions { mass_untag: MassUntag::Restore }).await;
    assert_eq!(r.state, RunState::Succeeded, "{:?}", r);
    assert_eq!(w.group_members().len(), 12);
    assert_eq!(w.sync_contacts().await.counts.writes(), 0);
    // Emptied again and confirmed: the CRM contacts lose the tag (and keep their data).
    g.people().modify_members(&group, &[], &all).await.unwrap();
    let r = w.sync_contacts_with(RunOptions { mass_untag: MassUntag::Confirm }).await;
    assert_eq!(r.counts.crm.get("untagged"), Some(&12), "{:?}", r.counts);
    assert_eq!(w.crm_all().len(), 12);
});
