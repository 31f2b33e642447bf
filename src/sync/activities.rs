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

use crate::sync::commit::{commit_items, commit_link, link_record, write_intents, LinkCommit};
use crate::sync::crash::CrashPoint;
use crate::sync::driver::{drive, KindRun, ListedPage};
use crate::sync::error::SyncError;
use crate::sync::tally::Tally;
use crate::sync::{RunBody, RunCtx};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use crmsync_connectors::{
    CalendarClient, ErrorKind, Event, EventListQuery, GoogleError, InsertOutcome,
};
use crmsync_engine::activity_map::{self as map, CalendarContext, Directory, PersonRef};
use crmsync_engine::fields::{self, Fields};
use crmsync_engine::ids::{ActivityId, GoogleId, LinkId, SyncKind, UserId};
use crmsync_engine::model::{
    normalize_email, Activity, ActivityData, ActivityStatus, ActivityTime,
};
use crmsync_engine::planner::{
    self, CrmState, GoogleObs, GoogleState, Item, ItemPlan, LinkRecord, LinkState, Presence, Rule,
    ScopeOp,
};
use crmsync_schema::sync_state::{self, Cursor, JournalEntry, Link, LinkWrite};
use crmsync_schema::{activities as activity_store, settings, AnyConnection, StoreResult};
use futures::stream::{self, StreamExt};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

const KIND: SyncKind = SyncKind::Activities;
const CALENDAR: &str = "primary";
/// Items per local transaction.
const BATCH: usize = 200;

#[derive(Clone, Debug)]
struct Prepared {
    plan: ItemPlan,
    link: Option<Link>,
    crm: Option<Activity>,
    /// The event as last read (the base of a patch), when known.
    event: Option<Event>,
    /// The event as Google returned it after our write.
    written: Option<Event>,
    link_id: Option<LinkId>,
    directory: Arc<Directory>,
    failed: bool,
}

impl Prepared {
    fn crm_id(&self) -> Option<String> {
        self.crm
            .as_ref()
            .map(|c| c.id.to_string())
            .or_else(|| self.link.as_ref().map(|l| l.crm_id.clone()))
    }
    fn google_id(&self) -> Option<String> {
        self.written
            .as_ref()
            .and_then(|e| e.id.clone())
            .or_else(|| self.event.as_ref().and_then(|e| e.id.clone()))
            .or_else(|| self.plan.google_id.as_ref().map(|g| g.0.clone()))
            .or_else(|| self.link.as_ref().and_then(|l| l.google_id.clone()))
            .or_else(|| self.crm.as_ref().map(|a| map::event_id(a.id)))
    }
}

struct ActivityRun<'a> {
    ctx: &'a RunCtx,
    calendar: CalendarClient,
    cal: CalendarContext,
    synchronize_from: Option<NaiveDate>,
    trigger_words: Vec<String>,
    tally: Tally,
    handled: HashSet<String>,
    listed: HashSet<String>,
    ends: Vec<Prepared>,
    /// Whether each CRM user has activity sync set up (for the organizer rule).
    has_sync: HashMap<UserId, bool>,
    /// Full-listing window, to tell "not listed" from "outside the window".
    window: (DateTime<Utc>, DateTime<Utc>),
    /// The listing parameters (the window applies to full listings only).
    query: EventListQuery,
    /// The parameters a sync token belongs to (stored with it).
    params: String,
}

/// The listing parameters a sync token belongs to; a change forces a full listing.
fn token_params(from: Option<NaiveDate>, horizon_days: i64) -> String {
    json!({"v": 1, "single_events": true, "synchronize_from": from, "horizon_days": horizon_days})
        .to_string()
}

/// Midnight of `date` in `tz` (falls back to UTC midnight for an unknown zone).
fn midnight(date: NaiveDate, tz: &str) -> DateTime<Utc> {
    let naive = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    match tz.parse::<chrono_tz::Tz>() {
        Ok(z) => z
            .from_local_datetime(&naive)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| naive.and_utc()),
        Err(_) => naive.and_utc(),
    }
}

pub(crate) async fn run(ctx: &RunCtx) -> Result<RunBody, SyncError> {
    let user = ctx.user.clone();
    let uid = user.id;
    let (settings, cursor, crm_high) = ctx
        .store
        .run(move |s| {
            s.read(|c| {
                Ok((
                    settings::get_sync_settings(c, uid, KIND)?,
                    sync_state::get_cursor(c, uid, KIND)?,
                    crmsync_schema::current_change_seq(c)?,
                ))
            })
        })
        .await?;
    let settings = settings.ok_or_else(|| {
        SyncError::NotConfigured(format!(
            "{} has no activities sync settings: set them with PUT /api/v1/users/{}/sync-settings/activities",
            user.email, uid
        ))
    })?;
    let now = ctx.now();
    let from = settings
        .synchronize_from
        .map(|d| midnight(d, &user.time_zone))
        .unwrap_or_else(|| now - Duration::days(ctx.config.default_lookback_days));
    let until = now + Duration::days(ctx.config.horizon_days);
    let params = token_params(settings.synchronize_from, ctx.config.horizon_days);
    let mut organizer_emails = vec![
        normalize_email(&user.email),
        normalize_email(&user.google_alias),
    ];
    organizer_emails.dedup();
    let mut run = ActivityRun {
        ctx,
        calendar: ctx.account.calendar().clone(),
        cal: CalendarContext {
            organizer_emails,
            default_time_zone: user.time_zone.clone(),
        },
        synchronize_from: settings.synchronize_from,
        trigger_words: settings.trigger_words.clone(),
        tally: Tally::default(),
        handled: HashSet::new(),
        listed: HashSet::new(),
        ends: Vec::new(),
        has_sync: HashMap::from([(uid, true)]),
        window: (from, until),
        query: EventListQuery {
            time_min: Some(from),
            time_max: Some(until),
            max_results: Some(ctx.config.calendar_page_size),
            ..EventListQuery::primary()
        },
        params: params.clone(),
    };

    // A token obtained with other listing parameters is not reused.
    let same_params = cursor.google_token_params.as_deref() == Some(params.as_str());
    let token = cursor.google_sync_token.clone().filter(|_| same_params);
    drive(&mut run, cursor, token, crm_high).await
}

impl KindRun for ActivityRun<'_> {
    type Listed = Event;
    type Record = Activity;
    type Prepared = Prepared;
    const KIND: SyncKind = KIND;

    fn ctx(&self) -> &RunCtx {
        self.ctx
    }
    fn tally(&mut self) -> &mut Tally {
        &mut self.tally
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
    async fn google_batch(&mut self, items: Vec<Event>) -> Result<(), SyncError> {
        ActivityRun::google_batch(self, items).await
    }
    type Scope = UserId;
    fn scope(&self) -> UserId {
        self.ctx.user.id
    }
    fn changed_since(
        c: &mut AnyConnection,
        user: &UserId,
        seq: i64,
        limit: usize,
    ) -> StoreResult<Vec<Activity>> {
        sync_state::user_activities_changed_since(c, *user, seq, limit)
    }
    fn change_seq(r: &Activity) -> i64 {
        r.change_seq
    }
    async fn crm_batch(&mut self, chunk: Vec<Activity>) -> Result<(), SyncError> {
        ActivityRun::crm_batch(self, chunk).await
    }
    async fn retry_google(&mut self, ids: Vec<String>) -> Result<(), SyncError> {
        let mut events = Vec::with_capacity(ids.len());
        for id in ids {
            match self.calendar.get_event(CALENDAR, &id).await {
                Ok(Some(e)) => events.push(e),
                // Gone from Google: as a sync listing shows a deleted event.
                Ok(None) => events.push(Event {
                    id: Some(id),
                    status: Some("cancelled".into()),
                    ..Default::default()
                }),
                Err(e) if e.kind == ErrorKind::Auth => {
                    return Err(SyncError::from_google(&self.ctx.user.google_alias, e))
                }
                Err(e) => {
                    let message = format!("reading the parked calendar event failed: {e}");
                    self.tally.item_error(None, Some(id), None, message, true);
                }
            }
        }
        ActivityRun::google_batch(self, events).await
    }
    async fn retry_crm(&mut self, ids: Vec<String>) -> Result<(), SyncError> {
        let ids: Vec<ActivityId> = ids.iter().filter_map(|i| i.parse().ok()).collect();
        let records = self
            .ctx
            .store
            .run(move |s| s.read(|c| activity_store::activities_by_ids(c, &ids)))
            .await?;
        ActivityRun::crm_batch(self, records).await
    }
    async fn pending_pass(&mut self) -> Result<(), SyncError> {
        ActivityRun::pending_pass(self).await
    }
    async fn reconcile_unlisted(&mut self) -> Result<(), SyncError> {
        ActivityRun::reconcile_unlisted(self).await
    }
    fn take_ends(&mut self) -> Vec<Prepared> {
        std::mem::take(&mut self.ends)
    }
    fn restore(p: Prepared) -> Prepared {
        restore(p)
    }
    async fn execute(&mut self, items: Vec<Prepared>, final_phase: bool) -> Result<(), SyncError> {
        ActivityRun::execute(self, items, final_phase).await
    }
    fn cursor_extras(&self, _old: &Cursor) -> (Option<String>, Option<String>) {
        (Some(CALENDAR.to_string()), Some(self.params.clone()))
    }
}

/// Undoes a link end (the admin cancelled a mass change): the event is restored or the activity
/// shown again.
fn restore(mut p: Prepared) -> Prepared {
    let planner::LinkAction::End { snapshot, reason } = p.plan.link.clone() else {
        return p;
    };
    match reason {
        Rule::GoogleDeleted | Rule::GoogleLeftScope => {
            p.plan.crm.scope = ScopeOp::Keep;
            p.plan.google.create = true;
            p.plan.google.target = snapshot.clone();
            p.plan.link = planner::LinkAction::Update {
                state: LinkState::Pending,
                snapshot,
            };
        }
        Rule::CrmLeftScope => {
            p.plan.google.scope = ScopeOp::Keep;
            p.plan.crm.scope = ScopeOp::Join;
            p.plan.link = planner::LinkAction::Update {
                state: LinkState::Active,
                snapshot,
            };
        }
        _ => return p,
    }
    p.plan.rule = Rule::Rejoin;
    p
}

impl ActivityRun<'_> {
    fn uid(&self) -> UserId {
        self.ctx.user.id
    }

    fn fail(&mut self, p: &mut Prepared, message: String, google_side: bool) {
        p.failed = true;
        let seq = p.crm.as_ref().map(|a| a.change_seq);
        self.tally
            .item_error(p.crm_id(), p.google_id(), seq, message, google_side);
    }

    /// CRM side of an item for this user.
    fn crm_state(&self, a: &Activity, linked: bool) -> CrmState {
        let presence = map::activity_presence(
            &a.data,
            a.deleted_at.is_some(),
            self.uid(),
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

    /// Google side of an item. Trigger words filter imports only (not linked events).
    fn google_state(&self, e: &Event, dir: &Directory, linked: bool) -> Option<GoogleState> {
        let id = GoogleId::new(e.id.clone()?);
        let mut presence = map::event_presence(e, &self.cal);
        if presence == Presence::InScope
            && !linked
            && !map::matches_trigger_words(e.summary.as_deref().unwrap_or(""), &self.trigger_words)
        {
            presence = Presence::OutOfScope;
        }
        let fields = (presence != Presence::Deleted).then(|| map::event_fields(e, dir, &self.cal));
        Some(GoogleState {
            id,
            fields,
            updated_at: e.updated.unwrap_or(DateTime::<Utc>::MIN_UTC),
            presence,
        })
    }

    /// The CRM people the attendees of `events` and the participants of `activities` and
    /// `links` may be.
    async fn directory(
        &self,
        events: &[&Event],
        activities: &[&Activity],
        links: &[&Link],
    ) -> Result<Arc<Directory>, SyncError> {
        let mut emails: Vec<String> = events
            .iter()
            .flat_map(|e| map::attendee_emails(e))
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
        let lookup = emails.clone();
        let (users, contacts) = self
            .ctx
            .store
            .run(move |s| {
                s.read(|c| {
                    Ok((
                        sync_state::users_with_emails(c, &lookup)?,
                        sync_state::contacts_with_emails(c, &lookup)?,
                    ))
                })
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

    async fn google_batch(&mut self, events: Vec<Event>) -> Result<(), SyncError> {
        let events: Vec<Event> = events.into_iter().filter(|e| e.id.is_some()).collect();
        if events.is_empty() {
            return Ok(());
        }
        for e in &events {
            if let Some(id) = &e.id {
                self.listed.insert(id.clone());
            }
        }
        let uid = self.uid();
        let ids: Vec<String> = events.iter().filter_map(|e| e.id.clone()).collect();
        let markers: Vec<String> = events.iter().filter_map(map::event_crm_marker).collect();
        let (by_google, by_crm) = self
            .ctx
            .store
            .run(move |s| {
                s.read(|c| {
                    Ok((
                        sync_state::links_by_google_ids(c, uid, KIND, &ids)?,
                        sync_state::links_by_crm_ids(c, uid, KIND, &markers)?,
                    ))
                })
            })
            .await?;
        let by_google: HashMap<String, Link> = by_google
            .into_iter()
            .filter_map(|l| l.google_id.clone().map(|g| (g, l)))
            .collect();
        let by_crm: HashMap<String, Link> =
            by_crm.into_iter().map(|l| (l.crm_id.clone(), l)).collect();
        // Each event's link, by id, else by the CRM id it carries (an insert whose answer was
        // lost has a pending link under the same deterministic id, so this is a fallback).
        let mut items: Vec<(Event, Option<Link>)> = Vec::new();
        for e in events {
            let id = e.id.clone().unwrap_or_default();
            let link = by_google.get(&id).cloned().or_else(|| {
                map::event_crm_marker(&e)
                    .and_then(|m| by_crm.get(&m))
                    .filter(|l| {
                        l.google_id.is_none() || l.google_id.as_deref() == Some(id.as_str())
                    })
                    .cloned()
            });
            items.push((e, link));
        }
        // CRM records: linked ones, and unlinked events' markers (adoption of our own inserts).
        let mut wanted: Vec<ActivityId> = items
            .iter()
            .filter_map(|(e, l)| {
                l.as_ref()
                    .map(|l| l.crm_id.clone())
                    .or_else(|| map::event_crm_marker(e))
            })
            .filter_map(|id| id.parse().ok())
            .collect();
        wanted.sort();
        wanted.dedup();
        let crm: HashMap<String, Activity> = self
            .ctx
            .store
            .run(move |s| s.read(|c| activity_store::activities_by_ids(c, &wanted)))
            .await?
            .into_iter()
            .map(|a| (a.id.to_string(), a))
            .collect();
        let event_refs: Vec<&Event> = items.iter().map(|(e, _)| e).collect();
        let act_refs: Vec<&Activity> = crm.values().collect();
        let link_refs: Vec<&Link> = items.iter().filter_map(|(_, l)| l.as_ref()).collect();
        let dir = self.directory(&event_refs, &act_refs, &link_refs).await?;

        let now = self.ctx.now();
        let policy = self.ctx.config.activities_policy.clone();
        let mut batch = Vec::new();
        for (e, link) in items {
            let Some(gs) = self.google_state(&e, &dir, link.is_some()) else {
                continue;
            };
            let (item, crm_rec) = match &link {
                Some(l) => {
                    let a = crm.get(&l.crm_id).cloned();
                    let mut lr = link_record(l);
                    lr.google_id = Some(gs.id.clone());
                    self.handled.insert(l.crm_id.clone());
                    (
                        Item {
                            link: Some(lr),
                            crm: a.as_ref().map(|a| self.crm_state(a, true)),
                            google: GoogleObs::Seen(gs),
                            paired: None,
                        },
                        a,
                    )
                }
                None => {
                    // Our own insert, found by its CRM id: adopt it.
                    let adopt = map::event_crm_marker(&e)
                        .and_then(|m| crm.get(&m))
                        .filter(|a| !self.handled.contains(&a.id.to_string()))
                        .cloned();
                    match adopt {
                        Some(a) if gs.presence == Presence::InScope => {
                            self.handled.insert(a.id.to_string());
                            let cs = self.crm_state(&a, false);
                            (
                                Item {
                                    link: None,
                                    crm: Some(cs),
                                    google: GoogleObs::Seen(gs),
                                    paired: Some(planner::PairReason::Marker),
                                },
                                Some(a),
                            )
                        }
                        _ => (
                            Item {
                                link: None,
                                crm: None,
                                google: GoogleObs::Seen(gs),
                                paired: None,
                            },
                            None,
                        ),
                    }
                }
            };
            let plan = planner::plan_item(&item, &policy, now);
            batch.push(Prepared {
                link_id: link.as_ref().map(|l| l.id),
                plan,
                link,
                crm: crm_rec,
                event: Some(e),
                written: None,
                directory: dir.clone(),
                failed: false,
            });
        }
        self.execute(batch, false).await
    }

    /// Whether `user` has activity sync set up (cached).
    async fn organizer_syncs(&mut self, user: UserId) -> Result<bool, SyncError> {
        if let Some(v) = self.has_sync.get(&user) {
            return Ok(*v);
        }
        let v = self
            .ctx
            .store
            .run(move |s| s.read(|c| settings::get_sync_settings(c, user, KIND)))
            .await?
            .is_some();
        self.has_sync.insert(user, v);
        Ok(v)
    }

    /// The organizer rule: the participant running the sync takes over an activity whose
    /// organizer has no activity sync (journaled).
    async fn take_over(&mut self, a: Activity) -> Result<Activity, SyncError> {
        let uid = self.uid();
        let old = a.data.organizer_user_id;
        let mut data = a.data.clone();
        data.organizer_user_id = uid;
        let (id, now, jctx) = (a.id, self.ctx.now(), self.ctx.journal);
        let updated = self
            .ctx
            .store
            .run(move |s| {
                s.write(|c| {
                    let updated = activity_store::update_activity(c, id, &data, now)?;
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
            })
            .await?;
        tracing::info!(activity = %id, old_organizer = %old, "organizer has no activity sync: the participant running the sync takes over");
        Ok(updated)
    }

    async fn crm_batch(&mut self, chunk: Vec<Activity>) -> Result<(), SyncError> {
        let uid = self.uid();
        let chunk: Vec<Activity> = chunk
            .into_iter()
            .filter(|a| !self.handled.contains(&a.id.to_string()))
            .collect();
        if chunk.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = chunk.iter().map(|a| a.id.to_string()).collect();
        let links: HashMap<String, Link> = self
            .ctx
            .store
            .run(move |s| s.read(|c| sync_state::links_by_crm_ids(c, uid, KIND, &ids)))
            .await?
            .into_iter()
            .map(|l| (l.crm_id.clone(), l))
            .collect();
        let mut work: Vec<(Activity, Option<Link>)> = Vec::new();
        for mut a in chunk {
            let link = links.get(&a.id.to_string()).cloned();
            if let Some(l) = &link {
                if l.crm_change_seq == a.change_seq {
                    continue;
                }
            } else {
                if a.deleted_at.is_some() {
                    continue;
                }
                if a.data.organizer_user_id != uid {
                    let organizer_syncs = self.organizer_syncs(a.data.organizer_user_id).await?;
                    if map::organizer_fallback(&a.data, uid, organizer_syncs).is_none() {
                        continue;
                    }
                    if map::activity_presence(
                        &a.data,
                        false,
                        a.data.organizer_user_id,
                        self.synchronize_from,
                        false,
                    ) != Presence::InScope
                    {
                        continue;
                    }
                    a = self.take_over(a).await?;
                } else if map::activity_presence(&a.data, false, uid, self.synchronize_from, false)
                    != Presence::InScope
                {
                    continue;
                }
            }
            self.handled.insert(a.id.to_string());
            work.push((a, link));
        }
        // Links that come back need the event's current state.
        let mut fetched: HashMap<String, Option<Event>> = HashMap::new();
        for (a, l) in &work {
            if let Some(l) = l.as_ref().filter(|l| l.state == LinkState::Ended) {
                if self.crm_state(a, true).presence == Presence::InScope {
                    let id = l.google_id.clone().unwrap_or_else(|| map::event_id(a.id));
                    let e = self
                        .calendar
                        .get_event(CALENDAR, &id)
                        .await
                        .map_err(|e| SyncError::from_google(&self.ctx.user.google_alias, e))?;
                    fetched.insert(id, e);
                }
            }
        }
        let acts: Vec<&Activity> = work.iter().map(|(a, _)| a).collect();
        let links_ref: Vec<&Link> = work.iter().filter_map(|(_, l)| l.as_ref()).collect();
        let evs: Vec<&Event> = fetched.values().flatten().collect();
        let dir = self.directory(&evs, &acts, &links_ref).await?;
        let now = self.ctx.now();
        let policy = self.ctx.config.activities_policy.clone();
        let mut batch = Vec::new();
        for (a, l) in work {
            let (google, event) = match &l {
                Some(l) if l.state == LinkState::Ended => {
                    let id = l.google_id.clone().unwrap_or_else(|| map::event_id(a.id));
                    match fetched.get(&id) {
                        Some(Some(e)) => match self.google_state(e, &dir, true) {
                            Some(s) => (GoogleObs::Seen(s), Some(e.clone())),
                            None => (GoogleObs::Missing, None),
                        },
                        Some(None) => (GoogleObs::Missing, None),
                        None => (GoogleObs::NotObserved, None),
                    }
                }
                _ => (GoogleObs::NotObserved, None),
            };
            let item = Item {
                link: l.as_ref().map(link_record),
                crm: Some(self.crm_state(&a, l.is_some())),
                google,
                paired: None,
            };
            let plan = planner::plan_item(&item, &policy, now);
            batch.push(Prepared {
                link_id: l.as_ref().map(|l| l.id),
                plan,
                link: l,
                crm: Some(a),
                event,
                written: None,
                directory: dir.clone(),
                failed: false,
            });
        }
        self.execute(batch, false).await
    }

    /// Pending inserts not settled in this run (e.g. a crash before the insert was sent).
    async fn pending_pass(&mut self) -> Result<(), SyncError> {
        let uid = self.uid();
        let pending = self
            .ctx
            .store
            .run(move |s| {
                s.read(|c| {
                    sync_state::links_in_state(c, uid, KIND, LinkState::Pending, None, 10_000)
                })
            })
            .await?;
        let pending: Vec<Link> = pending
            .into_iter()
            .filter(|l| !self.handled.contains(&l.crm_id))
            .collect();
        self.replan_links(pending, false).await
    }

    /// Plans links with a fresh read of their event (`read`) or without (`NotObserved`).
    async fn replan_links(&mut self, links: Vec<Link>, read: bool) -> Result<(), SyncError> {
        for chunk in links.chunks(BATCH) {
            let ids: Vec<ActivityId> = chunk.iter().filter_map(|l| l.crm_id.parse().ok()).collect();
            let crm: HashMap<String, Activity> = self
                .ctx
                .store
                .run(move |s| s.read(|c| activity_store::activities_by_ids(c, &ids)))
                .await?
                .into_iter()
                .map(|a| (a.id.to_string(), a))
                .collect();
            let mut events: HashMap<String, Option<Event>> = HashMap::new();
            if read {
                for l in chunk {
                    if let Some(id) = &l.google_id {
                        let e =
                            self.calendar.get_event(CALENDAR, id).await.map_err(|e| {
                                SyncError::from_google(&self.ctx.user.google_alias, e)
                            })?;
                        events.insert(id.clone(), e);
                    }
                }
            }
            let acts: Vec<&Activity> = crm.values().collect();
            let lrefs: Vec<&Link> = chunk.iter().collect();
            let evs: Vec<&Event> = events.values().flatten().collect();
            let dir = self.directory(&evs, &acts, &lrefs).await?;
            let now = self.ctx.now();
            let policy = self.ctx.config.activities_policy.clone();
            let mut batch = Vec::new();
            for l in chunk {
                let a = crm.get(&l.crm_id).cloned();
                self.handled.insert(l.crm_id.clone());
                let (google, event) = match l.google_id.as_ref().and_then(|g| events.get(g)) {
                    Some(Some(e)) => match self.google_state(e, &dir, true) {
                        Some(s) => (GoogleObs::Seen(s), Some(e.clone())),
                        None => (GoogleObs::Missing, None),
                    },
                    Some(None) => (GoogleObs::Missing, None),
                    None => (GoogleObs::NotObserved, None),
                };
                let item = Item {
                    link: Some(link_record(l)),
                    crm: a.as_ref().map(|a| self.crm_state(a, true)),
                    google,
                    paired: None,
                };
                let plan = planner::plan_item(&item, &policy, now);
                batch.push(Prepared {
                    link_id: Some(l.id),
                    plan,
                    link: Some(l.clone()),
                    crm: a,
                    event,
                    written: None,
                    directory: dir.clone(),
                    failed: false,
                });
            }
            self.execute(batch, false).await?;
        }
        Ok(())
    }

    /// After a full listing: active links whose event was not listed, though it lies inside the
    /// listing window, are read back; only a confirmed deletion counts.
    async fn reconcile_unlisted(&mut self) -> Result<(), SyncError> {
        let uid = self.uid();
        let (from, until) = self.window;
        let mut after = None;
        let mut unlisted = Vec::new();
        loop {
            let a = after;
            let page = self
                .ctx
                .store
                .run(move |s| {
                    s.read(|c| sync_state::links_in_state(c, uid, KIND, LinkState::Active, a, 1000))
                })
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            for l in page {
                let in_window = match map::when_of(&l.snapshot) {
                    Some(ActivityTime::Timed { start, end }) => end > from && start < until,
                    Some(ActivityTime::AllDay { start, end }) => {
                        midnight(end, "UTC") > from && midnight(start, "UTC") < until
                    }
                    None => true,
                };
                let listed = l
                    .google_id
                    .as_ref()
                    .map(|g| self.listed.contains(g))
                    .unwrap_or(false);
                if in_window && !listed && !self.handled.contains(&l.crm_id) {
                    unlisted.push(l);
                }
            }
        }
        self.replan_links(unlisted, true).await
    }

    async fn execute(&mut self, items: Vec<Prepared>, final_phase: bool) -> Result<(), SyncError> {
        let labels = self.ctx.journal.labels;
        let mut work = Vec::new();
        for p in items {
            if p.plan.ends_link() && !final_phase {
                self.ends.push(p);
                continue;
            }
            if p.plan.deferred || p.plan.is_noop() {
                self.tally.body.counts.add_plan(&p.plan, labels);
                continue;
            }
            work.push(p);
        }
        if work.is_empty() {
            return Ok(());
        }
        self.google_inserts(&mut work).await?;
        self.google_writes(&mut work).await?;
        for chunk in work.chunks_mut(BATCH) {
            self.commit(chunk).await?;
        }
        Ok(())
    }

    /// Inserts with deterministic ids, after committing pending links; a 409 is read and adopted
    /// (or, for an event cancelled earlier, restored).
    async fn google_inserts(&mut self, work: &mut [Prepared]) -> Result<(), SyncError> {
        let idx: Vec<usize> = (0..work.len())
            .filter(|&i| work[i].plan.google.create && !work[i].failed)
            .collect();
        if idx.is_empty() {
            return Ok(());
        }
        let (uid, now) = (self.uid(), self.ctx.now());
        let intents: Vec<(Option<LinkId>, LinkWrite)> = idx
            .iter()
            .map(|&i| {
                let p = &work[i];
                (
                    p.link_id,
                    LinkWrite {
                        crm_id: p.crm_id().unwrap_or_default(),
                        google_id: p.crm.as_ref().map(|a| map::event_id(a.id)),
                        state: LinkState::Pending,
                        snapshot: p.plan.google.target.clone(),
                        etag: None,
                        google_updated: None,
                        crm_change_seq: p.crm.as_ref().map(|a| a.change_seq).unwrap_or(0),
                        pending_since: Some(now),
                        end_reason: None,
                    },
                )
            })
            .collect();
        let ids = write_intents(&self.ctx.store, uid, KIND, intents, now).await?;
        for (k, &i) in idx.iter().enumerate() {
            work[i].link_id = Some(ids[k]);
        }
        self.ctx.crash_point(CrashPoint::BeforeRemoteWrite)?;
        let cal = self.cal.clone();
        let calendar = self.calendar.clone();
        let jobs: Vec<(usize, Event)> = idx
            .iter()
            .filter_map(|&i| {
                let p = &work[i];
                let a = p.crm.as_ref()?;
                Some((
                    i,
                    map::event_for_insert(a.id, &p.plan.google.target, &p.directory, &cal),
                ))
            })
            .collect();
        let results: Vec<(
            usize,
            Result<InsertOutcome, crmsync_connectors::GoogleError>,
        )> = stream::iter(jobs)
            .map(|(i, ev)| {
                let calendar = calendar.clone();
                async move { (i, calendar.insert_event(CALENDAR, ev).await) }
            })
            .buffer_unordered(self.ctx.config.calendar_concurrency.max(1))
            .collect()
            .await;
        for (i, r) in results {
            match r {
                Ok(InsertOutcome::Created(e)) => work[i].written = Some(*e),
                Ok(InsertOutcome::AlreadyExists { id }) => {
                    self.adopt_existing(&mut work[i], &id).await?
                }
                Err(e) if e.kind == ErrorKind::Auth => {
                    return Err(SyncError::from_google(&self.ctx.user.google_alias, e))
                }
                Err(e) => {
                    let mut p = work[i].clone();
                    self.fail(
                        &mut p,
                        format!("creating the calendar event failed: {e}"),
                        false,
                    );
                    work[i] = p;
                }
            }
        }
        self.ctx
            .crash_point(CrashPoint::AfterRemoteWriteBeforeLocalCommit)?;
        Ok(())
    }

    /// A 409 on insert: the event exists (an earlier insert whose answer was lost, or an event
    /// this run cancelled before). Read it and carry on from what Google holds.
    async fn adopt_existing(&mut self, p: &mut Prepared, id: &str) -> Result<(), SyncError> {
        let existing = self
            .calendar
            .get_event(CALENDAR, id)
            .await
            .map_err(|e| SyncError::from_google(&self.ctx.user.google_alias, e))?;
        let Some(e) = existing else {
            let mut q = p.clone();
            self.fail(
                &mut q,
                format!("Google reports event {id} exists but it cannot be read"),
                false,
            );
            *p = q;
            return Ok(());
        };
        if !map::event_is_organized_by_owner(&e, &self.cal) {
            let mut q = p.clone();
            self.fail(&mut q, format!("event {id} exists in the calendar but another user organizes it; change the activity's organizer or remove the copy"), false);
            *p = q;
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
            let current = map::event_fields(&e, &p.directory, &self.cal);
            let result = if map::switches_all_day(&current, &p.plan.google.target) {
                let mut event =
                    map::event_update(&p.plan.google.target, &e, &p.directory, &self.cal);
                event.status = Some(status);
                self.calendar.update_event(CALENDAR, id, event).await
            } else {
                let names: Vec<String> = p.plan.google.target.keys().cloned().collect();
                let mut patch = map::event_patch(
                    &p.plan.google.target,
                    &names,
                    Some(&e),
                    &p.directory,
                    &self.cal,
                );
                patch.status = Some(status);
                self.calendar.patch_event(CALENDAR, id, patch).await
            };
            match result {
                Ok(written) => p.written = Some(written),
                Err(err) => {
                    let mut q = p.clone();
                    self.fail(
                        &mut q,
                        format!("restoring the cancelled calendar event failed: {err}"),
                        false,
                    );
                    *p = q;
                }
            }
            return Ok(());
        }
        // Our own earlier insert: merge against what we sent (the pending snapshot).
        let dir = p.directory.clone();
        let Some(gs) = self.google_state(&e, &dir, true) else {
            return Ok(());
        };
        let link = LinkRecord {
            id: p.link_id.unwrap_or_else(LinkId::new_random),
            crm_id: p.crm_id().unwrap_or_default(),
            google_id: Some(GoogleId::new(id)),
            state: LinkState::Pending,
            snapshot: p.plan.google.target.clone(),
            pending_since: None,
        };
        let item = Item {
            link: Some(link),
            crm: p.crm.as_ref().map(|a| self.crm_state(a, true)),
            google: GoogleObs::Seen(gs),
            paired: None,
        };
        p.plan = planner::plan_item(&item, &self.ctx.config.activities_policy, self.ctx.now());
        p.plan.rule = Rule::AdoptByMarker;
        p.event = Some(e);
        Ok(())
    }

    /// Patches and cancellations, concurrently up to the configured limit (the client's rate
    /// limiter keeps them under the per-user quota).
    async fn google_writes(&mut self, work: &mut [Prepared]) -> Result<(), SyncError> {
        enum Op {
            Patch(Box<Event>),
            /// A full update built on the current event (an all-day <-> timed switch); the
            /// body is built once the current event is known.
            Replace(Option<Box<Event>>),
            Cancel,
        }
        let cal = self.cal.clone();
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
                    .event
                    .as_ref()
                    .and_then(|e| self.google_state(e, &p.directory, true))
                    .and_then(|s| s.fields)
                    .or_else(|| p.link.as_ref().map(|l| l.snapshot.clone()));
                if base_fields
                    .as_ref()
                    .map(|b| map::switches_all_day(b, &g.target))
                    .unwrap_or(false)
                {
                    // A patch cannot clear `dateTime`/`date`: replace the whole event.
                    jobs.push((i, id, Op::Replace(None)));
                    continue;
                }
                let mut patch =
                    map::event_patch(&g.target, &g.update, p.event.as_ref(), &p.directory, &cal);
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
                if work[*i].event.is_none() {
                    work[*i].event = self
                        .calendar
                        .get_event(CALENDAR, id)
                        .await
                        .map_err(|e| SyncError::from_google(&self.ctx.user.google_alias, e))?;
                }
                let p = &work[*i];
                *body = p.event.as_ref().map(|base| {
                    Box::new(map::event_update(
                        &p.plan.google.target,
                        base,
                        &p.directory,
                        &cal,
                    ))
                });
            }
            if let Op::Patch(patch) = op {
                if patch.attendees.is_some() && work[*i].event.is_none() {
                    let current = self
                        .calendar
                        .get_event(CALENDAR, id)
                        .await
                        .map_err(|e| SyncError::from_google(&self.ctx.user.google_alias, e))?;
                    if let Some(e) = current {
                        let p = &work[*i];
                        **patch = map::event_patch(
                            &p.plan.google.target,
                            &p.plan.google.update,
                            Some(&e),
                            &p.directory,
                            &cal,
                        );
                        work[*i].event = Some(e);
                    }
                }
            }
        }
        if jobs.is_empty() {
            return Ok(());
        }
        let calendar = self.calendar.clone();
        let results: Vec<(
            usize,
            Result<Option<Event>, crmsync_connectors::GoogleError>,
        )> = stream::iter(jobs)
            .map(|(i, id, op)| {
                let calendar = calendar.clone();
                async move {
                    let r = match op {
                        Op::Patch(patch) => {
                            calendar.patch_event(CALENDAR, &id, *patch).await.map(Some)
                        }
                        Op::Replace(Some(event)) => {
                            calendar.update_event(CALENDAR, &id, *event).await.map(Some)
                        }
                        Op::Replace(None) => Err(crmsync_connectors::GoogleError::local(
                            ErrorKind::NotFound,
                            "calendar.events.update",
                            "the event to switch between all-day and timed no longer exists",
                        )),
                        Op::Cancel => calendar.delete_event(CALENDAR, &id).await.map(|_| None),
                    };
                    (i, r)
                }
            })
            .buffer_unordered(self.ctx.config.calendar_concurrency.max(1))
            .collect()
            .await;
        for (i, r) in results {
            match r {
                Ok(Some(e)) => work[i].written = Some(e),
                Ok(None) => {}
                Err(e) if e.kind == ErrorKind::Auth => {
                    return Err(SyncError::from_google(&self.ctx.user.google_alias, e))
                }
                Err(e) if e.kind == ErrorKind::NotFound || e.kind == ErrorKind::Gone => {
                    // Gone meanwhile: treated as deleted in Google on the next run.
                    let mut p = work[i].clone();
                    self.fail(&mut p, format!("the calendar event is gone: {e}"), true);
                    work[i] = p;
                }
                Err(e) => {
                    let mut p = work[i].clone();
                    self.fail(
                        &mut p,
                        format!("writing the calendar event failed: {e}"),
                        false,
                    );
                    work[i] = p;
                }
            }
        }
        self.ctx
            .crash_point(CrashPoint::AfterRemoteWriteBeforeLocalCommit)?;
        Ok(())
    }

    async fn commit(&mut self, chunk: &mut [Prepared]) -> Result<(), SyncError> {
        let todo: Vec<Prepared> = chunk.iter().filter(|p| !p.failed).cloned().collect();
        let (uid, jctx, now, cal) = (
            self.uid(),
            self.ctx.journal,
            self.ctx.now(),
            self.cal.clone(),
        );
        let results = commit_items(&self.ctx.store, todo, now, move |c, p| {
            commit_item(c, uid, &jctx, &cal, p, now)
        })
        .await?;
        for (mut p, r) in results {
            match r {
                Ok(()) => self.tally.body.counts.add_plan(&p.plan, jctx.labels),
                Err(e) => self.fail(&mut p, format!("saving in the CRM failed: {e}"), true),
            }
        }
        Ok(())
    }
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

fn commit_item(
    c: &mut AnyConnection,
    uid: UserId,
    jctx: &crate::sync::record::JournalCtx,
    cal: &CalendarContext,
    p: &Prepared,
    now: DateTime<Utc>,
) -> StoreResult<Vec<crmsync_schema::sync_state::JournalEntry>> {
    let plan = &p.plan;
    let mut activity = p.crm.clone();
    if plan.crm.create {
        let data = map::apply_to_activity(
            &plan.crm.target,
            &new_activity(&plan.crm.target, uid, &cal.default_time_zone),
            &p.directory,
            cal,
        );
        activity = Some(activity_store::create_activity(c, &data, now)?);
    } else if let Some(existing) = activity.clone().filter(|a| a.deleted_at.is_none()) {
        let mut data = existing.data.clone();
        if !plan.crm.update.is_empty() {
            data = map::apply_to_activity(&plan.crm.target, &data, &p.directory, cal);
        }
        match plan.crm.scope {
            ScopeOp::Join => data.display_in_calendar = true,
            ScopeOp::Leave => data.display_in_calendar = false,
            ScopeOp::Keep => {}
        }
        if data != existing.data {
            activity = Some(activity_store::update_activity(c, existing.id, &data, now)?);
        }
    }
    let event = p.written.as_ref().or(p.event.as_ref());
    let lc = LinkCommit {
        user: uid,
        journal: jctx,
        plan,
        link: p.link.as_ref(),
        link_id: p.link_id,
        crm_id: activity
            .as_ref()
            .map(|a| a.id.to_string())
            .or_else(|| p.crm_id()),
        crm_seq: activity.as_ref().map(|a| a.change_seq).unwrap_or(0),
        google_id: p.google_id(),
        etag: event
            .and_then(|e| e.etag.clone())
            .or_else(|| p.link.as_ref().and_then(|l| l.etag.clone())),
        google_updated: event
            .and_then(|e| e.updated)
            .or_else(|| p.link.as_ref().and_then(|l| l.google_updated)),
        google_written: p.written.is_some(),
    };
    commit_link(c, lc, now)
}
