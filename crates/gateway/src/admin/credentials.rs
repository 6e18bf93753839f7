//! Provider credentials: the provider key goes in once and never comes out of the API; listings
//! show `last4` (AC-5). Sealed under the org's data key (EN-2).

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use portcullis_core::net::Destinations;
use portcullis_core::provider::ProviderKind;
use portcullis_policy::egress;
use portcullis_storage::AuditedChange;
use portcullis_storage::credentials::{self as store, Credential, NewCredential};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{check_name, parse_id};
use crate::error::ApiError;
use crate::guard::OrgCaller;
use crate::json::JsonBody;
use crate::state::AppState;

#[derive(Debug, Serialize)]
pub struct CredentialView {
    credential_id: String,
    name: String,
    provider: ProviderKind,
    base_url: Option<String>,
    last4: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Credential> for CredentialView {
    fn from(c: Credential) -> Self {
        Self {
            credential_id: c.credential_id.to_string(),
            name: c.name,
            provider: c.provider,
            base_url: c.base_url,
            last4: c.last4,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct CredentialList {
    data: Vec<CredentialView>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialBody {
    name: String,
    provider: String,
    api_key: String,
    base_url: Option<String>,
}

impl CredentialBody {
    /// The credential the body asks for, once it is valid; the provider key itself is never
    /// echoed in an error.
    async fn check(&self, state: &AppState) -> Result<NewCredential<'_>, ApiError> {
        check_name(&self.name)?;
        let provider: ProviderKind = self.provider.parse().map_err(|_| {
            ApiError::invalid_request(format!(
                "`provider` must be one of {}",
                ProviderKind::NAMES.trim_end_matches(", ")
            ))
        })?;
        if self.api_key.trim().is_empty() || self.api_key.len() > 4096 {
            return Err(ApiError::invalid_request(
                "`api_key` must be 1 to 4096 characters",
            ));
        }
        match &self.base_url {
            Some(url) => {
                let url = egress::check_base_url(url, &state.destinations)
                    .map_err(|refusal| ApiError::invalid_request(refusal.to_string()))?;
                resolves_somewhere_allowed(&url, &state.destinations).await?;
            }
            None if provider.needs_base_url() => {
                return Err(ApiError::invalid_request(format!(
                    "provider `{provider}` needs a `base_url`"
                )));
            }
            None => {}
        }
        Ok(NewCredential {
            name: self.name.trim(),
            provider,
            base_url: self.base_url.as_deref(),
            api_key: self.api_key.trim(),
        })
    }
}

/// A host name that resolves now only to addresses provider requests may not reach is refused
/// when it is saved, not at its first request. One that does not resolve (yet) is kept: the
/// resolver checks it again at every connection.
async fn resolves_somewhere_allowed(url: &url::Url, to: &Destinations) -> Result<(), ApiError> {
    let (Some(url::Host::Domain(name)), Some(port)) = (url.host(), url.port_or_known_default())
    else {
        return Ok(());
    };
    let lookup = tokio::net::lookup_host((name, port));
    let Ok(Ok(found)) = tokio::time::timeout(std::time::Duration::from_secs(2), lookup).await
    else {
        return Ok(());
    };
    let mut refusal = None;
    for addr in found {
        match to.check(addr) {
            Ok(()) => return Ok(()),
            Err(refused) => refusal = Some(refused),
        }
    }
    match refusal {
        Some(refused) => Err(ApiError::invalid_request(format!(
            "{} (as `{name}` resolves now)",
            egress::RefusedUrl::from(refused)
        ))),
        None => Ok(()),
    }
}

pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
) -> Result<Json<CredentialList>, ApiError> {
    let mut tx = state.db.begin_tenant(caller.org).await?;
    let credentials = store::list(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(CredentialList {
        data: credentials.into_iter().map(CredentialView::from).collect(),
    }))
}

pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
    JsonBody(body): JsonBody<CredentialBody>,
) -> Result<(StatusCode, Json<CredentialView>), ApiError> {
    let new = body.check(&state).await?;
    let credential_id = Uuid::now_v7();
    let mut tx = caller
        .begin_write(
            &state,
            AuditedChange::new("credential.added", "credential", credential_id),
        )
        .await?;
    let created = store::create(&mut tx, &state.keyring, credential_id, &new).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// `PUT .../credentials/{id}`: replaces the credential, its provider key included.
pub async fn replace(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
    Path((_, credential_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<CredentialBody>,
) -> Result<Json<CredentialView>, ApiError> {
    let credential_id: Uuid = parse_id(&credential_id)?;
    let new = body.check(&state).await?;
    let mut tx = caller
        .begin_write(
            &state,
            AuditedChange::new("credential.rotated", "credential", credential_id),
        )
        .await?;
    let replaced = store::replace(&mut tx, &state.keyring, credential_id, &new).await?;
    tx.commit().await?;
    super::routes_changed(&state, caller.org);
    Ok(Json(replaced.into()))
}

pub async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
    Path((_, credential_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let credential_id: Uuid = parse_id(&credential_id)?;
    let mut tx = caller
        .begin_write(
            &state,
            AuditedChange::new("credential.removed", "credential", credential_id),
        )
        .await?;
    store::delete(&mut tx, credential_id).await?;
    tx.commit().await?;
    super::routes_changed(&state, caller.org);
    Ok(StatusCode::NO_CONTENT)
}
