//! Portcullis policy: the decisions that follow from configuration and roles, such as which
//! role may take which action, logging and retention rules, PII detection and redaction, and
//! cost estimation.
//!
//! **Architecture Invariant:** no I/O and no async code, so that other services can embed the
//! rules (a redaction library, a permission check) without a database or a runtime.
//!
//! The rules arrive with the capabilities that need them (the access-control plane brings
//! the RBAC matrix); this crate holds their place in the dependency graph.
