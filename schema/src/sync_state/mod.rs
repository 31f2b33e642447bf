//! The sync engine's own state: links between CRM and Google records (with the last synced
//! snapshot, the planner's merge base), cursors (Google sync token and CRM change cursor), the
//! journal of every change the engine makes, The executor calls
//! these inside the same write transaction as the CRM change they describe, so a link, its
//! journal entries and the CRM write commit or roll back together.

mod cursors;
mod feed;
mod journal;
mod links;

pub use cursors::*;
pub use feed::*;
pub use journal::*;
pub use links::*;
