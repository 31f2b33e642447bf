//! People contact groups: `contactGroups.{list,get,batchGet,create,update,delete}` and
//! `members.modify` with its 1000-name limit, `notFoundResourceNames` and the rule that a
//! contact always keeps at least one group membership (`myContacts` counts).

use serde_json::{json, Map, Value};

use super::{contact_id, expired_sync_token};
use crate::api::{Reply, Req};
use crate::errors::{Api, ApiError};
use crate::sync_tokens::{user_tag, PageToken, SyncToken};

pub const MAX_MEMBERS_MODIFY: usize = 1000;
const GROUP_FIELDS: &[&str] = &["clientData", "groupType", "memberCount", "metadata", "name"];

fn group_fields(v: Option<&str>, param: &str) -> Result<Option<Vec<String>>, ApiError> {
    let Some(v) = v.filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for p in v.split(',').map(str::trim) {
        if !GROUP_FIELDS.contains(&p) {
            return Err(ApiError::invalid_argument(format!(
                "Invalid {param} mask path: \"{p}\"."
            )));
        }
        out.push(p.to_string());
    }
    Ok(Some(out))
}

fn group_id(rn: &str) -> &str {
    rn.strip_prefix("contactGroups/").unwrap_or(rn)
}

fn not_found() -> ApiError {
    ApiError::people_not_found()
}

pub fn list(req: &Req) -> Result<Reply, ApiError> {
    let q = &req.query;
    let fields = group_fields(q.get("groupFields"), "groupFields")?;
    let page_size = match q.int("pageSize", Api::People)?.unwrap_or(0) {
        0 => 30,
        n if (1..=1000).contains(&n) => n as usize,
        _ => {
            return Err(ApiError::invalid_argument(
                "Invalid pageSize. Valid values are between 1 and 1000, inclusive.",
            ))
        }
    };
    let tag = user_tag(&req.user.email);
    let params = q.fingerprint(&["pageToken"]);
    let store = req.user.people();
    let incremental = match q.get("syncToken") {
        Some(t) => {
            let t = SyncToken::decode(t)
                .filter(|t| t.api == 'g' && t.user_tag == tag)
                .ok_or_else(|| ApiError::invalid_argument("Sync token is invalid."))?;
            if t.epoch != store.epoch || t.seq > store.current_seq() {
                return Err(expired_sync_token());
            }
            Some(t.seq)
        }
        None => None,
    };
    let (snapshot, offset) = match q.get("pageToken") {
        Some(p) => {
            let p = PageToken::decode(p)
                .filter(|p| p.api == 'g' && p.user_tag == tag && p.params == params)
                .ok_or_else(|| ApiError::invalid_argument("Page token is invalid."))?;
            (p.snapshot, p.cursor as usize)
        }
        None => (store.current_seq(), 0),
    };
    let from = incremental.map(|s| s + 1).unwrap_or(1);
    let all: Vec<&super::store::Group> = store
        .group_changes(from, snapshot)
        .filter(|g| incremental.is_some() || !g.deleted)
        .collect();
    let end = (offset + page_size).min(all.len());
    let items: Vec<Value> = all
        .get(offset.min(end)..end)
        .unwrap_or_default()
        .iter()
        .map(|g| g.render(fields.as_deref(), 0))
        .collect();
    let mut out = Map::new();
    if !items.is_empty() {
        out.insert("contactGroups".into(), Value::Array(items));
    }
    out.insert("totalItems".into(), json!(all.len()));
    if end < all.len() {
        let p = PageToken {
            user_tag: tag,
            api: 'g',
            epoch: store.epoch,
            snapshot,
            cursor: end as u64,
            skip: 0,
            params,
            full_sync_ms: 0,
        };
        out.insert("nextPageToken".into(), json!(p.encode()));
    } else {
        let t = SyncToken {
            user_tag: tag,
            api: 'g',
            epoch: store.epoch,
            seq: snapshot,
            full_sync_ms: req.now.timestamp_millis(),
        };
        out.insert("nextSyncToken".into(), json!(t.encode()));
    }
    Ok(Reply::Json(Value::Object(out)))
}

fn max_members(req: &Req) -> Result<usize, ApiError> {
    let n = req.query.int("maxMembers", Api::People)?.unwrap_or(0);
    if n < 0 {
        return Err(ApiError::invalid_argument(
            "maxMembers must not be negative.",
        ));
    }
    Ok(n as usize)
}

pub fn get(req: &Req) -> Result<Reply, ApiError> {
    let fields = group_fields(req.query.get("groupFields"), "groupFields")?;
    let max = max_members(req)?;
    let store = req.user.people();
    let g = store
        .groups
        .get(req.param(0))
        .filter(|g| !g.deleted)
        .ok_or_else(not_found)?;
    Ok(Reply::Json(g.render(fields.as_deref(), max)))
}

pub fn batch_get(req: &Req) -> Result<Reply, ApiError> {
    let fields = group_fields(req.query.get("groupFields"), "groupFields")?;
    let max = max_members(req)?;
    let names = req.query.all("resourceNames");
    if names.is_empty() || names.len() > 200 {
        return Err(ApiError::invalid_argument(
            "resourceNames must contain between 1 and 200 names.",
        ));
    }
    let store = req.user.people();
    let responses: Vec<Value> = names
        .iter()
        .map(|n| match store.groups.get(group_id(n)).filter(|g| !g.deleted) {
            Some(g) => json!({"requestedResourceName": n, "contactGroup": g.render(fields.as_deref(), max), "status": {}}),
            None => json!({"requestedResourceName": n, "status": {"code": 5, "message": "Requested entity was not found."}}),
        })
        .collect();
    Ok(Reply::Json(json!({"responses": responses})))
}

fn duplicate_name() -> ApiError {
    ApiError::new(409, "", "Contact group name already exists.").status("ALREADY_EXISTS")
}

pub fn create(req: &Req) -> Result<Reply, ApiError> {
    let body = req.json_object()?;
    let fields = group_fields(
        body.get("readGroupFields").and_then(Value::as_str),
        "readGroupFields",
    )?;
    let group = body
        .get("contactGroup")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let name = group
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_string();
    if name.is_empty() {
        return Err(ApiError::invalid_argument(
            "Contact group name must not be empty.",
        ));
    }
    let client_data: Vec<Value> = group
        .get("clientData")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut store = req.user.people();
    if store.group_by_name(&name).is_some() {
        return Err(duplicate_name());
    }
    let id = store.create_group(&name, client_data, req.now);
    let g = store.groups.get(&id).ok_or_else(not_found)?;
    Ok(Reply::Json(g.render(fields.as_deref(), 0)))
}

pub fn update(req: &Req) -> Result<Reply, ApiError> {
    let body = req.json_object()?;
    let read = group_fields(
        body.get("readGroupFields").and_then(Value::as_str),
        "readGroupFields",
    )?;
    let update = group_fields(
        body.get("updateGroupFields").and_then(Value::as_str),
        "updateGroupFields",
    )?
    .unwrap_or_else(|| vec!["name".to_string()]);
    let group = body
        .get("contactGroup")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let id = req.param(0).to_string();
    let mut store = req.user.people();
    let g = store
        .groups
        .get(&id)
        .filter(|g| !g.deleted)
        .ok_or_else(not_found)?;
    if g.system {
        return Err(ApiError::invalid_argument(
            "System contact groups cannot be updated.",
        ));
    }
    if let Some(etag) = group.get("etag").and_then(Value::as_str) {
        let current = g.render(None, 0);
        if current.get("etag").and_then(Value::as_str) != Some(etag) {
            return Err(ApiError::failed_precondition("Request contactGroup.etag is different than the current contactGroup.etag. Clear local cache and get the latest contactGroup."));
        }
    }
    if update.iter().any(|f| f == "name") {
        let name = group
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_string();
        if name.is_empty() {
            return Err(ApiError::invalid_argument(
                "Contact group name must not be empty.",
            ));
        }
        if store.group_by_name(&name).is_some_and(|o| o.id != id) {
            return Err(duplicate_name());
        }
        if let Some(g) = store.groups.get_mut(&id) {
            g.name = name;
        }
    }
    if update.iter().any(|f| f == "clientData") {
        let cd = group
            .get("clientData")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(g) = store.groups.get_mut(&id) {
            g.client_data = cd;
        }
    }
    store.touch_group(&id, req.now);
    let g = store.groups.get(&id).ok_or_else(not_found)?;
    Ok(Reply::Json(g.render(read.as_deref(), 0)))
}

pub fn delete(req: &Req) -> Result<Reply, ApiError> {
    let delete_contacts = req
        .query
        .bool("deleteContacts", Api::People)?
        .unwrap_or(false);
    let id = req.param(0).to_string();
    let delay = req.emu.propagation_delay();
    let mut store = req.user.people();
    let g = store
        .groups
        .get(&id)
        .filter(|g| !g.deleted)
        .ok_or_else(not_found)?;
    if g.system {
        return Err(ApiError::invalid_argument(
            "System contact groups cannot be deleted.",
        ));
    }
    let members: Vec<String> = g.members.iter().cloned().collect();
    for m in members {
        let Some(c) = store.live(&m) else { continue };
        let mut d = c.current().data.clone();
        if delete_contacts {
            d.deleted = true;
        } else {
            d.groups.remove(&id);
            if d.groups.is_empty() {
                d.groups.insert("myContacts".into());
            }
        }
        store.write(Some(&m), d, req.now, delay);
    }
    if let Some(g) = store.groups.get_mut(&id) {
        g.deleted = true;
        g.members.clear();
    }
    store.touch_group(&id, req.now);
    Ok(Reply::Json(json!({})))
}

pub fn members_modify(req: &Req) -> Result<Reply, ApiError> {
    let body = req.json_object()?;
    let list = |k: &str| -> Vec<String> {
        body.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let add = list("resourceNamesToAdd");
    let remove = list("resourceNamesToRemove");
    if add.len() + remove.len() > MAX_MEMBERS_MODIFY {
        return Err(ApiError::invalid_argument(format!(
            "Too many resource names in the request. The maximum is {MAX_MEMBERS_MODIFY} for resourceNamesToAdd and resourceNamesToRemove combined."
        )));
    }
    let gid = req.param(0).to_string();
    let delay = req.emu.propagation_delay();
    let mut store = req.user.people();
    let g = store
        .groups
        .get(&gid)
        .filter(|g| !g.deleted)
        .ok_or_else(not_found)?;
    if !add.is_empty() && g.system && !super::store::ADDABLE_SYSTEM_GROUPS.contains(&gid.as_str()) {
        return Err(ApiError::invalid_argument(format!(
            "Cannot add contacts to system contact group \"contactGroups/{gid}\"."
        )));
    }
    let mut not_found_names = Vec::new();
    let mut last_group = Vec::new();
    for rn in &add {
        let Some(id) = contact_id(rn)
            .ok()
            .filter(|id| store.live(id).is_some())
            .map(str::to_string)
        else {
            not_found_names.push(rn.clone());
            continue;
        };
        let Some(c) = store.live(&id) else { continue };
        if c.current().data.groups.contains(&gid) {
            continue;
        }
        let mut d = c.current().data.clone();
        d.groups.insert(gid.clone());
        store.write(Some(&id), d, req.now, delay);
    }
    for rn in &remove {
        let Some(id) = contact_id(rn)
            .ok()
            .filter(|id| store.live(id).is_some())
            .map(str::to_string)
        else {
            not_found_names.push(rn.clone());
            continue;
        };
        let Some(c) = store.live(&id) else { continue };
        if !c.current().data.groups.contains(&gid) {
            continue;
        }
        if c.current().data.groups.len() == 1 {
            last_group.push(rn.clone());
            continue;
        }
        let mut d = c.current().data.clone();
        d.groups.remove(&gid);
        store.write(Some(&id), d, req.now, delay);
    }
    if !add.is_empty() || !remove.is_empty() {
        store.touch_group(&gid, req.now);
    }
    let mut out = Map::new();
    if !not_found_names.is_empty() {
        out.insert("notFoundResourceNames".into(), json!(not_found_names));
    }
    if !last_group.is_empty() {
        out.insert(
            "canNotRemoveLastContactGroupResourceNames".into(),
            json!(last_group),
        );
    }
    Ok(Reply::Json(Value::Object(out)))
}
