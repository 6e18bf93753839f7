//! Audit entries in PostgreSQL: the append that every [`WriteTx`](crate::WriteTx) makes at
//! commit, listing, and verification of an org's chain (AU-1..3).

use chrono::{DateTime, Utc};
use portcullis_core::audit::{
    self, Actor, ActorKind, AuditRecord, ChainHash, ChainSummary, ChainVerifier, ChainedRecord,
    GENESIS_HASH, KnownHead, Source,
};
use portcullis_core::{AuditEventId, OrgId};
use serde_json::Value;
use sqlx::PgConnection;
use sqlx::types::ipnetwork::IpNetwork;
use uuid::Uuid;

use crate::Db;
use crate::error::StorageError;
use crate::tenant::{AuditReceipt, AuditedChange, TenantTx};

/// Distinguishes the audit chain's advisory locks from any other advisory lock user.
const CHAIN_LOCK_NAMESPACE: i64 = 0x5043_4155_4449_5400; // "PCAUDIT\0"

/// Rows read per round trip while verifying.
const VERIFY_PAGE: i64 = 1_000;

/// Appends one entry at the head of the org's chain. Appends in one org are serialised by a
/// transaction-scoped advisory lock, held from reading the head until commit, so two
/// concurrent writers can never link to the same predecessor.
pub(crate) async fn append(
    conn: &mut PgConnection,
    org: OrgId,
    actor: &Actor,
    source: &Source,
    change: &AuditedChange,
    details: Value,
) -> Result<AuditReceipt, StorageError> {
    sqlx::query("select pg_advisory_xact_lock($1)")
        .bind(chain_lock_key(org))
        .execute(&mut *conn)
        .await?;
    let head: Option<(i64, Vec<u8>)> =
        sqlx::query_as("select seq, hash from audit_events order by seq desc limit 1")
            .fetch_optional(&mut *conn)
            .await?;
    let (prev_seq, prev_hash) = match head {
        Some((seq, hash)) => (seq, stored_hash(org, seq, &hash)?),
        None => (0, GENESIS_HASH),
    };
    let record = AuditRecord {
        org_id: org,
        seq: prev_seq + 1,
        id: AuditEventId::new(),
        occurred_at: audit::to_stored_precision(Utc::now()),
        actor: actor.clone(),
        action: change.action.to_owned(),
        target_type: change.target_type.to_owned(),
        target_id: change.target_id.clone(),
        source: source.clone(),
        details,
    };
    let hash = audit::chain_hash(&prev_hash, &record);
    sqlx::query(
        "insert into audit_events (org_id, seq, event_id, occurred_at, actor_type, actor_id,
             action, target_type, target_id, client_ip, user_agent, request_id, details,
             prev_hash, hash)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(org.as_uuid())
    .bind(record.seq)
    .bind(record.id.as_uuid())
    .bind(record.occurred_at)
    .bind(record.actor.kind.as_str())
    .bind(&record.actor.id)
    .bind(&record.action)
    .bind(&record.target_type)
    .bind(&record.target_id)
    .bind(record.source.client_ip.map(IpNetwork::from))
    .bind(&record.source.user_agent)
    .bind(&record.source.request_id)
    .bind(&record.details)
    .bind(prev_hash.0.as_slice())
    .bind(hash.0.as_slice())
    .execute(&mut *conn)
    .await
    .map_err(StorageError::from_write)?;
    Ok(AuditReceipt {
        seq: record.seq,
        hash,
    })
}

fn chain_lock_key(org: OrgId) -> i64 {
    let bytes = org.as_uuid().as_bytes();
    let mut tail = [0u8; 8];
    tail.copy_from_slice(&bytes[8..]);
    // The last eight bytes of a UUIDv7 are random; a rare collision only serialises two orgs.
    CHAIN_LOCK_NAMESPACE ^ i64::from_be_bytes(tail)
}

fn stored_hash(org_id: OrgId, seq: i64, bytes: &[u8]) -> Result<ChainHash, StorageError> {
    ChainHash::from_slice(bytes).map_err(|_| StorageError::AuditChain {
        org_id,
        cause: audit::ChainBreak::Edited { seq },
    })
}

#[derive(sqlx::FromRow)]
struct EventRow {
    org_id: Uuid,
    seq: i64,
    event_id: Uuid,
    occurred_at: DateTime<Utc>,
    actor_type: String,
    actor_id: String,
    action: String,
    target_type: String,
    target_id: String,
    client_ip: Option<IpNetwork>,
    user_agent: Option<String>,
    request_id: Option<String>,
    details: Value,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
}

const EVENT_COLUMNS: &str = "org_id, seq, event_id, occurred_at, actor_type, actor_id, action,
    target_type, target_id, client_ip, user_agent, request_id, details, prev_hash, hash";

impl EventRow {
    fn into_chained(self) -> Result<ChainedRecord, StorageError> {
        let org_id = OrgId::from_uuid(self.org_id);
        let seq = self.seq;
        // An unknown actor kind can only come from an edited row: report it as such.
        let kind = ActorKind::parse(&self.actor_type).ok_or(StorageError::AuditChain {
            org_id,
            cause: audit::ChainBreak::Edited { seq },
        })?;
        Ok(ChainedRecord {
            record: AuditRecord {
                org_id,
                seq,
                id: AuditEventId::from_uuid(self.event_id),
                occurred_at: self.occurred_at,
                actor: Actor {
                    kind,
                    id: self.actor_id,
                },
                action: self.action,
                target_type: self.target_type,
                target_id: self.target_id,
                source: Source {
                    client_ip: self.client_ip.map(|net| net.ip()),
                    user_agent: self.user_agent,
                    request_id: self.request_id,
                },
                details: self.details,
            },
            prev_hash: stored_hash(org_id, seq, &self.prev_hash)?,
            hash: stored_hash(org_id, seq, &self.hash)?,
        })
    }
}

/// Which entries to list.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub after_seq: i64,
    pub limit: i64,
    pub action: Option<String>,
}

/// Entries of the transaction's org in chain order.
pub async fn list(
    tx: &mut TenantTx,
    filter: &EventFilter,
) -> Result<Vec<ChainedRecord>, StorageError> {
    let rows: Vec<EventRow> = sqlx::query_as(&format!(
        "select {EVENT_COLUMNS} from audit_events
         where seq > $1 and ($2::text is null or action = $2)
         order by seq limit $3"
    ))
    .bind(filter.after_seq)
    .bind(&filter.action)
    .bind(filter.limit.clamp(1, VERIFY_PAGE))
    .fetch_all(tx.conn())
    .await?;
    rows.into_iter().map(EventRow::into_chained).collect()
}

/// Verifies one org's whole chain, page by page. With `known_head`, also proves that the chain
/// still holds an entry recorded earlier, so a cut tail is found. Entries committed while the
/// walk runs are verified too: appends commit in `seq` order, so no page sees a false gap.
pub async fn verify(
    db: &Db,
    org: OrgId,
    known_head: Option<KnownHead>,
) -> Result<ChainSummary, StorageError> {
    let mut tx = db.begin_tenant(org).await?;
    let mut verifier = ChainVerifier::new(org, known_head);
    let mut after_seq = 0;
    loop {
        let page = list(
            &mut tx,
            &EventFilter {
                after_seq,
                limit: VERIFY_PAGE,
                action: None,
            },
        )
        .await?;
        for entry in &page {
            verifier
                .push(entry)
                .map_err(|cause| StorageError::AuditChain { org_id: org, cause })?;
        }
        match page.last() {
            Some(last) if page.len() as i64 == VERIFY_PAGE => after_seq = last.record.seq,
            _ => break,
        }
    }
    tx.commit().await?;
    verifier
        .finish()
        .map_err(|cause| StorageError::AuditChain { org_id: org, cause })
}
