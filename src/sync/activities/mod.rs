//! Activities sync: CRM activities shown in the calendar <-> events of the organizer's primary
//! Google Calendar. SPEC section 4.
//!
//! - CRM -> Google: activities the user organizes (or takes over by the organizer rule), shown
//!   in the calendar, not cancelled, starting on or after `synchronize_from`, are written with
//!   the organizer's access under a deterministic event id (`hex(activity uuid)`), so a retried
//!   insert can never duplicate (a 409 means "already there": it is read and adopted). Updates
//!   patch only mapped fields; attendees the CRM does not know and everything unmapped survive.
//! - Google -> CRM: events the user organizes (optionally only titles with a trigger word) are
//!   imported; attendees become participants when they match a CRM user or contact.
//! - Deletes: a cancelled event clears `display_in_calendar` (the activity stays); a deleted,
//!   hidden or cancelled activity cancels its event. Writes use `sendUpdates=none` unless
//!   configured.
//! - Listing: `singleEvents=true` inside [`synchronize_from`, now + horizon] on a full listing,
//!   the same parameters (minus the window) with the sync token; 410 `fullSyncRequired` leads to a
//!   full listing reconciled against the links.
//! - Recurring series: after the listing, every series the listing showed changed is read again
//!   (`events.instances`) and its linked instances reconciled against it (`recurring.rs`): the
//!   instances a whole-series change made vanish leave the calendar, never listed by Google.

use crate::sync::driver::{drive, Kind, ListedPage};
use crate::sync::error::SyncError;
use crate::sync::executor::{known_link, Executor, Item, Observed};
use crate::sync::{RunBody, RunCtx, SyncConfig};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use crmsync_connectors::event_wire;
use crmsync_connectors::{CalendarClient, Event, EventListQuery, GoogleError};
use crmsync_engine::activity_map::{self as map, CalendarContext, Directory, PersonRef};
use crmsync_engine::activity_policy::{self as policy, Admission};
use crmsync_engine::fields::Fields;
use crmsync_engine::guard::RejoinGoogle;
use crmsync_engine::identity::{self, Duplicates, Identity};
use crmsync_engine::ids::{ActivityId, GoogleId, SyncKind, UserId};
use crmsync_engine::model::{
    normalize_email, Activity, ActivityData, ActivityStatus, ActivityTime,
};
use crmsync_engine::planner::{
    self, CrmState, GoogleObs, GoogleState, LinkAction, LinkState, PlanPolicy, Presence, ScopeOp,
};
use crmsync_engine::series;
use crmsync_engine::time;
use crmsync_schema::changes::Origin;
use crmsync_schema::sync_state::{self, Cursor, JournalEntry, Link};
use crmsync_schema::{activities as activity_store, settings, AnyConnection, StoreResult};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

mod recurring;
mod writes;

const KIND: SyncKind = SyncKind::Activities;
const CALENDAR: &str = "primary";

/// The activities side of a run: the organizer's calendar and the user's settings.
pub(crate) struct Activities {
    user: UserId,
    calendar: CalendarClient,
    cal: CalendarContext,
    synchronize_from: Option<NaiveDate>,
    trigger_words: Vec<String>,
    /// Whether each CRM user has activity sync set up (for the organizer rule).
    has_sync: HashMap<UserId, bool>,
    /// Full-listing window, to tell "not listed" from "outside the window".
    window: (DateTime<Utc>, DateTime<Utc>),
    /// The listing parameters (the window applies to full listings only).
    query: EventListQuery,
    /// The parameters a sync token belongs to (stored with it).
    params: String,
    /// What the listing showed of recurring series, to read them again after it.
    series: recurring::Seen,
}

/// The listing parameters a sync token belongs to; a change forces a full listing.
fn token_params(from: Option<NaiveDate>, horizon_days: i64) -> String {
    json!({"v": 1, "single_events": true, "synchronize_from": from, "horizon_days": horizon_days})
        .to_string()
}

/// The first instant of `synchronize_from` in the user's zone (the engine's one rule: local
/// midnight, or the end of a DST gap that skips it). A zone chrono-tz does not know (the API
/// refuses those, so only a damaged row has one) counts as UTC, and says so in the log.
fn window_start(date: NaiveDate, tz: &str) -> DateTime<Utc> {
    time::start_of_day_in(date, tz).unwrap_or_else(|| {
        tracing::warn!(
            zone = tz,
            "the user's time zone is not an IANA zone: synchronize_from is taken as UTC midnight"
        );
        time::start_of_day(date, chrono_tz::UTC)
    })
}

pub(crate) async fn run(ctx: &RunCtx) -> Result<RunBody, SyncError> {
    let user = ctx.user.clone();
    let uid = user.id;
    let (settings, cursor, crm_high) = ctx
        .store
        .read_async(move |c| {
            Ok((
                settings::get_sync_settings(c, uid, KIND)?,
                sync_state::get_cursor(c, uid, KIND)?,
                crmsync_schema::current_change_seq(c)?,
            ))
        })
        .await?;
    let cursor = ctx.start_cursor(cursor);
    let settings = settings.ok_or_else(|| {
        SyncError::NotConfigured(format!(
            "{} has no activities sync settings: set them with PUT /api/v1/users/{}/sync-settings/activities",
            user.email, uid
        ))
    })?;
    let now = ctx.now();
    let from = settings
        .synchronize_from
        .map(|d| window_start(d, &user.time_zone))
        .unwrap_or_else(|| now - Duration::days(ctx.config.default_lookback_days));
    let until = now + Duration::days(ctx.config.horizon_days);
    let params = token_params(settings.synchronize_from, ctx.config.horizon_days);
    let mut organizer_emails = vec![
        normalize_email(&user.email),
        normalize_email(&user.google_alias),
    ];
    organizer_emails.dedup();
    let kind = Activities {
        user: uid,
        calendar: ctx.account.calendar().clone(),
        cal: CalendarContext {
            organizer_emails,
            default_time_zone: user.time_zone.clone(),
        },
        synchronize_from: settings.synchronize_from,
        trigger_words: settings.trigger_words.clone(),
        has_sync: HashMap::from([(uid, true)]),
        window: (from, until),
        query: EventListQuery {
            time_min: Some(from),
            time_max: Some(until),
            max_results: Some(ctx.config.calendar_page_size),
            ..EventListQuery::primary()
        },
        params: params.clone(),
        series: recurring::Seen::default(),
    };

    // A token obtained with other listing parameters is not reused.
    let same_params = cursor.google_token_params.as_deref() == Some(params.as_str());
    let token = cursor.google_sync_token.clone().filter(|_| same_params);
    drive(&mut Executor::new(ctx, kind), cursor, token, crm_high).await
}

impl Kind for Activities {
    type Record = Activity;
    type Remote = Event;
    type Extra = Arc<Directory>;
    type Scope = UserId;
    type CommitCtx = (CalendarContext, UserId);
    const KIND: SyncKind = KIND;
    const REMOTE_NOUN: &'static str = "calendar event";
    const REJOIN_GOOGLE: RejoinGoogle = RejoinGoogle::Recreate;

    fn planned_google_id(a: &Activity) -> Option<String> {
        Some(map::event_id(a.id))
    }
    fn policy(config: &SyncConfig) -> &PlanPolicy {
        &config.activities_policy
    }

    fn crm_state(&self, a: &Activity, linked: bool) -> CrmState {
        let presence = policy::activity_presence(
            &a.data,
            a.deleted_at.is_some(),
            self.user,
            self.synchronize_from,
            linked,
        );
        CrmState {
            id: a.id.to_string(),
            fields: map::activity_fields(&a.data, &self.cal),
            modified_at: a.modified_at,
            presence,
        }
    }

    /// Trigger words filter imports only (not linked events).
    fn google_state(&self, e: &Event, dir: &Arc<Directory>, linked: bool) -> Option<GoogleState> {
        let id = GoogleId::new(e.id.clone()?);
        let mut presence = event_wire::event_presence(e, &self.cal);
        if presence == Presence::InScope
            && !linked
            && !policy::matches_trigger_words(
                e.summary.as_deref().unwrap_or(""),
                &self.trigger_words,
            )
        {
            presence = Presence::OutOfScope;
        }
        let fields =
            (presence != Presence::Deleted).then(|| event_wire::event_fields(e, dir, &self.cal));
        Some(GoogleState {
            id,
            fields,
            updated_at: planner::google_time(e.updated),
            presence,
        })
    }

    async fn list(
        &mut self,
        sync_token: Option<&str>,
        page_token: Option<&str>,
    ) -> Result<ListedPage<Event>, GoogleError> {
        let page = self
            .calendar
            .list_events(&self.query, sync_token, page_token)
            .await?;
        if let Some(tz) = page.time_zone.clone().filter(|z| !z.is_empty()) {
            self.cal.default_time_zone = tz;
        }
        Ok(ListedPage {
            items: page.events,
            next_page_token: page.next_page_token,
            next_sync_token: page.next_sync_token,
        })
    }

    async fn read_by_ids(
        &mut self,
        ids: &[String],
    ) -> Vec<(String, Result<Option<Event>, GoogleError>)> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let r = self.calendar.get_event(CALENDAR, id).await;
            out.push((id.clone(), r));
        }
        out
    }

    fn scope(&self) -> UserId {
        self.user
    }

    fn changed_since(
        c: &mut AnyConnection,
        user: &UserId,
        seq: i64,
        limit: usize,
    ) -> StoreResult<Vec<Activity>> {
        sync_state::user_activities_changed_since(c, *user, seq, limit)
    }

    fn records_by_ids(c: &mut AnyConnection, ids: &[String]) -> StoreResult<Vec<Activity>> {
        let ids: Vec<ActivityId> = ids.iter().filter_map(|i| i.parse().ok()).collect();
        activity_store::activities_by_ids(c, &ids)
    }

    async fn context(
        ex: &mut Executor<'_, Self>,
        remotes: &[&Event],
        records: &[&Activity],
        links: &[&Link],
    ) -> Result<Arc<Directory>, SyncError> {
        directory(ex, remotes, records, links).await
    }

    async fn plan_listed(
        ex: &mut Executor<'_, Self>,
        events: Vec<Event>,
    ) -> Result<Vec<Item<Self>>, SyncError> {
        plan_listed(ex, events).await
    }

    async fn after_listing(ex: &mut Executor<'_, Self>, full: bool) -> Result<(), SyncError> {
        recurring::after_listing(ex, full).await
    }

    async fn admit(
        ex: &mut Executor<'_, Self>,
        a: Activity,
    ) -> Result<Option<Activity>, SyncError> {
        let uid = ex.uid();
        let organizer = a.data.organizer_user_id;
        let organizer_syncs = organizer == uid || organizer_syncs(ex, organizer).await?;
        let from = ex.kind.synchronize_from;
        Ok(
            match policy::admit_unlinked(
                &a.data,
                a.deleted_at.is_some(),
                uid,
                organizer_syncs,
                from,
            ) {
                Admission::Skip => None,
                Admission::Own => Some(a),
                Admission::TakeOver => Some(take_over(ex, a).await?),
            },
        )
    }

    /// Whether a full listing should have shown a linked event: when it lies in the window.
    fn expected_in_listing(&self, l: &Link) -> bool {
        let (from, until) = self.window;
        match map::when_of(&l.snapshot) {
            Some(ActivityTime::Timed { start, end }) => end > from && start < until,
            Some(ActivityTime::AllDay { start, end }) => {
                time::start_of_day(end, chrono_tz::UTC) > from
                    && time::start_of_day(start, chrono_tz::UTC) < until
            }
            None => true,
        }
    }

    async fn write_google(
        ex: &mut Executor<'_, Self>,
        work: &mut [Item<Self>],
    ) -> Result<(), SyncError> {
        writes::google_inserts(ex, work).await?;
        writes::google_writes(ex, work).await
    }

    fn commit_ctx(&self) -> (CalendarContext, UserId) {
        (self.cal.clone(), self.user)
    }

    fn locked_change_seq(c: &mut AnyConnection, r: &Activity) -> StoreResult<Option<i64>> {
        activity_store::locked_change_seq(c, r.id)
    }

    fn commit_crm(
        c: &mut AnyConnection,
        uid: UserId,
        (cal, _): &(CalendarContext, UserId),
        p: &Item<Self>,
        origin: Origin,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Activity>> {
        let plan = &p.plan;
        if plan.crm.create {
            let data = map::apply_to_activity(
                &plan.crm.target,
                &new_activity(&plan.crm.target, uid, &cal.default_time_zone),
                &p.extra,
                cal,
            );
            return Ok(Some(activity_store::create_activity(
                c, &data, None, origin, now,
            )?));
        }
        let Some(existing) = p.crm.clone().filter(|a| a.deleted_at.is_none()) else {
            return Ok(p.crm.clone());
        };
        let mut data = existing.data.clone();
        if !plan.crm.update.is_empty() {
            data = map::apply_to_activity(&plan.crm.target, &data, &p.extra, cal);
        }
        match plan.crm.scope {
            ScopeOp::Join => data.display_in_calendar = true,
            ScopeOp::Leave => data.display_in_calendar = false,
            ScopeOp::Keep => {}
        }
        if data == existing.data {
            return Ok(Some(existing));
        }
        Ok(Some(activity_store::update_activity(
            c,
            existing.id,
            &data,
            origin,
            now,
        )?))
    }

    fn cursor_extras(&self, _old: &Cursor) -> (Option<String>, Option<String>) {
        (Some(CALENDAR.to_string()), Some(self.params.clone()))
    }
}

/// The CRM people the attendees of `events` and the participants of `activities` and `links`
/// may be.
async fn directory(
    ex: &Executor<'_, Activities>,
    events: &[&Event],
    activities: &[&Activity],
    links: &[&Link],
) -> Result<Arc<Directory>, SyncError> {
    let mut emails: Vec<String> = events
        .iter()
        .flat_map(|e| event_wire::attendee_emails(e))
        .collect();
    let mut bare: Vec<String> = Vec::new();
    for a in activities {
        for p in &a.data.participants {
            emails.push(normalize_email(&p.email));
            bare.push(normalize_email(&p.email));
        }
    }
    for l in links {
        for e in map::participant_emails(&l.snapshot) {
            bare.push(e.clone());
            emails.push(e);
        }
    }
    emails.sort();
    emails.dedup();
    let (users, contacts) = ex
        .ctx
        .store
        .read_async(move |c| {
            Ok((
                sync_state::users_with_emails(c, &emails)?,
                sync_state::contacts_with_emails(c, &emails)?,
            ))
        })
        .await?;
    let entries = users
        .into_iter()
        .map(|(e, u)| (e, PersonRef::User(u)))
        .chain(
            contacts
                .into_iter()
                .map(|(e, c)| (e, PersonRef::Contact(c))),
        )
        .chain(bare.into_iter().map(|e| (e, PersonRef::Email)));
    Ok(Arc::new(map::directory_from(entries)))
}

/// Matches listed events to links (by id, else by the CRM id they carry) and plans them; an
/// unlinked event carrying the id of a CRM activity not yet handled is our own insert whose
/// answer was lost: adopted.
async fn plan_listed(
    ex: &mut Executor<'_, Activities>,
    events: Vec<Event>,
) -> Result<Vec<Item<Activities>>, SyncError> {
    let events: Vec<Event> = events.into_iter().filter(|e| e.id.is_some()).collect();
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let uid = ex.uid();
    let ids: Vec<String> = events.iter().filter_map(|e| e.id.clone()).collect();
    let markers: Vec<String> = events
        .iter()
        .filter_map(event_wire::event_crm_marker)
        .collect();
    let (by_google, by_crm) = ex
        .ctx
        .store
        .read_async(move |c| {
            Ok((
                sync_state::links_by_google_ids(c, uid, KIND, &ids)?,
                sync_state::links_by_crm_ids(c, uid, KIND, &markers)?,
            ))
        })
        .await?;
    let by_google: HashMap<String, Link> = ex
        .seen_links(by_google)
        .into_iter()
        .filter_map(|l| l.google_id.clone().map(|g| (g, l)))
        .collect();
    let by_crm: HashMap<String, Link> = ex
        .seen_links(by_crm)
        .into_iter()
        .map(|l| (l.crm_id.clone(), l))
        .collect();
    let mut items: Vec<(Event, Option<Link>)> = Vec::new();
    // Instances that took over the link of the single event they continue.
    let mut continued: HashSet<String> = HashSet::new();
    for e in events {
        let Some(id) = e.id.clone() else { continue };
        let found = by_google.get(&id);
        // Anything of a recurring series the listing shows has the series read again after the
        // listing, the echo of our own write too: a run that crashed after writing left its
        // reconciliation undone, and the next listing shows only the echoes.
        ex.kind.series.note(&id, e.recurring_event_id.as_deref());
        let by_marker = event_wire::event_crm_marker(&e).and_then(|m| by_crm.get(&m));
        let deleted = e.status.as_deref() == Some("cancelled");
        // A linked single event made recurring in Google (its instances carry its CRM id): the
        // instance at its time takes its link over, so the activity stays the same one.
        if let Some(l) = by_marker.filter(|l| {
            found.is_none()
                && l.state == LinkState::Active
                && l.google_id.as_deref().is_some_and(|g| {
                    series::continues_single_event(
                        g,
                        original_start(&l.snapshot),
                        &id,
                        e.recurring_event_id.as_deref(),
                    )
                })
        }) {
            let mut l = l.clone();
            l.google_id = Some(id.clone());
            continued.insert(id);
            items.push((e, Some(l)));
            continue;
        }
        let link = match identity::resolve(
            &id,
            deleted,
            found.map(known_link),
            by_marker.map(known_link),
            Duplicates::NotOurs,
        ) {
            Identity::ByGoogleId => found.cloned(),
            Identity::ByMarker => by_marker.cloned().map(|mut l| {
                l.google_id = Some(id.clone());
                l
            }),
            Identity::Duplicate | Identity::Unlinked => None,
        };
        items.push((e, link));
    }
    // CRM records: linked ones, and unlinked events' markers (adoption of our own inserts).
    let mut wanted: Vec<ActivityId> = items
        .iter()
        .filter_map(|(e, l)| {
            l.as_ref()
                .map(|l| l.crm_id.clone())
                .or_else(|| event_wire::event_crm_marker(e))
        })
        .filter_map(|id| id.parse().ok())
        .collect();
    wanted.sort();
    wanted.dedup();
    let crm: HashMap<String, Activity> = ex
        .ctx
        .store
        .read_async(move |c| activity_store::activities_by_ids(c, &wanted))
        .await?
        .into_iter()
        .map(|a| (a.id.to_string(), a))
        .collect();
    let dir = {
        let event_refs: Vec<&Event> = items.iter().map(|(e, _)| e).collect();
        let act_refs: Vec<&Activity> = crm.values().collect();
        let link_refs: Vec<&Link> = items.iter().filter_map(|(_, l)| l.as_ref()).collect();
        directory(ex, &event_refs, &act_refs, &link_refs).await?
    };
    let mut batch = Vec::new();
    for (e, link) in items {
        let Some(gs) = ex.kind.google_state(&e, &dir, link.is_some()) else {
            continue;
        };
        let (crm_rec, paired) = match &link {
            Some(l) => {
                ex.handled.insert(l.crm_id.clone());
                (crm.get(&l.crm_id).cloned(), None)
            }
            None => {
                // Our own insert, found by its CRM id: adopt it (never an activity that has a
                // link: that one is another event's, e.g. a series' whose instances all carry
                // the CRM id of the single event it was).
                let adopt = event_wire::event_crm_marker(&e)
                    .and_then(|m| crm.get(&m))
                    .filter(|a| !ex.handled.contains(&a.id.to_string()))
                    .filter(|a| !by_crm.contains_key(&a.id.to_string()))
                    .filter(|_| gs.presence == Presence::InScope)
                    .cloned();
                if let Some(a) = &adopt {
                    ex.handled.insert(a.id.to_string());
                }
                let paired = adopt.as_ref().map(|_| planner::PairReason::Marker);
                (adopt, paired)
            }
        };
        let retarget = e.id.as_ref().is_some_and(|id| continued.contains(id));
        let mut item = ex.plan(Observed {
            link,
            crm: crm_rec,
            google: GoogleObs::Seen(gs),
            remote: Some(e),
            paired,
            extra: dir.clone(),
        });
        if retarget && item.plan.link == LinkAction::None {
            // Nothing else changed: the link still records the instance's id.
            item.plan.link = LinkAction::Update {
                state: LinkState::Active,
                snapshot: item.plan.crm.target.clone(),
            };
        }
        batch.push(item);
    }
    Ok(batch)
}

/// The original start of a snapshot's occurrence, as an instance id would name it.
fn original_start(f: &Fields) -> Option<series::OriginalStart> {
    Some(match map::when_of(f)? {
        ActivityTime::Timed { start, .. } => series::OriginalStart::Timed(start),
        ActivityTime::AllDay { start, .. } => series::OriginalStart::AllDay(start),
    })
}

/// Whether `user` has activity sync set up (cached).
async fn organizer_syncs(
    ex: &mut Executor<'_, Activities>,
    user: UserId,
) -> Result<bool, SyncError> {
    if let Some(v) = ex.kind.has_sync.get(&user) {
        return Ok(*v);
    }
    let v = ex
        .ctx
        .store
        .read_async(move |c| settings::get_sync_settings(c, user, KIND))
        .await?
        .is_some();
    ex.kind.has_sync.insert(user, v);
    Ok(v)
}

/// The organizer rule: the participant running the sync becomes the organizer of an activity
/// whose organizer has no activity sync (journaled).
async fn take_over(ex: &mut Executor<'_, Activities>, a: Activity) -> Result<Activity, SyncError> {
    let uid = ex.uid();
    let old = a.data.organizer_user_id;
    let mut data = a.data.clone();
    data.organizer_user_id = uid;
    if ex.ctx.previewing() {
        return Ok(Activity { data, ..a });
    }
    let (id, now, jctx) = (a.id, ex.ctx.now(), ex.ctx.journal);
    let updated = ex
        .ctx
        .store
        .write_async(move |c| {
            let updated = activity_store::update_activity(
                c,
                id,
                &data,
                Origin::Sync {
                    run: jctx.run,
                    user: jctx.user,
                },
                now,
            )?;
            let entry = JournalEntry {
                run_id: jctx.run,
                user_id: jctx.user,
                kind: KIND,
                link_id: None,
                crm_id: Some(id.to_string()),
                google_id: None,
                side: "crm".into(),
                action: "organizer_changed".into(),
                rule: "organizer_fallback".into(),
                field: Some("organizer_user_id".into()),
                winner: None,
                before: Some(json!(old.to_string())),
                after: Some(json!(uid.to_string())),
            };
            sync_state::append_journal(c, &[entry], now)?;
            Ok(updated)
        })
        .await?;
    tracing::info!(activity = %id, old_organizer = %old, "organizer has no activity sync: the participant running the sync takes over");
    Ok(updated)
}

/// A new CRM activity for an imported event, organized by the user.
fn new_activity(f: &Fields, user: UserId, tz: &str) -> ActivityData {
    ActivityData {
        title: String::new(),
        time: map::when_of(f).unwrap_or(ActivityTime::Timed {
            start: DateTime::<Utc>::MIN_UTC,
            end: DateTime::<Utc>::MIN_UTC,
        }),
        time_zone: tz.to_string(),
        location: None,
        notes: None,
        status: ActivityStatus::Planned,
        display_in_calendar: true,
        organizer_user_id: user,
        participants: Vec::new(),
    }
}
