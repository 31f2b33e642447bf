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
