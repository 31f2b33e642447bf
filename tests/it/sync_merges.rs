//! Contacts merged in Google ("Merge duplicates"), on both backends: the link follows the
//! survivor (no untag, no re-import, no duplicate); two linked contacts merged into one keep the
//! first link and untag the other CRM contact with a journal entry naming the merge; a merge
//! seen through an expired sync token (a full listing names no former records) is followed by
//! e-mail.

use crate::sync_support::*;
use crmsync_engine::ids::SyncKind;
use crmsync_schema::{db_test, sync_state};

fn link_of(w: &SyncWorld, crm_id: &str) -> sync_state::Link {
    let id = crm_id.to_string();
    w.store
        .read(|c| sync_state::links_by_crm_ids(c, w.alice.id, SyncKind::Contacts, &[id]))
        .expect("links")
        .into_iter()
        .next()
        .expect("a link")
}

db_test!(async fn two_linked_contacts_merged_in_google_keep_one_link(db) {
    let w = SyncWorld::new(db).await;
    let ada = w.crm_contact("Ada", "Lovelace", "ada@example.org");
    let bea = w.crm_contact("Bea", "Lovelace", "bea@example.org");
    w.sync_contacts().await;
    let pa = link_of(&w, &ada.id.to_string()).google_id.expect("ada's person");
    let pb = link_of(&w, &bea.id.to_string()).google_id.expect("bea's person");
    w.emu.emulator().merge_contacts("alice@example.com", &pa, &[pb.as_str()]).expect("merge");

    let r = w.sync_contacts().await;
    assert_eq!(r.counts.google.values().sum::<u64>(), 0, "nothing written to Google: {:?}", r.counts);
    assert_eq!(w.google_contacts().len(), 1, "nothing re-created in Google");
    // Ada stays linked to the survivor; Bea is untagged (never deleted), journaled as a merge.
    let la = link_of(&w, &ada.id.to_string());
    assert_eq!((la.state, la.google_id.as_deref()), (crmsync_engine::planner::LinkState::Active, Some(pa.as_str())));
    assert!(w.crm_get(ada.id).tags.contains(&w.tag.id));
    let bea_now = w.crm_get(bea.id);
    assert!(bea_now.deleted_at.is_none() && !bea_now.tags.contains(&w.tag.id), "{bea_now:?}");
    let journal = w.store.read(|c| sync_state::journal_of_record(c, &bea.id.to_string())).expect("journal");
    assert!(journal.iter().any(|j| j.entry.rule == "merged_in_google"), "{journal:?}");
    assert_eq!(w.crm_all().len(), 2, "no CRM contact imported");
    let again = w.sync_contacts().await;
    assert_eq!(again.counts.writes(), 0, "{:?}", again.counts);
});

/// A group member merged into a contact outside the group: the survivor (now in the group with
/// the absorbed one's memberships) takes over the link.
async fn merged_into_an_outside_contact(
    db: crmsync_schema::test_support::TestDb,
    expire_token: bool,
) {
    let w = SyncWorld::new(db).await;
    let ada = w.crm_contact("Ada", "Lovelace", "ada@example.org");
    w.sync_contacts().await;
    let pa = link_of(&w, &ada.id.to_string())
        .google_id
        .expect("ada's person");
    // Alice keeps another card for Ada outside the CRM group, with her phone.
    let g = w.google_as("alice@example.com").await;
    let outside = g
        .people()
        .batch_create(vec![with_phone(
            person("Ada", "L.", "ada.l@home.example"),
            "+44 20 7946 0000",
        )])
        .await
        .expect("create outside the group");
    let px = outside[0].resource_name.clone().expect("a resource name");
    w.emu
        .emulator()
        .merge_contacts("alice@example.com", &px, &[pa.as_str()])
        .expect("merge");
    if expire_token {
        w.emu
            .emulator()
            .expire_sync_tokens("alice@example.com", crmsync_emulator::Api::People);
    }

    w.sync_contacts().await;
    let la = link_of(&w, &ada.id.to_string());
    assert_eq!(
        la.state,
        crmsync_engine::planner::LinkState::Active,
        "{la:?}"
    );
    assert_eq!(
        la.google_id.as_deref(),
        Some(px.as_str()),
        "the link follows the survivor"
    );
    let ada_now = w.crm_get(ada.id);
    assert!(ada_now.tags.contains(&w.tag.id), "Ada is not untagged");
    assert_eq!(w.crm_all().len(), 1, "nothing imported: {:?}", w.crm_all());
    assert_eq!(w.google_contacts().len(), 1, "nothing re-created in Google");
    // The survivor's extra data reached the CRM by the ordinary merge of fields.
    assert!(
        ada_now
            .data
            .phones
            .iter()
            .any(|p| p.number.contains("7946")),
        "{:?}",
        ada_now.data.phones
    );
    let again = w.sync_contacts().await;
    assert_eq!(again.counts.writes(), 0, "{:?}", again.counts);
}

db_test!(async fn a_group_member_merged_into_an_outside_contact_keeps_its_link(db) {
    merged_into_an_outside_contact(db, false).await;
});

db_test!(async fn a_merge_seen_through_an_expired_sync_token_is_followed_by_email(db) {
    merged_into_an_outside_contact(db, true).await;
});
