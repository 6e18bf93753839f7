//! OpenAI's Chat Completions wire format, spoken by OpenAI, OpenAI-compatible servers (vLLM,
//! Ollama, Groq, Mistral, DeepSeek, Together, OpenRouter: by base URL) and Azure OpenAI
//! (deployment in the path, `api-key` header). The body passes through with `model` set to the
//! target's; nothing else of the client's request chooses where it goes.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};

use crate::chain::{Operation, Reply};
use crate::error::{ProviderError, scrub};
use crate::target::{ProviderKind, Target};

const OPENAI_BASE: &str = "https://api.openai.com/v1";
const AZURE_API_VERSION: &str = "2024-10-21";
/// Error bodies are read up to this size: enough for a message, never a flood.
const MAX_ERROR_BODY: usize = 64 * 1024;

fn endpoint(target: &Target, operation: Operation) -> Result<String, ProviderError> {
    let path = match operation {
        Operation::Chat { .. } => "chat/completions",
        Operation::Embeddings => "embeddings",
    };
    let base = target
        .base_url
        .as_ref()
        .map(|u| u.as_str().trim_end_matches('/').to_owned());
    match (target.provider, base) {
        (ProviderKind::OpenAi, base) => {
            Ok(format!("{}/{path}", base.as_deref().unwrap_or(OPENAI_BASE)))
        }
        (ProviderKind::OpenAiCompatible, Some(base)) => Ok(format!("{base}/{path}")),
        (ProviderKind::Azure, Some(base)) => Ok(format!(
            "{base}/openai/deployments/{}/{path}?api-version={AZURE_API_VERSION}",
            target.model
        )),
        _ => Err(ProviderError::Unsupported(
            "the credential has no base URL".into(),
        )),
    }
}

pub(crate) async fn call(
    http: &reqwest::Client,
    target: &Target,
    body: &Map<String, Value>,
    operation: Operation,
    timeout: Duration,
) -> Result<Reply, ProviderError> {
    let stream = operation == Operation::Chat { stream: true };
    let url = endpoint(target, operation)?;
    let payload = serde_json::to_vec(&WithModel {
        model: &target.model,
        body,
    })
    .map_err(|_| ProviderError::InvalidResponse)?;
    let key = target.api_key.expose_secret();
    let request = http
        .post(url)
        .header("content-type", "application/json")
        .body(payload);
    let request = match target.provider {
        ProviderKind::Azure => request.header("api-key", key),
        _ => request.bearer_auth(key),
    };
    let response = tokio::time::timeout(timeout, request.send())
        .await
        .map_err(|_| ProviderError::Timeout)?
        .map_err(|e| ProviderError::from_reqwest(&e))?;
    let status = response.status();
    if !status.is_success() {
        let bytes = tokio::time::timeout(timeout, read_bounded(response, MAX_ERROR_BODY))
            .await
            .map_err(|_| ProviderError::Timeout)?;
        return Err(ProviderError::Status {
            status: status.as_u16(),
            message: scrub(&error_message(&bytes), key),
        });
    }
    if stream {
        let mut chunks = response.bytes_stream();
        let first = tokio::time::timeout(timeout, chunks.next())
            .await
            .map_err(|_| ProviderError::Timeout)?
            .ok_or(ProviderError::InvalidResponse)?
            .map_err(|e| ProviderError::from_reqwest(&e))?;
        let rest = chunks.map_err(|e| ProviderError::from_reqwest(&e)).boxed();
        return Ok(Reply::Stream { first, rest });
    }
    let body = tokio::time::timeout(timeout, response.bytes())
        .await
        .map_err(|_| ProviderError::Timeout)?
        .map_err(|e| ProviderError::from_reqwest(&e))?;
    Ok(Reply::Json {
        status: status.as_u16(),
        body,
    })
}

/// The client's body with `model` replaced, serialised without copying the body.
struct WithModel<'a> {
    model: &'a str,
    body: &'a Map<String, Value>,
}

impl serde::Serialize for WithModel<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.body.len() + 1))?;
        map.serialize_entry("model", self.model)?;
        for (key, value) in self.body.iter().filter(|(key, _)| key.as_str() != "model") {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

async fn read_bounded(response: reqwest::Response, limit: usize) -> Bytes {
    let mut out = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(Ok(chunk)) = chunks.next().await {
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    Bytes::from(out)
}

/// `error.message` of an OpenAI-shaped error body, or the start of the text.
fn error_message(bytes: &[u8]) -> String {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned())
}
