//! The canonical CRM records (contacts, activities, users, tags) as the engine, the store and the
//! REST API all see them. The store converts its rows to these types; [`crate::contact_map`] and
//! [`crate::activity_map`] convert them to and from the canonical fields the planner merges (the
//! connectors crate converts Google's shapes to and from the same fields).

use crate::ids::{ActivityId, ContactId, TagId, UserId};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Kind of an e-mail address.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum EmailKind {
    #[default]
    Work,
    Home,
    Other,
}

/// Kind of a phone number.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum PhoneKind {
    #[default]
    Mobile,
    Work,
    Home,
    Other,
}

/// Kind of a postal address.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum AddressKind {
    #[default]
    Work,
    Home,
    Other,
}

/// Gives a unit enum `as_str`, `NAMES`, `Display` and `FromStr` over the listed spellings.
#[macro_export]
macro_rules! str_enum {
    ($ty:ident { $($variant:ident => $s:literal),+ $(,)? }) => {
        impl $ty {
            pub fn as_str(&self) -> &'static str {
                match self { $($ty::$variant => $s),+ }
            }
            /// Every accepted spelling, for error messages.
            pub const NAMES: &'static [&'static str] = &[$($s),+];
        }
        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl ::std::str::FromStr for $ty {
            type Err = $crate::model::UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($s => Ok($ty::$variant),)+
                    other => Err($crate::model::UnknownValue { what: stringify!($ty), value: other.to_string(), allowed: Self::NAMES }),
                }
            }
        }
    };
}

/// A string that is not one of an enum's names.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{value:?} is not a valid {what}; expected one of {allowed:?}")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
    pub allowed: &'static [&'static str],
}

str_enum!(EmailKind { Work => "work", Home => "home", Other => "other" });
str_enum!(PhoneKind { Mobile => "mobile", Work => "work", Home => "home", Other => "other" });
str_enum!(AddressKind { Work => "work", Home => "home", Other => "other" });

/// One e-mail address of a contact.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Email {
    pub address: String,
    #[serde(default)]
    pub kind: EmailKind,
    #[serde(default)]
    pub primary: bool,
}

/// One phone number of a contact.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Phone {
    pub number: String,
    #[serde(default)]
    pub kind: PhoneKind,
}

/// One postal address of a contact.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct PostalAddress {
    #[serde(default)]
    pub kind: AddressKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_code: Option<String>,
}

/// A birthday; the year is optional (Google allows "no year").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Birthday {
    pub year: Option<i32>,
    pub month: u32,
    pub day: u32,
}

/// A birthday string that is neither `YYYY-MM-DD` nor `--MM-DD`, or a day that does not exist.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0:?} is not a valid birthday; use YYYY-MM-DD, or --MM-DD when the year is unknown")]
pub struct InvalidBirthday(pub String);

impl Birthday {
    pub fn parse(s: &str) -> Result<Self, InvalidBirthday> {
        let bad = || InvalidBirthday(s.to_string());
        if let Some(rest) = s.strip_prefix("--") {
            let (m, d) = rest.split_once('-').ok_or_else(bad)?;
            let month: u32 = m.parse().map_err(|_| bad())?;
            let day: u32 = d.parse().map_err(|_| bad())?;
            // 2000 is a leap year, so Feb 29 is accepted without a year.
            NaiveDate::from_ymd_opt(2000, month, day).ok_or_else(bad)?;
            if m.len() != 2 || d.len() != 2 {
                return Err(bad());
            }
            Ok(Birthday {
                year: None,
                month,
                day,
            })
        } else {
            let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| bad())?;
            use chrono::Datelike;
            Ok(Birthday {
                year: Some(date.year()),
                month: date.month(),
                day: date.day(),
            })
        }
    }
}

impl fmt::Display for Birthday {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.year {
            Some(y) => write!(f, "{:04}-{:02}-{:02}", y, self.month, self.day),
            None => write!(f, "--{:02}-{:02}", self.month, self.day),
        }
    }
}

impl Serialize for Birthday {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Birthday {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Birthday::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The fields of a contact that a user edits and that sync with Google.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ContactData {
    #[serde(default)]
    pub given_name: String,
    #[serde(default)]
    pub family_name: String,
    /// Shown name; when absent, "given family".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default)]
    pub emails: Vec<Email>,
    #[serde(default)]
    pub phones: Vec<Phone>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_title: Option<String>,
    #[serde(default)]
    pub addresses: Vec<PostalAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birthday: Option<Birthday>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// A CRM contact as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub id: ContactId,
    #[serde(flatten)]
    pub data: ContactData,
    pub tags: Vec<TagId>,
    pub created_at: DateTime<Utc>,
    /// Last change by a user or by sync: the "writer time" for last-writer-wins.
    pub modified_at: DateTime<Utc>,
    /// Position in the CRM change feed (monotonic over all records).
    pub change_seq: i64,
    /// Set when the contact was deleted in the CRM (a tombstone keeps its data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime<Utc>>,
    /// The CRM's own id of the record (SPEC 6.4), unique per kind.
    #[serde(default)]
    pub external_id: Option<String>,
}

/// Status of a CRM activity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ActivityStatus {
    #[default]
    Planned,
    Tentative,
    Completed,
    Cancelled,
}
str_enum!(ActivityStatus { Planned => "planned", Tentative => "tentative", Completed => "completed", Cancelled => "cancelled" });

/// Response of a participant to an activity (Google's `responseStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ResponseStatus {
    #[default]
    NeedsAction,
    Accepted,
    Declined,
    Tentative,
}
str_enum!(ResponseStatus { NeedsAction => "needs_action", Accepted => "accepted", Declined => "declined", Tentative => "tentative" });

/// One participant of an activity: a CRM user, a CRM contact, or a bare e-mail address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Participant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<ContactId>,
    pub email: String,
    #[serde(default)]
    pub response_status: ResponseStatus,
}

/// When an activity happens: instants for a timed activity, a date range (end exclusive) for an
/// all-day one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ActivityTime {
    Timed {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    AllDay {
        start: NaiveDate,
        end: NaiveDate,
    },
}

/// The fields of an activity that a user edits and that sync with Google Calendar.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityData {
    pub title: String,
    pub time: ActivityTime,
    /// IANA time zone name, e.g. `America/New_York`.
    pub time_zone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    #[serde(default)]
    pub status: ActivityStatus,
    pub display_in_calendar: bool,
    pub organizer_user_id: UserId,
    #[serde(default)]
    pub participants: Vec<Participant>,
}

/// A CRM activity as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    pub id: ActivityId,
    #[serde(flatten)]
    pub data: ActivityData,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
    pub change_seq: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime<Utc>>,
    /// The CRM's own id of the record (SPEC 6.4), unique per kind.
    #[serde(default)]
    pub external_id: Option<String>,
}

/// A CRM user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub display_name: String,
    /// The Google account this user syncs with (defaults to `email`).
    pub google_alias: String,
    /// IANA time zone name.
    pub time_zone: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The CRM's own id of the record (SPEC 6.4), unique per kind.
    #[serde(default)]
    pub external_id: Option<String>,
}

/// Who may see a tag, and whether it can be a sync tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TagVisibility {
    Private,
    Public,
    Corporate,
}
str_enum!(TagVisibility { Private => "private", Public => "public", Corporate => "corporate" });

/// A CRM tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub id: TagId,
    pub name: String,
    pub visibility: TagVisibility,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_user_id: Option<UserId>,
    pub created_at: DateTime<Utc>,
    /// The CRM's own id of the record (SPEC 6.4), unique per kind.
    #[serde(default)]
    pub external_id: Option<String>,
}

impl Tag {
    /// Only a private tag owned by `user` may be that user's contact sync tag (SPEC section 2).
    pub fn can_be_sync_tag_of(&self, user: UserId) -> bool {
        self.visibility == TagVisibility::Private && self.owner_user_id == Some(user)
    }
}

/// Normalizes an e-mail address for matching: trimmed and lower-cased.
pub fn normalize_email(address: &str) -> String {
    address.trim().to_lowercase()
}

/// How often a (user, kind) syncs on its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncSchedule {
    /// Every N minutes (N >= 1).
    IntervalMinutes(u32),
    /// A cron expression understood by the `cron` crate (seconds field first), e.g. `0 */15 * * * *`.
    Cron(String),
}

/// Per-user, per-kind sync settings (SPEC section 2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncSettings {
    pub user_id: UserId,
    pub kind: crate::ids::SyncKind,
    pub auto_sync: bool,
    pub schedule: SyncSchedule,
    /// Contacts: the user's private sync tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_id: Option<TagId>,
    /// Activities: only activities starting on or after this date go out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronize_from: Option<NaiveDate>,
    /// Activities: import only Google events whose title contains one of these words.
    #[serde(default)]
    pub trigger_words: Vec<String>,
    pub updated_at: DateTime<Utc>,
}

/// State of a user's Google connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    Active,
    AuthError,
    Disabled,
}
str_enum!(ConnectionState { Active => "active", AuthError => "auth_error", Disabled => "disabled" });

/// How the engine gets Google access for a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionMethod {
    /// The domain's service account with domain-wide delegation impersonates the user.
    ServiceAccount,
    /// The user's own OAuth refresh token.
    Oauth,
}
str_enum!(ConnectionMethod { ServiceAccount => "service_account", Oauth => "oauth" });

/// What the sync needs of any CRM record: its id and the change sequence of its last write.
pub trait CrmRecord {
    fn record_id(&self) -> String;
    fn change_seq(&self) -> i64;
}

impl CrmRecord for Contact {
    fn record_id(&self) -> String {
        self.id.to_string()
    }
    fn change_seq(&self) -> i64 {
        self.change_seq
    }
}

impl CrmRecord for Activity {
    fn record_id(&self) -> String {
        self.id.to_string()
    }
    fn change_seq(&self) -> i64 {
        self.change_seq
    }
}
