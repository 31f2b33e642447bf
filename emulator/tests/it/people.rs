//! People v1 through google-people1: contacts CRUD with etags, batch limits, connections.list
//! sync (paging, tombstones, expiry, propagation delay), contact groups and members.modify.

use crate::common::*;
use google_people1::api::{
    BatchCreateContactsRequest, BatchDeleteContactsRequest, BatchUpdateContactsRequest, Biography,
    ClientData, ContactGroup, ContactGroupMembership, ContactToCreate, CreateContactGroupRequest,
    EmailAddress, Membership, ModifyContactGroupMembersRequest, Name, Person,
};
use google_people1::FieldMask;
use serde_json::json;
use std::collections::HashMap;

pub fn person(given: &str, family: &str, email: &str) -> Person {
    Person {
        names: Some(vec![Name {
            given_name: Some(given.into()),
            family_name: Some(family.into()),
            ..Default::default()
        }]),
        email_addresses: Some(vec![EmailAddress {
            value: Some(email.into()),
            type_: Some("work".into()),
            ..Default::default()
        }]),
        client_data: Some(vec![ClientData {
            key: Some("crm_id".into()),
            value: Some(format!("crm-{given}")),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

fn fields() -> FieldMask {
    FieldMask::new(&[
        "names",
        "emailAddresses",
        "metadata",
        "memberships",
        "clientData",
        "biographies",
    ])
}

#[tokio::test]
async fn create_get_update_delete_with_etags() {
    let env = Env::new().await;
    let t = env.user("alice@example.com").await;
    let ppl = env.people(&t);
    let (_, p) = ppl
        .people()
        .create_contact(person("Ada", "Lovelace", "ada@example.com"))
        .person_fields(fields())
        .doit()
        .await
        .unwrap();
    let rn = p.resource_name.clone().unwrap();
    assert!(
        rn.starts_with("people/c") && rn[8..].chars().all(|c| c.is_ascii_digit()),
        "{rn}"
    );
    let names = p.names.as_ref().unwrap();
    assert_eq!(names[0].display_name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(names[0].metadata.as_ref().unwrap().primary, Some(true));
    let src = &p.metadata.as_ref().unwrap().sources.as_ref().unwrap()[0];
    assert_eq!(src.type_.as_deref(), Some("CONTACT"));
    let t1 = src.update_time.unwrap();
    // Microsecond updateTime on the wire.
    let raw = env
        .raw(
            reqwest::Method::GET,
            &format!("/v1/{rn}?personFields=metadata"),
            &t,
            None,
            &[],
        )
        .await
        .1;
    let ut = raw["metadata"]["sources"][0]["updateTime"]
        .as_str()
        .unwrap();
    assert_eq!(ut.len(), "2026-01-01T12:00:00.123456Z".len(), "{ut}");
    let groups: Vec<_> = p
        .memberships
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| {
            m.contact_group_membership
                .as_ref()
                .unwrap()
                .contact_group_resource_name
                .clone()
                .unwrap()
        })
        .collect();
    assert_eq!(groups, ["contactGroups/myContacts"]);
    assert_eq!(
        p.client_data.as_ref().unwrap()[0].value.as_deref(),
        Some("crm-Ada")
    );
    // get requires personFields.
    let err = ppl.people().get(&rn).doit().await.unwrap_err();
    let (code, _, status) = people_reason(&err);
    assert_eq!((code, status.as_str()), (400, "INVALID_ARGUMENT"));
    // updateContact: requires updatePersonFields and an etag; stale etag is FAILED_PRECONDITION.
    let mut upd = Person {
        biographies: Some(vec![Biography {
            value: Some("Notes".into()),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let err = ppl
        .people()
        .update_contact(upd.clone(), &rn)
        .update_person_fields(FieldMask::new(&["biographies"]))
        .doit()
        .await
        .unwrap_err();
    assert_eq!(people_reason(&err).2, "INVALID_ARGUMENT");
    upd.etag = p.etag.clone();
    let err = ppl
        .people()
        .update_contact(upd.clone(), &rn)
        .doit()
        .await
        .unwrap_err();
    assert_eq!(people_reason(&err).2, "INVALID_ARGUMENT");
    let (_, u) = ppl
        .people()
        .update_contact(upd.clone(), &rn)
        .update_person_fields(FieldMask::new(&["biographies"]))
        .person_fields(fields())
        .doit()
        .await
        .unwrap();
    assert_ne!(u.etag, p.etag);
    assert!(
        u.metadata.as_ref().unwrap().sources.as_ref().unwrap()[0]
            .update_time
            .unwrap()
            > t1
    );
    assert_eq!(
        u.names.as_ref().unwrap()[0].given_name.as_deref(),
        Some("Ada"),
        "fields outside the mask are kept"
    );
    let err = ppl
        .people()
        .update_contact(upd.clone(), &rn)
        .update_person_fields(FieldMask::new(&["biographies"]))
        .doit()
        .await
        .unwrap_err();
    if let google_people1::Error::BadRequest(v) = &err {
        assert_eq!(
            v,
            &json!({"error": {"code": 400, "message": "Request person.etag is different than the current person.etag. Clear local cache and get the latest person.", "status": "FAILED_PRECONDITION"}})
        );
    } else {
        panic!("{err:?}");
    }
    // The source etag works too.
    let mut by_source = upd.clone();
    by_source.etag = None;
    by_source.metadata = u.metadata.clone();
    ppl.people()
        .update_contact(by_source, &rn)
        .update_person_fields(FieldMask::new(&["biographies"]))
        .doit()
        .await
        .unwrap();
    // Singleton fields reject a second value.
    let mut two = person("A", "B", "a@b.c");
    two.names.as_mut().unwrap().push(Name {
        given_name: Some("C".into()),
        ..Default::default()
    });
    let err = ppl.people().create_contact(two).doit().await.unwrap_err();
    assert_eq!(people_reason(&err).0, 400);
    // Delete returns {} and the contact is gone.
    ppl.people().delete_contact(&rn).doit().await.unwrap();
    assert_eq!(last_body(&env, "people.people.deleteContact"), json!({}));
    let err = ppl
        .people()
        .get(&rn)
        .person_fields(fields())
        .doit()
        .await
        .unwrap_err();
    assert_eq!(people_reason(&err).2, "NOT_FOUND");
    let err = ppl.people().delete_contact(&rn).doit().await.unwrap_err();
    assert_eq!(people_reason(&err).0, 404);
    env.finish().await;
}

#[tokio::test]
async fn batch_methods_and_their_limits() {
    let env = Env::new().await;
    let t = env.user("alice@example.com").await;
    let ppl = env.people(&t);
    let mk = |n: usize| BatchCreateContactsRequest {
        contacts: Some(
            (0..n)
                .map(|i| ContactToCreate {
                    contact_person: Some(person(&format!("P{i}"), "X", &format!("p{i}@x.com"))),
                })
                .collect(),
        ),
        read_mask: Some(FieldMask::new(&["names", "metadata"])),
        sources: None,
    };
    let err = ppl
        .people()
        .batch_create_contacts(mk(201))
        .doit()
        .await
        .unwrap_err();
    assert_eq!(people_reason(&err).2, "INVALID_ARGUMENT");
    let mut no_mask = mk(1);
    no_mask.read_mask = None;
    assert_eq!(
        people_reason(
            &ppl.people()
                .batch_create_contacts(no_mask)
                .doit()
                .await
                .unwrap_err()
        )
        .0,
        400
    );
    let (_, created) = ppl
        .people()
        .batch_create_contacts(mk(200))
        .doit()
        .await
        .unwrap();
    let created = created.created_people.unwrap();
    assert_eq!(created.len(), 200);
    let people: Vec<Person> = created.into_iter().map(|r| r.person.unwrap()).collect();
    // batchUpdate: map of resourceName -> Person, max 200, each with its etag.
    let contacts: HashMap<String, Person> = people
        .iter()
        .take(3)
        .map(|p| {
            let mut q = p.clone();
            q.names = Some(vec![Name {
                given_name: Some("Renamed".into()),
                ..Default::default()
            }]);
            (p.resource_name.clone().unwrap(), q)
        })
        .collect();
    let req = BatchUpdateContactsRequest {
        contacts: Some(contacts),
        update_mask: Some(FieldMask::new(&["names"])),
        read_mask: Some(FieldMask::new(&["names"])),
        sources: None,
    };
    let (_, up) = ppl
        .people()
        .batch_update_contacts(req.clone())
        .doit()
        .await
        .unwrap();
    let res = up.update_result.unwrap();
    assert_eq!(res.len(), 3);
    assert!(res
        .values()
        .all(|r| r.person.as_ref().unwrap().names.as_ref().unwrap()[0]
            .given_name
            .as_deref()
            == Some("Renamed")));
    // Replaying the same request has stale etags.
    assert_eq!(
        people_reason(
            &ppl.people()
                .batch_update_contacts(req)
                .doit()
                .await
                .unwrap_err()
        )
        .2,
        "FAILED_PRECONDITION"
    );
    let too_many: HashMap<String, Person> = (0..201)
        .map(|i| (format!("people/c{i}"), Person::default()))
        .collect();
    let req = BatchUpdateContactsRequest {
        contacts: Some(too_many),
        update_mask: Some(FieldMask::new(&["names"])),
        read_mask: Some(FieldMask::new(&["names"])),
        sources: None,
    };
    assert_eq!(
        people_reason(
            &ppl.people()
                .batch_update_contacts(req)
                .doit()
                .await
                .unwrap_err()
        )
        .0,
        400
    );
    // getBatchGet: max 200 names, unknown names get a 404 entry.
    let mut call = ppl
        .people()
        .get_batch_get()
        .person_fields(FieldMask::new(&["names"]));
    for p in people.iter().take(2) {
        call = call.add_resource_names(p.resource_name.as_ref().unwrap());
    }
    let (_, got) = call.add_resource_names("people/c123").doit().await.unwrap();
    let responses = got.responses.unwrap();
    assert_eq!(responses.len(), 3);
    assert_eq!(responses[2].http_status_code, Some(404));
    let mut call = ppl
        .people()
        .get_batch_get()
        .person_fields(FieldMask::new(&["names"]));
    for p in people.iter().take(200) {
        call = call.add_resource_names(p.resource_name.as_ref().unwrap());
    }
    call.add_resource_names("people/c1")
        .doit()
        .await
        .map(|_| ())
        .expect_err("201 names is over the limit");
    // batchDelete: max 500, returns {}.
    let names: Vec<String> = (0..501).map(|i| format!("people/c{i}")).collect();
    let err = ppl
        .people()
        .batch_delete_contacts(BatchDeleteContactsRequest {
            resource_names: Some(names),
        })
        .doit()
        .await
        .unwrap_err();
    assert_eq!(people_reason(&err).0, 400);
    let names: Vec<String> = people
        .iter()
        .map(|p| p.resource_name.clone().unwrap())
        .collect();
    ppl.people()
        .batch_delete_contacts(BatchDeleteContactsRequest {
            resource_names: Some(names),
        })
        .doit()
        .await
        .unwrap();
    assert_eq!(
        last_body(&env, "people.people.batchDeleteContacts"),
        json!({})
    );
    assert!(env.emu().contacts("alice@example.com").is_empty());
    env.finish().await;
}

async fn list_all(
    ppl: &People,
    sync: Option<&str>,
    page_size: i32,
) -> (Vec<Person>, Option<String>, usize) {
    let mut out = Vec::new();
    let mut page: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut call = ppl
            .people()
            .connections_list("people/me")
            .person_fields(fields())
            .request_sync_token(true)
            .page_size(page_size);
        if let Some(s) = sync {
            call = call.sync_token(s);
        }
        if let Some(p) = &page {
            call = call.page_token(p);
        }
        let (_, r) = call.doit().await.unwrap();
        pages += 1;
        out.extend(r.connections.unwrap_or_default());
        match r.next_page_token {
            Some(p) => {
                assert!(r.next_sync_token.is_none());
                page = Some(p);
            }
            None => return (out, r.next_sync_token, pages),
        }
    }
}

#[tokio::test]
async fn connections_sync_with_tombstones_and_expiry() {
    let env = Env::new().await;
    let t = env.user("alice@example.com").await;
    let ppl = env.people(&t);
    let mut rns = Vec::new();
    for i in 0..5 {
        let (_, p) = ppl
            .people()
            .create_contact(person(&format!("N{i}"), "L", &format!("n{i}@x.com")))
            .doit()
            .await
            .unwrap();
        rns.push(p);
    }
    let (all, sync, pages) = list_all(&ppl, None, 2).await;
    assert_eq!((all.len(), pages), (5, 3));
    let sync = sync.expect("sync token with requestSyncToken=true");
    // Without requestSyncToken there is no sync token.
    let (_, r) = ppl
        .people()
        .connections_list("people/me")
        .person_fields(fields())
        .doit()
        .await
        .unwrap();
    assert!(r.next_sync_token.is_none());
    assert_eq!(r.total_items, Some(5));
    // Parameter rules.
    assert_eq!(
        people_reason(
            &ppl.people()
                .connections_list("people/me")
                .doit()
                .await
                .unwrap_err()
        )
        .0,
        400
    );
    assert_eq!(
        people_reason(
            &ppl.people()
                .connections_list("people/me")
                .person_fields(fields())
                .page_size(1001)
                .doit()
                .await
                .unwrap_err()
        )
        .0,
        400
    );
    assert_eq!(
        people_reason(
            &ppl.people()
                .connections_list("people/me")
                .person_fields(FieldMask::new(&["nope"]))
                .doit()
                .await
                .unwrap_err()
        )
        .0,
        400
    );
    let (_, r) = ppl
        .people()
        .connections_list("people/me")
        .person_fields(fields())
        .page_size(2)
        .doit()
        .await
        .unwrap();
    let err = ppl
        .people()
        .connections_list("people/me")
        .person_fields(FieldMask::new(&["names"]))
        .page_size(2)
        .page_token(&r.next_page_token.unwrap())
        .doit()
        .await
        .unwrap_err();
    assert_eq!(people_reason(&err).2, "INVALID_ARGUMENT");
    // Update one, delete one: incremental sync returns both, the deleted one as a tombstone.
    let mut upd = rns[0].clone();
    upd.names = Some(vec![Name {
        given_name: Some("Changed".into()),
        ..Default::default()
    }]);
    ppl.people()
        .update_contact(upd, rns[0].resource_name.as_ref().unwrap())
        .update_person_fields(FieldMask::new(&["names"]))
        .doit()
        .await
        .unwrap();
    ppl.people()
        .delete_contact(rns[1].resource_name.as_ref().unwrap())
        .doit()
        .await
        .unwrap();
    let (changes, sync2, _) = list_all(&ppl, Some(&sync), 100).await;
    assert_eq!(changes.len(), 2);
    let deleted = changes
        .iter()
        .find(|p| p.resource_name == rns[1].resource_name)
        .unwrap();
    assert_eq!(deleted.metadata.as_ref().unwrap().deleted, Some(true));
    assert!(deleted.names.is_none());
    let changed = changes
        .iter()
        .find(|p| p.resource_name == rns[0].resource_name)
        .unwrap();
    assert_eq!(
        changed.names.as_ref().unwrap()[0].given_name.as_deref(),
        Some("Changed")
    );
    let sync2 = sync2.unwrap();
    let (none, sync3, _) = list_all(&ppl, Some(&sync2), 100).await;
    assert!(none.is_empty());
    // Expiry: 7 days after the full sync (emulated clock).
    env.emu()
        .advance_clock(chrono::Duration::days(7) + chrono::Duration::seconds(1));
    let t2 = env
        .emu()
        .mint_access_token("alice@example.com", &[CONTACTS.to_string()])
        .unwrap();
    let ppl2 = env.people(&t2);
    let err = ppl2
        .people()
        .connections_list("people/me")
        .person_fields(fields())
        .request_sync_token(true)
        .sync_token(sync3.as_ref().unwrap())
        .doit()
        .await
        .unwrap_err();
    if let google_people1::Error::BadRequest(v) = &err {
        assert_eq!(
            v,
            &json!({"error": {"code": 400, "message": "Sync token is expired. Clear local cache and retry call without the sync token.", "status": "FAILED_PRECONDITION", "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "EXPIRED_SYNC_TOKEN", "domain": "people.googleapis.com"}]}})
        );
    } else {
        panic!("{err:?}");
    }
    // A fresh full sync works; the control plane can expire tokens at once.
    let (all, sync4, _) = list_all(&ppl2, None, 100).await;
    assert_eq!(all.len(), 4);
    env.post(
        "/expire-sync-tokens",
        json!({"email": "alice@example.com", "api": "people"}),
    )
    .await;
    let err = ppl2
        .people()
        .connections_list("people/me")
        .person_fields(fields())
        .request_sync_token(true)
        .sync_token(sync4.as_ref().unwrap())
        .doit()
        .await
        .unwrap_err();
    assert_eq!(people_reason(&err).1, "EXPIRED_SYNC_TOKEN");
    env.finish().await;
}

#[tokio::test]
async fn propagation_delay_hides_writes_from_sync_only() {
    let env = Env::new().await;
    let t = env.user("alice@example.com").await;
    let ppl = env.people(&t);
    let (_, a) = ppl
        .people()
        .create_contact(person("Old", "One", "old@x.com"))
        .doit()
        .await
        .unwrap();
    env.emu().advance_clock(chrono::Duration::seconds(200));
    let (s, _) = env
        .put("/people-propagation-delay", json!({"seconds": 120}))
        .await;
    assert_eq!(s, 200);
    let (_, b) = ppl
        .people()
        .create_contact(person("New", "Two", "new@x.com"))
        .doit()
        .await
        .unwrap();
    let mut upd = a.clone();
    upd.names = Some(vec![Name {
        given_name: Some("Edited".into()),
        ..Default::default()
    }]);
    ppl.people()
        .update_contact(upd, a.resource_name.as_ref().unwrap())
        .update_person_fields(FieldMask::new(&["names"]))
        .doit()
        .await
        .unwrap();
    // get sees the write at once.
    let (_, g) = ppl
        .people()
        .get(b.resource_name.as_ref().unwrap())
        .person_fields(fields())
        .doit()
        .await
        .unwrap();
    assert_eq!(g.names.unwrap()[0].given_name.as_deref(), Some("New"));
    // A sync listing does not yet: the new contact is missing, the edited one shows its old version.
    let (all, sync, _) = list_all(&ppl, None, 100).await;
    assert_eq!(all.len(), 1);
    assert_eq!(
        all[0].names.as_ref().unwrap()[0].given_name.as_deref(),
        Some("Old")
    );
    let (inc, _, _) = list_all(&ppl, sync.as_deref(), 100).await;
    assert!(inc.is_empty());
    env.emu().advance_clock(chrono::Duration::seconds(121));
    let t2 = env
        .emu()
        .mint_access_token("alice@example.com", &[CONTACTS.to_string()])
        .unwrap();
    let (inc, _, _) = list_all(&env.people(&t2), sync.as_deref(), 100).await;
    assert_eq!(inc.len(), 2);
    env.finish().await;
}

#[tokio::test]
async fn contact_groups_and_member_rules() {
    let env = Env::new().await;
    let t = env.user("alice@example.com").await;
    let ppl = env.people(&t);
    let create = |name: &str| CreateContactGroupRequest {
        contact_group: Some(ContactGroup {
            name: Some(name.into()),
            ..Default::default()
        }),
        read_group_fields: None,
    };
    let (_, g) = ppl
        .contact_groups()
        .create(create("CRM"))
        .doit()
        .await
        .unwrap();
    let grn = g.resource_name.clone().unwrap();
    assert_eq!(g.group_type.as_deref(), Some("USER_CONTACT_GROUP"));
    let err = ppl
        .contact_groups()
        .create(create("CRM"))
        .doit()
        .await
        .unwrap_err();
    let (code, _, status) = people_reason(&err);
    assert_eq!((code, status.as_str()), (409, "ALREADY_EXISTS"));
    let (_, list) = ppl.contact_groups().list().doit().await.unwrap();
    let groups = list.contact_groups.unwrap();
    assert!(groups.iter().any(
        |g| g.resource_name.as_deref() == Some("contactGroups/myContacts")
            && g.group_type.as_deref() == Some("SYSTEM_CONTACT_GROUP")
    ));
    assert!(groups.iter().any(|g| g.name.as_deref() == Some("CRM")));
    assert!(list.next_sync_token.is_some());
    // A contact created directly into the group is also in myContacts.
    let mut p = person("In", "Group", "in@x.com");
    p.memberships = Some(vec![Membership {
        contact_group_membership: Some(ContactGroupMembership {
            contact_group_resource_name: Some(grn.clone()),
            ..Default::default()
        }),
        ..Default::default()
    }]);
    let (_, c1) = ppl
        .people()
        .create_contact(p)
        .person_fields(fields())
        .doit()
        .await
        .unwrap();
    assert_eq!(c1.memberships.unwrap().len(), 2);
    let (_, c2) = ppl
        .people()
        .create_contact(person("Only", "Mine", "only@x.com"))
        .doit()
        .await
        .unwrap();
    let rn1 = c1.resource_name.unwrap();
    let rn2 = c2.resource_name.unwrap();
    // members.modify: add, unknown names, the last-group rule.
    let req = ModifyContactGroupMembersRequest {
        resource_names_to_add: Some(vec![rn2.clone(), "people/c999".into()]),
        resource_names_to_remove: None,
    };
    let (_, r) = ppl
        .contact_groups()
        .members_modify(req, &grn)
        .doit()
        .await
        .unwrap();
    assert_eq!(
        r.not_found_resource_names,
        Some(vec!["people/c999".to_string()])
    );
    let (_, g) = ppl
        .contact_groups()
        .get(&grn)
        .max_members(10)
        .doit()
        .await
        .unwrap();
    assert_eq!(g.member_count, Some(2));
    assert_eq!(g.member_resource_names.unwrap().len(), 2);
    let req = ModifyContactGroupMembersRequest {
        resource_names_to_add: None,
        resource_names_to_remove: Some(vec![rn1.clone()]),
    };
    ppl.contact_groups()
        .members_modify(req, "contactGroups/myContacts")
        .doit()
        .await
        .unwrap();
    // rn1 is now only in CRM: removing it from CRM is refused.
    let req = ModifyContactGroupMembersRequest {
        resource_names_to_add: None,
        resource_names_to_remove: Some(vec![rn1.clone(), rn2.clone()]),
    };
    let (_, r) = ppl
        .contact_groups()
        .members_modify(req, &grn)
        .doit()
        .await
        .unwrap();
    assert_eq!(
        r.can_not_remove_last_contact_group_resource_names,
        Some(vec![rn1.clone()])
    );
    let (_, g) = ppl.contact_groups().get(&grn).doit().await.unwrap();
    assert_eq!(g.member_count, Some(1));
    // Over 1000 names in total.
    let many: Vec<String> = (0..1001).map(|i| format!("people/c{i}")).collect();
    let req = ModifyContactGroupMembersRequest {
        resource_names_to_add: Some(many),
        resource_names_to_remove: None,
    };
    assert_eq!(
        people_reason(
            &ppl.contact_groups()
                .members_modify(req, &grn)
                .doit()
                .await
                .unwrap_err()
        )
        .0,
        400
    );
    // Unknown group.
    assert_eq!(
        people_reason(
            &ppl.contact_groups()
                .get("contactGroups/nope")
                .doit()
                .await
                .unwrap_err()
        )
        .0,
        404
    );
    // updateContact memberships replaces the list; an empty list is refused.
    let (_, cur) = ppl
        .people()
        .get(&rn2)
        .person_fields(fields())
        .doit()
        .await
        .unwrap();
    let mut m = cur.clone();
    m.memberships = Some(vec![]);
    let err = ppl
        .people()
        .update_contact(m, &rn2)
        .update_person_fields(FieldMask::new(&["memberships"]))
        .doit()
        .await
        .unwrap_err();
    assert_eq!(people_reason(&err).0, 400);
    // Membership changes are contact changes in sync results.
    let (_, first) = ppl
        .people()
        .connections_list("people/me")
        .person_fields(fields())
        .request_sync_token(true)
        .doit()
        .await
        .unwrap();
    let req = ModifyContactGroupMembersRequest {
        resource_names_to_add: Some(vec![rn1.clone()]),
        resource_names_to_remove: None,
    };
    ppl.contact_groups()
        .members_modify(req, "contactGroups/starred")
        .doit()
        .await
        .unwrap();
    let (_, inc) = ppl
        .people()
        .connections_list("people/me")
        .person_fields(fields())
        .request_sync_token(true)
        .sync_token(&first.next_sync_token.unwrap())
        .doit()
        .await
        .unwrap();
    assert_eq!(
        inc.connections.unwrap()[0].resource_name.as_deref(),
        Some(rn1.as_str())
    );
    env.finish().await;
}

#[tokio::test]
async fn ten_thousand_contacts_list_quickly() {
    let env = Env::new().await;
    let t = env.user("big@example.com").await;
    let ppl = env.people(&t);
    for chunk in 0..50 {
        let req = BatchCreateContactsRequest {
            contacts: Some(
                (0..200)
                    .map(|i| ContactToCreate {
                        contact_person: Some(person(
                            &format!("P{chunk}x{i}"),
                            "Big",
                            &format!("p{chunk}x{i}@x.com"),
                        )),
                    })
                    .collect(),
            ),
            read_mask: Some(FieldMask::new(&["metadata"])),
            sources: None,
        };
        ppl.people()
            .batch_create_contacts(req)
            .doit()
            .await
            .unwrap();
    }
    env.emu().set_response_recording(false);
    let started = std::time::Instant::now();
    let (all, sync, pages) = list_all(&ppl, None, 1000).await;
    let took = started.elapsed();
    assert_eq!((all.len(), pages), (10_000, 10));
    assert!(sync.is_some());
    assert!(
        took < std::time::Duration::from_secs(20),
        "listing 10k contacts took {took:?}"
    );
    let started = std::time::Instant::now();
    let (none, _, _) = list_all(&ppl, sync.as_deref(), 1000).await;
    assert!(none.is_empty());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "an empty incremental sync must not scan"
    );
    env.finish().await;
}

#[tokio::test]
async fn sort_orders_and_group_update_delete() {
    let env = Env::new().await;
    let t = env.user("alice@example.com").await;
    let ppl = env.people(&t);
    for (g, f) in [("Zoe", "Adams"), ("Amy", "Young"), ("Max", "Miller")] {
        ppl.people()
            .create_contact(person(g, f, &format!("{g}@x.com")))
            .doit()
            .await
            .unwrap();
    }
    let names = |r: google_people1::api::ListConnectionsResponse| -> Vec<String> {
        r.connections
            .unwrap()
            .into_iter()
            .map(|p| p.names.unwrap()[0].given_name.clone().unwrap())
            .collect()
    };
    let list = |order: &'static str| {
        ppl.people()
            .connections_list("people/me")
            .person_fields(FieldMask::new(&["names"]))
            .sort_order(order)
            .doit()
    };
    assert_eq!(
        names(list("FIRST_NAME_ASCENDING").await.unwrap().1),
        ["Amy", "Max", "Zoe"]
    );
    assert_eq!(
        names(list("LAST_NAME_ASCENDING").await.unwrap().1),
        ["Zoe", "Max", "Amy"]
    );
    assert_eq!(
        names(list("LAST_MODIFIED_DESCENDING").await.unwrap().1),
        ["Max", "Amy", "Zoe"]
    );
    assert_eq!(
        names(list("LAST_MODIFIED_ASCENDING").await.unwrap().1),
        ["Zoe", "Amy", "Max"]
    );
    assert_eq!(people_reason(&list("SIDEWAYS").await.unwrap_err()).0, 400);
    // Group update (rename, duplicate name) and delete (members stay in myContacts).
    let mk = |name: &str| CreateContactGroupRequest {
        contact_group: Some(ContactGroup {
            name: Some(name.into()),
            ..Default::default()
        }),
        read_group_fields: None,
    };
    let (_, a) = ppl.contact_groups().create(mk("A")).doit().await.unwrap();
    ppl.contact_groups().create(mk("B")).doit().await.unwrap();
    let (_, first) = ppl.contact_groups().list().doit().await.unwrap();
    let rn = a.resource_name.clone().unwrap();
    let upd = |name: &str, etag: Option<String>| google_people1::api::UpdateContactGroupRequest {
        contact_group: Some(ContactGroup {
            name: Some(name.into()),
            etag,
            ..Default::default()
        }),
        update_group_fields: Some(FieldMask::new(&["name"])),
        read_group_fields: None,
    };
    let err = ppl
        .contact_groups()
        .update(upd("B", None), &rn)
        .doit()
        .await
        .unwrap_err();
    assert_eq!(people_reason(&err).0, 409);
    let (_, renamed) = ppl
        .contact_groups()
        .update(upd("A2", a.etag.clone()), &rn)
        .doit()
        .await
        .unwrap();
    assert_eq!(renamed.name.as_deref(), Some("A2"));
    let err = ppl
        .contact_groups()
        .update(upd("A3", a.etag.clone()), &rn)
        .doit()
        .await
        .unwrap_err();
    assert_eq!(people_reason(&err).2, "FAILED_PRECONDITION");
    ppl.contact_groups().delete(&rn).doit().await.unwrap();
    assert_eq!(
        people_reason(&ppl.contact_groups().get(&rn).doit().await.unwrap_err()).0,
        404
    );
    // The group sync shows the rename and the deletion.
    let (_, inc) = ppl
        .contact_groups()
        .list()
        .sync_token(&first.next_sync_token.unwrap())
        .doit()
        .await
        .unwrap();
    let groups = inc.contact_groups.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].metadata.as_ref().unwrap().deleted, Some(true));
    env.finish().await;
}
