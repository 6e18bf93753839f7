//! Versioned prompts (CM-2): create (with version 1), add versions (immutable: no route edits
//! or deletes one), list, and move labels such as `production` to deploy or roll back. Every
//! change is audited in its transaction.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use portcullis_policy::prompt::{self, PromptMessage};
use portcullis_storage::AuditedChange;
use portcullis_storage::prompts as store;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::plain_name;
use crate::error::ApiError;
use crate::guard::OrgCaller;
use crate::json::JsonBody;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPrompt {
    name: String,
    messages: Vec<PromptMessage>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewVersion {
    messages: Vec<PromptMessage>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelMove {
    version: i32,
}

#[derive(Debug, Serialize)]
pub struct VersionCreated {
    prompt_id: Uuid,
    name: String,
    version: i32,
    /// The variables its templates use.
    variables: Vec<String>,
}

fn checked(messages: &[PromptMessage]) -> Result<(Value, Vec<String>), ApiError> {
    let variables =
        prompt::check(messages).map_err(|e| ApiError::invalid_request(e.to_string()))?;
    let value = serde_json::to_value(messages).map_err(ApiError::internal)?;
    Ok((value, variables))
}

/// `POST .../prompts {name, messages}`: the prompt and its version 1.
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
    JsonBody(body): JsonBody<NewPrompt>,
) -> Result<(StatusCode, Json<VersionCreated>), ApiError> {
    plain_name("name", &body.name)?;
    let (messages, variables) = checked(&body.messages)?;
    let prompt_id = Uuid::now_v7();
    let change = AuditedChange::new("prompt.created", "prompt", prompt_id);
    let mut tx = caller.begin_write(&state, change).await?;
    store::create(&mut tx, prompt_id, &body.name, &messages).await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(VersionCreated {
            prompt_id,
            name: body.name,
            version: 1,
            variables,
        }),
    ))
}

/// `POST .../prompts/{name}/versions {messages}`: the next version.
pub async fn add_version(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
    Path((_, name)): Path<(String, String)>,
    JsonBody(body): JsonBody<NewVersion>,
) -> Result<(StatusCode, Json<VersionCreated>), ApiError> {
    plain_name("name", &name)?;
    let (messages, variables) = checked(&body.messages)?;
    let mut read = state.db.begin_tenant(caller.org).await?;
    let prompt_id = store::id_of(&mut read, &name).await?;
    read.commit().await?;
    let change = AuditedChange::new("prompt.version_created", "prompt", prompt_id);
    let mut tx = caller.begin_write(&state, change).await?;
    let version = store::add_version(&mut tx, prompt_id, &messages).await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(VersionCreated {
            prompt_id,
            name,
            version,
            variables,
        }),
    ))
}

#[derive(Debug, Serialize)]
pub struct LabelView {
    label: String,
    version: i32,
    previous_version: Option<i32>,
}

/// `PUT .../prompts/{name}/labels/{label} {version}`: deploy or roll back, from the next request.
pub async fn move_label(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
    Path((_, name, label)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<LabelMove>,
) -> Result<Json<LabelView>, ApiError> {
    plain_name("name", &name)?;
    plain_name("label", &label)?;
    let mut read = state.db.begin_tenant(caller.org).await?;
    let prompt_id = store::id_of(&mut read, &name).await?;
    read.commit().await?;
    let change = AuditedChange::new("prompt.label_moved", "prompt", prompt_id);
    let mut tx = caller.begin_write(&state, change).await?;
    let previous = store::move_label(&mut tx, prompt_id, &label, body.version)
        .await
        .map_err(|e| match e {
            portcullis_storage::StorageError::NotFound => ApiError::NotFound {
                code: "version_not_found",
                message: format!("`{name}` has no version {}", body.version),
            },
            other => other.into(),
        })?;
    tx.commit().await?;
    Ok(Json(LabelView {
        label,
        version: body.version,
        previous_version: previous,
    }))
}

#[derive(Debug, Serialize)]
struct PromptView {
    prompt_id: Uuid,
    name: String,
    created_at: DateTime<Utc>,
    labels: Value,
    latest_version: Option<i32>,
}

#[derive(Debug, Serialize)]
pub struct PromptList {
    data: Vec<PromptView>,
}

/// `GET .../prompts`.
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
) -> Result<Json<PromptList>, ApiError> {
    let mut tx = state.db.begin_tenant(caller.org).await?;
    let prompts = store::list(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(PromptList {
        data: prompts
            .into_iter()
            .map(|p| PromptView {
                prompt_id: p.prompt_id,
                name: p.name,
                created_at: p.created_at,
                labels: p.labels,
                latest_version: p.latest_version,
            })
            .collect(),
    }))
}

#[derive(Debug, Serialize)]
struct VersionView {
    version: i32,
    messages: Value,
    created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
pub struct VersionList {
    name: String,
    versions: Vec<VersionView>,
}

/// `GET .../prompts/{name}/versions`.
pub async fn versions(
    State(state): State<AppState>,
    Extension(caller): Extension<OrgCaller>,
    Path((_, name)): Path<(String, String)>,
) -> Result<Json<VersionList>, ApiError> {
    plain_name("name", &name)?;
    let mut tx = state.db.begin_tenant(caller.org).await?;
    let prompt_id = store::id_of(&mut tx, &name).await?;
    let versions = store::versions(&mut tx, prompt_id).await?;
    tx.commit().await?;
    Ok(Json(VersionList {
        name,
        versions: versions
            .into_iter()
            .map(|v| VersionView {
                version: v.version,
                messages: v.messages,
                created_at: v.created_at,
            })
            .collect(),
    }))
}
