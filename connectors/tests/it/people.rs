//! People: sync-token paging and incremental results, expired tokens, batch chunking, stale
//! etags, the sync group, member changes.

use crate::common::{given_name, person, Env};
use crmsync_connectors::people1::api::Name;
use crmsync_connectors::{ErrorKind, Person};
use crmsync_emulator::{Api, FaultRule};
use std::collections::HashSet;

async fn delete_contact(env: &Env, email: &str, resource_name: &str) {
    let token = env.token(email);
    let resp = reqwest::Client::new()
        .delete(format!("{}/v1/{resource_name}:deleteContact", env.base()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
}

fn renamed(p: &Person, given: &str) -> Person {
    Person {
        resource_name: p.resource_name.clone(),
        etag: p.etag.clone(),
        names: Some(vec![Name {
            given_name: Some(given.into()),
            family_name: Some("Renamed".into()),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

#[tokio::test]
async fn list_pages_with_sync_tokens_then_incremental_changes_including_deletes() {
    let env = Env::new().await;
    let account = env.account("alice@example.com").await;
    let people = account.people();
    let created = people
        .batch_create((0..250).map(person).collect())
        .await
        .unwrap();
    assert_eq!(created.len(), 250);
    assert_eq!(env.count("people.people.batchCreateContacts"), 2);
    // Created in input order, with the CRM id in clientData.
    assert_eq!(given_name(&created[249]), Some("Given249"));

    let mut seen = HashSet::new();
    let mut page_token: Option<String> = None;
    let mut pages = 0;
    let sync_token = loop {
        let page = people
            .list_connections(None, page_token.as_deref(), 100)
            .await
            .unwrap();
        pages += 1;
        seen.extend(page.people.iter().filter_map(|p| p.resource_name.clone()));
        match page.next_page_token {
            Some(t) => {
                assert!(page.next_sync_token.is_none());
                page_token = Some(t);
            }
            None => break page.next_sync_token.expect("sync token on the last page"),
        }
    };
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 250);
    // requestSyncToken=true on every page.
    let lists: Vec<_> = env
        .emu()
        .recent_requests()
        .into_iter()
        .filter(|r| r.method == "people.people.connections.list")
        .collect();
    assert!(
        lists
            .iter()
            .all(|r| r.url.contains("requestSyncToken=true")),
        "{lists:?}"
    );

    // No change: an incremental listing is empty.
    let none = people
        .list_connections(Some(&sync_token), None, 100)
        .await
        .unwrap();
    assert!(none.people.is_empty());
    let sync_token = none.next_sync_token.expect("fresh token");

    // One update, one delete.
    let fresh = people
        .get(created[0].resource_name.as_deref().unwrap())
        .await
        .unwrap()
        .unwrap();
    people
        .update_contact(renamed(&fresh, "Ada"), "names")
        .await
        .unwrap();
    let gone = created[1].resource_name.clone().unwrap();
    delete_contact(&env, "alice@example.com", &gone).await;

    let inc = people
        .list_connections(Some(&sync_token), None, 100)
        .await
        .unwrap();
    assert_eq!(inc.people.len(), 2, "{:?}", inc.people);
    let deleted = inc
        .people
        .iter()
        .find(|p| p.resource_name.as_deref() == Some(gone.as_str()))
        .expect("deleted contact reported");
    assert_eq!(
        deleted.metadata.as_ref().and_then(|m| m.deleted),
        Some(true)
    );
    let updated = inc
        .people
        .iter()
        .find(|p| p.resource_name == created[0].resource_name)
        .expect("updated contact reported");
    assert_eq!(given_name(updated), Some("Ada"));
    assert!(inc.next_sync_token.is_some());
    assert!(people.get(&gone).await.unwrap().is_none());
}

#[tokio::test]
async fn expired_people_sync_token_is_sync_token_expired() {
    let env = Env::new().await;
    let account = env.account("bob@example.com").await;
    let page = account
        .people()
        .list_connections(None, None, 10)
        .await
        .unwrap();
    let token = page.next_sync_token.unwrap();
    env.emu().expire_sync_tokens("bob@example.com", Api::People);
    let err = account
        .people()
        .list_connections(Some(&token), None, 10)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::SyncTokenExpired, "{err}");
    assert_eq!(err.reason.as_deref(), Some("EXPIRED_SYNC_TOKEN"));
    assert_eq!(err.status, Some(400));
    assert!(err.to_string().contains("run a full sync"), "{err}");
    assert_eq!(account.metrics().retries, 0);
}

#[tokio::test]
async fn batch_get_and_update_are_chunked_and_report_stale_etags_per_person() {
    let env = Env::new().await;
    let account = env.account("carol@example.com").await;
    let people = account.people();
    let created = people
        .batch_create((0..450).map(person).collect())
        .await
        .unwrap();
    assert_eq!(env.count("people.people.batchCreateContacts"), 3);

    let mut names: Vec<String> = created
        .iter()
        .filter_map(|p| p.resource_name.clone())
        .collect();
    names.push("people/c999999999999".into());
    let got = people.batch_get(&names).await.unwrap();
    assert_eq!(got.len(), 450);
    assert!(env.count("people.people.getBatchGet") >= 3);

    let updates: Vec<Person> = got.iter().map(|p| renamed(p, "Batch")).collect();
    let outcome = people.batch_update(updates, "names").await.unwrap();
    assert_eq!(outcome.updated.len(), 450);
    assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
    assert_eq!(env.count("people.people.batchUpdateContacts"), 3);
    assert!(outcome
        .updated
        .iter()
        .all(|p| given_name(p) == Some("Batch")));

    // Two stale etags (from before the update) and one fresh: per-person results.
    let stale_a = renamed(&got[0], "Stale");
    let stale_b = renamed(&got[1], "Stale");
    let fresh = renamed(&outcome.updated[2], "Fresh");
    let outcome = people
        .batch_update(vec![stale_a.clone(), stale_b, fresh], "names")
        .await
        .unwrap();
    assert_eq!(outcome.updated.len(), 1);
    assert_eq!(given_name(&outcome.updated[0]), Some("Fresh"));
    assert_eq!(outcome.failed.len(), 2);
    assert!(
        outcome
            .failed
            .iter()
            .all(|f| f.error.kind == ErrorKind::PreconditionFailed),
        "{:?}",
        outcome.failed
    );

    let single = people.update_contact(stale_a, "names").await.unwrap_err();
    assert_eq!(single.kind, ErrorKind::PreconditionFailed, "{single}");
    assert!(single.message.contains("etag"), "{single}");
}

#[tokio::test]
async fn ensure_group_creates_once_and_reuses() {
    let env = Env::new().await;
    let account = env.account("dan@example.com").await;
    let g1 = account.people().ensure_group("CRM").await.unwrap();
    let g2 = account.people().ensure_group("CRM").await.unwrap();
    assert_eq!(g1.resource_name, g2.resource_name);
    assert!(g1
        .resource_name
        .as_deref()
        .unwrap()
        .starts_with("contactGroups/"));
    assert_eq!(env.count("people.contactGroups.create"), 1);
    let other = account.people().ensure_group("CRM leads").await.unwrap();
    assert_ne!(other.resource_name, g1.resource_name);
    assert_eq!(env.count("people.contactGroups.create"), 2);
}

#[tokio::test]
async fn ensure_group_after_a_lost_create_response_adopts_the_group() {
    let env = Env::new().await;
    let account = env.account("erin@example.com").await;
    // The create is applied but its response is lost; the retry answers 409.
    env.emu().set_faults(vec![FaultRule::error(
        "people.contactGroups.create",
        503,
        1,
    )
    .applied()]);
    let g = account.people().ensure_group("CRM").await.unwrap();
    assert_eq!(g.name.as_deref(), Some("CRM"));
    assert_eq!(
        env.emu()
            .stats()
            .count_status("people.contactGroups.create", 409),
        1
    );
    let user_groups: Vec<_> = env
        .emu()
        .contact_groups("erin@example.com")
        .into_iter()
        .filter(|g| g["name"] == "CRM")
        .collect();
    assert_eq!(user_groups.len(), 1);
}

#[tokio::test]
async fn modify_members_is_chunked_and_reports_not_found_and_last_group() {
    let env = Env::new().await;
    let account = env.account("frank@example.com").await;
    let people = account.people();
    let created = people
        .batch_create((0..1100).map(person).collect())
        .await
        .unwrap();
    let names: Vec<String> = created
        .iter()
        .filter_map(|p| p.resource_name.clone())
        .collect();
    let group = people.ensure_group("CRM").await.unwrap();
    let group_name = group.resource_name.unwrap();

    let mut add = names.clone();
    add.push("people/c404404404404".into());
    let outcome = people.modify_members(&group_name, &add, &[]).await.unwrap();
    assert_eq!(outcome.not_found, vec!["people/c404404404404".to_string()]);
    assert!(outcome.cannot_remove_last.is_empty());
    assert_eq!(env.count("people.contactGroups.members.modify"), 2);
    let g = env
        .emu()
        .contact_groups("frank@example.com")
        .into_iter()
        .find(|g| g["resourceName"] == group_name.as_str())
        .unwrap();
    assert_eq!(g["memberCount"], 1100);

    // Leaving the CRM group is fine (they stay in My Contacts) ...
    let outcome = people
        .modify_members(&group_name, &[], &names[..10])
        .await
        .unwrap();
    assert!(outcome.cannot_remove_last.is_empty() && outcome.not_found.is_empty());
    // ... but My Contacts is the last group of those ten.
    let outcome = people
        .modify_members("contactGroups/myContacts", &[], &names[..10])
        .await
        .unwrap();
    assert_eq!(outcome.cannot_remove_last.len(), 10, "{outcome:?}");
}
