//! The Google writes of contacts: creates in batches of 200 after their intents are committed
//! (a batch Google refuses is split until the refused contact is alone), field updates in
//! batches of 200 on the contact as listed in the run or as kept with its link, with the etag
//! known (one Google refuses as stale is read again, re-planned and retried once), and group
//! membership in `members:modify` calls (a contact Google will not remove from
//! its last group is first kept in "My Contacts": never deleted).

use super::Contacts;
use crate::sync::crash::CrashPoint;
use crate::sync::driver::Kind;
use crate::sync::error::SyncError;
use crate::sync::executor::{isolating, Executor, Item};
use crmsync_connectors::contact_wire::{self, MY_CONTACTS};
use crmsync_connectors::{ErrorKind, GoogleError, Person};
use crmsync_engine::fields;
use crmsync_engine::planner::{GoogleObs, ScopeOp};
use crmsync_schema::sync_state;
use std::collections::{HashMap, HashSet};

/// Creates in Google: intents first (committed), then one batch create, split to isolate a
/// contact Google refuses.
pub(super) async fn google_creates(
    ex: &mut Executor<'_, Contacts>,
    chunk: &mut [Item<Contacts>],
) -> Result<(), SyncError> {
    let creates = ex.begin_creates(chunk).await?;
    if creates.is_empty() {
        return Ok(());
    }
    // Creates name the group: it must still exist.
    super::confirm_group(ex).await?;
    let group = ex.kind.group()?;
    let persons: Vec<Person> = creates
        .iter()
        .map(|(i, crm_id)| {
            contact_wire::person_for_create(&chunk[*i].plan.google.target, crm_id, &group.0)
        })
        .collect();
    let idx: Vec<usize> = creates.into_iter().map(|(i, _)| i).collect();
    let people = ex.kind.people.clone();
    let groups = isolating(persons, |batch| people.batch_create(batch)).await;
    let mut applied = false;
    let mut refused = Vec::new();
    for (group, result) in groups {
        let group: Vec<usize> = group.into_iter().map(|k| idx[k]).collect();
        match result {
            Ok(created) if created.len() == group.len() => {
                for (&i, person) in group.iter().zip(created) {
                    chunk[i].written = Some(person);
                }
                applied = true;
            }
            Ok(created) => {
                // Should not happen; the contacts will be adopted by their clientData.
                for &i in &group {
                    chunk[i].failed = true;
                    ex.tally.body.counts.awaiting_confirmation += 1;
                }
                tracing::warn!(
                    sent = group.len(),
                    got = created.len(),
                    "batch create answered a different count: adopting on the next run"
                );
            }
            Err(e) if e.kind == ErrorKind::Auth => return Err(ex.google_err(e)),
            Err(e) if e.kind == ErrorKind::Indeterminate => {
                // Maybe applied: the pending links stay; the next run adopts or re-creates.
                tracing::warn!(error = %e, "create outcome unknown: will adopt or retry on a later run");
                for &i in &group {
                    chunk[i].failed = true;
                    ex.tally.body.counts.awaiting_confirmation += 1;
                }
            }
            Err(e) => {
                // Refused outright (an undecodable success aside): certainly not created.
                let certain = e.kind != ErrorKind::Decode;
                for &i in &group {
                    ex.fail(
                        &mut chunk[i],
                        format!("creating the Google contact failed: {e}"),
                        false,
                    );
                    if certain {
                        refused.extend(chunk[i].link_id);
                    }
                }
            }
        }
    }
    if !refused.is_empty() {
        ex.ctx
            .store
            .write_async(move |c| sync_state::clear_pending_since(c, &refused))
            .await?;
    }
    if applied {
        ex.ctx
            .crash_point(CrashPoint::AfterRemoteWriteBeforeLocalCommit)?;
    }
    Ok(())
}

/// Field updates of existing Google contacts (one batch), with one re-read and re-plan for
/// contacts changed in Google meanwhile (stale etag).
pub(super) async fn google_updates(
    ex: &mut Executor<'_, Contacts>,
    chunk: &mut [Item<Contacts>],
) -> Result<(), SyncError> {
    for attempt in 0..2 {
        let idx: Vec<usize> = (0..chunk.len())
            .filter(|&i| {
                let p = &chunk[i];
                !p.failed
                    && !p.plan.google.create
                    && !p.plan.google.update.is_empty()
                    && p.written.is_none()
            })
            .collect();
        if idx.is_empty() {
            return Ok(());
        }
        // The base of the write (etag, unmapped fields): the contact as this run listed it,
        // else (first attempt) as kept with the link, else as read now. A kept one that is no
        // longer current is refused as stale and read in the second round.
        let mut fetched: HashMap<String, Person> = HashMap::new();
        if attempt == 0 {
            fetched.extend(
                idx.iter()
                    .filter(|&&i| chunk[i].remote.is_none())
                    .filter_map(|&i| kept_base(&chunk[i])),
            );
        }
        let missing: Vec<String> = idx
            .iter()
            .filter(|&&i| chunk[i].remote.is_none())
            .filter_map(|&i| chunk[i].google_id())
            .filter(|g| !fetched.contains_key(g))
            .collect();
        tracing::debug!(
            kept = fetched.len(),
            read = missing.len(),
            attempt,
            "bases of contact updates"
        );
        fetched.extend(ex.fetch(&missing).await?);
        for &i in &idx {
            if chunk[i].remote.is_some() {
                continue;
            }
            match chunk[i].google_id().and_then(|g| fetched.get(&g).cloned()) {
                Some(person) => {
                    // Changed since we planned (or a retry after a stale etag): re-plan.
                    let base = chunk[i]
                        .link
                        .as_ref()
                        .map(|l| l.snapshot.clone())
                        .unwrap_or_default();
                    let changed = attempt > 0
                        || ex
                            .kind
                            .google_state(&person, &chunk[i].extra, true)
                            .and_then(|s| s.fields)
                            .is_none_or(|f| !fields::same(&f, &base));
                    let seen = ex.kind.google_state(&person, &chunk[i].extra, true);
                    chunk[i].remote = Some(person);
                    if changed {
                        let google = seen.map(GoogleObs::Seen).unwrap_or(GoogleObs::Missing);
                        ex.replan(&mut chunk[i], google);
                    }
                }
                None => {
                    chunk[i].remote = None;
                    ex.replan(&mut chunk[i], GoogleObs::Missing);
                }
            }
        }
        let idx: Vec<usize> = idx
            .into_iter()
            .filter(|&i| {
                let p = &chunk[i];
                !p.failed && !p.plan.google.update.is_empty() && p.remote.is_some()
            })
            .collect();
        if idx.is_empty() {
            return Ok(());
        }
        let changed: Vec<String> = idx
            .iter()
            .flat_map(|&i| chunk[i].plan.google.update.clone())
            .collect();
        let mask = contact_wire::update_mask(&changed);
        let persons: Vec<Person> = idx
            .iter()
            .map(|&i| {
                contact_wire::person_for_write(
                    &chunk[i].plan.google.target,
                    chunk[i].remote.as_ref(),
                )
            })
            .collect();
        let outcome = match ex.kind.people.batch_update(persons, &mask).await {
            Ok(o) => o,
            Err(e) if e.kind == ErrorKind::Auth => return Err(ex.google_err(e)),
            Err(e) => {
                for &i in &idx {
                    ex.fail(
                        &mut chunk[i],
                        format!("updating the Google contact failed: {e}"),
                        false,
                    );
                }
                return Ok(());
            }
        };
        let updated: HashMap<String, Person> = outcome
            .updated
            .into_iter()
            .filter_map(|p| p.resource_name.clone().map(|n| (n, p)))
            .collect();
        let failed: HashMap<String, GoogleError> = outcome
            .failed
            .into_iter()
            .map(|f| (f.resource_name, f.error))
            .collect();
        ex.ctx
            .crash_point(CrashPoint::AfterRemoteWriteBeforeLocalCommit)?;
        let mut stale = false;
        for &i in &idx {
            let Some(name) = chunk[i].google_id() else {
                continue;
            };
            if let Some(p) = updated.get(&name) {
                chunk[i].written = Some(p.clone());
            } else if let Some(e) = failed.get(&name) {
                match e.kind {
                    ErrorKind::PreconditionFailed if attempt == 0 => {
                        // Changed in Google since we read it: re-read, re-plan, retry.
                        chunk[i].remote = None;
                        stale = true;
                    }
                    ErrorKind::NotFound => {
                        chunk[i].remote = None;
                        ex.replan(&mut chunk[i], GoogleObs::Missing);
                    }
                    _ => ex.fail(
                        &mut chunk[i],
                        format!("updating the Google contact failed: {e}"),
                        false,
                    ),
                }
            }
        }
        if !stale {
            return Ok(());
        }
        // The stale ones are read again and re-planned in the next round.
    }
    Ok(())
}

/// The Google contact kept with an item's link, when it is the version the link's etag names
/// (its Google id and the person's).
fn kept_base(item: &Item<Contacts>) -> Option<(String, Person)> {
    let link = item.link.as_ref()?;
    let google_id = item
        .google_id()
        .filter(|g| link.google_id.as_ref() == Some(g))?;
    let person = contact_wire::parse_kept_person(link.google_record.as_deref()?)?;
    let current = link.etag.is_some()
        && person.etag == link.etag
        && person.resource_name.as_ref() == Some(&google_id);
    current.then_some((google_id, person))
}

/// Group membership: joins and leaves in one `members:modify` (the connector splits calls at
/// 1000 changes). A contact Google will not remove from its last group is kept in "My
/// Contacts" first: never deleted.
pub(super) async fn google_membership(
    ex: &mut Executor<'_, Contacts>,
    work: &mut [Item<Contacts>],
) -> Result<(), SyncError> {
    let members = |scope: ScopeOp| -> Vec<String> {
        work.iter()
            .filter(|p| !p.failed && p.plan.google.scope == scope)
            .filter_map(|p| p.google_id())
            .collect()
    };
    let (add, remove) = (members(ScopeOp::Join), members(ScopeOp::Leave));
    if add.is_empty() && remove.is_empty() {
        return Ok(());
    }
    let people = ex.kind.people.clone();
    let mut group = ex.kind.group()?.0.to_string();
    let outcome = match people.modify_members(&group, &add, &remove).await {
        Ok(o) => o,
        // The group is gone: found or re-created (linked contacts put back), then once more.
        Err(e) if e.kind == ErrorKind::NotFound && super::confirm_group(ex).await? => {
            group = ex.kind.group()?.0.to_string();
            people
                .modify_members(&group, &add, &remove)
                .await
                .map_err(|e| ex.google_err(e))?
        }
        Err(e) => return Err(ex.google_err(e)),
    };
    if !outcome.cannot_remove_last.is_empty() {
        let last = &outcome.cannot_remove_last;
        people
            .modify_members(MY_CONTACTS, last, &[])
            .await
            .map_err(|e| ex.google_err(e))?;
        people
            .modify_members(&group, &[], last)
            .await
            .map_err(|e| ex.google_err(e))?;
    }
    ex.ctx
        .crash_point(CrashPoint::AfterRemoteWriteBeforeLocalCommit)?;
    let not_found: HashSet<String> = outcome.not_found.into_iter().collect();
    for p in work.iter_mut() {
        if p.failed || p.plan.google.scope != ScopeOp::Join {
            continue;
        }
        if p.google_id().is_some_and(|g| not_found.contains(&g)) {
            p.remote = None;
            ex.replan(p, GoogleObs::Missing);
            p.failed = true;
        }
    }
    Ok(())
}
