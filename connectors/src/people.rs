//! People API v1 client for one user's contacts, over `google-people1`: incremental listing
//! with sync tokens, gets, batch create/update in chunks of 200, single updates, the sync contact
//! group, and group membership changes in chunks of 1000.
//!
//! Google asks for mutations of one user to be sent sequentially (facts 2.2), so every mutating
//! method here holds the client's write lock for its whole duration; reads run concurrently.
//! Every call uses the one fixed scope [`SCOPE_CONTACTS`](crate::SCOPE_CONTACTS).

use crate::error::{rpc_code_name, rpc_code_to_http, ErrorKind, GoogleError};
use crate::http::{prepare, Caller, Connector};
use crate::retry::Idempotency;
use google_people1::api::{
    BatchCreateContactsRequest, BatchUpdateContactsRequest, ContactToCreate,
    CreateContactGroupRequest, ModifyContactGroupMembersRequest, PersonResponse,
};
use google_people1::{FieldMask, PeopleService};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::Mutex;

pub use google_people1::api::{ContactGroup, Person};

/// One page of `people.connections.list`.
#[derive(Clone, Debug, Default)]
pub struct ConnectionsPage {
    /// Contacts on this page; on incremental pages deleted ones carry `metadata.deleted = true`.
    pub people: Vec<Person>,
    /// Present when more pages follow (then `next_sync_token` is absent).
    pub next_page_token: Option<String>,
    /// Present on the last page only; store it after everything it covers is committed.
    pub next_sync_token: Option<String>,
    /// Google's `totalItems`.
    pub total_items: Option<i32>,
}

/// A person that a batch update could not write.
#[derive(Clone, Debug)]
pub struct PersonFailure {
    /// The resource name as requested.
    pub resource_name: String,
    /// Why; `PreconditionFailed` for a stale etag, `NotFound` for a deleted contact.
    pub error: GoogleError,
}

/// Per-person results of [`PeopleClient::batch_update`].
#[derive(Clone, Debug, Default)]
pub struct BatchUpdateOutcome {
    /// The updated people as Google returned them (fresh etags), in request order.
    pub updated: Vec<Person>,
    /// The people that were not updated.
    pub failed: Vec<PersonFailure>,
}

/// Results of [`PeopleClient::modify_members`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModifyMembersOutcome {
    /// Contacts that do not exist (neither added nor removed).
    pub not_found: Vec<String>,
    /// Contacts not removed because this was their last group (they stay in "My Contacts"
    /// per Google's rule that a contact always keeps one membership).
    pub cannot_remove_last: Vec<String>,
}

/// The People client of one account. Cheap to clone.
#[derive(Clone)]
pub struct PeopleClient {
    inner: Arc<PeopleInner>,
}

struct PeopleInner {
    hub: PeopleService<Connector>,
    caller: Caller,
    /// Serializes mutations for this user.
    writes: Mutex<()>,
}

fn mask(fields: &str) -> FieldMask {
    let parts: Vec<&str> = fields
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    FieldMask::new(&parts)
}

const GROUP_FIELDS: &str = "name,groupType,metadata,memberCount";

impl PeopleClient {
    /// The person fields read and returned by every call: what the CRM maps plus `memberships`,
    /// `clientData` (the CRM id) and `metadata` (sources, etags, deleted).
    pub const PERSON_FIELDS: &'static str = "names,emailAddresses,phoneNumbers,organizations,addresses,birthdays,biographies,memberships,clientData,metadata";
    /// Maximum people per batch create/update/get request (Google's limit).
    pub const MAX_BATCH: usize = 200;
    /// Maximum additions plus removals per `members.modify` request (Google's limit).
    pub const MAX_MEMBER_CHANGES: usize = 1000;
    /// Maximum `pageSize` of `connections.list`.
    pub const MAX_PAGE_SIZE: i32 = 1000;

    pub(crate) fn new(hub: PeopleService<Connector>, caller: Caller) -> Self {
        PeopleClient {
            inner: Arc::new(PeopleInner {
                hub,
                caller,
                writes: Mutex::new(()),
            }),
        }
    }

    /// One page of the user's contacts. `requestSyncToken=true` is sent on every page (full
    /// and incremental) so the last page carries `next_sync_token`; with `sync_token` only the
    /// changes since then are returned, deleted contacts included. Keep `page_size` the same
    /// for every page of one listing. An expired token fails with
    /// [`ErrorKind::SyncTokenExpired`]: list again without it.
    pub async fn list_connections(
        &self,
        sync_token: Option<&str>,
        page_token: Option<&str>,
        page_size: i32,
    ) -> Result<ConnectionsPage, GoogleError> {
        let (hub, caller) = (&self.inner.hub, &self.inner.caller);
        let page_size = page_size.clamp(1, Self::MAX_PAGE_SIZE);
        let resp = caller
            .run(
                "people.people.connections.list",
                Idempotency::Idempotent,
                |mut dlg| async move {
                    let mut call =
                        prepare!(hub.people().connections_list("people/me"), &mut dlg, caller)
                            .person_fields(mask(Self::PERSON_FIELDS))
                            .request_sync_token(true)
                            .page_size(page_size);
                    if let Some(t) = sync_token {
                        call = call.sync_token(t);
                    }
                    if let Some(p) = page_token {
                        call = call.page_token(p);
                    }
                    call.doit().await
                },
            )
            .await?;
        Ok(ConnectionsPage {
            people: resp.connections.unwrap_or_default(),
            next_page_token: resp.next_page_token.filter(|t| !t.is_empty()),
            next_sync_token: resp.next_sync_token.filter(|t| !t.is_empty()),
            total_items: resp.total_items,
        })
    }

    /// One contact by resource name (`people/c…`); `None` when it does not exist.
    pub async fn get(&self, resource_name: &str) -> Result<Option<Person>, GoogleError> {
        let (hub, caller) = (&self.inner.hub, &self.inner.caller);
        let result = caller
            .run(
                "people.people.get",
                Idempotency::Idempotent,
                |mut dlg| async move {
                    prepare!(hub.people().get(resource_name), &mut dlg, caller)
                        .person_fields(mask(Self::PERSON_FIELDS))
                        .doit()
                        .await
                },
            )
            .await;
        match result {
            Ok(p) => Ok(Some(p)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Many contacts by resource name, 200 per request; contacts that do not exist are omitted.
    pub async fn batch_get(&self, names: &[String]) -> Result<Vec<Person>, GoogleError> {
        let (hub, caller) = (&self.inner.hub, &self.inner.caller);
        let mut out = Vec::with_capacity(names.len());
        for chunk in names.chunks(Self::MAX_BATCH) {
            let result = caller
                .run(
                    "people.people.getBatchGet",
                    Idempotency::Idempotent,
                    |mut dlg| async move {
                        let mut call = prepare!(hub.people().get_batch_get(), &mut dlg, caller)
                            .person_fields(mask(Self::PERSON_FIELDS));
                        for n in chunk {
                            call = call.add_resource_names(n);
                        }
                        call.doit().await
                    },
                )
                .await;
            match result {
                Ok(resp) => out.extend(
                    resp.responses
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|r| item_error("people.people.getBatchGet", r).is_none())
                        .filter_map(|r| r.person),
                ),
                // Some servers fail the whole batch for one missing name: fall back to gets.
                Err(e) if e.kind == ErrorKind::NotFound => {
                    for n in chunk {
                        if let Some(p) = self.get(n).await? {
                            out.push(p);
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Creates one contact (`createContact`). Not idempotent: after a server error or lost
    /// response it fails with [`ErrorKind::Indeterminate`] instead of retrying; resolve by
    /// finding the contact through its `clientData`.
    pub async fn create_contact(&self, person: Person) -> Result<Person, GoogleError> {
        let _w = self.inner.writes.lock().await;
        let (hub, caller) = (&self.inner.hub, &self.inner.caller);
        let person = &person;
        caller
            .run(
                "people.people.createContact",
                Idempotency::NonIdempotent,
                |mut dlg| async move {
                    prepare!(
                        hub.people().create_contact(person.clone()),
                        &mut dlg,
                        caller
                    )
                    .person_fields(mask(Self::PERSON_FIELDS))
                    .doit()
                    .await
                },
            )
            .await
    }

    /// Creates contacts with `batchCreateContacts`, 200 per request, sequentially; returns the
    /// created people in input order. Not idempotent (see [`create_contact`](Self::create_contact)).
    /// If a later chunk fails, the earlier chunks were applied but are not returned: pass at
    /// most [`MAX_BATCH`](Self::MAX_BATCH) people per call for exact accounting.
    pub async fn batch_create(&self, people: Vec<Person>) -> Result<Vec<Person>, GoogleError> {
        const METHOD: &str = "people.people.batchCreateContacts";
        let _w = self.inner.writes.lock().await;
        let (hub, caller) = (&self.inner.hub, &self.inner.caller);
        let mut out = Vec::with_capacity(people.len());
        for chunk in people.chunks(Self::MAX_BATCH) {
            let request = BatchCreateContactsRequest {
                contacts: Some(
                    chunk
                        .iter()
                        .map(|p| ContactToCreate {
                            contact_person: Some(p.clone()),
                        })
                        .collect(),
                ),
                read_mask: Some(mask(Self::PERSON_FIELDS)),
                sources: None,
            };
            let request = &request;
            let resp = caller
                .run(METHOD, Idempotency::NonIdempotent, |mut dlg| async move {
                    prepare!(
                        hub.people().batch_create_contacts(request.clone()),
                        &mut dlg,
                        caller
                    )
                    .doit()
                    .await
                })
                .await?;
            let created = resp.created_people.unwrap_or_default();
            if created.len() != chunk.len() {
                return Err(GoogleError::local(
                    ErrorKind::Indeterminate,
                    METHOD,
                    format!(
                        "Google answered {} of {} created contacts",
                        created.len(),
                        chunk.len()
                    ),
                ));
            }
            for (i, r) in created.into_iter().enumerate() {
                if let Some(mut e) = item_error(METHOD, &r) {
                    e.message = format!("contact #{i} of the batch: {}", e.message);
                    return Err(e);
                }
                match r.person {
                    Some(p) => out.push(p),
                    None => {
                        return Err(GoogleError::local(
                            ErrorKind::Indeterminate,
                            METHOD,
                            format!("Google answered without created contact #{i}"),
                        ))
                    }
                }
            }
        }
        Ok(out)
    }

    /// Updates contacts with `batchUpdateContacts`, 200 per request. Each person needs
    /// `resource_name` and the `etag` it was read with; `update_fields` (e.g.
    /// `names,emailAddresses`) lists the fields replaced, so unmapped fields are preserved.
    /// Failures are per person (stale etag → `PreconditionFailed`, deleted → `NotFound`). When
    /// Google rejects a whole chunk for one bad person, the chunk is retried one contact at a
    /// time to tell which. Errors that concern the whole account (auth, quota, outage) are
    /// returned as `Err`. A retried update whose first attempt was applied reports
    /// `PreconditionFailed` (its etag is then stale): re-read and compare.
    pub async fn batch_update(
        &self,
        people: Vec<Person>,
        update_fields: &str,
    ) -> Result<BatchUpdateOutcome, GoogleError> {
        const METHOD: &str = "people.people.batchUpdateContacts";
        let _w = self.inner.writes.lock().await;
        let (hub, caller) = (&self.inner.hub, &self.inner.caller);
        let mut outcome = BatchUpdateOutcome::default();
        let mut valid = Vec::with_capacity(people.len());
        let mut seen = HashSet::new();
        for p in people {
            match p.resource_name.clone() {
                Some(n) if seen.insert(n.clone()) => valid.push((n, p)),
                Some(n) => outcome.failed.push(PersonFailure {
                    error: GoogleError::local(
                        ErrorKind::BadRequest,
                        METHOD,
                        format!("{n} appears twice in one batch update"),
                    ),
                    resource_name: n,
                }),
                None => outcome.failed.push(PersonFailure {
                    resource_name: String::new(),
                    error: GoogleError::local(
                        ErrorKind::BadRequest,
                        METHOD,
                        "a person without resource_name cannot be updated",
                    ),
                }),
            }
        }
        for chunk in valid.chunks(Self::MAX_BATCH) {
            let request = BatchUpdateContactsRequest {
                contacts: Some(chunk.iter().cloned().collect::<HashMap<_, _>>()),
                read_mask: Some(mask(Self::PERSON_FIELDS)),
                sources: None,
                update_mask: Some(mask(update_fields)),
            };
            let request = &request;
            let result = caller
                .run(METHOD, Idempotency::Idempotent, |mut dlg| async move {
                    prepare!(
                        hub.people().batch_update_contacts(request.clone()),
                        &mut dlg,
                        caller
                    )
                    .doit()
                    .await
                })
                .await;
            match result {
                Ok(resp) => {
                    let mut results = resp.update_result.unwrap_or_default();
                    for (name, _) in chunk {
                        match results.remove(name) {
                            Some(r) => match (item_error(METHOD, &r), r.person) {
                                (Some(error), _) => outcome.failed.push(PersonFailure {
                                    resource_name: name.clone(),
                                    error,
                                }),
                                (None, Some(p)) => outcome.updated.push(p),
                                (None, None) => outcome.failed.push(PersonFailure {
                                    resource_name: name.clone(),
                                    error: GoogleError::local(
                                        ErrorKind::Decode,
                                        METHOD,
                                        "Google answered without the updated person",
                                    ),
                                }),
                            },
                            None => outcome.failed.push(PersonFailure {
                                resource_name: name.clone(),
                                error: GoogleError::local(
                                    ErrorKind::Decode,
                                    METHOD,
                                    "Google's answer has no result for this contact",
                                ),
                            }),
                        }
                    }
                }
                Err(e)
                    if matches!(
                        e.kind,
                        ErrorKind::PreconditionFailed | ErrorKind::NotFound | ErrorKind::BadRequest
                    ) =>
                {
                    tracing::info!(kind = %e.kind, size = chunk.len(), "batch update rejected as a whole; updating one by one");
                    for (name, person) in chunk {
                        match self.update_unlocked(person.clone(), update_fields).await {
                            Ok(p) => outcome.updated.push(p),
                            Err(error)
                                if matches!(
                                    error.kind,
                                    ErrorKind::PreconditionFailed
                                        | ErrorKind::NotFound
                                        | ErrorKind::BadRequest
                                ) =>
                            {
                                outcome.failed.push(PersonFailure {
                                    resource_name: name.clone(),
                                    error,
                                })
                            }
                            Err(other) => return Err(other),
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(outcome)
    }

    /// Updates one contact (`updateContact`); the person needs `resource_name` and its latest
    /// `etag`. Only `update_fields` are replaced.
    pub async fn update_contact(
        &self,
        person: Person,
        update_fields: &str,
    ) -> Result<Person, GoogleError> {
        let _w = self.inner.writes.lock().await;
        self.update_unlocked(person, update_fields).await
    }

    async fn update_unlocked(
        &self,
        person: Person,
        update_fields: &str,
    ) -> Result<Person, GoogleError> {
        const METHOD: &str = "people.people.updateContact";
        let (hub, caller) = (&self.inner.hub, &self.inner.caller);
        let Some(name) = person.resource_name.clone() else {
            return Err(GoogleError::local(
                ErrorKind::BadRequest,
                METHOD,
                "a person without resource_name cannot be updated",
            ));
        };
        let (person, name) = (&person, name.as_str());
        caller
            .run(METHOD, Idempotency::Idempotent, |mut dlg| async move {
                prepare!(
                    hub.people().update_contact(person.clone(), name),
                    &mut dlg,
                    caller
                )
                .update_person_fields(mask(update_fields))
                .person_fields(mask(Self::PERSON_FIELDS))
                .doit()
                .await
            })
            .await
    }

    /// The user's contact group named `name`: reused when it exists, created otherwise (a 409
    /// from a concurrent or retried create re-reads the list).
    pub async fn ensure_group(&self, name: &str) -> Result<ContactGroup, GoogleError> {
        const METHOD: &str = "people.contactGroups.create";
        let _w = self.inner.writes.lock().await;
        if let Some(g) = self.find_group(name).await? {
            return Ok(g);
        }
        let (hub, caller) = (&self.inner.hub, &self.inner.caller);
        let request = CreateContactGroupRequest {
            contact_group: Some(ContactGroup {
                name: Some(name.to_string()),
                ..Default::default()
            }),
            read_group_fields: Some(mask(GROUP_FIELDS)),
        };
        let request = &request;
        // A repeat after a lost response answers 409, handled below: safe to retry.
        let result = caller
            .run(METHOD, Idempotency::Idempotent, |mut dlg| async move {
                prepare!(
                    hub.contact_groups().create(request.clone()),
                    &mut dlg,
                    caller
                )
                .doit()
                .await
            })
            .await;
        match result {
            Ok(g) => Ok(g),
            Err(e) if e.kind == ErrorKind::Duplicate => match self.find_group(name).await? {
                Some(g) => Ok(g),
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// One contact group by resource name (`contactGroups/…`, `contactGroups.get`); `None` when
    /// Google no longer has it (404, or a group its sync listing shows as deleted).
    pub async fn get_group(
        &self,
        resource_name: &str,
    ) -> Result<Option<ContactGroup>, GoogleError> {
        let (hub, caller) = (&self.inner.hub, &self.inner.caller);
        let result = caller
            .run(
                "people.contactGroups.get",
                Idempotency::Idempotent,
                |mut dlg| async move {
                    prepare!(hub.contact_groups().get(resource_name), &mut dlg, caller)
                        .group_fields(mask(GROUP_FIELDS))
                        .doit()
                        .await
                },
            )
            .await;
        match result {
            Ok(g) if g.metadata.as_ref().and_then(|m| m.deleted).unwrap_or(false) => Ok(None),
            Ok(g) => Ok(Some(g)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Finds a user contact group by exact name (listing all pages).
    pub async fn find_group(&self, name: &str) -> Result<Option<ContactGroup>, GoogleError> {
        let (hub, caller) = (&self.inner.hub, &self.inner.caller);
        let mut page_token: Option<String> = None;
        loop {
            let pt = page_token.as_deref();
            let resp = caller
                .run(
                    "people.contactGroups.list",
                    Idempotency::Idempotent,
                    |mut dlg| async move {
                        let mut call = prepare!(hub.contact_groups().list(), &mut dlg, caller)
                            .page_size(1000)
                            .group_fields(mask(GROUP_FIELDS));
                        if let Some(p) = pt {
                            call = call.page_token(p);
                        }
                        call.doit().await
                    },
                )
                .await?;
            let found = resp
                .contact_groups
                .unwrap_or_default()
                .into_iter()
                .find(|g| {
                    g.name.as_deref() == Some(name)
                        && g.group_type
                            .as_deref()
                            .is_none_or(|t| t == "USER_CONTACT_GROUP")
                        && !g.metadata.as_ref().and_then(|m| m.deleted).unwrap_or(false)
                });
            if found.is_some() {
                return Ok(found);
            }
            match resp.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => page_token = Some(t),
                None => return Ok(None),
            }
        }
    }

    /// Adds and removes members of `group` (`contactGroups/…`), at most 1000 changes per
    /// request. Idempotent; the outcome lists contacts that were not found and those that
    /// could not be removed because it was their last group.
    pub async fn modify_members(
        &self,
        group: &str,
        add: &[String],
        remove: &[String],
    ) -> Result<ModifyMembersOutcome, GoogleError> {
        let _w = self.inner.writes.lock().await;
        let (hub, caller) = (&self.inner.hub, &self.inner.caller);
        let mut outcome = ModifyMembersOutcome::default();
        for (to_add, to_remove) in member_chunks(add, remove, Self::MAX_MEMBER_CHANGES) {
            let request = ModifyContactGroupMembersRequest {
                resource_names_to_add: (!to_add.is_empty()).then(|| to_add.to_vec()),
                resource_names_to_remove: (!to_remove.is_empty()).then(|| to_remove.to_vec()),
            };
            let request = &request;
            let resp = caller
                .run(
                    "people.contactGroups.members.modify",
                    Idempotency::Idempotent,
                    |mut dlg| async move {
                        prepare!(
                            hub.contact_groups().members_modify(request.clone(), group),
                            &mut dlg,
                            caller
                        )
                        .doit()
                        .await
                    },
                )
                .await?;
            outcome
                .not_found
                .extend(resp.not_found_resource_names.unwrap_or_default());
            outcome.cannot_remove_last.extend(
                resp.can_not_remove_last_contact_group_resource_names
                    .unwrap_or_default(),
            );
        }
        Ok(outcome)
    }
}

/// Splits additions and removals into requests of at most `max` changes in total.
pub(crate) fn member_chunks<'a>(
    add: &'a [String],
    remove: &'a [String],
    max: usize,
) -> Vec<(&'a [String], &'a [String])> {
    let max = max.max(1);
    let mut out = Vec::new();
    let (mut a, mut r) = (add, remove);
    while !a.is_empty() || !r.is_empty() {
        let take_a = a.len().min(max);
        let take_r = r.len().min(max - take_a);
        out.push((&a[..take_a], &r[..take_r]));
        a = &a[take_a..];
        r = &r[take_r..];
    }
    out
}

/// The error of one item of a People batch response, if it failed.
fn item_error(method: &'static str, r: &PersonResponse) -> Option<GoogleError> {
    let status = r.status.as_ref();
    let code = status.and_then(|s| s.code).unwrap_or(0);
    let http = r.http_status_code.unwrap_or(200);
    if code == 0 && (200..300).contains(&http) {
        return None;
    }
    let http_status = if code != 0 {
        rpc_code_to_http(code)
    } else {
        http as u16
    };
    let mut body = serde_json::json!({
        "error": {
            "code": http_status,
            "message": status.and_then(|s| s.message.clone()).unwrap_or_default(),
            "details": status.and_then(|s| s.details.clone()).unwrap_or_default(),
        }
    });
    if code != 0 {
        body["error"]["status"] = rpc_code_name(code).into();
    }
    let mut e = GoogleError::from_response(method, Some(http_status), Some(&body));
    if e.message.is_empty() {
        e.message = if code != 0 {
            format!("{} for this contact", rpc_code_name(code))
        } else {
            format!("HTTP {http_status} for this contact")
        };
    }
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use google_people1::api::Status;

    fn names(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }

    #[test]
    fn member_chunks_respect_the_total_limit() {
        let add = names("a", 1500);
        let remove = names("r", 700);
        let chunks = member_chunks(&add, &remove, 1000);
        assert_eq!(chunks.len(), 3);
        assert_eq!((chunks[0].0.len(), chunks[0].1.len()), (1000, 0));
        assert_eq!((chunks[1].0.len(), chunks[1].1.len()), (500, 500));
        assert_eq!((chunks[2].0.len(), chunks[2].1.len()), (0, 200));
        assert!(member_chunks(&[], &[], 1000).is_empty());
        let total: usize = chunks.iter().map(|(a, r)| a.len() + r.len()).sum();
        assert_eq!(total, 2200);
    }

    #[test]
    fn field_masks_round_trip_to_camel_case() {
        let m = mask(PeopleClient::PERSON_FIELDS);
        assert_eq!(m.to_string(), PeopleClient::PERSON_FIELDS);
        assert_eq!(
            mask("names, emailAddresses,").to_string(),
            "names,emailAddresses"
        );
    }

    #[test]
    fn batch_item_errors() {
        let ok = PersonResponse {
            person: Some(Person::default()),
            ..Default::default()
        };
        assert!(item_error("m", &ok).is_none());
        let stale = PersonResponse {
            status: Some(Status {
                code: Some(9),
                message: Some(
                    "Request person.etag is different than the current person.etag.".into(),
                ),
                details: None,
            }),
            ..Default::default()
        };
        let e = item_error("m", &stale).unwrap();
        assert_eq!(e.kind, ErrorKind::PreconditionFailed);
        assert_eq!(e.status, Some(400));
        let gone = PersonResponse {
            http_status_code: Some(404),
            ..Default::default()
        };
        assert_eq!(item_error("m", &gone).unwrap().kind, ErrorKind::NotFound);
    }
}
