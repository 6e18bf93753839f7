//! The tenant transaction and the audited write transaction: the only ways to touch tenant
//! rows.

use portcullis_core::OrgId;
use portcullis_core::audit::{Actor, ChainHash, Source};
use serde_json::{Map, Value};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use crate::audit;
use crate::error::StorageError;

/// A transaction that set `portcullis.org_id` before anything else. Every policy compares
/// `org_id` with that transaction-local setting, so the transaction sees its org's rows and
/// no other. Dropping it rolls back.
#[derive(Debug)]
pub struct TenantTx {
    tx: Transaction<'static, Postgres>,
    org: OrgId,
}

impl TenantTx {
    pub(crate) async fn begin(pool: &PgPool, org: OrgId) -> Result<Self, StorageError> {
        let mut tx = pool.begin().await?;
        // `true`: transaction-local. A session-level setting would outlive this transaction
        // on the pooled connection and leak the org into the next borrower.
        sqlx::query("select set_config('portcullis.org_id', $1, true)")
            .bind(org.to_string())
            .execute(&mut *tx)
            .await?;
        Ok(Self { tx, org })
    }

    pub fn org(&self) -> OrgId {
        self.org
    }

    pub(crate) fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    pub async fn commit(self) -> Result<(), StorageError> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// What a write changes, for its audit entry: a dotted action (`org.created`) and its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditedChange {
    pub action: &'static str,
    pub target_type: &'static str,
    pub target_id: String,
}

impl AuditedChange {
    pub fn new(action: &'static str, target_type: &'static str, target_id: impl ToString) -> Self {
        Self {
            action,
            target_type,
            target_id: target_id.to_string(),
        }
    }
}

/// The only handle mutating repository functions accept. Its audit entry is appended in the
/// same transaction at commit: the change and its record land together or not at all.
#[must_use = "dropping a WriteTx rolls the change back"]
#[derive(Debug)]
pub struct WriteTx {
    inner: TenantTx,
    actor: Actor,
    source: Source,
    change: AuditedChange,
    details: Map<String, Value>,
    /// Further entries of the same transaction (a bootstrap records several facts).
    also: Vec<(AuditedChange, Map<String, Value>)>,
}

/// Where a committed change sits in its org's audit chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditReceipt {
    pub seq: i64,
    pub hash: ChainHash,
}

impl WriteTx {
    pub(crate) fn new(
        inner: TenantTx,
        actor: Actor,
        source: Source,
        change: AuditedChange,
    ) -> Self {
        Self {
            inner,
            actor,
            source,
            change,
            details: Map::new(),
            also: Vec::new(),
        }
    }

    /// Records one more entry, after the main one, in the same transaction. For commands that
    /// make several changes at once; every API route records exactly one.
    pub fn record_also(&mut self, change: AuditedChange, details: Map<String, Value>) {
        self.also.push((change, details));
    }

    pub fn org(&self) -> OrgId {
        self.inner.org
    }

    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// Adds a fact to the audit entry. Never a secret, password or prompt (AC-5).
    pub fn detail(&mut self, key: &str, value: impl Into<Value>) {
        self.details.insert(key.to_owned(), value.into());
    }

    /// Reads inside the same transaction.
    pub fn tenant(&mut self) -> &mut TenantTx {
        &mut self.inner
    }

    pub(crate) fn conn(&mut self) -> &mut PgConnection {
        self.inner.conn()
    }

    /// Appends the audit entry, then commits both.
    pub async fn commit(mut self) -> Result<AuditReceipt, StorageError> {
        let org = self.inner.org;
        let details = Value::Object(std::mem::take(&mut self.details));
        let mut receipt = audit::append(
            self.inner.conn(),
            org,
            &self.actor,
            &self.source,
            &self.change,
            details,
        )
        .await?;
        for (change, details) in std::mem::take(&mut self.also) {
            receipt = audit::append(
                self.inner.conn(),
                org,
                &self.actor,
                &self.source,
                &change,
                Value::Object(details),
            )
            .await?;
        }
        self.inner.commit().await?;
        Ok(receipt)
    }
}
