//! How the sync reads any Google record: its id, etag and last change, and how a record Google
//! no longer has looks in a sync listing.

use crate::sync::driver::RemoteRecord;
use chrono::{DateTime, Utc};
use crmsync_connectors::contact_wire;
use crmsync_connectors::{Event, Person};

impl RemoteRecord for Person {
    fn remote_id(&self) -> Option<String> {
        self.resource_name.clone()
    }
    fn etag(&self) -> Option<String> {
        self.etag.clone()
    }
    fn updated(&self) -> Option<DateTime<Utc>> {
        contact_wire::person_updated_at(self)
    }
    fn deleted(id: String) -> Person {
        Person {
            resource_name: Some(id),
            metadata: Some(crmsync_connectors::people1::api::PersonMetadata {
                deleted: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

impl RemoteRecord for Event {
    fn remote_id(&self) -> Option<String> {
        self.id.clone()
    }
    fn etag(&self) -> Option<String> {
        self.etag.clone()
    }
    fn updated(&self) -> Option<DateTime<Utc>> {
        self.updated
    }
    fn deleted(id: String) -> Event {
        // As a sync listing shows a deleted event.
        Event {
            id: Some(id),
            status: Some("cancelled".into()),
            ..Default::default()
        }
    }
}
