//! A user's sync reset (SPEC 6.5): the dry run plans the first run after a reset with the real
//! planner against Google and the CRM and writes nothing anywhere; the reset forgets links,
//! cursor and failing records and nothing else; the run after it pairs every record again
//! (contacts by the CRM id they carry or by e-mail, events by the activity id they carry)
//! without creating, deleting or untagging anything, and the run after that is quiet. Both
//! backends, against the emulator through the real client crates.

use crate::sync_support::*;
use chrono::{Duration, Utc};
use crmsync::sync::{PreviewReport, RunState};
use crmsync_engine::ids::SyncKind;
use crmsync_engine::planner::LinkState;
use crmsync_schema::{db_test, jobs, reset, sync_state, StoreError};
use serde_json::json;

/// Links of Alice's kind, in every state.
fn all_links(w: &SyncWorld, kind: SyncKind) -> usize {
    let uid = w.alice.id;
    w.store
        .read(|c| {
            let mut n = 0;
            for s in [LinkState::Active, LinkState::Ended, LinkState::Pending] {
                n += sync_state::count_links(c, uid, kind, s)?;
            }
            Ok(n)
        })
        .unwrap() as usize
}

fn cursor_token(w: &SyncWorld, kind: SyncKind) -> Option<String> {
    let uid = w.alice.id;
    w.store
        .read(|c| sync_state::get_cursor(c, uid, kind))
        .unwrap()
        .google_sync_token
}

/// The journal size: a preview journals nothing.
fn journal_len(w: &SyncWorld) -> usize {
    w.store
        .read(|c| sync_state::journal_page(c, &Default::default(), None, 10_000))
        .unwrap()
        .len()
}

fn count(m: &std::collections::BTreeMap<String, u64>, k: &str) -> u64 {
    m.get(k).copied().unwrap_or(0)
}

async fn preview(w: &SyncWorld, kind: SyncKind) -> PreviewReport {
    w.engine
        .preview(w.alice.id, kind, true)
        .await
        .expect("the dry run plans")
}

db_test!(async fn contacts_reset_previews_then_remerges_every_pair_without_duplicates(db) {
    let w = SyncWorld::new(db).await;
    // Ada and Dee (no e-mail) only in the CRM, Bob on both sides, Cy only in Google, Eve synced
    // and then untagged (her link ended: out of scope on both sides).
    w.crm_contact("Ada", "Lovelace", "ada@example.org");
    let bob = w.crm_contact("Bob", "Babbage", "bob@example.org");
    let dee = w.crm_contact("Dee", "Nomail", "");
    let eve = w.crm_contact("Eve", "Gone", "eve@example.org");
    let g = w.google_as("alice@example.com").await;
    let group = g.people().ensure_group("CRM").await.unwrap().resource_name.unwrap();
    let created = g.people().batch_create(vec![person("Bob", "Babbage", "bob@example.org"), person("Cy", "Cyan", "cy@example.org")]).await.unwrap();
    let names: Vec<String> = created.iter().map(|p| p.resource_name.clone().unwrap()).collect();
    g.people().modify_members(&group, &names, &[]).await.unwrap();
    w.sync_contacts().await;
    let tag = w.tag.id;
    w.store.write(|c| crmsync_schema::contacts::untag_contact(c, eve.id, tag, crmsync_schema::changes::Origin::Api, now())).unwrap();
    w.sync_contacts().await;
    // Bob drifts apart in a way no run notices: his CRM job title changes under a change
    // sequence his link takes for the engine's own write (what a reset is for).
    let drifted = w.crm_update(bob.id, |d| d.job_title = Some("Drifted".into()));
    let uid = w.alice.id;
    w.store.write(|c| {
        let l = sync_state::links_by_crm_ids(c, uid, SyncKind::Contacts, &[bob.id.to_string()])?.remove(0);
        sync_state::set_link_crm_seq(c, l.id, drifted.change_seq)
    }).unwrap();
    let quiet = w.sync_contacts().await;
    assert_eq!(quiet.counts.writes(), 0, "{:?}", quiet.counts);
    let bob_in_google = |w: &SyncWorld| w.google_contacts().into_iter().find(|p| emails_of(std::slice::from_ref(p)) == ["bob@example.org"]).unwrap();
    assert!(bob_in_google(&w)["organizations"][0]["title"].is_null(), "the drift is invisible to a run");
    let (people_before, crm_before, links_before) = (w.google_contacts().len(), w.crm_all().len(), all_links(&w, SyncKind::Contacts));
    assert_eq!(links_before, 5, "four active links and Eve's ended one");
    let (writes, token, journal) = (w.people_writes(), cursor_token(&w, SyncKind::Contacts), journal_len(&w));

    // The dry run: Bob is merged again and his title goes to Google; nothing else is written,
    // paired, created or untagged.
    let p = preview(&w, SyncKind::Contacts).await;
    assert!(p.reset);
    assert_eq!(count(&p.counts.google, "updated"), 1, "{:?}", p.counts);
    assert_eq!((p.counts.linked, count(&p.counts.google, "created"), count(&p.counts.crm, "created")), (0, 0, 0), "{:?}", p.counts);
    assert_eq!((count(&p.counts.crm, "untagged"), count(&p.counts.google, "removed_from_group"), p.counts.unlinked), (0, 0, 0), "{:?}", p.counts);
    assert_eq!(p.items.len(), 1, "{:?}", p.items);
    assert_eq!((p.items[0].label.as_deref(), p.items[0].actions.clone()), (Some("Bob Babbage"), vec!["google.updated".to_string()]));
    assert_eq!(p.items[0].crm_id, Some(bob.id.to_string()));
    assert!(!p.truncated);
    assert!(p.api_calls >= 1, "the dry run read Google");
    // ... and wrote nothing anywhere.
    assert_eq!(w.people_writes(), writes, "the dry run wrote to Google");
    assert_eq!(all_links(&w, SyncKind::Contacts), links_before);
    assert_eq!(cursor_token(&w, SyncKind::Contacts), token, "the dry run moved the cursor");
    assert_eq!(journal_len(&w), journal);

    // A contact added in Google meanwhile shows as an import.
    let fay = g.people().batch_create(vec![person("Fay", "New", "fay@example.org")]).await.unwrap();
    g.people().modify_members(&group, &[fay[0].resource_name.clone().unwrap()], &[]).await.unwrap();
    let p = preview(&w, SyncKind::Contacts).await;
    assert_eq!((p.counts.linked, count(&p.counts.crm, "created"), count(&p.counts.google, "updated")), (1, 1, 1), "{:?}", p.counts);

    // The reset forgets the bases (not the pairs), the cursor, and touches no record.
    let done = w.store.write(|c| reset::reset_sync(c, w.alice.id, SyncKind::Contacts, now())).unwrap();
    assert_eq!((done.bases_forgotten, done.cursor_forgotten), (4, true));
    assert_eq!(all_links(&w, SyncKind::Contacts), links_before);
    assert_eq!((w.google_contacts().len(), w.crm_all().len()), (people_before + 1, crm_before), "the reset touched records");
    assert!(cursor_token(&w, SyncKind::Contacts).is_none());

    // The run after it does what the dry run said.
    let r = w.sync_contacts().await;
    assert_eq!(r.state, RunState::Succeeded);
    assert_eq!((r.counts.linked, count(&r.counts.crm, "created"), count(&r.counts.google, "created"), count(&r.counts.google, "updated")), (1, 1, 0, 1), "{:?}", r.counts);
    assert_eq!((count(&r.counts.crm, "untagged"), count(&r.counts.google, "removed_from_group")), (0, 0), "{:?}", r.counts);
    assert_eq!(bob_in_google(&w)["organizations"][0]["title"], "Drifted");
    assert_eq!(w.google_contacts().len(), people_before + 1, "no Google duplicate");
    assert_eq!(w.crm_all().len(), crm_before + 1, "only Fay was imported");
    assert!(w.crm_get(dee.id).tags.contains(&tag));
    assert!(!w.crm_get(eve.id).tags.contains(&tag), "Eve stays out of scope");
    assert_eq!(w.group_members().len(), 5, "Ada, Bob, Cy, Dee and Fay");
    let again = w.sync_contacts().await;
    assert_eq!(again.counts.writes(), 0, "the run after the re-merge wrote: {:?}", again.counts);
});

db_test!(async fn activities_reset_previews_then_repairs_every_event(db) {
    let w = SyncWorld::new(db).await;
    w.set_activity_settings(&w.alice, None, &[]);
    let start = (Utc::now() + Duration::days(7)).date_naive().and_hms_opt(10, 0, 0).unwrap().and_utc();
    let a = w.crm_activity(&meeting("Review", &w.alice, start, 60, "Europe/London", vec![]));
    let day = start.date_naive() + Duration::days(1);
    w.google_insert_event("alice@example.com", json!({
        "summary": "Lunch from Google",
        "start": {"dateTime": format!("{}T12:00:00Z", day), "timeZone": "UTC"},
        "end": {"dateTime": format!("{}T13:00:00Z", day), "timeZone": "UTC"},
    })).await;
    w.sync_activities(&w.alice).await;
    let quiet = w.sync_activities(&w.alice).await;
    assert_eq!(quiet.counts.writes(), 0, "{:?}", quiet.counts);
    let (events, acts, writes) = (w.live_events("alice@example.com").len(), w.crm_activities().len(), w.calendar_writes());
    assert_eq!((events, acts), (2, 2));

    // Both pairs are merged again and agree: an imported event (no CRM id on it) is not
    // imported twice, the CRM's own is not exported twice.
    let p = preview(&w, SyncKind::Activities).await;
    assert_eq!((p.counts.writes(), p.counts.linked, p.counts.unlinked), (0, 0, 0), "{:?}", p.counts);
    assert!(p.items.is_empty(), "{:?}", p.items);
    assert_eq!(w.calendar_writes(), writes, "the dry run wrote to Google");
    // A CRM edit since shows as the Google update the run will make.
    w.crm_activity_update(a.id, |d| d.location = Some("Room 9".into()));
    let p = preview(&w, SyncKind::Activities).await;
    assert_eq!(count(&p.counts.google, "updated"), 1, "{:?}", p.counts);
    assert_eq!((p.items.len(), p.items[0].label.as_deref()), (1, Some("Review")), "{:?}", p.items);

    let done = w.store.write(|c| reset::reset_sync(c, w.alice.id, SyncKind::Activities, now())).unwrap();
    assert_eq!(done.bases_forgotten, 2);
    let r = w.sync_activities(&w.alice).await;
    assert_eq!((r.counts.linked, count(&r.counts.google, "created"), count(&r.counts.crm, "created"), count(&r.counts.google, "updated")), (0, 0, 0, 1), "{:?}", r.counts);
    assert_eq!(w.events("alice@example.com").iter().find(|e| e["summary"] == "Review").unwrap()["location"], "Room 9");
    assert_eq!((w.live_events("alice@example.com").len(), w.crm_activities().len()), (2, 2), "no duplicate on either side");
    let again = w.sync_activities(&w.alice).await;
    assert_eq!(again.counts.writes(), 0, "{:?}", again.counts);
});

db_test!(async fn a_reset_waits_for_the_run_in_progress(db) {
    let w = SyncWorld::new(db).await;
    w.crm_contact("Ada", "Lovelace", "ada@example.org");
    let r = w.sync_contacts().await;
    assert_eq!(r.counts.linked, 1);
    let (uid, kind) = (w.alice.id, SyncKind::Contacts);
    w.store.write(|c| jobs::request_run(c, uid, kind, None, now())).unwrap();
    let claim = w.store.write(|c| jobs::claim_job(c, uid, kind, now(), "worker-1", chrono::Duration::minutes(5))).unwrap();
    assert!(claim.is_some(), "the queued run is claimed");
    let refused = w.store.write(|c| reset::reset_sync(c, uid, kind, now()));
    match refused {
        Err(StoreError::Conflict(m)) => assert!(m.contains("in progress"), "{m}"),
        other => panic!("a reset during a run must be refused: {other:?}"),
    }
    assert_eq!(all_links(&w, kind), 1, "nothing was forgotten");
    // Without sync settings there is nothing to reset.
    let bob = w.user("bob@example.com").await;
    assert!(matches!(w.store.write(|c| reset::reset_sync(c, bob.id, kind, now())), Err(StoreError::Conflict(_))));
});
