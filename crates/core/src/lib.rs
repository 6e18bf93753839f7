//! Portcullis domain types shared by every crate: ids, roles and the audit chain's hashing.
//!
//! **Architecture Invariant:** no I/O and no async code; nothing here can fail for an I/O
//! reason, so other Rust services can embed it.

pub mod audit;
pub mod ids;
pub mod role;

pub use ids::{AuditEventId, OrgId, TeamId, UserId};
pub use role::Role;
