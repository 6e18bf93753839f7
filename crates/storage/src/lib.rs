//! PostgreSQL storage for Portcullis: the runtime pool, the tenant transaction through which
//! every tenant query goes, the audit chain, and the embedded migrations.
//!
//! **Architecture Invariant:** only this crate names `sqlx`. `Db` hides its pool: outside this
//! crate a query can only run inside a [`TenantTx`] (reads) or a [`WriteTx`] (changes, which
//! carry their audit entry), so no caller can forget the tenant context or the audit.
//!
//! **Architecture Invariant:** storage never decides a permission; the gateway's guard does.

pub mod audit;
pub mod auth;
pub mod credentials;
pub mod dataplane;
mod db;
mod error;
pub mod keys;
pub mod logs;
pub mod members;
pub mod migrate;
pub mod model_routes;
pub mod orgs;
mod person;
pub mod platform;
pub mod prompts;
pub mod spend;
pub mod teams;
mod tenant;

pub use db::{Db, DbOptions, RoleCheck, TLS_MODES};
pub use error::StorageError;
pub use person::PersonTx;
pub use tenant::{AuditReceipt, AuditedChange, TenantTx, WriteTx};
