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
    let untagged = w.store.write(|c| crmsync_schema::contacts::create_contact(c, &contact_data("Una", "Tagged", "una@example.org"), &[], None, crmsync_schema::changes::Origin::Api, now())).unwrap();
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
    assert!(w.emu.emulator().stats().count("people.people.connections.list") >= 2);
    // A run with nothing changed: one list call, nothing else (SPEC 3, "Incremental").
    let r3 = w.sync_contacts().await;
    assert_eq!(r3.api_calls, 1, "{r3:?}");
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

db_test!(async fn same_field_changed_in_google_first_and_crm_later_goes_to_the_crm(db) {
    let w = SyncWorld::new(db).await;
    let ada = w.crm_contact("Ada", "Lovelace", "ada@example.org");
    w.sync_contacts().await;
    // Google first, CRM later: the CRM wins, Google is overwritten, the Google value journaled.
    let g = w.google_as("alice@example.com").await;
    let rn = by_email(&w.google_contacts(), "ada@example.org")[0]["resourceName"].as_str().unwrap().to_string();
    let mut p = g.people().get(&rn).await.unwrap().unwrap();
    p.organizations = Some(vec![crmsync_connectors::people1::api::Organization { title: Some("Programmer".into()), ..Default::default() }]);
    g.people().update_contact(p, "organizations").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    w.crm_update(ada.id, |d| d.job_title = Some("Analyst".into()));
    let r = w.sync_contacts().await;
    assert_eq!(r.counts.conflicts, 1, "{:?}", r.counts);
    assert_eq!(w.crm_get(ada.id).data.job_title.as_deref(), Some("Analyst"));
    let gp = by_email(&w.google_contacts(), "ada@example.org")[0].clone();
    assert_eq!(gp["organizations"][0]["title"].as_str(), Some("Analyst"), "{gp:#}");
    let journal = w.store.read(|c| sync_state::journal_of_run(c, r.run_id)).unwrap();
    let conflict = journal.iter().find(|e| e.entry.action == "conflict").expect("a conflict entry");
    assert_eq!(conflict.entry.field.as_deref(), Some("job_title"));
    assert_eq!(conflict.entry.winner.as_deref(), Some("crm"));
    assert_eq!(conflict.entry.before.as_ref().unwrap()["google"], "Programmer", "the losing value is journaled");
    assert!(
        journal.iter().any(|e| e.entry.side == "google" && e.entry.action == "update"),
        "the Google overwrite is journaled: {journal:#?}"
    );
    // Settled: the next run changes nothing on either side.
    let again = w.sync_contacts().await;
    assert_eq!(again.counts.conflicts, 0, "{:?}", again.counts);
    assert!(again.counts.google.is_empty() && again.counts.crm.is_empty(), "{:?}", again.counts);
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
    g.people().modify_members(&group, &[], std::slice::from_ref(&bob_rn)).await.unwrap();
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
    w.store.write(|c| crmsync_schema::contacts::untag_contact(c, ada.id, w.tag.id, crmsync_schema::changes::Origin::Api, now())).unwrap();
    w.crm_update(bob.id, |d| d.job_title = Some("Engineer".into()));
    w.store.write(|c| crmsync_schema::contacts::delete_contact(c, bob.id, crmsync_schema::changes::Origin::Api, now())).unwrap();
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
    g.people().modify_members(&group, std::slice::from_ref(&rn), &[]).await.unwrap();
    g.people().modify_members("contactGroups/myContacts", &[], std::slice::from_ref(&rn)).await.unwrap();
    w.sync_contacts().await;
    let dee = w.crm_all().into_iter().find(|c| c.data.given_name == "Dee").expect("imported");
    w.store.write(|c| crmsync_schema::contacts::untag_contact(c, dee.id, w.tag.id, crmsync_schema::changes::Origin::Api, now())).unwrap();
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
    w.store.write(|c| crmsync_schema::contacts::untag_contact(c, ada.id, w.tag.id, crmsync_schema::changes::Origin::Api, now())).unwrap();
    w.sync_contacts().await;
    assert!(w.group_members().is_empty());
    // Re-tag: the same Google contact goes back into the group.
    w.store.write(|c| crmsync_schema::contacts::tag_contact(c, ada.id, w.tag.id, crmsync_schema::changes::Origin::Api, now())).unwrap();
    let r = w.sync_contacts().await;
    assert_eq!(r.counts.google.get("added_to_group"), Some(&1), "{:?}", r.counts);
    assert_eq!(w.google_contacts().len(), 1);
    assert_eq!(w.group_members().len(), 1);
    // Removed from the group in Google, then re-added: the CRM contact is re-tagged.
    let g = w.google_as("alice@example.com").await;
    let rn = w.group_members()[0]["resourceName"].as_str().unwrap().to_string();
    let group = w.group().unwrap();
    g.people().modify_members(&group, &[], std::slice::from_ref(&rn)).await.unwrap();
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

db_test!(async fn a_public_or_foreign_tag_is_refused_as_sync_tag(db) {
    let w = SyncWorld::new(db).await;
    let public = w.store.write(|c| crmsync_schema::tags::create_tag(c, &crmsync_schema::tags::NewTag { external_id: None, name: "Everyone".into(), visibility: crmsync_engine::model::TagVisibility::Public, owner_user_id: None }, now())).unwrap();
    let bob = w.user("bob@example.com").await;
    let bobs = w.private_tag(&bob, "Bob's");
    for tag in [public.id, bobs.id] {
        let err = w.store.write(|c| crmsync_schema::settings::put_sync_settings(c, &crmsync_schema::settings::NewSyncSettings {
            user_id: w.alice.id,
            kind: crmsync_engine::ids::SyncKind::Contacts,
            auto_sync: true,
            schedule: crmsync_engine::model::SyncSchedule::IntervalMinutes(5),
            tag_id: Some(tag),
            synchronize_from: None,
            trigger_words: vec![],
        }, now())).unwrap_err();
        assert!(matches!(err, crmsync_schema::StoreError::Invalid(_)), "{err}");
    }
    // The valid setting is unchanged and still syncs.
    w.crm_contact("Ada", "Lovelace", "ada@example.org");
    w.sync_contacts().await;
    assert_eq!(w.group_members().len(), 1);
});

db_test!(async fn an_expired_sync_token_causes_no_duplicates_and_no_untags(db) {
    let w = SyncWorld::new(db).await;
    for i in 0..5 {
        w.crm_contact("P", &format!("N{i}"), &format!("p{i}@example.org"));
    }
    let g = w.google_as("alice@example.com").await;
    let group = g.people().ensure_group("CRM").await.unwrap().resource_name.unwrap();
    let created = g.people().batch_create(vec![person("Cy", "Cyan", "cy@example.org"), person("P", "N0", "p0@example.org")]).await.unwrap();
    let names: Vec<String> = created.iter().map(|p| p.resource_name.clone().unwrap()).collect();
    g.people().modify_members(&group, &names, &[]).await.unwrap();
    w.sync_contacts().await;
    let before = w.google_contacts().len();
    let lists_before = w.emu.emulator().stats().count("people.people.connections.list");
    w.emu.emulator().expire_sync_tokens("alice@example.com", crmsync_emulator::Api::People);
    let writes = w.people_writes();
    let r = w.sync_contacts().await;
    assert_eq!(r.counts.writes(), 0, "{:?}", r.counts);
    assert_eq!(w.people_writes(), writes, "the full re-listing wrote to Google");
    assert_eq!(w.google_contacts().len(), before);
    assert_eq!(w.crm_all().len(), 6);
    assert!(w.crm_all().iter().all(|c| c.tags.contains(&w.tag.id)));
    assert!(w.emu.emulator().stats().count_status("people.people.connections.list", 400) >= 1, "the expired token was used and refused");
    assert!(w.emu.emulator().stats().count("people.people.connections.list") >= lists_before + 2);
    // And the new token works incrementally again.
    let r = w.sync_contacts().await;
    assert_eq!(r.counts.writes(), 0);
});

db_test!(async fn injected_faults_converge_without_duplicates(db) {
    let mut config = crmsync::sync::SyncConfig::default();
    // Creates whose outcome is unknown are retried on the next run (no propagation delay here).
    config.contacts_policy.pending_confirm_after = chrono::Duration::zero();
    let w = SyncWorld::with_config(db, config).await;
    for i in 0..3 {
        w.crm_contact("P", &format!("N{i}"), &format!("p{i}@example.org"));
    }
    use crmsync_emulator::FaultRule;
    w.emu.emulator().set_faults(vec![
        FaultRule::error("people.people.connections.list", 503, 2),
        FaultRule::error("people.people.batchCreateContacts", 429, 1),
        FaultRule::error("people.people.batchCreateContacts", 503, 1),
    ]);
    // 503 on the create after the 429 retry: outcome unknown, nothing duplicated.
    let r = w.sync_contacts().await;
    assert!(r.counts.awaiting_confirmation >= 3 || r.counts.google.get("created") == Some(&3), "{:?}", r);
    w.sync_contacts().await;
    assert_eq!(emails_of(&w.group_members()), vec!["p0@example.org", "p1@example.org", "p2@example.org"]);
    // Applied but the answer lost: adopted through its clientData on the next run.
    w.crm_contact("Q", "Lost", "q@example.org");
    w.emu.emulator().set_faults(vec![FaultRule::error("people.people.batchCreateContacts", 0, 1).applied()]);
    let r = w.sync_contacts().await;
    assert_eq!(r.counts.awaiting_confirmation, 1, "{:?}", r);
    let r = w.sync_contacts().await;
    assert_eq!(r.counts.linked + r.counts.google.get("created").copied().unwrap_or(0), 1, "{:?}", r.counts);
    assert_eq!(by_email(&w.google_contacts(), "q@example.org").len(), 1, "no duplicate after a lost answer");
    assert_eq!(w.group_members().len(), 4);
    // 429 and 503 on updates are retried within the run (the update goes out on the record
    // kept with the link: no read first).
    let q = w.crm_all().into_iter().find(|c| c.data.given_name == "Q").unwrap();
    w.crm_update(q.id, |d| d.notes = Some("Met at the fair".into()));
    w.emu.emulator().set_faults(vec![
        FaultRule::error("people.people.batchUpdateContacts", 429, 2),
        FaultRule::error("people.people.batchUpdateContacts", 503, 1),
    ]);
    let r = w.sync_contacts().await;
    assert_eq!(r.counts.google.get("updated"), Some(&1), "{:?}", r);
    assert!(r.api_retries >= 3, "retries counted: {:?}", r);
    assert_eq!(by_email(&w.google_contacts(), "q@example.org")[0]["biographies"][0]["value"], "Met at the fair");
    w.emu.emulator().clear_faults();
    assert_eq!(w.sync_contacts().await.counts.writes(), 0);
    assert_eq!(w.crm_all().len(), 4);
});

/// Crash at `point` in a run with work on both sides (and a full re-listing over several pages),
/// then run again: the result must be the same as without the crash, with no duplicate and no
/// lost edit (N3, N4), and a further run must write nothing.
async fn crash_then_converge(
    db: crmsync_schema::test_support::TestDb,
    point: crmsync::sync::crash::CrashPoint,
) {
    use crmsync::sync::crash::CrashAt;
    let mut config = crmsync::sync::SyncConfig {
        people_page_size: 2,
        ..Default::default()
    };
    config.contacts_policy.pending_confirm_after = chrono::Duration::zero();
    let w = SyncWorld::with_config(db, config).await;
    let a = w.crm_contact("Ada", "Lovelace", "a@example.org");
    let b = w.crm_contact("Bob", "Babbage", "b@example.org");
    let g = w.google_as("alice@example.com").await;
    let group = g
        .people()
        .ensure_group("CRM")
        .await
        .unwrap()
        .resource_name
        .unwrap();
    let created = g
        .people()
        .batch_create(vec![
            person("Cy", "C", "c@example.org"),
            person("Di", "D", "d@example.org"),
            person("Ed", "E", "e@example.org"),
        ])
        .await
        .unwrap();
    let names: Vec<String> = created
        .iter()
        .map(|p| p.resource_name.clone().unwrap())
        .collect();
    g.people()
        .modify_members(&group, &names, &[])
        .await
        .unwrap();
    w.sync_contacts().await;

    // Work on both sides, and a full re-listing.
    w.crm_contact("Fay", "F", "f@example.org");
    w.crm_update(a.id, |d| d.job_title = Some("Countess".into()));
    w.store
        .write(|c| {
            crmsync_schema::contacts::untag_contact(
                c,
                b.id,
                w.tag.id,
                crmsync_schema::changes::Origin::Api,
                now(),
            )
        })
        .unwrap();
    let more = g
        .people()
        .batch_create(vec![person("Gus", "G", "g@example.org")])
        .await
        .unwrap();
    g.people()
        .modify_members(
            &group,
            &[more[0].resource_name.clone().unwrap()],
            &[names[2].clone()],
        )
        .await
        .unwrap();
    let mut cy = g.people().get(&names[0]).await.unwrap().unwrap();
    cy.phone_numbers = with_phone(person("x", "y", "z@z"), "+33 1 23 45").phone_numbers;
    g.people().update_contact(cy, "phoneNumbers").await.unwrap();
    w.emu
        .emulator()
        .expire_sync_tokens("alice@example.com", crmsync_emulator::Api::People);

    let crash = CrashAt::new(point, 1);
    let crashing = w.engine.with_crash_plan(std::sync::Arc::new(crash.clone()));
    let res = crashing
        .sync(
            w.alice.id,
            crmsync_engine::ids::SyncKind::Contacts,
            crmsync::sync::Trigger::Manual,
            RunOptions::default(),
        )
        .await;
    assert!(
        matches!(res, Err(crmsync::sync::error::SyncError::Crashed(p)) if p == point),
        "{point:?} was not reached: {res:?}"
    );
    assert_eq!(crash.hits(), 1);

    let r = w.sync_contacts().await;
    assert_eq!(r.state, RunState::Succeeded, "{r:?}");
    w.sync_contacts().await;
    let members = emails_of(&w.group_members());
    assert_eq!(
        members,
        vec![
            "a@example.org",
            "c@example.org",
            "d@example.org",
            "f@example.org",
            "g@example.org"
        ],
        "after a crash at {point:?}"
    );
    let all = emails_of(&w.google_contacts());
    let mut dedup = all.clone();
    dedup.dedup();
    assert_eq!(
        all, dedup,
        "duplicate Google contacts after a crash at {point:?}"
    );
    let crm = w.crm_all();
    let mut crm_emails: Vec<String> = crm
        .iter()
        .map(|c| c.data.emails[0].address.clone())
        .collect();
    crm_emails.sort();
    assert_eq!(
        crm_emails,
        vec![
            "a@example.org",
            "b@example.org",
            "c@example.org",
            "d@example.org",
            "e@example.org",
            "f@example.org",
            "g@example.org"
        ]
    );
    let tagged: Vec<&str> = crm
        .iter()
        .filter(|c| c.tags.contains(&w.tag.id))
        .map(|c| c.data.emails[0].address.as_str())
        .collect();
    assert_eq!(tagged.len(), 5, "{tagged:?}");
    assert_eq!(
        by_email(&w.google_contacts(), "a@example.org")[0]["organizations"][0]["title"],
        "Countess"
    );
    let cy = crm.iter().find(|c| c.data.given_name == "Cy").unwrap();
    assert_eq!(cy.data.phones[0].number, "+33 1 23 45");
    let writes = w.people_writes();
    let r = w.sync_contacts().await;
    assert_eq!(
        (r.counts.writes(), w.people_writes()),
        (0, writes),
        "{:?}",
        r.counts
    );
}

db_test!(async fn crash_before_remote_write_converges(db) {
    crash_then_converge(db, crmsync::sync::crash::CrashPoint::BeforeRemoteWrite).await;
});
db_test!(async fn crash_after_remote_write_before_local_commit_converges(db) {
    crash_then_converge(db, crmsync::sync::crash::CrashPoint::AfterRemoteWriteBeforeLocalCommit).await;
});
db_test!(async fn crash_after_local_commit_before_token_store_converges(db) {
    crash_then_converge(db, crmsync::sync::crash::CrashPoint::AfterLocalCommitBeforeTokenStore).await;
});
db_test!(async fn crash_mid_pagination_converges(db) {
    crash_then_converge(db, crmsync::sync::crash::CrashPoint::MidPagination).await;
});
db_test!(async fn crash_during_full_resync_converges(db) {
    crash_then_converge(db, crmsync::sync::crash::CrashPoint::DuringFullResync).await;
});

db_test!(async fn a_stale_etag_is_reread_replanned_and_retried(db) {
    let w = SyncWorld::new(db).await;
    let ada = w.crm_contact("Ada", "Lovelace", "ada@example.org");
    w.sync_contacts().await;
    // The CRM changes the title; meanwhile the user changes the phone in Google, and the update
    // is refused as stale (what Google answers when the contact changed after it was read).
    w.crm_update(ada.id, |d| d.job_title = Some("Countess".into()));
    let g = w.google_as("alice@example.com").await;
    let rn = by_email(&w.google_contacts(), "ada@example.org")[0]["resourceName"].as_str().unwrap().to_string();
    let mut p = g.people().get(&rn).await.unwrap().unwrap();
    p.phone_numbers = with_phone(person("x", "y", "z@z"), "+44 1234").phone_numbers;
    g.people().update_contact(p, "phoneNumbers").await.unwrap();
    w.emu.emulator().set_faults(vec![
        crmsync_emulator::FaultRule::error("people.people.batchUpdateContacts", 400, 1).reason("FAILED_PRECONDITION"),
        crmsync_emulator::FaultRule::error("people.people.updateContact", 400, 1).reason("FAILED_PRECONDITION"),
    ]);
    let gets = w.emu.emulator().stats().count("people.people.getBatchGet");
    let r = w.sync_contacts().await;
    assert_eq!(r.counts.errors, 0, "{r:?}");
    assert!(w.emu.emulator().stats().count("people.people.getBatchGet") > gets, "the contact was read again");
    let gp = by_email(&w.google_contacts(), "ada@example.org")[0].clone();
    assert_eq!(gp["organizations"][0]["title"], "Countess", "the CRM edit reached Google");
    assert_eq!(phone_of(&gp).as_deref(), Some("+44 1234"), "the Google edit survived");
    assert_eq!(w.crm_get(ada.id).data.phones[0].number, "+44 1234");
});

db_test!(async fn a_contact_google_refuses_does_not_hold_back_the_rest_of_its_batch(db) {
    // People validates a batch all or nothing: one contact Google refuses (400) must not keep
    // the other 199 of its batch out of Google, run after run.
    let w = SyncWorld::new(db).await;
    let ids: Vec<_> = (0..9).map(|i| w.crm_contact("Ok", &format!("N{i}"), &format!("ok{i}@example.org")).id).collect();
    let bad = w.crm_contact("Refused", "Record", "refused@bad.test");
    w.emu.emulator().set_faults(vec![
        crmsync_emulator::FaultRule::error("people.people.batchCreateContacts", 400, 1000).body_contains("refused@bad.test"),
    ]);
    let r = w.sync_contacts().await;
    assert_eq!(r.counts.google.get("created"), Some(&9), "{:?}", r.counts);
    assert_eq!(r.counts.errors, 1, "{r:?}");
    assert_eq!(r.errors[0].crm_id.as_deref(), Some(bad.id.to_string().as_str()));
    assert!(r.errors[0].message.contains("creating the Google contact failed"), "{:?}", r.errors);
    let emails = emails_of(&w.group_members());
    assert_eq!(emails.len(), 9, "{emails:?}");
    assert!(!emails.contains(&"refused@bad.test".to_string()));
    // Bisection, not one call per contact: 1 whole batch + at most 2 per halving level.
    let calls = w.emu.emulator().stats().count("people.people.batchCreateContacts");
    assert!(calls <= 1 + 2 * 4, "{calls} batch calls");
    // The failure is retried on the next run; once Google takes it, it goes in, once.
    let r = w.sync_contacts().await;
    assert_eq!((r.counts.errors, r.counts.google.get("created")), (1, None), "{r:?}");
    w.emu.emulator().clear_faults();
    let r = w.sync_contacts().await;
    assert_eq!(r.counts.google.get("created"), Some(&1), "{:?}", r.counts);
    assert_eq!(emails_of(&w.group_members()).len(), 10);

    // Updates: the connector falls back to one update per contact when a batch is refused; the
    // refused contact's update fails alone.
    let rn = by_email(&w.google_contacts(), "refused@bad.test")[0]["resourceName"].as_str().unwrap().to_string();
    for id in ids.iter().take(3).chain([&bad.id]) {
        w.crm_update(*id, |d| d.job_title = Some("Buyer".into()));
    }
    w.emu.emulator().set_faults(vec![
        crmsync_emulator::FaultRule::error("people.people.batchUpdateContacts", 400, 1000).body_contains(&rn),
        crmsync_emulator::FaultRule::error("people.people.updateContact", 400, 1000).body_contains(&rn),
    ]);
    let r = w.sync_contacts().await;
    assert_eq!((r.counts.google.get("updated"), r.counts.errors), (Some(&3), 1), "{r:?}");
    w.emu.emulator().clear_faults();
    let r = w.sync_contacts().await;
    assert_eq!((r.counts.google.get("updated"), r.counts.errors), (Some(&1), 0), "{r:?}");
    let titled = w.group_members().iter().filter(|p| p["organizations"][0]["title"] == "Buyer").count();
    assert_eq!(titled, 4);
    assert_eq!(w.sync_contacts().await.counts.writes(), 0);
});

db_test!(async fn a_batch_google_refuses_entirely_is_not_split_without_end(db) {
    // Every create refused (a systematic error, not one bad record): the splitting is bounded.
    let w = SyncWorld::new(db).await;
    for i in 0..150 {
        w.crm_contact("Ok", &format!("N{i}"), &format!("ok{i}@example.org"));
    }
    w.emu.emulator().set_faults(vec![crmsync_emulator::FaultRule::error("people.people.batchCreateContacts", 400, 100_000)]);
    let r = w.sync_contacts().await;
    assert_eq!(r.counts.errors, 150, "{:?}", r.counts);
    let calls = w.emu.emulator().stats().count("people.people.batchCreateContacts");
    assert!(calls <= 1 + 32 + 32, "{calls} calls for one refused batch");
    w.emu.emulator().clear_faults();
    let r = w.sync_contacts().await;
    assert_eq!(r.counts.google.get("created"), Some(&150), "{:?}", r.counts);
});

db_test!(async fn a_record_that_keeps_failing_is_parked_and_retried_without_holding_the_others_back(db) {
    use crmsync_engine::ids::SyncKind;
    use crmsync_schema::parked::{self, ItemSide};
    let w = SyncWorld::new(db).await;
    for i in 0..3 {
        w.crm_contact("Ok", &format!("N{i}"), &format!("ok{i}@example.org"));
    }
    let bad = w.crm_contact("Refused", "Record", "refused@bad.test");
    w.emu.emulator().set_faults(vec![
        crmsync_emulator::FaultRule::error("people.people.batchCreateContacts", 400, 100_000).body_contains("refused@bad.test"),
    ]);
    let uid = w.alice.id;
    let cursor = || w.store.read(|c| sync_state::get_cursor(c, uid, SyncKind::Contacts)).unwrap();
    let failing = || w.store.read(|c| parked::failing_items(c, uid, SyncKind::Contacts, 10)).unwrap();
    // Two runs: the failure holds the CRM cursor below the refused contact's change.
    for attempt in 1..=2 {
        let r = w.sync_contacts().await;
        assert_eq!(r.counts.errors, 1, "{r:?}");
        assert!(!r.errors[0].message.contains("parked"), "{:?}", r.errors);
        assert!(cursor().crm_seq < bad.change_seq, "attempt {attempt}: the cursor passed a failing record");
        let f = failing();
        assert_eq!((f.len(), f[0].side, f[0].attempts, f[0].parked_at), (1, ItemSide::Crm, attempt, None));
        assert_eq!(f[0].item_id, bad.id.to_string());
    }
    // The third failure parks it: the cursor moves on, the error says so.
    let r = w.sync_contacts().await;
    assert!(r.errors[0].message.contains("parked"), "{:?}", r.errors);
    assert!(cursor().crm_seq >= bad.change_seq, "a parked record no longer holds the cursor");
    assert!(failing()[0].parked_at.is_some());
    // The status tells the admin.
    let status = w.store.read(|c| crmsync::scheduler::status::user_status(c, &w.alice, now())).unwrap();
    let k = &status.kinds["contacts"];
    assert_eq!(k.parked, 1);
    assert!(k.message.as_deref().unwrap_or("").contains("parked"), "{k:?}");
    assert!(k.failing[0].last_error.contains("creating the Google contact failed"), "{k:?}");
    // Later changes go through; the parked record is retried in every run, by id.
    let late = w.crm_contact("Late", "Comer", "late@example.org");
    let calls = w.emu.emulator().stats().count("people.people.batchCreateContacts");
    let r = w.sync_contacts().await;
    assert_eq!((r.counts.google.get("created"), r.counts.errors), (Some(&1), 1), "{r:?}");
    assert!(w.emu.emulator().stats().count("people.people.batchCreateContacts") >= calls + 2, "the parked record was retried");
    assert_eq!(failing()[0].attempts, 4);
    assert!(cursor().crm_seq >= late.change_seq);
    // Once Google takes it, it goes in once and the row is gone.
    w.emu.emulator().clear_faults();
    let r = w.sync_contacts().await;
    assert_eq!((r.counts.google.get("created"), r.counts.errors), (Some(&1), 0), "{r:?}");
    assert!(failing().is_empty());
    let emails = emails_of(&w.group_members());
    assert_eq!(emails.len(), 5, "{emails:?}");
    assert_eq!(by_email(&w.google_contacts(), "refused@bad.test").len(), 1);
    let r = w.sync_contacts().await;
    assert_eq!((r.counts.writes(), r.counts.errors, r.api_calls), (0, 0, 1), "{r:?}");
});

db_test!(async fn mass_untag_undo_restores_each_kind_of_link_end(db) {
    // One run that would end 14 of 16 links in four ways: removed from the group in Google,
    // deleted in Google, untagged in the CRM, deleted in the CRM. The guard blocks it with those
    // numbers and carries nothing out; "restore" undoes every end the CRM can undo (back in the
    // group, re-created in Google, re-tagged) and lets a CRM delete stand, without losing the
    // edits made just before.
    use crmsync_schema::contacts::{delete_contact, untag_contact};
    let w = SyncWorld::new(db).await;
    let contacts: Vec<_> = (0..16).map(|i| w.crm_contact("P", &format!("N{i}"), &format!("p{i:02}@example.org"))).collect();
    w.sync_contacts().await;
    let g = w.google_as("alice@example.com").await;
    let group = w.group().unwrap();
    let rn_of = |i: usize| by_email(&w.google_contacts(), &format!("p{i:02}@example.org"))[0]["resourceName"].as_str().unwrap().to_string();
    let rns: Vec<String> = (0..16).map(rn_of).collect();
    // 0-3 leave the group in Google (0 after a phone edit there), 4-7 are deleted in Google,
    // 8-11 are untagged in the CRM (8 after a job title edit), 12-13 are deleted in the CRM,
    // 14-15 stay.
    let mut p0 = g.people().get(&rns[0]).await.unwrap().unwrap();
    p0.phone_numbers = with_phone(person("x", "y", "z@z"), "+44 20 0000 0000").phone_numbers;
    g.people().update_contact(p0, "phoneNumbers").await.unwrap();
    g.people().modify_members(&group, &[], &rns[0..4]).await.unwrap();
    for rn in &rns[4..8] {
        w.google_delete_contact(rn).await;
    }
    w.crm_update(contacts[8].id, |d| d.job_title = Some("Curator".into()));
    for c in &contacts[8..12] {
        w.store.write(|x| untag_contact(x, c.id, w.tag.id, crmsync_schema::changes::Origin::Api, now())).unwrap();
    }
    for c in &contacts[12..14] {
        w.store.write(|x| delete_contact(x, c.id, crmsync_schema::changes::Origin::Api, now())).unwrap();
    }

    let writes = w.people_writes();
    let r = w.sync_contacts().await;
    assert_eq!(r.state, RunState::Blocked, "{r:?}");
    assert!(r.message.as_deref().unwrap_or("").contains("14 of 16"), "{:?}", r.message);
    // Nothing carried out: no Google write, the Google-side ends did not untag anything and the
    // CRM-side ends left the group as it was.
    assert_eq!(w.people_writes(), writes, "a blocked run wrote to Google");
    for c in &contacts[0..8] {
        assert!(w.crm_get(c.id).tags.contains(&w.tag.id), "{} untagged by a blocked run", c.id);
    }
    let members: Vec<String> = w.group_members().iter().map(|p| p["resourceName"].as_str().unwrap().to_string()).collect();
    for rn in rns[8..16].iter() {
        assert!(members.contains(rn), "{rn} left the group in a blocked run");
    }

    let r = w.sync_contacts_with(RunOptions { mass_untag: MassUntag::Restore }).await;
    assert_eq!(r.state, RunState::Succeeded, "{r:?}");
    assert_eq!(r.counts.errors, 0, "{r:?}");
    // Google left scope: back in the group, same contact, the Google edit kept on both sides.
    let members: Vec<String> = w.group_members().iter().map(|p| p["resourceName"].as_str().unwrap().to_string()).collect();
    for rn in &rns[0..4] {
        assert!(members.contains(rn), "{rn} was not put back in the group");
    }
    assert_eq!(w.crm_get(contacts[0].id).data.phones[0].number, "+44 20 0000 0000");
    // Google deleted: re-created in Google (new contacts, in the group, once each).
    for i in 4..8 {
        let again = by_email(&w.google_contacts(), &format!("p{i:02}@example.org")).into_iter().cloned().collect::<Vec<_>>();
        assert_eq!(again.len(), 1, "p{i:02} not re-created exactly once: {again:?}");
        let rn = again[0]["resourceName"].as_str().unwrap();
        assert_ne!(rn, rns[i], "a deleted contact cannot come back under its old name");
        assert!(members.contains(&rn.to_string()), "re-created p{i:02} is not in the group");
        assert!(w.crm_get(contacts[i].id).tags.contains(&w.tag.id));
    }
    // CRM left scope: re-tagged, still in the group, the CRM edit kept on both sides.
    for (i, c) in contacts.iter().enumerate().take(12).skip(8) {
        assert!(w.crm_get(c.id).tags.contains(&w.tag.id), "p{i:02} was not re-tagged");
        assert!(members.contains(&rns[i]));
    }
    let p8 = by_email(&w.google_contacts(), "p08@example.org")[0].clone();
    assert_eq!(p8["organizations"][0]["title"], "Curator");
    // CRM deleted: stays deleted; its Google contact leaves the group and is not deleted.
    for (i, c) in contacts.iter().enumerate().take(14).skip(12) {
        assert!(w.crm_get(c.id).deleted_at.is_some(), "p{i:02} was brought back from a CRM delete");
        assert!(!members.contains(&rns[i]), "p{i:02} (deleted in the CRM) is still in the group");
        assert_eq!(by_email(&w.google_contacts(), &format!("p{i:02}@example.org")).len(), 1, "p{i:02} deleted in Google");
    }
    assert_eq!(members.len(), 14, "{members:?}");
    assert_eq!(w.crm_all().len(), 14);
    // Settled.
    let writes = w.people_writes();
    let r = w.sync_contacts().await;
    assert_eq!((r.state, r.counts.writes(), w.people_writes()), (RunState::Succeeded, 0, writes), "{r:?}");
});

db_test!(
    async fn a_full_relisting_ends_the_link_of_a_contact_edited_and_untagged_in_the_crm_and_deleted_in_google(db) {
    // Found by the contacts simulation (seed 98). A linked contact is edited and untagged in the
    // CRM and deleted in Google, and the next run has to re-list everything (expired sync
    // token). Without the edit, or with an incremental listing, the link ends and the contact
    // is untagged; with both, the run does nothing for it (no error, no journal entry), moves
    // both cursors on, and no later run comes back: the link stays active for an untagged CRM
    // contact and a deleted Google contact.
    use crmsync_engine::ids::SyncKind;
    use crmsync_engine::planner::LinkState;
    let w = SyncWorld::new(db).await;
    let ada = w.crm_contact("Ada", "Lovelace", "ada@example.org");
    w.sync_contacts().await;
    let rn = by_email(&w.google_contacts(), "ada@example.org")[0]["resourceName"].as_str().unwrap().to_string();
    w.crm_update(ada.id, |d| d.job_title = Some("Buyer".into()));
    w.store.write(|c| crmsync_schema::contacts::untag_contact(c, ada.id, w.tag.id, crmsync_schema::changes::Origin::Api, now())).unwrap();
    w.google_delete_contact(&rn).await;
    w.emu.emulator().expire_sync_tokens("alice@example.com", crmsync_emulator::Api::People);
    let r = w.sync_contacts().await;
    assert_eq!((r.counts.unlinked, r.counts.errors), (1, 0), "{r:?}");
    w.sync_contacts().await;
    let links = w.store.read(|c| sync_state::links_in_state(c, w.alice.id, SyncKind::Contacts, LinkState::Active, None, 100)).unwrap();
    assert!(links.is_empty(), "the link survived an untag and a Google delete: {links:?}");
    let a = w.crm_get(ada.id);
    assert!(a.deleted_at.is_none() && a.tags.is_empty());
    assert_eq!(a.data.job_title.as_deref(), Some("Buyer"), "the CRM edit stays in the CRM");
    let journal = w.store.read(|c| sync_state::journal_of_record(c, &ada.id.to_string())).unwrap();
    assert!(journal.iter().any(|j| j.entry.action == "unlink"), "the end is journaled: {journal:#?}");
});

db_test!(
    async fn a_full_relisting_sees_a_google_delete_of_a_contact_touched_in_the_crm(db) {
    // Found by the contacts simulation (seed 202). A linked contact is untagged and tagged again
    // in the CRM (a change with no field changed) and deleted in Google, and the next run
    // re-lists everything (expired sync token). The deletion is never noticed: the link stays
    // active on a Google contact that no longer exists, the CRM contact keeps its tag and is in
    // no Google group. (With a field edit instead, or with an incremental listing, the delete
    // untags the contact as it should.)
    use crmsync_engine::ids::SyncKind;
    use crmsync_engine::planner::LinkState;
    let w = SyncWorld::new(db).await;
    let ada = w.crm_contact("Ada", "Lovelace", "ada@example.org");
    w.sync_contacts().await;
    let rn = by_email(&w.google_contacts(), "ada@example.org")[0]["resourceName"].as_str().unwrap().to_string();
    w.store.write(|c| crmsync_schema::contacts::untag_contact(c, ada.id, w.tag.id, crmsync_schema::changes::Origin::Api, now())).unwrap();
    w.store.write(|c| crmsync_schema::contacts::tag_contact(c, ada.id, w.tag.id, crmsync_schema::changes::Origin::Api, now())).unwrap();
    w.google_delete_contact(&rn).await;
    w.emu.emulator().expire_sync_tokens("alice@example.com", crmsync_emulator::Api::People);
    let r = w.sync_contacts().await;
    assert_eq!(r.counts.crm.get("untagged"), Some(&1), "{r:?}");
    w.sync_contacts().await;
    let links = w.store.read(|c| sync_state::links_in_state(c, w.alice.id, SyncKind::Contacts, LinkState::Active, None, 100)).unwrap();
    assert!(links.is_empty(), "the link to a deleted Google contact is still active: {links:?}");
    let a = w.crm_get(ada.id);
    assert!(a.deleted_at.is_none() && a.tags.is_empty());
});
