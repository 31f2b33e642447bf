//! The Google writes of activities: inserts under deterministic event ids after their intents
//! are committed (a 409 means the event exists: read and adopted, or restored when it was
//! cancelled), and patches, full updates (a switch between timed and all-day) and cancellations,
//! concurrently up to the configured limit (the client's rate limiter keeps them under the
//! per-user quota).

use super::{Activities, CALENDAR};
use crate::sync::crash::CrashPoint;
use crate::sync::driver::Kind;
use crate::sync::error::SyncError;
use crate::sync::executor::{Executor, Item};
use crmsync_connectors::event_wire;
use crmsync_connectors::{ErrorKind, Event, GoogleError, InsertOutcome};
use crmsync_engine::activity_map as map;
use crmsync_engine::fields;
use crmsync_engine::ids::GoogleId;
use crmsync_engine::model::ActivityStatus;
use crmsync_engine::planner::{self, GoogleObs, LinkRecord, LinkState, Rule, ScopeOp};
use futures::stream::{self, StreamExt};

/// Inserts with deterministic ids, after committing their intents; a 409 is read and adopted
/// (or, for an event cancelled earlier, restored).
pub(super) async fn google_inserts(
    ex: &mut Executor<'_, Activities>,
    work: &mut [Item<Activities>],
) -> Result<(), SyncError> {
    let creates = ex.begin_creates(work).await?;
    if creates.is_empty() {
        return Ok(());
    }
    let cal = ex.kind.cal.clone();
    let calendar = ex.kind.calendar.clone();
    let jobs: Vec<(usize, Event)> = creates
        .iter()
        .filter_map(|&(i, _)| {
            let p = &work[i];
            let a = p.crm.as_ref()?;
            Some((
                i,
                event_wire::event_for_insert(a.id, &p.plan.google.target, &p.extra, &cal),
            ))
        })
        .collect();
    let results: Vec<(usize, Result<InsertOutcome, GoogleError>)> = stream::iter(jobs)
        .map(|(i, ev)| {
            let calendar = calendar.clone();
            async move { (i, calendar.insert_event(CALENDAR, ev).await) }
        })
        .buffer_unordered(ex.ctx.config.calendar_concurrency.max(1))
        .collect()
        .await;
    for (i, r) in results {
        match r {
            Ok(InsertOutcome::Created(e)) => work[i].written = Some(*e),
            Ok(InsertOutcome::AlreadyExists { id }) => {
                adopt_existing(ex, &mut work[i], &id).await?
            }
            Err(e) if e.kind == ErrorKind::Auth => return Err(ex.google_err(e)),
            Err(e) => ex.fail(
                &mut work[i],
                format!("creating the calendar event failed: {e}"),
                false,
            ),
        }
    }
    ex.ctx
        .crash_point(CrashPoint::AfterRemoteWriteBeforeLocalCommit)?;
    Ok(())
}

/// A 409 on insert: the event exists (an earlier insert whose answer was lost, or an event
/// this run cancelled before). Read it and carry on from what Google holds.
pub(super) async fn adopt_existing(
    ex: &mut Executor<'_, Activities>,
    p: &mut Item<Activities>,
    id: &str,
) -> Result<(), SyncError> {
    let existing = ex
        .kind
        .calendar
        .get_event(CALENDAR, id)
        .await
        .map_err(|e| ex.google_err(e))?;
    let Some(e) = existing else {
        ex.fail(
            p,
            format!("Google reports event {id} exists but it cannot be read"),
            false,
        );
        return Ok(());
    };
    if !event_wire::event_is_organized_by_owner(&e, &ex.kind.cal) {
        ex.fail(p, format!("event {id} exists in the calendar but another user organizes it; change the activity's organizer or remove the copy"), false);
        return Ok(());
    }
    if e.status.as_deref() == Some("cancelled") {
        // Restore it with the activity's fields: a patch, or a full update when the event
        // switches between timed and all-day (a patch cannot clear `dateTime`/`date`).
        let status = map::show_as(
            p.crm
                .as_ref()
                .map(|a| a.data.status)
                .unwrap_or(ActivityStatus::Planned),
        )
        .to_string();
        let current = event_wire::event_fields(&e, &p.extra, &ex.kind.cal);
        let result = if map::switches_all_day(&current, &p.plan.google.target) {
            let mut event =
                event_wire::event_update(&p.plan.google.target, &e, &p.extra, &ex.kind.cal);
            event.status = Some(status);
            ex.kind.calendar.update_event(CALENDAR, id, event).await
        } else {
            let names: Vec<String> = p.plan.google.target.keys().cloned().collect();
            let mut patch = event_wire::event_patch(
                &p.plan.google.target,
                &names,
                Some(&e),
                &p.extra,
                &ex.kind.cal,
            );
            patch.status = Some(status);
            ex.kind.calendar.patch_event(CALENDAR, id, patch).await
        };
        match result {
            Ok(written) => p.written = Some(written),
            Err(err) => {
                ex.fail(
                    p,
                    format!("restoring the cancelled calendar event failed: {err}"),
                    false,
                );
            }
        }
        return Ok(());
    }
    // Our own earlier insert: merge against what we sent (the pending snapshot).
    let dir = p.extra.clone();
    let Some(gs) = ex.kind.google_state(&e, &dir, true) else {
        return Ok(());
    };
    let (Some(link_id), Some(crm_id)) = (p.link_id, p.crm_id()) else {
        return Err(SyncError::Invariant(
            "an insert was adopted without its intent or its CRM record",
        ));
    };
    let link = LinkRecord {
        id: link_id,
        crm_id,
        google_id: Some(GoogleId::new(id)),
        state: LinkState::Pending,
        snapshot: p.plan.google.target.clone(),
        pending_since: None,
    };
    let item = planner::Item {
        link: Some(link),
        crm: p.crm.as_ref().map(|a| ex.kind.crm_state(a, true)),
        google: GoogleObs::Seen(gs),
        paired: None,
    };
    p.plan = planner::plan_item(&item, &ex.ctx.config.activities_policy, ex.ctx.now());
    p.plan.rule = Rule::AdoptByMarker;
    p.remote = Some(e);
    Ok(())
}

/// Patches, full updates and cancellations, concurrently up to the configured limit (the
/// client's rate limiter keeps them under the per-user quota). Each write is conditional on the
/// etag the plan was made from (the event read in this run, else the one last synced): an edit
/// made in Google since then is not overwritten; the event is read again, the item re-planned
/// (merging both edits, the loser journaled) and written once more.
pub(super) async fn google_writes(
    ex: &mut Executor<'_, Activities>,
    work: &mut [Item<Activities>],
) -> Result<(), SyncError> {
    let mut wrote = false;
    for attempt in 0..2 {
        let (any, stale) = write_round(ex, work, attempt == 0).await?;
        wrote |= any;
        if stale.is_empty() {
            break;
        }
        for i in stale {
            let Some(id) = work[i].google_id() else {
                continue;
            };
            let current = ex
                .kind
                .calendar
                .get_event(CALENDAR, &id)
                .await
                .map_err(|e| ex.google_err(e))?;
            let (google, remote) = ex.observe(current.as_ref(), &work[i].extra);
            work[i].remote = remote;
            tracing::info!(event = %id, "the event changed in Google since the plan: re-planned against it");
            ex.replan(&mut work[i], google);
        }
    }
    if wrote {
        ex.ctx
            .crash_point(CrashPoint::AfterRemoteWriteBeforeLocalCommit)?;
    }
    Ok(())
}

/// The etag a write is conditional on: the event as read in this run, else as last synced.
fn base_etag(p: &Item<Activities>) -> Option<String> {
    p.remote
        .as_ref()
        .and_then(|e| e.etag.clone())
        .or_else(|| p.link.as_ref().and_then(|l| l.etag.clone()))
}

/// One round of writes. Returns whether any write was sent, and the items Google refused as
/// changed since their plan (when `may_retry`; otherwise those fail and the next run retries).
async fn write_round(
    ex: &mut Executor<'_, Activities>,
    work: &mut [Item<Activities>],
    may_retry: bool,
) -> Result<(bool, Vec<usize>), SyncError> {
    enum Op {
        Patch(Box<Event>),
        /// A full update built on the current event (an all-day <-> timed switch); the
        /// body is built once the current event is known.
        Replace(Option<Box<Event>>),
        Cancel,
    }
    let cal = ex.kind.cal.clone();
    let mut jobs: Vec<(usize, String, Op)> = Vec::new();
    for (i, p) in work.iter().enumerate() {
        if p.failed || p.written.is_some() {
            continue;
        }
        let Some(id) = p.google_id() else { continue };
        let g = &p.plan.google;
        if g.scope == ScopeOp::Leave {
            jobs.push((i, id, Op::Cancel));
        } else if !g.update.is_empty() || g.scope == ScopeOp::Join {
            // What Google holds: the event read in this run, else the last synced snapshot.
            let base_fields = p
                .remote
                .as_ref()
                .and_then(|e| ex.kind.google_state(e, &p.extra, true))
                .and_then(|s| s.fields)
                .or_else(|| p.link.as_ref().map(|l| l.snapshot.clone()));
            if base_fields
                .as_ref()
                .is_some_and(|b| map::switches_all_day(b, &g.target))
            {
                // A patch cannot clear `dateTime`/`date`: replace the whole event.
                jobs.push((i, id, Op::Replace(None)));
                continue;
            }
            let mut patch =
                event_wire::event_patch(&g.target, &g.update, p.remote.as_ref(), &p.extra, &cal);
            if g.scope == ScopeOp::Join {
                patch.status = Some(
                    fields::get(&g.target, "show_as")
                        .as_str()
                        .unwrap_or("confirmed")
                        .to_string(),
                );
            }
            jobs.push((i, id, Op::Patch(Box::new(patch))));
        }
    }
    // Attendee changes need the current attendee list (unmatched attendees are kept), and a
    // full update needs the current event to build on.
    for (i, id, op) in jobs.iter_mut() {
        if let Op::Replace(body) = op {
            if work[*i].remote.is_none() {
                work[*i].remote = ex
                    .kind
                    .calendar
                    .get_event(CALENDAR, id)
                    .await
                    .map_err(|e| ex.google_err(e))?;
            }
            let p = &work[*i];
            *body = p.remote.as_ref().map(|base| {
                Box::new(event_wire::event_update(
                    &p.plan.google.target,
                    base,
                    &p.extra,
                    &cal,
                ))
            });
        }
        if let Op::Patch(patch) = op {
            if patch.attendees.is_some() && work[*i].remote.is_none() {
                let current = ex
                    .kind
                    .calendar
                    .get_event(CALENDAR, id)
                    .await
                    .map_err(|e| ex.google_err(e))?;
                if let Some(e) = current {
                    let p = &work[*i];
                    **patch = event_wire::event_patch(
                        &p.plan.google.target,
                        &p.plan.google.update,
                        Some(&e),
                        &p.extra,
                        &cal,
                    );
                    work[*i].remote = Some(e);
                }
            }
        }
    }
    if jobs.is_empty() {
        return Ok((false, Vec::new()));
    }
    let calendar = ex.kind.calendar.clone();
    let jobs: Vec<(usize, String, Op, Option<String>)> = jobs
        .into_iter()
        .map(|(i, id, op)| {
            let etag = base_etag(&work[i]);
            (i, id, op, etag)
        })
        .collect();
    let results: Vec<(usize, Result<Option<Event>, GoogleError>)> = stream::iter(jobs)
        .map(|(i, id, op, etag)| {
            let calendar = calendar.clone();
            async move {
                let id = id.as_str();
                let r = match (op, etag.as_deref()) {
                    (Op::Patch(patch), Some(etag)) => calendar
                        .patch_event_if_match(CALENDAR, id, *patch, etag)
                        .await
                        .map(Some),
                    (Op::Patch(patch), None) => {
                        calendar.patch_event(CALENDAR, id, *patch).await.map(Some)
                    }
                    (Op::Replace(Some(event)), Some(etag)) => calendar
                        .update_event_if_match(CALENDAR, id, *event, etag)
                        .await
                        .map(Some),
                    (Op::Replace(Some(event)), None) => {
                        calendar.update_event(CALENDAR, id, *event).await.map(Some)
                    }
                    (Op::Replace(None), _) => Err(GoogleError::local(
                        ErrorKind::NotFound,
                        "calendar.events.update",
                        "the event to switch between all-day and timed no longer exists",
                    )),
                    (Op::Cancel, Some(etag)) => calendar
                        .delete_event_if_match(CALENDAR, id, etag)
                        .await
                        .map(|_| None),
                    (Op::Cancel, None) => calendar.delete_event(CALENDAR, id).await.map(|_| None),
                };
                (i, r)
            }
        })
        .buffer_unordered(ex.ctx.config.calendar_concurrency.max(1))
        .collect()
        .await;
    let mut stale = Vec::new();
    for (i, r) in results {
        match r {
            Ok(Some(e)) => work[i].written = Some(e),
            Ok(None) => {}
            Err(e) if e.kind == ErrorKind::Auth => return Err(ex.google_err(e)),
            Err(e) if e.kind == ErrorKind::PreconditionFailed && may_retry => stale.push(i),
            Err(e) if e.kind == ErrorKind::NotFound || e.kind == ErrorKind::Gone => {
                // Gone meanwhile: treated as deleted in Google on the next run.
                ex.fail(
                    &mut work[i],
                    format!("the calendar event is gone: {e}"),
                    true,
                );
            }
            Err(e) => ex.fail(
                &mut work[i],
                format!("writing the calendar event failed: {e}"),
                false,
            ),
        }
    }
    Ok((true, stale))
}
