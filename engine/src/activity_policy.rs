//! Activity policies (SPEC section 4), apart from the mapping: when an activity is in a user's
//! sync (organized by the user, shown in the calendar, not cancelled, and, before it is linked,
//! starting on or after `synchronize_from`), the organizer rule (a participant takes over an
//! activity whose organizer has no activity sync), which unlinked changed activities enter a
//! user's sync, and trigger words (which Google events are imported).

use crate::ids::UserId;
use crate::model::{ActivityData, ActivityStatus, ActivityTime};
use crate::planner::Presence;
use chrono::NaiveDate;

/// Presence of a CRM activity in `user`'s sync (SPEC section 4): deleted; not organized by the
/// user, not shown in the calendar or cancelled = out of scope; an activity not yet linked must
/// also start on or after `synchronize_from` (in its own time zone).
pub fn activity_presence(
    a: &ActivityData,
    deleted: bool,
    user: UserId,
    synchronize_from: Option<NaiveDate>,
    linked: bool,
) -> Presence {
    if deleted {
        return Presence::Deleted;
    }
    if a.organizer_user_id != user
        || !a.display_in_calendar
        || a.status == ActivityStatus::Cancelled
    {
        return Presence::OutOfScope;
    }
    if !linked {
        if let Some(from) = synchronize_from {
            if start_date(a) < from {
                return Presence::OutOfScope;
            }
        }
    }
    Presence::InScope
}

/// The local start date of an activity, in its own time zone.
pub fn start_date(a: &ActivityData) -> NaiveDate {
    match a.time {
        ActivityTime::AllDay { start, .. } => start,
        ActivityTime::Timed { start, .. } => match a.time_zone.parse::<chrono_tz::Tz>() {
            Ok(tz) => start.with_timezone(&tz).date_naive(),
            Err(_) => start.date_naive(),
        },
    }
}

/// The organizer rule (SPEC section 4): if the activity's organizer has not set up activity sync,
/// the participant running the sync becomes the organizer. Returns the new organizer, if any.
pub fn organizer_fallback(
    a: &ActivityData,
    running_user: UserId,
    organizer_has_activity_sync: bool,
) -> Option<UserId> {
    if organizer_has_activity_sync || a.organizer_user_id == running_user {
        return None;
    }
    a.participants
        .iter()
        .any(|p| p.user_id == Some(running_user))
        .then_some(running_user)
}

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect()
}

/// Trigger words (SPEC section 4): with a non-empty list, only titles containing one of them as a
/// whole word (or whole-word phrase), case-insensitively, are imported.
pub fn matches_trigger_words(title: &str, trigger_words: &[String]) -> bool {
    let phrases: Vec<Vec<String>> = trigger_words
        .iter()
        .map(|w| words(w))
        .filter(|w| !w.is_empty())
        .collect();
    if phrases.is_empty() {
        return true;
    }
    let title = words(title);
    phrases
        .iter()
        .any(|p| title.windows(p.len()).any(|w| w == p.as_slice()))
}

/// What becomes of a changed CRM activity that has no link yet in `user`'s sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Not this user's to sync (deleted, hidden, cancelled, before `synchronize_from`, or
    /// organized by someone who syncs it, or by someone else entirely).
    Skip,
    /// The user organizes it: it enters the sync.
    Own,
    /// The organizer has no activity sync and the user takes part: the user becomes the
    /// organizer (journaled) and it enters the sync.
    TakeOver,
}

/// Decides whether an unlinked changed activity enters `user`'s sync. `organizer_syncs` says
/// whether the activity's organizer has activity sync set up; it is read only when the
/// organizer is someone else.
pub fn admit_unlinked(
    a: &ActivityData,
    deleted: bool,
    user: UserId,
    organizer_syncs: bool,
    synchronize_from: Option<NaiveDate>,
) -> Admission {
    if deleted {
        return Admission::Skip;
    }
    if a.organizer_user_id == user {
        return match activity_presence(a, false, user, synchronize_from, false) {
            Presence::InScope => Admission::Own,
            _ => Admission::Skip,
        };
    }
    if organizer_fallback(a, user, organizer_syncs).is_none() {
        return Admission::Skip;
    }
    // In scope as the organizer would have had it: the take-over changes who, not what.
    match activity_presence(a, false, a.organizer_user_id, synchronize_from, false) {
        Presence::InScope => Admission::TakeOver,
        _ => Admission::Skip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Participant, ResponseStatus};
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;

    fn organizer() -> UserId {
        UserId(uuid::Uuid::from_u128(1))
    }

    #[test]
    fn trigger_words_match_whole_words_case_insensitively() {
        let words = vec!["CRM".to_string(), "sales call".to_string()];
        assert!(matches_trigger_words("Quarterly crm review", &words));
        assert!(matches_trigger_words("Sales Call with ACME", &words));
        assert!(!matches_trigger_words("CRMs are great", &words));
        assert!(!matches_trigger_words("Salesforce call", &words));
        assert!(matches_trigger_words("anything", &[]));
    }

    #[test]
    fn organizer_fallback_only_for_participants_when_organizer_has_no_sync() {
        let runner = UserId(uuid::Uuid::from_u128(99));
        let mut a = ActivityData {
            title: "x".into(),
            time: ActivityTime::AllDay {
                start: NaiveDate::from_ymd_opt(2026, 5, 1).unwrap_or_default(),
                end: NaiveDate::from_ymd_opt(2026, 5, 2).unwrap_or_default(),
            },
            time_zone: "UTC".into(),
            location: None,
            notes: None,
            status: ActivityStatus::Planned,
            display_in_calendar: true,
            organizer_user_id: organizer(),
            participants: vec![],
        };
        assert_eq!(organizer_fallback(&a, runner, false), None);
        a.participants.push(Participant {
            user_id: Some(runner),
            contact_id: None,
            email: "r@example.com".into(),
            response_status: ResponseStatus::Accepted,
        });
        assert_eq!(organizer_fallback(&a, runner, false), Some(runner));
        assert_eq!(organizer_fallback(&a, runner, true), None);
    }

    fn arb_activity() -> impl Strategy<Value = (ActivityData, bool, bool, Option<u8>)> {
        (
            0u128..3,
            any::<bool>(),
            any::<bool>(),
            prop_oneof![
                Just(ActivityStatus::Planned),
                Just(ActivityStatus::Cancelled)
            ],
            proptest::collection::vec(0u128..3, 0..3),
            0u32..20,
            any::<bool>(),
            any::<bool>(),
            proptest::option::of(0u8..20),
        )
            .prop_map(
                |(org, shown, _, status, parts, day, deleted, syncs, from)| {
                    let start = Utc
                        .with_ymd_and_hms(2026, 5, 1 + day, 9, 0, 0)
                        .single()
                        .unwrap_or_default();
                    let a = ActivityData {
                        title: "t".into(),
                        time: ActivityTime::Timed {
                            start,
                            end: start + chrono::Duration::hours(1),
                        },
                        time_zone: "UTC".into(),
                        location: None,
                        notes: None,
                        status,
                        display_in_calendar: shown,
                        organizer_user_id: UserId(uuid::Uuid::from_u128(org)),
                        participants: parts
                            .into_iter()
                            .map(|u| Participant {
                                user_id: Some(UserId(uuid::Uuid::from_u128(u))),
                                contact_id: None,
                                email: format!("u{u}@example.com"),
                                response_status: ResponseStatus::Accepted,
                            })
                            .collect(),
                    };
                    (a, deleted, syncs, from)
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The decision agrees with the rules it is made of: a take-over only for a participant
        /// when the organizer has no activity sync, never for a deleted, hidden or cancelled
        /// activity or one before `synchronize_from`; `Own` exactly when the user organizes it
        /// and it is in scope; and the take-over leaves the activity in scope for its new
        /// organizer.
        #[test]
        fn admission_follows_the_organizer_rule((a, deleted, syncs, from) in arb_activity(), user in 0u128..3) {
            let user = UserId(uuid::Uuid::from_u128(user));
            let from = from.map(|d| NaiveDate::from_ymd_opt(2026, 5, 1 + u32::from(d)).unwrap_or_default());
            let got = admit_unlinked(&a, deleted, user, syncs, from);
            let in_scope_for = |u: UserId| activity_presence(&a, deleted, u, from, false) == Presence::InScope;
            match got {
                Admission::Own => {
                    prop_assert_eq!(a.organizer_user_id, user);
                    prop_assert!(in_scope_for(user));
                }
                Admission::TakeOver => {
                    prop_assert!(a.organizer_user_id != user && !syncs && !deleted);
                    prop_assert!(a.participants.iter().any(|p| p.user_id == Some(user)));
                    let mut taken = a.clone();
                    taken.organizer_user_id = user;
                    prop_assert_eq!(activity_presence(&taken, false, user, from, false), Presence::InScope);
                }
                Admission::Skip => {
                    prop_assert!(!(a.organizer_user_id == user && in_scope_for(user)));
                    let could_take = a.organizer_user_id != user
                        && !syncs
                        && a.participants.iter().any(|p| p.user_id == Some(user))
                        && in_scope_for(a.organizer_user_id);
                    prop_assert!(!could_take);
                }
            }
        }
    }
}
