//! What the data plane reads: a virtual key by hash, a route resolved into its targets with
//! their provider keys opened, and the notifications that keep caches of both honest.

use chrono::{DateTime, Utc};
use portcullis_core::crypto::Keyring;
use portcullis_core::token::TokenHash;
use portcullis_core::{KeyId, OrgId};
use serde_json::Value;
use sqlx::postgres::PgListener;
use uuid::Uuid;

use crate::Db;
use crate::credentials;
use crate::error::StorageError;
use crate::tenant::TenantTx;

/// A live virtual key, as the data plane authorises with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveKey {
    pub key_id: KeyId,
    pub org_id: OrgId,
    pub team_id: Option<Uuid>,
    /// `None`: every alias of the org.
    pub models: Option<Vec<String>>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Through `auth_virtual_key()`: a key's org is not known before it is found.
pub async fn live_key(db: &Db, token: &TokenHash) -> Result<Option<LiveKey>, StorageError> {
    type Row = (
        Uuid,
        Uuid,
        Option<Uuid>,
        Option<Vec<String>>,
        Option<DateTime<Utc>>,
    );
    let row: Option<Row> = sqlx::query_as(
        "select key_id, org_id, team_id, models, expires_at from auth_virtual_key($1)",
    )
    .bind(token.0.as_slice())
    .fetch_optional(db.pool())
    .await?;
    Ok(
        row.map(|(key_id, org_id, team_id, models, expires_at)| LiveKey {
            key_id: KeyId::from_uuid(key_id),
            org_id: OrgId::from_uuid(org_id),
            team_id,
            models,
            expires_at,
        }),
    )
}

/// One target of a resolved route, its provider key in clear (kept in memory only).
#[derive(Clone, PartialEq, Eq)]
pub struct ResolvedTarget {
    pub credential_id: Uuid,
    pub credential_name: String,
    pub provider: String,
    pub base_url: Option<String>,
    pub api_key: String,
    pub model: String,
    /// Set when the route spreads its first attempt by weight.
    pub weight: Option<u32>,
}

impl std::fmt::Debug for ResolvedTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedTarget")
            .field("credential", &self.credential_name)
            .field("provider", &self.provider)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

/// A route with its fallback routes, flattened: `primary` first (ordered per request by
/// weight), then each fallback route's targets in chain order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedRoute {
    pub alias: String,
    pub primary: Vec<ResolvedTarget>,
    pub fallback: Vec<ResolvedTarget>,
    pub timeout_ms: Option<i32>,
}

/// Resolves `alias` in the transaction's org; `None` if there is no such route.
pub async fn resolve_route(
    tx: &mut TenantTx,
    ring: &Keyring,
    alias: &str,
) -> Result<Option<ResolvedRoute>, StorageError> {
    let routes = crate::model_routes::list(tx).await?;
    let Some(route) = routes.iter().find(|r| r.alias == alias) else {
        return Ok(None);
    };
    let creds = credentials::list(tx).await?;
    let resolve_targets = |targets: &Value| -> Vec<(Uuid, String, Option<u32>)> {
        targets
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| {
                let id = t.get("credential_id")?.as_str()?.parse().ok()?;
                let model = t.get("model")?.as_str()?.to_owned();
                let weight = t
                    .get("weight")
                    .and_then(Value::as_u64)
                    .and_then(|w| u32::try_from(w).ok());
                Some((id, model, weight))
            })
            .collect()
    };
    let primary_refs = resolve_targets(&route.targets);
    // Fallback routes in chain order, each once (the admin API refuses cycles anyway).
    let mut fallback_refs = Vec::new();
    let mut seen = vec![route.alias.clone()];
    let mut queue: std::collections::VecDeque<String> = route.fallback.iter().cloned().collect();
    while let Some(next) = queue.pop_front() {
        if seen.contains(&next) {
            continue;
        }
        seen.push(next.clone());
        if let Some(fallback) = routes.iter().find(|r| r.alias == next) {
            fallback_refs.extend(resolve_targets(&fallback.targets));
            queue.extend(fallback.fallback.iter().cloned());
        }
    }
    let primary = open_targets(tx, ring, &creds, &primary_refs).await?;
    let fallback = open_targets(tx, ring, &creds, &fallback_refs).await?;
    Ok(Some(ResolvedRoute {
        alias: route.alias.clone(),
        primary,
        fallback,
        timeout_ms: route.timeout_ms,
    }))
}

/// Opens the provider key of each referenced credential; a reference to a credential that is
/// gone is skipped.
async fn open_targets(
    tx: &mut TenantTx,
    ring: &Keyring,
    creds: &[credentials::Credential],
    refs: &[(Uuid, String, Option<u32>)],
) -> Result<Vec<ResolvedTarget>, StorageError> {
    let mut targets = Vec::with_capacity(refs.len());
    for (id, model, weight) in refs {
        let Some(credential) = creds.iter().find(|c| c.credential_id == *id) else {
            continue;
        };
        targets.push(ResolvedTarget {
            credential_id: *id,
            credential_name: credential.name.clone(),
            provider: credential.provider.clone(),
            base_url: credential.base_url.clone(),
            api_key: credentials::reveal(tx, ring, *id).await?,
            model: model.clone(),
            weight: *weight,
        });
    }
    Ok(targets)
}

/// The route aliases of the transaction's org.
pub async fn aliases(tx: &mut TenantTx) -> Result<Vec<String>, StorageError> {
    Ok(crate::model_routes::list(tx)
        .await?
        .into_iter()
        .map(|r| r.alias)
        .collect())
}

/// A change another process made: drop what the cache holds for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A virtual key with this token hash changed (revoked, rotated, edited).
    Key(TokenHash),
    /// Routes or credentials of this org changed.
    Routes(OrgId),
    /// The listener reconnected: anything may have changed meanwhile.
    Unknown,
}

/// Notifications of changes, over a dedicated connection.
#[derive(Debug)]
pub struct Changes {
    listener: PgListener,
}

impl Changes {
    pub async fn listen(db: &Db) -> Result<Self, StorageError> {
        let mut listener = PgListener::connect_with(db.pool()).await?;
        listener
            .listen_all(["portcullis_keys", "portcullis_routes"])
            .await?;
        Ok(Self { listener })
    }

    /// The next change. A dropped connection is re-established by sqlx; that gap is reported
    /// as `Unknown` so that callers drop everything.
    pub async fn next(&mut self) -> Result<Change, StorageError> {
        match self.listener.try_recv().await? {
            None => Ok(Change::Unknown),
            Some(notification) => Ok(parse_change(notification.channel(), notification.payload())),
        }
    }
}

fn parse_change(channel: &str, payload: &str) -> Change {
    match channel {
        "portcullis_keys" => {
            let mut hash = [0u8; 32];
            match hex::decode_to_slice(payload, &mut hash) {
                Ok(()) => Change::Key(TokenHash(hash)),
                Err(_) => Change::Unknown,
            }
        }
        "portcullis_routes" => payload.parse().map_or(Change::Unknown, Change::Routes),
        _ => Change::Unknown,
    }
}
