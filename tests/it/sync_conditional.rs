//! Conditional Calendar writes: an event changed in Google between the moment a run planned its
//! write and the write itself is not overwritten. The write carries `If-Match` with the etag the
//! plan was made from; Google answers 412; the run reads the event again, re-plans (both edits
//! merged field by field, the loser of a field both sides changed journaled) and writes once more.
//! The concurrent edit is a real second client writing to the emulator while the run's patch is
//! held up (a pure delay), not an injected error.

use crate::sync_support::*;
use chrono::{Datelike, Duration, Utc};
use crmsync::sync::{RunOptions, RunState, Trigger};
use crmsync_emulator::FaultRule;
use crmsync_engine::activity_map::event_id;
use crmsync_engine::ids::SyncKind;
use crmsync_schema::{db_test, sync_state};
use serde_json::json;

db_test!(async fn an_event_changed_in_google_during_the_patch_keeps_both_edits(db) {
    let w = SyncWorld::new(db).await;
    w.set_activity_settings(&w.alice, None, &[]);
    let start = Utc::now().with_year(Utc::now().year() + 1).unwrap_or_else(|| Utc::now() + Duration::days(300));
    let mut data = meeting("Team sync", &w.alice, start, 60, "Europe/Berlin", vec![]);
    data.location = Some("Room 1".into());
    data.notes = Some("agenda v1".into());
    let a = w.crm_activity(&data);
    w.sync_activities(&w.alice).await;
    let id = event_id(a.id);

    // The CRM changes the title and the notes.
    w.crm_activity_update(a.id, |d| {
        d.title = "Team sync (CRM)".into();
        d.notes = Some("agenda v2".into());
    });
    // The run's patch is held up for a moment when it reaches Google ...
    w.emu.emulator().set_faults(vec![FaultRule {
        status: None,
        times: Some(1),
        ..FaultRule::error("calendar.events.patch", 500, 0)
            .for_user("alice@example.com")
            .delay_ms(1500)
    }]);
    let engine = w.engine.clone();
    let alice = w.alice.id;
    let run = tokio::spawn(async move {
        engine
            .sync(alice, SyncKind::Activities, Trigger::Manual, RunOptions::default())
            .await
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !w.emu.emulator().faults().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the run never sent its patch");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // ... and meanwhile Alice changes the title and the location in Google.
    w.google_patch_event("alice@example.com", &id, json!({"summary": "Team sync (Google)", "location": "Room 2"})).await;
    let report = run.await.expect("run task").expect("run completes");
    assert_eq!(report.state, RunState::Succeeded, "{report:?}");

    // Both edits survive: the title both changed goes to the later edit (Google's), the CRM's
    // notes and Google's location are both kept, everywhere.
    let e = w.emu.emulator().calendar_event("alice@example.com", &id).expect("event");
    assert_eq!(e["summary"], "Team sync (Google)", "{e}");
    assert_eq!(e["location"], "Room 2", "{e}");
    assert_eq!(e["description"], "agenda v2", "{e}");
    let crm = w.crm_activity_get(a.id).data;
    assert_eq!(crm.title, "Team sync (Google)");
    assert_eq!(crm.location.as_deref(), Some("Room 2"));
    assert_eq!(crm.notes.as_deref(), Some("agenda v2"));
    // The CRM's losing title is in the journal.
    let journal = w
        .store
        .read(|c| sync_state::journal_of_record(c, &a.id.to_string()))
        .expect("journal");
    assert!(
        journal.iter().any(|j| j.entry.action == "conflict"
            && j.entry.field.as_deref() == Some("title")
            && j.entry.before.as_ref().is_some_and(|b| b.to_string().contains("Team sync (CRM)"))),
        "{journal:?}"
    );
    // Converged: the next run writes nothing.
    let again = w.sync_activities(&w.alice).await;
    assert_eq!(again.counts.writes(), 0, "{:?}", again.counts);
});

/// Runs `act` the first time a run reaches the point between its Google write and its local
/// commit (a CRM user writing while the run is under way), and never crashes.
struct WriteDuringRun {
    act: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl std::fmt::Debug for WriteDuringRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteDuringRun")
    }
}

impl crmsync::sync::crash::CrashPlan for WriteDuringRun {
    fn check(
        &self,
        point: crmsync::sync::crash::CrashPoint,
    ) -> Result<(), crmsync::sync::crash::Crash> {
        if point == crmsync::sync::crash::CrashPoint::AfterRemoteWriteBeforeLocalCommit {
            if let Some(act) = self.act.lock().unwrap().take() {
                act();
            }
        }
        Ok(())
    }
}

// The soak found it: a run committed the CRM side of its plan on the record as it had read it,
// so a user's API write between the run's read and its commit was lost. Now the commit finds the
// record changed under its lock, fails the item (nothing of it committed, the cursors held before
// it), and the next run merges both edits.
db_test!(async fn a_crm_edit_made_while_a_run_writes_google_is_not_lost(db) {
    let w = SyncWorld::new(db).await;
    let ada = w.crm_contact("Ada", "Lovelace", "ada@example.org");
    w.sync_contacts().await;
    // Both sides change before the run: a phone in Google, a job title in the CRM.
    let g = w.google_as("alice@example.com").await;
    let rn = w.google_contacts()[0]["resourceName"].as_str().unwrap().to_string();
    let mut p = g.people().get(&rn).await.unwrap().unwrap();
    p.phone_numbers = Some(vec![crmsync_connectors::people1::api::PhoneNumber { value: Some("+44 20 7946 0001".into()), ..Default::default() }]);
    g.people().update_contact(p, "phoneNumbers").await.unwrap();
    w.crm_update(ada.id, |d| d.job_title = Some("Countess".into()));
    // While the run writes the title to Google, the user changes it again in the CRM.
    let store = w.store.clone();
    let plan = WriteDuringRun {
        act: std::sync::Mutex::new(Some(Box::new(move || {
            store.write(|c| {
                let mut d = crmsync_schema::contacts::get_contact(c, ada.id)?.data;
                d.job_title = Some("Analyst".into());
                crmsync_schema::contacts::update_contact(c, ada.id, &d, crmsync_schema::changes::Origin::Api, now())
            }).unwrap();
        }))),
    };
    let racing = w.engine.with_crash_plan(std::sync::Arc::new(plan));
    let r = racing.sync(w.alice.id, SyncKind::Contacts, Trigger::Manual, RunOptions::default()).await.unwrap();
    assert_eq!(r.state, RunState::Succeeded);
    assert_eq!(r.errors.len(), 1, "the raced item fails: {:?}", r.errors);
    assert!(r.errors[0].message.contains("changed while the run was planning it"), "{:?}", r.errors);
    assert_eq!(w.crm_get(ada.id).data.job_title.as_deref(), Some("Analyst"), "the user's newer edit is kept");
    // Google changes another field afterwards (the whole contact is now newer in Google): the
    // run's own title write must not pass for a Google edit that wins over the user's.
    let mut p = g.people().get(&rn).await.unwrap().unwrap();
    p.phone_numbers = Some(vec![crmsync_connectors::people1::api::PhoneNumber { value: Some("+44 20 7946 0002".into()), ..Default::default() }]);
    g.people().update_contact(p, "phoneNumbers").await.unwrap();
    // The next run merges both: the newer title to Google, the phone to the CRM.
    w.sync_contacts().await;
    let c = w.crm_get(ada.id);
    assert_eq!(c.data.job_title.as_deref(), Some("Analyst"));
    assert_eq!(c.data.phones.first().map(|p| p.number.as_str()), Some("+44 20 7946 0002"));
    let person = &w.google_contacts()[0];
    assert_eq!(person["organizations"][0]["title"], "Analyst");
    let again = w.sync_contacts().await;
    assert_eq!(again.counts.writes(), 0, "{:?}", again.counts);
    assert!(again.errors.is_empty(), "{:?}", again.errors);
});
