//! People v1: `people.{connections.list,get,createContact,updateContact,deleteContact,
//! batchCreateContacts,batchUpdateContacts,batchDeleteContacts,getBatchGet}` for the
//! `people/me` connections of each user, with sync tokens (7-day expiry on the emulated
//! clock, `EXPIRED_SYNC_TOKEN`), tombstones, etag preconditions and the propagation delay.
//! Contact groups live in [`groups`]; contact merges (a Google Contacts user action, driven
//! through the control plane) in [`merge`].

pub mod groups;
pub mod merge;
pub mod person;
pub mod store;

use chrono::Duration;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

use crate::api::{Reply, Req};
use crate::errors::{Api, ApiError};
use crate::sync_tokens::{user_tag, PageToken, SyncToken};
use person::{
    all_fields, etags, input_fields, name_key, parse_mask, render, ContactData, MaskKind,
};
use store::{PeopleStore, ADDABLE_SYSTEM_GROUPS};

/// People sync tokens expire this long after the full sync that started their chain.
pub const SYNC_TOKEN_LIFETIME_DAYS: i64 = 7;
pub const MAX_BATCH_CREATE: usize = 200;
pub const MAX_BATCH_UPDATE: usize = 200;
pub const MAX_BATCH_DELETE: usize = 500;
pub const MAX_BATCH_GET: usize = 200;

/// Routes a classified People request.
pub fn dispatch(req: &Req) -> Result<Reply, ApiError> {
    match req.route.method {
        "people.people.connections.list" => connections_list(req),
        "people.people.get" => get(req),
        "people.people.createContact" => create_contact(req),
        "people.people.updateContact" => update_contact(req),
        "people.people.deleteContact" => delete_contact(req),
        "people.people.batchCreateContacts" => batch_create(req),
        "people.people.batchUpdateContacts" => batch_update(req),
        "people.people.batchDeleteContacts" => batch_delete(req),
        "people.people.getBatchGet" => batch_get(req),
        "people.contactGroups.list" => groups::list(req),
        "people.contactGroups.get" => groups::get(req),
        "people.contactGroups.batchGet" => groups::batch_get(req),
        "people.contactGroups.create" => groups::create(req),
        "people.contactGroups.update" => groups::update(req),
        "people.contactGroups.delete" => groups::delete(req),
        "people.contactGroups.members.modify" => groups::members_modify(req),
        _ => Err(ApiError::new(404, "", "Method not found.").status("NOT_FOUND")),
    }
}

/// Google's expired-sync-token error (HTTP 400 FAILED_PRECONDITION).
pub fn expired_sync_token() -> ApiError {
    ApiError::new(
        400,
        "EXPIRED_SYNC_TOKEN",
        "Sync token is expired. Clear local cache and retry call without the sync token.",
    )
    .status("FAILED_PRECONDITION")
    .domain("people.googleapis.com")
}

fn contact_id(resource: &str) -> Result<&str, ApiError> {
    let id = resource.strip_prefix("people/").unwrap_or(resource);
    if id.len() > 1 && id.starts_with('c') && id[1..].bytes().all(|b| b.is_ascii_digit()) {
        Ok(id)
    } else {
        Err(ApiError::invalid_argument(format!(
            "Resource name \"{resource}\" is not a valid contact person resource."
        )))
    }
}

fn body_person(v: Option<&Value>) -> Result<Map<String, Value>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(ApiError::invalid_argument(
            "Invalid JSON payload received. Expected a Person object.",
        )),
    }
}

/// Resolves requested group resource names to ids (must exist and accept members).
fn resolve_groups(store: &PeopleStore, names: &[String]) -> Result<BTreeSet<String>, ApiError> {
    let mut out = BTreeSet::new();
    for n in names {
        let id = n.strip_prefix("contactGroups/").unwrap_or(n);
        let g = store.groups.get(id).filter(|g| !g.deleted).ok_or_else(|| {
            ApiError::invalid_argument(format!("Contact group resource name \"{n}\" is not found."))
        })?;
        if g.system && !ADDABLE_SYSTEM_GROUPS.contains(&g.id.as_str()) {
            return Err(ApiError::invalid_argument(format!(
                "Cannot add contacts to system contact group \"{n}\"."
            )));
        }
        out.insert(g.id.clone());
    }
    Ok(out)
}

fn new_contact_data(
    store: &PeopleStore,
    person: &Map<String, Value>,
) -> Result<ContactData, ApiError> {
    let (fields, groups) = input_fields(person, None)?;
    let mut set = match groups {
        Some(names) => resolve_groups(store, &names)?,
        None => BTreeSet::new(),
    };
    set.insert("myContacts".to_string());
    Ok(ContactData {
        fields,
        groups: set,
        deleted: false,
        etag_n: 0,
        update_time: chrono::Utc::now(),
        previous_resource_names: Vec::new(),
    })
}

/// Checks the etag a client sent against the contact's current one.
fn check_etag(person: &Map<String, Value>, current: &ContactData) -> Result<(), ApiError> {
    let (etag, source_etag) = etags(current.etag_n);
    let top = person.get("etag").and_then(Value::as_str);
    let src = person
        .get("metadata")
        .and_then(|m| m.get("sources"))
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|s| {
                    s.get("type")
                        .and_then(Value::as_str)
                        .is_none_or(|t| t == "CONTACT")
                })
                .and_then(|s| s.get("etag"))
                .and_then(Value::as_str)
        });
    match (top, src) {
        (None, None) => Err(ApiError::invalid_argument(
            "Request must set person.etag or person.metadata.sources.etag for the source that is being updated.",
        )),
        (Some(t), _) if t != etag => Err(ApiError::failed_precondition(
            "Request person.etag is different than the current person.etag. Clear local cache and get the latest person.",
        )),
        (None, Some(s)) if s != source_etag => Err(ApiError::failed_precondition(
            "Request person.metadata.sources.etag is different than the current person.metadata.sources.etag. Clear local cache and get the latest person.",
        )),
        _ => Ok(()),
    }
}

/// Applies an update mask to a contact's current data.
fn updated_data(
    store: &PeopleStore,
    current: &ContactData,
    person: &Map<String, Value>,
    mask: &[String],
) -> Result<ContactData, ApiError> {
    let (fields, groups) = input_fields(person, Some(mask))?;
    let mut next = current.clone();
    for f in mask {
        if f == "memberships" {
            let names = groups.clone().unwrap_or_default();
            if names.is_empty() {
                return Err(ApiError::invalid_argument(
                    "Contact must have at least one contact group membership.",
                ));
            }
            next.groups = resolve_groups(store, &names)?;
            continue;
        }
        match fields.get(f) {
            Some(v) => {
                next.fields.insert(f.clone(), v.clone());
            }
            None => {
                next.fields.remove(f);
            }
        }
    }
    Ok(next)
}

fn render_current(store: &PeopleStore, id: &str, mask: &[String]) -> Value {
    match store.contact(id) {
        Some(c) => render(&c.resource_name(), &c.source_id, &c.current().data, mask),
        None => json!({}),
    }
}

fn read_mask_or_all(
    value: Option<&str>,
    kind: MaskKind,
    doc: &str,
) -> Result<Vec<String>, ApiError> {
    match value {
        None => Ok(all_fields()),
        Some(v) => parse_mask(Some(v), kind, false, doc),
    }
}

fn connections_list(req: &Req) -> Result<Reply, ApiError> {
    if req.param(0) != "me" {
        return Err(ApiError::invalid_argument(
            "Must be a valid resource name of the form people/me.",
        ));
    }
    let q = &req.query;
    let mask = parse_mask(
        q.get("personFields"),
        MaskKind::PersonFields,
        false,
        "people.connections/list",
    )?;
    let page_size = match q.int("pageSize", Api::People)?.unwrap_or(0) {
        0 => 100,
        n if (1..=1000).contains(&n) => n as usize,
        _ => {
            return Err(ApiError::invalid_argument(
                "Invalid pageSize. Valid values are between 1 and 1000, inclusive.",
            ))
        }
    };
    let request_sync = q.bool("requestSyncToken", Api::People)?.unwrap_or(false);
    let sort = q.get("sortOrder").unwrap_or("LAST_MODIFIED_ASCENDING");
    if !matches!(
        sort,
        "LAST_MODIFIED_ASCENDING"
            | "LAST_MODIFIED_DESCENDING"
            | "FIRST_NAME_ASCENDING"
            | "LAST_NAME_ASCENDING"
    ) {
        return Err(ApiError::invalid_argument(format!(
            "Invalid value at 'sort_order', \"{sort}\""
        )));
    }
    for s in q.all("sources") {
        if !matches!(
            s,
            "READ_SOURCE_TYPE_CONTACT"
                | "READ_SOURCE_TYPE_PROFILE"
                | "READ_SOURCE_TYPE_DOMAIN_CONTACT"
                | "READ_SOURCE_TYPE_OTHER_CONTACT"
        ) {
            return Err(ApiError::invalid_argument(format!(
                "Invalid value at 'sources', \"{s}\""
            )));
        }
    }
    let sync_token = q.get("syncToken");
    let syncing = request_sync || sync_token.is_some();
    let tag = user_tag(&req.user.email);
    let params = q.fingerprint(&["pageToken"]);
    let now_ms = req.now.timestamp_millis();
    let delay = req.emu.propagation_delay();
    let store = req.user.people();

    let incremental = match sync_token {
        Some(t) => {
            let t = SyncToken::decode(t)
                .filter(|t| t.api == 'p' && t.user_tag == tag)
                .ok_or_else(|| ApiError::invalid_argument("Sync token is invalid."))?;
            if t.epoch != store.epoch
                || now_ms - t.full_sync_ms
                    > Duration::days(SYNC_TOKEN_LIFETIME_DAYS).num_milliseconds()
                || t.seq > store.current_seq()
            {
                return Err(expired_sync_token());
            }
            Some(t)
        }
        None => None,
    };
    let (snapshot, cursor, full_sync_ms) = match q.get("pageToken") {
        Some(p) => {
            let p = PageToken::decode(p)
                .filter(|p| p.api == 'p' && p.user_tag == tag)
                .ok_or_else(|| ApiError::invalid_argument("Page token is invalid."))?;
            if p.params != params {
                return Err(ApiError::invalid_argument(
                    "Parameters provided to ListConnections must match the call that provided the page token.",
                ));
            }
            if p.epoch != store.epoch {
                return Err(if syncing {
                    expired_sync_token()
                } else {
                    ApiError::invalid_argument("Page token is invalid.")
                });
            }
            (p.snapshot, p.cursor, p.full_sync_ms)
        }
        None => {
            let snapshot = if syncing {
                store.cutoff_seq(req.now - delay)
            } else {
                store.current_seq()
            };
            let floor = incremental.map(|t| t.seq + 1).unwrap_or(1);
            let full = incremental.map(|t| t.full_sync_ms).unwrap_or(now_ms);
            (snapshot, floor, full)
        }
    };
    let page_token = |cursor: u64| PageToken {
        user_tag: tag,
        api: 'p',
        epoch: store.epoch,
        snapshot,
        cursor,
        skip: 0,
        params,
        full_sync_ms,
    };

    let mut items: Vec<Value> = Vec::new();
    let mut next: Option<u64> = None;
    let sorted = !syncing && sort != "LAST_MODIFIED_ASCENDING";
    if sorted {
        let mut all: Vec<(String, &store::Contact)> = store
            .changes(1, snapshot, snapshot)
            .filter(|(_, _, v)| !v.data.deleted)
            .map(|(s, c, v)| {
                let key = match sort {
                    "FIRST_NAME_ASCENDING" => name_key(&v.data, false),
                    "LAST_NAME_ASCENDING" => name_key(&v.data, true),
                    _ => format!("{:020}", u64::MAX - s),
                };
                (key, c)
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let offset = if q.has("pageToken") {
            cursor as usize
        } else {
            0
        };
        let end = (offset + page_size).min(all.len());
        for (_, c) in all.get(offset.min(end)..end).unwrap_or_default() {
            if let Some(v) = c.visible(snapshot) {
                items.push(render(&c.resource_name(), &c.source_id, &v.data, &mask));
            }
        }
        if end < all.len() {
            next = Some(end as u64);
        }
    } else {
        let want = |v: &store::Version| incremental.is_some() || !v.data.deleted;
        for (seq, c, v) in store.changes(cursor, snapshot, snapshot) {
            if !want(v) {
                continue;
            }
            if items.len() == page_size {
                next = Some(seq);
                break;
            }
            let mut p = render(&c.resource_name(), &c.source_id, &v.data, &mask);
            if incremental.is_some() {
                merge::add_previous_resource_names(&mut p, &v.data);
            }
            items.push(p);
        }
    }
    let mut out = Map::new();
    let total = if incremental.is_some() {
        items.len()
    } else {
        store.live_count()
    };
    if !items.is_empty() {
        out.insert("connections".into(), Value::Array(items));
    }
    match next {
        Some(c) => {
            out.insert("nextPageToken".into(), json!(page_token(c).encode()));
        }
        None if request_sync => {
            let t = SyncToken {
                user_tag: tag,
                api: 'p',
                epoch: store.epoch,
                seq: snapshot,
                full_sync_ms,
            };
            out.insert("nextSyncToken".into(), json!(t.encode()));
        }
        None => {}
    }
    out.insert("totalPeople".into(), json!(total));
    out.insert("totalItems".into(), json!(total));
    Ok(Reply::Json(Value::Object(out)))
}

fn get(req: &Req) -> Result<Reply, ApiError> {
    let mask = parse_mask(
        req.query.get("personFields"),
        MaskKind::PersonFields,
        false,
        "people/get",
    )?;
    if req.param(0) == "me" {
        let email = req.user.email.clone();
        let mut fields = Map::new();
        fields.insert("emailAddresses".into(), json!([{"value": email}]));
        let d = ContactData {
            fields,
            groups: BTreeSet::new(),
            deleted: false,
            etag_n: 1,
            update_time: req.now,
            previous_resource_names: Vec::new(),
        };
        let mut p = render(
            "people/me",
            &format!("{:x}", crate::sync_tokens::user_tag(&email)),
            &d,
            &mask,
        );
        if let Some(m) = p.get_mut("metadata") {
            m["objectType"] = json!("PERSON");
            if let Some(s) = m.get_mut("sources").and_then(|s| s.get_mut(0)) {
                s["type"] = json!("PROFILE");
            }
        }
        return Ok(Reply::Json(p));
    }
    let id = contact_id(req.param(0))?;
    let store = req.user.people();
    store.live(id).ok_or_else(ApiError::people_not_found)?;
    Ok(Reply::Json(render_current(&store, id, &mask)))
}

fn create_contact(req: &Req) -> Result<Reply, ApiError> {
    let mask = read_mask_or_all(
        req.query.get("personFields"),
        MaskKind::PersonFields,
        "people/createContact",
    )?;
    let person = req.json_object()?;
    let delay = req.emu.propagation_delay();
    let mut store = req.user.people();
    let data = new_contact_data(&store, &person)?;
    let id = store.write(None, data, req.now, delay);
    Ok(Reply::Json(render_current(&store, &id, &mask)))
}

fn update_contact(req: &Req) -> Result<Reply, ApiError> {
    let id = contact_id(req.param(0))?.to_string();
    let update_mask = parse_mask(
        req.query.get("updatePersonFields"),
        MaskKind::UpdatePersonFields,
        false,
        "people/updateContact",
    )?;
    let mask = read_mask_or_all(
        req.query.get("personFields"),
        MaskKind::PersonFields,
        "people/updateContact",
    )?;
    let person = req.json_object()?;
    let delay = req.emu.propagation_delay();
    let mut store = req.user.people();
    let current = store
        .live(&id)
        .ok_or_else(ApiError::people_not_found)?
        .current()
        .data
        .clone();
    check_etag(&person, &current)?;
    let next = updated_data(&store, &current, &person, &update_mask)?;
    store.write(Some(&id), next, req.now, delay);
    Ok(Reply::Json(render_current(&store, &id, &mask)))
}

fn delete_in(store: &mut PeopleStore, id: &str, req: &Req) {
    if let Some(c) = store.live(id) {
        let mut d = c.current().data.clone();
        d.deleted = true;
        let delay = req.emu.propagation_delay();
        store.write(Some(id), d, req.now, delay);
    }
}

fn delete_contact(req: &Req) -> Result<Reply, ApiError> {
    let id = contact_id(req.param(0))?.to_string();
    let mut store = req.user.people();
    store.live(&id).ok_or_else(ApiError::people_not_found)?;
    delete_in(&mut store, &id, req);
    Ok(Reply::Json(json!({})))
}

fn batch_create(req: &Req) -> Result<Reply, ApiError> {
    let body = req.json_object()?;
    let read_mask = parse_mask(
        body.get("readMask").and_then(Value::as_str),
        MaskKind::ReadMask,
        false,
        "people/batchCreateContacts",
    )?;
    let contacts = body
        .get("contacts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if contacts.is_empty() {
        return Err(ApiError::invalid_argument("contacts must not be empty."));
    }
    if contacts.len() > MAX_BATCH_CREATE {
        return Err(ApiError::invalid_argument(format!(
            "Too many contacts in the request. The maximum is {MAX_BATCH_CREATE}."
        )));
    }
    let delay = req.emu.propagation_delay();
    let mut store = req.user.people();
    let mut datas = Vec::with_capacity(contacts.len());
    for c in &contacts {
        let person = body_person(c.get("contactPerson"))?;
        datas.push(new_contact_data(&store, &person)?);
    }
    let mut created = Vec::with_capacity(datas.len());
    for d in datas {
        let id = store.write(None, d, req.now, delay);
        created.push(
            json!({"person": render_current(&store, &id, &read_mask), "httpStatusCode": 200}),
        );
    }
    Ok(Reply::Json(json!({"createdPeople": created})))
}

fn batch_update(req: &Req) -> Result<Reply, ApiError> {
    let body = req.json_object()?;
    let update_mask = parse_mask(
        body.get("updateMask").and_then(Value::as_str),
        MaskKind::UpdateMask,
        false,
        "people/batchUpdateContacts",
    )?;
    let read_mask = parse_mask(
        body.get("readMask").and_then(Value::as_str),
        MaskKind::ReadMask,
        false,
        "people/batchUpdateContacts",
    )?;
    let contacts = body
        .get("contacts")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if contacts.is_empty() {
        return Err(ApiError::invalid_argument("contacts must not be empty."));
    }
    if contacts.len() > MAX_BATCH_UPDATE {
        return Err(ApiError::invalid_argument(format!(
            "Too many contacts in the request. The maximum is {MAX_BATCH_UPDATE}."
        )));
    }
    let delay = req.emu.propagation_delay();
    let mut store = req.user.people();
    let mut plan = Vec::with_capacity(contacts.len());
    for (rn, p) in &contacts {
        let id = contact_id(rn)?.to_string();
        let person = body_person(Some(p))?;
        let current = store
            .live(&id)
            .ok_or_else(ApiError::people_not_found)?
            .current()
            .data
            .clone();
        check_etag(&person, &current)?;
        plan.push((
            rn.clone(),
            id,
            updated_data(&store, &current, &person, &update_mask)?,
        ));
    }
    let mut result = Map::new();
    for (rn, id, d) in plan {
        store.write(Some(&id), d, req.now, delay);
        result.insert(
            rn,
            json!({"person": render_current(&store, &id, &read_mask), "httpStatusCode": 200}),
        );
    }
    Ok(Reply::Json(json!({"updateResult": result})))
}

fn batch_delete(req: &Req) -> Result<Reply, ApiError> {
    let body = req.json_object()?;
    let names: Vec<String> = body
        .get("resourceNames")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        return Err(ApiError::invalid_argument(
            "resourceNames must not be empty.",
        ));
    }
    if names.len() > MAX_BATCH_DELETE {
        return Err(ApiError::invalid_argument(format!(
            "Too many resource names in the request. The maximum is {MAX_BATCH_DELETE}."
        )));
    }
    let mut store = req.user.people();
    let mut ids = Vec::with_capacity(names.len());
    for n in &names {
        let id = contact_id(n)?.to_string();
        store.live(&id).ok_or_else(ApiError::people_not_found)?;
        ids.push(id);
    }
    for id in ids {
        delete_in(&mut store, &id, req);
    }
    Ok(Reply::Json(json!({})))
}

fn batch_get(req: &Req) -> Result<Reply, ApiError> {
    let mask = parse_mask(
        req.query.get("personFields"),
        MaskKind::PersonFields,
        false,
        "people/getBatchGet",
    )?;
    let names = req.query.all("resourceNames");
    if names.is_empty() {
        return Err(ApiError::invalid_argument(
            "resourceNames must not be empty.",
        ));
    }
    if names.len() > MAX_BATCH_GET {
        return Err(ApiError::invalid_argument(format!(
            "Too many resource names in the request. The maximum is {MAX_BATCH_GET}."
        )));
    }
    let store = req.user.people();
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        let found = contact_id(n).ok().and_then(|id| store.live(id).map(|_| id));
        match found {
            Some(id) => out.push(json!({
                "requestedResourceName": n,
                "httpStatusCode": 200,
                "person": render_current(&store, id, &mask),
                "status": {},
            })),
            None => out.push(json!({
                "requestedResourceName": n,
                "httpStatusCode": 404,
                "status": {"code": 5, "message": "Requested entity was not found."},
            })),
        }
    }
    Ok(Reply::Json(json!({"responses": out})))
}
