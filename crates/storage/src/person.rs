//! The audited transaction of a person's own account: sessions, second factor. A person
//! belongs to several orgs and a login concerns them all, so at commit it appends one audit
//! entry in each of the person's orgs, in the same transaction as the change (AU-3): the
//! change and its entries land together or not at all.

use portcullis_core::audit::{Actor, ActorKind, Source};
use portcullis_core::{OrgId, UserId};
use serde_json::{Map, Value};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::audit;
use crate::error::StorageError;
use crate::tenant::{AuditReceipt, AuditedChange};

/// The only handle the mutating functions of [`crate::auth`] accept.
#[must_use = "dropping a PersonTx rolls the change back"]
#[derive(Debug)]
pub struct PersonTx {
    tx: Transaction<'static, Postgres>,
    user: UserId,
    source: Source,
    action: &'static str,
    details: Map<String, Value>,
}

impl PersonTx {
    pub(crate) async fn begin(
        pool: &PgPool,
        user: UserId,
        source: &Source,
        action: &'static str,
    ) -> Result<Self, StorageError> {
        Ok(Self {
            tx: pool.begin().await?,
            user,
            source: source.clone(),
            action,
            details: Map::new(),
        })
    }

    pub fn user(&self) -> UserId {
        self.user
    }

    /// Adds a fact to the entries. Never a secret, password or code (AC-5).
    pub fn detail(&mut self, key: &str, value: impl Into<Value>) {
        self.details.insert(key.to_owned(), value.into());
    }

    pub(crate) fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// Appends the entry in each of the person's orgs (in org order, so that two of these
    /// never wait on each other's chains), then commits: the orgs it was recorded in and
    /// each one's receipt.
    pub async fn commit(mut self) -> Result<Vec<(OrgId, AuditReceipt)>, StorageError> {
        let orgs: Vec<Uuid> =
            sqlx::query_scalar("select org_id from auth_user_memberships($1) order by org_id")
                .bind(self.user.as_uuid())
                .fetch_all(&mut *self.tx)
                .await?;
        let actor = Actor {
            kind: ActorKind::User,
            id: self.user.to_string(),
        };
        let change = AuditedChange::new(self.action, "user", self.user);
        let details = Value::Object(std::mem::take(&mut self.details));
        let mut receipts = Vec::with_capacity(orgs.len());
        for org in orgs.into_iter().map(OrgId::from_uuid) {
            // Transaction-local, like every tenant transaction's: each entry is written as
            // its own org's, under that org's row-level security.
            sqlx::query("select set_config('portcullis.org_id', $1, true)")
                .bind(org.to_string())
                .execute(&mut *self.tx)
                .await?;
            let receipt = audit::append(
                &mut self.tx,
                org,
                &actor,
                &self.source,
                &change,
                details.clone(),
            )
            .await?;
            receipts.push((org, receipt));
        }
        self.tx.commit().await?;
        Ok(receipts)
    }
}
