//! The pure sync core of crmsync: canonical models, the mappings between CRM records and the
//! canonical fields, the three-way field-level planner and the sync policies. Nothing here does
//! I/O, reads a clock or touches a database: time and state come in as arguments, a plan comes
//! out. Google's wire types stay out too: their half of the mapping lives in the connectors crate
//! (`contact_wire`, `event_wire`), so this crate depends on no HTTP client or async runtime.

pub mod activity_map;
pub mod activity_policy;
pub mod contact_map;
pub mod fields;
pub mod fixtures;
pub mod guard;
pub mod identity;
pub mod ids;
pub mod merge;
pub mod model;
pub mod planner;
#[cfg(test)]
mod planner_props;
pub mod series;
pub mod time;
