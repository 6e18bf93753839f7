//! Portcullis domain types shared by every crate: ids, roles, credential formats, password
//! and second-factor checks, sealing of secrets at rest, and the audit chain's hashing.
//!
//! **Architecture Invariant:** no I/O and no async code. The only system call is the
//! operating system's random number generator, and its failure is an error, never a panic.

#![warn(missing_docs)]

pub mod audit;
pub mod crypto;
pub mod ids;
pub mod mfa;
pub mod money;
pub mod net;
pub mod password;
pub mod privacy;
pub mod provider;
pub mod role;
pub mod token;
pub mod word;

pub use ids::{AuditEventId, KeyId, OrgId, SessionId, TeamId, UserId};
pub use role::Role;
