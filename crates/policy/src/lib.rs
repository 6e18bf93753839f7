//! Portcullis policy: the decisions that follow from roles and settings. The RBAC matrix is
//! here as data, and the rule for where provider keys may be sent; logging and retention
//! rules, prices, costs and the
//! arithmetic of budget leases are here; PII detection joins them as it lands.
//!
//! **Architecture Invariant:** no I/O and no async code, so that other services can embed the
//! rules without a database or a runtime.

pub mod egress;
pub mod rbac;
pub mod spend;
