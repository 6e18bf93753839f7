//! Spend in PostgreSQL (AV-2, RM-4): budget leases taken atomically across every limit of a
//! request (`leases`), settlements written in batches (`settle`: ledger row, counters, lease,
//! daily usage in one transaction, idempotent by entry id), and what `/ledger` and `/usage`
//! read (`reports`).

mod leases;
mod reports;
mod settle;

pub use leases::{Granted, Take, Want, counter_state, renew, sweep, take};
pub use reports::{Grouping, LedgerEntry, UsageRow, ledger, usage};
pub use settle::{Charge, Returned, Settlement, settle};

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Which limit a counter and its leases belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Org,
    Team,
    Key,
    /// Requests per minute of a key.
    KeyRpm,
    /// Tokens per minute of a key.
    KeyTpm,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Org => "org",
            Self::Team => "team",
            Self::Key => "key",
            Self::KeyRpm => "key_rpm",
            Self::KeyTpm => "key_tpm",
        }
    }
}

/// One limit in one period: what a counter row counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Counter {
    pub scope: Scope,
    pub scope_id: Uuid,
    pub period_start: DateTime<Utc>,
}
