//! Newtype identifiers for every kind of record the sync engine touches, so that a contact id can
//! never be passed where a user id is expected. CRM ids are UUIDs; Google ids are opaque strings
//! (`people/c123…` resource names, calendar event ids).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh random (v4) id. Only callers outside the pure engine mint ids.
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }
    };
}

uuid_id!(
    /// A CRM user.
    UserId
);
uuid_id!(
    /// A CRM tag.
    TagId
);
uuid_id!(
    /// A CRM contact.
    ContactId
);
uuid_id!(
    /// A CRM activity.
    ActivityId
);
uuid_id!(
    /// One sync run of one (user, kind).
    RunId
);
uuid_id!(
    /// A link between one CRM record and one Google record, for one user.
    LinkId
);
uuid_id!(
    /// An admin API token (only its hash is stored).
    AdminTokenId
);

/// A Google-side identifier: a People `resourceName` (`people/c…`) or a Calendar event id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GoogleId(pub String);

impl GoogleId {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GoogleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The two kinds of data that sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncKind {
    Contacts,
    Activities,
}

impl SyncKind {
    pub const ALL: [SyncKind; 2] = [SyncKind::Contacts, SyncKind::Activities];

    pub fn as_str(&self) -> &'static str {
        match self {
            SyncKind::Contacts => "contacts",
            SyncKind::Activities => "activities",
        }
    }
}

impl fmt::Display for SyncKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for an unknown sync kind name.
#[derive(Debug, thiserror::Error)]
#[error("unknown sync kind {0:?}: expected \"contacts\" or \"activities\"")]
pub struct UnknownKind(pub String);

impl FromStr for SyncKind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "contacts" => Ok(SyncKind::Contacts),
            "activities" => Ok(SyncKind::Activities),
            other => Err(UnknownKind(other.to_string())),
        }
    }
}
