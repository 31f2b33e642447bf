//! Recurring series after a listing (SPEC section 4). A whole-series change in Google (moved,
//! re-timed, another rule, shortened, split "this and following", turned into a single event)
//! makes instances vanish that Google's listings do not report, so after the listing every
//! series the listing showed changed, and that has linked instances, is read again with
//! `events.instances` over the run's window (stretched to the linked instances' occurrences)
//! and reconciled:
//!
//! - a linked instance the series no longer has (`crmsync_engine::series::vanished`) is planned
//!   as gone: the link ends through the mass-untag guard, the activity stays with
//!   `display_in_calendar` cleared (delete-as-untag), the snapshot goes to the journal. After a
//!   full listing each is read back first, as any link a full listing did not show;
//! - an instance Google returns that this run did not list goes through ordinary planning:
//!   a new one is imported once (inside the window), a linked one is compared with its
//!   snapshot.
//!
//! Instances keep their ids only as long as their original start is an occurrence of the
//! series: a moved or re-timed series has new instances with new ids (imported), and the old
//! ones vanish (hidden), never two calendar activities for one occurrence. An instance moved on
//! its own (an exception) keeps its id and is updated in place. A linked single event made
//! recurring in Google hands its link to the instance at its own time (in `plan_listed`); when
//! no instance is at that time its link, now the series' id, is gone like a vanished instance.

use super::{Activities, CALENDAR, KIND};
use crate::sync::error::SyncError;
use crate::sync::executor::Executor;
use chrono::{DateTime, Utc};
use crmsync_connectors::{ErrorKind, Event};
use crmsync_engine::activity_map as map;
use crmsync_engine::model::ActivityTime;
use crmsync_engine::planner::LinkState;
use crmsync_engine::series::{self, LinkedInstance};
use crmsync_engine::time;
use crmsync_schema::sync_state::{self, Link};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// What the listing showed of recurring series (echoes of our own writes included).
#[derive(Debug, Default)]
pub(super) struct Seen {
    /// Series (ids of recurring events) an instance of which was listed.
    series: BTreeSet<String>,
    /// Listed events that are not instances: one of them may be a former series turned into a
    /// single event, whose old instances are linked under its id.
    plain: BTreeSet<String>,
}

impl Seen {
    /// Notes a listed event.
    pub fn note(&mut self, id: &str, recurring_event_id: Option<&str>) {
        match series::series_of(id, recurring_event_id) {
            Some(s) => self.series.insert(s.to_string()),
            None => self.plain.insert(id.to_string()),
        };
    }
}

/// Reads again every series the listing showed changed that has linked instances, and
/// reconciles its links against what Google returns.
pub(super) async fn after_listing(
    ex: &mut Executor<'_, Activities>,
    full: bool,
) -> Result<(), SyncError> {
    let seen = std::mem::take(&mut ex.kind.series);
    if seen.series.is_empty() && seen.plain.is_empty() {
        return Ok(());
    }
    let uid = ex.uid();
    let series_ids: Vec<String> = seen.series.iter().cloned().collect();
    let (instances, singles) = ex
        .ctx
        .store
        .read_async(move |c| {
            Ok((
                sync_state::links_with_google_id_containing(c, uid, KIND, LinkState::Active, "_")?,
                // Linked single events that became these series.
                sync_state::links_by_google_ids(c, uid, KIND, &series_ids)?,
            ))
        })
        .await?;
    let (instances, singles) = (ex.seen_links(instances), ex.seen_links(singles));
    // Linked instances by series (ids compared without regard to case).
    let mut by_series: BTreeMap<String, Vec<Link>> = BTreeMap::new();
    for l in instances {
        let key = l
            .google_id
            .as_deref()
            .and_then(series::parse_instance_id)
            .map(|i| i.series.to_ascii_lowercase());
        if let Some(key) = key {
            by_series.entry(key).or_default().push(l);
        }
    }
    for l in singles.into_iter().filter(|l| l.state == LinkState::Active) {
        if let Some(key) = l.google_id.as_deref().map(str::to_ascii_lowercase) {
            by_series.entry(key).or_default().push(l);
        }
    }
    let mut todo: BTreeMap<String, String> = BTreeMap::new();
    for s in seen.series.into_iter().chain(seen.plain) {
        let key = s.to_ascii_lowercase();
        if by_series.contains_key(&key) {
            todo.entry(key).or_insert(s);
        }
    }
    for (key, series_id) in todo {
        let links = by_series.remove(&key).unwrap_or_default();
        reconcile_series(ex, &series_id, links, full).await?;
    }
    Ok(())
}

/// Where a snapshot's occurrence was (all-day dates as UTC midnights, as the listing window
/// treats them).
fn occurrence(l: &Link) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    match map::when_of(&l.snapshot)? {
        ActivityTime::Timed { start, end } => Some((start, end)),
        ActivityTime::AllDay { start, end } => Some((
            time::start_of_day(start, chrono_tz::UTC),
            time::start_of_day(end, chrono_tz::UTC),
        )),
    }
}

/// Whether an event overlaps the run's window (unknown times: yes).
fn in_window(e: &Event, (from, until): (DateTime<Utc>, DateTime<Utc>)) -> bool {
    let instant = |t: Option<&crmsync_connectors::calendar3::api::EventDateTime>| {
        let t = t?;
        t.date_time
            .or_else(|| t.date.map(|d| time::start_of_day(d, chrono_tz::UTC)))
    };
    match (instant(e.start.as_ref()), instant(e.end.as_ref())) {
        (Some(start), Some(end)) => end > from && start < until,
        _ => true,
    }
}

/// Reads the instances of `series_id` and reconciles its linked instances `links` with them.
async fn reconcile_series(
    ex: &mut Executor<'_, Activities>,
    series_id: &str,
    links: Vec<Link>,
    full: bool,
) -> Result<(), SyncError> {
    let window = ex.kind.window;
    let linked: Vec<LinkedInstance<'_>> = links
        .iter()
        .filter_map(|l| {
            Some(LinkedInstance {
                google_id: l.google_id.as_deref()?,
                occurrence: occurrence(l),
                settled: ex.handled.contains(&l.crm_id),
            })
        })
        .collect();
    let (min, max) = series::read_range(window, &linked);
    let mut returned: Vec<Event> = Vec::new();
    let mut page_token: Option<String> = None;
    loop {
        let page = match ex
            .kind
            .calendar
            .list_instances(CALENDAR, series_id, min, max, page_token.as_deref())
            .await
        {
            Ok(p) => p,
            Err(e) if e.kind == ErrorKind::Auth => return Err(ex.google_err(e)),
            Err(e) => {
                // This series waits for the next run (the sync token is held back); the
                // others go on. Not parked: a series is not a record to retry by id.
                let message =
                    format!("reading the instances of recurring event {series_id} failed: {e}");
                ex.tally.item_error(None, None, None, message, true);
                return Ok(());
            }
        };
        // No such event any more: the series has no instances.
        let Some(page) = page else { break };
        returned.extend(page.events);
        match page.next_page_token {
            Some(t) => page_token = Some(t),
            None => break,
        }
    }
    // The spelling the links recorded (Google may write an instance stamp in either case).
    for e in &mut returned {
        if let Some(id) = &e.id {
            if let Some(g) = linked
                .iter()
                .find(|l| series::same_id(l.google_id, id) && l.google_id != id)
            {
                e.id = Some(g.google_id.to_string());
            }
        }
    }
    let returned_ids: Vec<&str> = returned.iter().filter_map(|e| e.id.as_deref()).collect();
    let gone: HashSet<String> = series::vanished(series_id, min, max, &returned_ids, &linked)
        .into_iter()
        .map(str::to_string)
        .collect();
    let linked_ids: HashSet<String> = linked.iter().map(|l| l.google_id.to_string()).collect();
    drop(linked);
    if !gone.is_empty() {
        tracing::info!(
            series = series_id,
            gone = gone.len(),
            "instances of a recurring series no longer exist: they leave the calendar"
        );
    }
    // Instances this run did not list: planned like listed ones (new ones are imported, inside
    // the window only).
    let unlisted: Vec<Event> = returned
        .into_iter()
        .filter(|e| {
            e.id.as_ref().is_some_and(|id| {
                !ex.listed.contains(id) && (linked_ids.contains(id) || in_window(e, window))
            })
        })
        .collect();
    ex.google_pass(unlisted).await?;
    let (former_single, gone_instances): (Vec<Link>, Vec<Link>) = links
        .into_iter()
        .filter(|l| l.google_id.as_ref().is_some_and(|g| gone.contains(g)))
        .partition(|l| {
            l.google_id
                .as_deref()
                .is_some_and(|g| series::same_id(g, series_id))
        });
    // A vanished instance is read back after a full listing (as any link it did not show); a
    // single event that became this series is not (Google would answer the series).
    ex.reconcile_gone(gone_instances, full).await?;
    ex.reconcile_gone(former_single, false).await
}
