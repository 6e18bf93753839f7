//! Stored prompts (CM-2) used from a chat request: `"prompt": {"name", "label" or "version",
//! "variables"}`.

use portcullis_policy::prompt::{self, PromptMessage};
use portcullis_storage::dataplane::LiveKey;
use portcullis_storage::prompts;
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::state::AppState;

/// A stored prompt (CM-2), `{"name", "label" or "version", "variables"}`: its version (by
/// label, `production` when neither is given) rendered with the variables, its messages put
/// before the request's own. Returns the bytes the rendered messages add.
pub(super) async fn apply_prompt(
    state: &AppState,
    key: &LiveKey,
    prompt: Value,
    request: &mut Map<String, Value>,
) -> Result<usize, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Ask {
        name: String,
        label: Option<String>,
        version: Option<i32>,
        #[serde(default)]
        variables: Map<String, Value>,
    }
    let ask: Ask = serde_json::from_value(prompt).map_err(|e| {
        ApiError::invalid_request(format!(
            "`prompt` is {{name, label or version, variables}}: {e}"
        ))
    })?;
    crate::admin::plain_name("prompt.name", &ask.name)?;
    if let Some(label) = &ask.label {
        crate::admin::plain_name("prompt.label", label)?;
    }
    let pick = match (ask.label, ask.version) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_request(
                "`prompt` takes a label or a version, not both",
            ));
        }
        (None, Some(version)) => prompts::Pick::Version(version),
        (label, None) => prompts::Pick::Label(label.unwrap_or_else(|| "production".to_owned())),
    };
    let mut tx = state.db.begin_tenant(key.org_id).await?;
    let found = prompts::resolve(&mut tx, &ask.name, &pick).await?;
    tx.commit().await?;
    let (version, messages) = found.ok_or_else(|| ApiError::NotFound {
        code: "prompt_not_found",
        message: format!("no prompt `{}` with that label or version", ask.name),
    })?;
    let messages: Vec<PromptMessage> =
        serde_json::from_value(messages).map_err(ApiError::internal)?;
    // Off the async workers, a few at once (AV-4): a render is bounded, but not free.
    let variables = ask.variables;
    let rendered = state
        .compute
        .run(move || prompt::render(&messages, &variables))
        .await?
        .map_err(|e| ApiError::InvalidRequest {
            code: "invalid_request",
            message: format!("prompt `{}` version {version}: {e}", ask.name),
        })?;
    // Content plus the JSON around each message.
    let added = rendered
        .iter()
        .map(|m| m.content.len() + m.role.len() + 32)
        .sum();
    let mut all: Vec<Value> = rendered
        .into_iter()
        .map(|m| json!({"role": m.role, "content": m.content}))
        .collect();
    if let Some(Value::Array(own)) = request.remove("messages") {
        all.extend(own);
    }
    request.insert("messages".into(), Value::Array(all));
    Ok(added)
}
