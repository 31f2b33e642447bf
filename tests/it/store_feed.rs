//! The CRM change feed: "what changed since cursor C" returns exactly the records written after
//! C (creates, updates, deletes as tombstones, tag and untag), each once, in sequence order.

use crate::support::t0;
use chrono::Duration;
use crmsync_engine::ids::{ContactId, UserId};
use crmsync_engine::model::{
    ActivityData, ActivityStatus, ActivityTime, ContactData, Email, EmailKind, TagVisibility,
};
use crmsync_schema::tags::NewTag;
use crmsync_schema::users::NewUser;
use crmsync_schema::{activities, contacts, current_change_seq, db_test, tags, users, Store};
use std::collections::HashSet;

fn contact(name: &str) -> ContactData {
    ContactData {
        given_name: name.into(),
        family_name: "Test".into(),
        emails: vec![Email {
            address: format!("{name}@example.com"),
            kind: EmailKind::Work,
            primary: true,
        }],
        ..Default::default()
    }
}

fn new_contact(store: &Store, name: &str) -> ContactId {
    store
        .write(|c| {
            contacts::create_contact(
                c,
                &contact(name),
                &[],
                None,
                crmsync_schema::changes::Origin::Api,
                t0(),
            )
        })
        .unwrap()
        .id
}

fn activity(organizer: UserId, title: &str) -> ActivityData {
    ActivityData {
        title: title.into(),
        time: ActivityTime::Timed {
            start: t0(),
            end: t0() + Duration::hours(1),
        },
        time_zone: "Europe/Berlin".into(),
        location: None,
        notes: None,
        status: ActivityStatus::Planned,
        display_in_calendar: true,
        organizer_user_id: organizer,
        participants: vec![],
    }
}

db_test!(async fn contact_feed_returns_exactly_the_changes_after_a_cursor(db) {
    let store = db.store();
    let owner = store
        .write(|c| users::create_user(c, &NewUser { external_id: None, email: "o@example.com".into(), display_name: "O".into(), google_alias: None, time_zone: None }, t0()))
        .unwrap();
    let tag = store
        .write(|c| tags::create_tag(c, &NewTag { external_id: None, name: "sync".into(), visibility: TagVisibility::Private, owner_user_id: Some(owner.id) }, t0()))
        .unwrap();
    let untouched = new_contact(&store, "untouched");
    let updated = new_contact(&store, "updated");
    let deleted = new_contact(&store, "deleted");
    let tagged = new_contact(&store, "tagged");
    let untagged = store.write(|c| contacts::create_contact(c, &contact("untagged"), &[tag.id], None, crmsync_schema::changes::Origin::Api, t0())).unwrap().id;

    let cursor = store.read(current_change_seq).unwrap();
    assert!(store.read(|c| contacts::contacts_changed_since(c, cursor, 100)).unwrap().is_empty());

    let later = t0() + Duration::minutes(5);
    store.write(|c| contacts::update_contact(c, updated, &contact("updated2"), crmsync_schema::changes::Origin::Api, later)).unwrap();
    store.write(|c| contacts::delete_contact(c, deleted, crmsync_schema::changes::Origin::Api, later)).unwrap();
    store.write(|c| contacts::tag_contact(c, tagged, tag.id, crmsync_schema::changes::Origin::Api, later)).unwrap();
    store.write(|c| contacts::untag_contact(c, untagged, tag.id, crmsync_schema::changes::Origin::Api, later)).unwrap();
    let created = new_contact(&store, "created");
    // A second change of the same record: it still appears once, with its latest state.
    store.write(|c| contacts::update_contact(c, updated, &contact("updated3"), crmsync_schema::changes::Origin::Api, later)).unwrap();
    // No-op tag/untag changes nothing.
    let before_noop = store.read(current_change_seq).unwrap();
    store.write(|c| contacts::tag_contact(c, tagged, tag.id, crmsync_schema::changes::Origin::Api, later)).unwrap();
    store.write(|c| contacts::untag_contact(c, untouched, tag.id, crmsync_schema::changes::Origin::Api, later)).unwrap();
    assert_eq!(store.read(current_change_seq).unwrap(), before_noop);

    let changes = store.read(|c| contacts::contacts_changed_since(c, cursor, 100)).unwrap();
    let ids: Vec<ContactId> = changes.iter().map(|c| c.id).collect();
    assert_eq!(ids, vec![deleted, tagged, untagged, created, updated], "in change order, each once");
    assert!(!ids.contains(&untouched));
    let seqs: Vec<i64> = changes.iter().map(|c| c.change_seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]) && seqs[0] > cursor);

    let by_id = |id| changes.iter().find(|c| c.id == id).unwrap();
    assert!(by_id(deleted).deleted_at.is_some(), "the delete is a tombstone");
    assert_eq!(by_id(deleted).data.given_name, "deleted", "the tombstone keeps its data");
    assert_eq!(by_id(tagged).tags, vec![tag.id]);
    assert!(by_id(untagged).tags.is_empty());
    assert_eq!(by_id(updated).data.given_name, "updated3");
    assert_eq!(by_id(updated).modified_at, later);

    // Paging through the feed one by one gives the same records.
    let mut paged = Vec::new();
    let mut at = cursor;
    loop {
        let page = store.read(|c| contacts::contacts_changed_since(c, at, 1)).unwrap();
        let Some(last) = page.last() else { break };
        at = last.change_seq;
        paged.push(last.id);
    }
    assert_eq!(paged, ids);

    // Deleting a tag untags its contacts, and the feed shows them.
    let cursor2 = store.read(current_change_seq).unwrap();
    store.write(|c| tags::delete_tag(c, tag.id, crmsync_schema::changes::Origin::Api, later)).unwrap();
    let changes = store.read(|c| contacts::contacts_changed_since(c, cursor2, 100)).unwrap();
    assert_eq!(changes.iter().map(|c| c.id).collect::<Vec<_>>(), vec![tagged]);
    assert!(changes[0].tags.is_empty());
});

db_test!(async fn activity_feed_returns_exactly_the_changes_after_a_cursor(db) {
    let store = db.store();
    let org = store
        .write(|c| users::create_user(c, &NewUser { external_id: None, email: "org@example.com".into(), display_name: "Org".into(), google_alias: None, time_zone: None }, t0()))
        .unwrap();
    let mk = |title: &str| store.write(|c| activities::create_activity(c, &activity(org.id, title), None, crmsync_schema::changes::Origin::Api, t0())).unwrap().id;
    let untouched = mk("untouched");
    let updated = mk("updated");
    let deleted = mk("deleted");
    let cursor = store.read(current_change_seq).unwrap();
    let later = t0() + Duration::minutes(1);
    let mut data = activity(org.id, "updated2");
    data.participants = store
        .write(|c| activities::resolve_participants(c, &[(activities::ParticipantRef::Email("guest@example.com".into()), Default::default())]))
        .unwrap();
    store.write(|c| activities::update_activity(c, updated, &data, crmsync_schema::changes::Origin::Api, later)).unwrap();
    store.write(|c| activities::delete_activity(c, deleted, crmsync_schema::changes::Origin::Api, later)).unwrap();
    let created = mk("created");
    let changes = store.read(|c| activities::activities_changed_since(c, cursor, 100)).unwrap();
    let ids: Vec<_> = changes.iter().map(|a| a.id).collect();
    assert_eq!(ids, vec![updated, deleted, created]);
    assert!(!ids.contains(&untouched));
    assert_eq!(changes[0].data.participants.len(), 1, "participant change included");
    assert!(changes[1].deleted_at.is_some());
    assert_eq!(changes[1].data.title, "deleted");
});

db_test!(async fn concurrent_writers_get_unique_sequence_numbers(db) {
    let store = db.store();
    let mut handles = Vec::new();
    for t in 0..6 {
        let store = store.clone();
        handles.push(std::thread::spawn(move || {
            for i in 0..15 {
                let name = format!("t{t}-{i}");
                store.write(|c| contacts::create_contact(c, &contact(&name), &[], None, crmsync_schema::changes::Origin::Api, t0())).expect("concurrent write");
            }
        }));
    }
    for h in handles {
        h.join().expect("writer thread");
    }
    assert_eq!(store.read(current_change_seq).unwrap(), 90);
    let all = store.read(|c| contacts::contacts_changed_since(c, 0, 1000)).unwrap();
    let seqs: HashSet<i64> = all.iter().map(|c| c.change_seq).collect();
    assert_eq!(all.len(), 90);
    assert_eq!(seqs.len(), 90, "every write has its own sequence number");
});
