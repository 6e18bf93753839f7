//! OpenAI's Responses API upstream: a Responses client's own request, sent to an OpenAI
//! target as it came (reasoning items, `include`, `prompt_cache_key`, client-side tools kept),
//! with the gateway's model, output bound and streaming, and `store: false` (nothing is kept
//! at OpenAI: the gateway is stateless, and a stored response would outlive the org's
//! retention). The answer passes through under the alias, its usage read.

use bytes::Bytes;
use portcullis_core::money::Usage;
use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};

use crate::chain::{Chunk, Limits, Reply};
use crate::error::ProviderError;
use crate::exchange::{self, Translate};
use crate::sse::Event;
use crate::target::Target;
use crate::usage;

const OPENAI_BASE: &str = "https://api.openai.com/v1";

/// The client's request as sent: `original` with the target's model, the chat request's
/// bound as `max_output_tokens`, `stream` as asked, and `store: false`.
pub(crate) fn native_request(
    original: &Value,
    chat: &Map<String, Value>,
    model: &str,
    stream: bool,
) -> Result<Value, ProviderError> {
    let bound = crate::exchange::native_bound(chat)?;
    let mut request = original.clone();
    request["model"] = json!(model);
    request["max_output_tokens"] = json!(bound);
    request["stream"] = json!(stream);
    request["store"] = json!(false);
    Ok(request)
}

/// Sends the client's own Responses request to an OpenAI target.
pub(crate) async fn call(
    http: &reqwest::Client,
    target: &Target,
    chat: &Map<String, Value>,
    original: &Value,
    stream: bool,
    limits: &Limits,
) -> Result<Reply, ProviderError> {
    let base = target
        .base_url
        .as_ref()
        .map_or(OPENAI_BASE, |u| u.as_str())
        .trim_end_matches('/');
    let payload = native_request(original, chat, &target.model, stream)?;
    let key = target.api_key.expose_secret();
    let sent = http
        .post(format!("{base}/responses"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(payload.to_string());
    let response = exchange::send(sent, key, limits).await?;
    let alias = chat
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or(&target.model)
        .to_owned();
    if !stream {
        return exchange::translated_json(response, limits, |bytes| native_answer(bytes, &alias))
            .await;
    }
    exchange::stream(response, limits, NativeStream { alias }).await
}

/// A whole Responses answer under the alias, with its usage; `None` when it is not one.
fn native_answer(body: &[u8], alias: &str) -> Option<(Bytes, Option<Usage>)> {
    let mut answer: Value = serde_json::from_slice(body).ok()?;
    if answer["object"] != "response" {
        return None;
    }
    answer["model"] = json!(alias);
    let usage = usage::responses(&answer);
    Some((Bytes::from(answer.to_string()), usage))
}

/// OpenAI's own Responses events, passed on; the response objects name the alias, and the
/// last one's usage is reported.
struct NativeStream {
    alias: String,
}

/// Events that carry the whole response object.
const WITH_RESPONSE: [&str; 6] = [
    "response.created",
    "response.in_progress",
    "response.queued",
    "response.completed",
    "response.incomplete",
    "response.failed",
];

/// Events that end the answer as OpenAI ends one.
const LAST: [&str; 3] = [
    "response.completed",
    "response.incomplete",
    "response.failed",
];

impl Translate for NativeStream {
    fn event(&mut self, event: Event, out: &mut Vec<Chunk>) -> Result<(), ProviderError> {
        let Some(data) = event.data.as_deref() else {
            return Ok(());
        };
        let Ok(mut parsed) = serde_json::from_slice::<Value>(data) else {
            out.push(Chunk::Events(event.raw));
            return Ok(());
        };
        let kind = parsed["type"].as_str().unwrap_or_default().to_owned();
        if kind == "error" {
            let message = parsed["message"]
                .as_str()
                .or_else(|| parsed["error"]["message"].as_str())
                .unwrap_or("the upstream stream failed");
            return Err(ProviderError::Status {
                status: 502,
                message: message.chars().take(500).collect(),
            });
        }
        if !WITH_RESPONSE.contains(&kind.as_str()) {
            out.push(Chunk::Events(event.raw));
            return Ok(());
        }
        parsed["response"]["model"] = json!(self.alias);
        out.push(Chunk::Events(Bytes::from(format!(
            "event: {kind}\ndata: {parsed}\n\n"
        ))));
        if LAST.contains(&kind.as_str()) {
            if let Some(usage) = usage::responses(&parsed["response"]) {
                out.push(Chunk::Usage(usage));
            }
            out.push(Chunk::Done);
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<Chunk>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn av_2_the_native_request_is_bounded_unstored_and_keeps_the_rest() {
        let original = json!({"model": "alias", "input": [{"type": "reasoning", "id": "rs_1",
            "encrypted_content": "opaque"}], "include": ["reasoning.encrypted_content"],
            "max_output_tokens": 100000, "store": true, "prompt_cache_key": "k"});
        let chat: Map<String, Value> = json!({"model": "alias", "max_completion_tokens": 4096})
            .as_object()
            .cloned()
            .unwrap();
        let sent = native_request(&original, &chat, "gpt-5", true).unwrap();
        assert_eq!(sent["model"], "gpt-5");
        assert_eq!(sent["max_output_tokens"], 4096);
        assert_eq!(sent["store"], false);
        assert_eq!(sent["stream"], true);
        assert_eq!(sent["input"], original["input"]);
        assert_eq!(sent["include"], original["include"]);
        assert_eq!(sent["prompt_cache_key"], "k");
        let unbounded = Map::new();
        assert!(native_request(&original, &unbounded, "gpt-5", false).is_err());
    }
}
