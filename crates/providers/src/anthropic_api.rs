//! The Anthropic adapter: an OpenAI-shaped chat request sent to Anthropic's Messages API, its
//! answer (and stream) turned back into OpenAI's shape.

use bytes::Bytes;
use portcullis_core::money::Usage;
use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};

use crate::chain::{Chunk, Limits, Operation, Reply};
use crate::error::ProviderError;
use crate::exchange::{self, Translate};
use crate::sse::Event;
use crate::target::Target;
use crate::usage::{self, AnthropicUsage};

const ANTHROPIC_BASE: &str = "https://api.anthropic.com";
const ANTHROPIC_VERSION: &str = "2023-06-01";
/// Anthropic requires `max_tokens`; OpenAI clients often leave it out.
const DEFAULT_MAX_TOKENS: u64 = 4096;

fn text_of(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn blocks_of(content: &Value) -> Vec<Value> {
    match content {
        Value::String(text) if !text.is_empty() => vec![json!({"type": "text", "text": text})],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| match part["type"].as_str() {
                Some("text") => Some(json!({"type": "text", "text": part["text"]})),
                Some("image_url") => {
                    let url = part["image_url"]["url"].as_str().unwrap_or_default();
                    let source = match url
                        .strip_prefix("data:")
                        .and_then(|r| r.split_once(";base64,"))
                    {
                        Some((media_type, data)) => {
                            json!({"type": "base64", "media_type": media_type, "data": data})
                        }
                        None => json!({"type": "url", "url": url}),
                    };
                    Some(json!({"type": "image", "source": source}))
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// An OpenAI chat request in Anthropic's shape, for `model`.
pub(crate) fn request(body: &Map<String, Value>, model: &str) -> Value {
    let mut system = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    for message in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match message["role"].as_str() {
            Some("system" | "developer") => system.push(text_of(&message["content"])),
            Some("tool") => {
                let result = json!({"type": "tool_result", "tool_use_id": message["tool_call_id"],
                                    "content": text_of(&message["content"])});
                // Consecutive tool results go back in one user turn, as Anthropic expects.
                match messages.last_mut() {
                    Some(last)
                        if last["role"] == "user"
                            && last["content"][0]["type"] == "tool_result" =>
                    {
                        if let Some(blocks) = last["content"].as_array_mut() {
                            blocks.push(result);
                        }
                    }
                    _ => messages.push(json!({"role": "user", "content": [result]})),
                }
            }
            Some(role @ ("user" | "assistant")) => {
                let mut blocks = blocks_of(&message["content"]);
                for call in message["tool_calls"].as_array().into_iter().flatten() {
                    let input: Value = call["function"]["arguments"]
                        .as_str()
                        .and_then(|a| serde_json::from_str(a).ok())
                        .unwrap_or_else(|| json!({}));
                    blocks.push(json!({"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": input}));
                }
                messages.push(json!({"role": role, "content": blocks}));
            }
            _ => {}
        }
    }
    let max_tokens = body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    let mut out = json!({"model": model, "max_tokens": max_tokens, "messages": messages});
    if !system.is_empty() {
        out["system"] = json!(system.join("\n"));
    }
    for key in ["temperature", "top_p"] {
        if let Some(value) = body.get(key) {
            out[key] = value.clone();
        }
    }
    match body.get("stop") {
        Some(Value::String(stop)) => out["stop_sequences"] = json!([stop]),
        Some(Value::Array(stops)) => out["stop_sequences"] = json!(stops),
        _ => {}
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        out["tools"] = tools
            .iter()
            .map(|t| {
                json!({"name": t["function"]["name"], "description": t["function"]["description"],
                            "input_schema": t["function"]["parameters"]})
            })
            .collect();
    }
    if let Some(choice) = body.get("tool_choice") {
        out["tool_choice"] = match choice {
            Value::String(s) if s == "required" => json!({"type": "any"}),
            Value::String(s) if s == "none" => json!({"type": "none"}),
            Value::Object(_) => json!({"type": "tool", "name": choice["function"]["name"]}),
            _ => json!({"type": "auto"}),
        };
    }
    if body.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        out["stream"] = json!(true);
    }
    out
}

fn finish_reason(stop: Option<&str>) -> &'static str {
    match stop {
        Some("max_tokens") => "length",
        Some("tool_use") => "tool_calls",
        _ => "stop",
    }
}

/// An Anthropic message as an OpenAI chat completion, with its usage.
pub(crate) fn response(body: &[u8], model: &str) -> Option<(Bytes, Option<Usage>)> {
    let message: Value = serde_json::from_slice(body).ok()?;
    let blocks = message["content"].as_array()?;
    let text: String = blocks
        .iter()
        .filter(|b| b["type"] == "text")
        .filter_map(|b| b["text"].as_str())
        .collect();
    let calls: Vec<Value> = blocks
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .map(|b| json!({"id": b["id"], "type": "function", "function": {"name": b["name"], "arguments": b["input"].to_string()}}))
        .collect();
    let mut reply_message = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
    if !calls.is_empty() {
        reply_message["tool_calls"] = json!(calls);
    }
    let usage = serde_json::from_value::<AnthropicUsage>(message["usage"].clone())
        .ok()
        .and_then(|u| u.counted());
    let reply = json!({
        "id": format!("chatcmpl-{}", message["id"].as_str().unwrap_or("anthropic")), "object": "chat.completion",
        "created": 0, "model": model,
        "choices": [{"index": 0, "message": reply_message, "finish_reason": finish_reason(message["stop_reason"].as_str())}],
        "usage": usage::openai_json(&usage.unwrap_or_default()),
    });
    Some((Bytes::from(reply.to_string()), usage))
}

/// Anthropic's event stream as OpenAI chunks.
struct ChunkTranslator {
    model: String,
    id: String,
    usage: AnthropicUsage,
    tool_index: i64,
    client_usage: bool,
    /// Passes Anthropic's events through, under this alias (a Messages client's own request).
    native_alias: Option<String>,
}

impl ChunkTranslator {
    fn chunk(&self, delta: Value, finish: Value) -> Chunk {
        let chunk = json!({"id": self.id, "object": "chat.completion.chunk", "created": 0, "model": self.model,
                           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        Chunk::Events(Bytes::from(format!("data: {chunk}\n\n")))
    }
}

impl ChunkTranslator {
    /// Anthropic's events as they came (the model named by the alias), with the usage read
    /// off them as for a translated stream.
    fn native(
        &mut self,
        alias: &str,
        raw: Bytes,
        mut event: Value,
        out: &mut Vec<Chunk>,
    ) -> Result<(), ProviderError> {
        match event["type"].as_str() {
            Some("message_start") => {
                if let Ok(usage) = serde_json::from_value(event["message"]["usage"].clone()) {
                    self.usage.merge(usage);
                }
                event["message"]["model"] = json!(alias);
                out.push(Chunk::Events(Bytes::from(format!(
                    "event: message_start\ndata: {event}\n\n"
                ))));
            }
            Some("message_delta") => {
                if let Ok(usage) = serde_json::from_value(event["usage"].clone()) {
                    self.usage.merge(usage);
                }
                out.push(Chunk::Events(raw));
            }
            Some("message_stop") => {
                out.push(Chunk::Events(raw));
                if let Some(usage) = self.usage.counted() {
                    out.push(Chunk::Usage(usage));
                }
                out.push(Chunk::Done);
            }
            Some("error") => return Err(stream_error(&event)),
            _ => out.push(Chunk::Events(raw)),
        }
        Ok(())
    }
}

/// The error an Anthropic stream reported, as the chain's failure.
fn stream_error(event: &Value) -> ProviderError {
    let status = match event["error"]["type"].as_str() {
        Some("overloaded_error") => 529,
        Some("rate_limit_error") => 429,
        _ => 500,
    };
    ProviderError::Status {
        status,
        message: "the upstream stream reported an error".to_owned(),
    }
}

/// A whole Anthropic message as it came, the model named by the alias, with its usage.
fn native_response(body: &[u8], alias: &str) -> Option<(Bytes, Option<Usage>)> {
    let mut message: Value = serde_json::from_slice(body).ok()?;
    if message["type"] != "message" || !message["content"].is_array() {
        return None;
    }
    message["model"] = json!(alias);
    let usage = serde_json::from_value::<AnthropicUsage>(message["usage"].clone())
        .ok()
        .and_then(|u| u.counted());
    Some((Bytes::from(message.to_string()), usage))
}

impl Translate for ChunkTranslator {
    fn event(&mut self, event: Event, out: &mut Vec<Chunk>) -> Result<(), ProviderError> {
        let Some(data) = event.data else {
            return Ok(());
        };
        let Ok(parsed) = serde_json::from_slice::<Value>(&data) else {
            return Ok(());
        };
        if let Some(alias) = self.native_alias.clone() {
            return self.native(&alias, event.raw, parsed, out);
        }
        let event = parsed;
        match event["type"].as_str() {
            Some("message_start") => {
                self.id = format!("chatcmpl-{}", event["message"]["id"].as_str().unwrap_or("anthropic"));
                if let Ok(usage) = serde_json::from_value(event["message"]["usage"].clone()) {
                    self.usage.merge(usage);
                }
                out.push(self.chunk(json!({"role": "assistant", "content": ""}), Value::Null));
            }
            Some("content_block_start") if event["content_block"]["type"] == "tool_use" => {
                self.tool_index += 1;
                let block = &event["content_block"];
                out.push(self.chunk(json!({"tool_calls": [{"index": self.tool_index, "id": block["id"], "type": "function",
                    "function": {"name": block["name"], "arguments": ""}}]}), Value::Null));
            }
            Some("content_block_delta") => match event["delta"]["type"].as_str() {
                Some("text_delta") => out.push(self.chunk(json!({"content": event["delta"]["text"]}), Value::Null)),
                Some("thinking_delta") => out.push(self.chunk(json!({"reasoning_content": event["delta"]["thinking"]}), Value::Null)),
                Some("input_json_delta") => out.push(self.chunk(
                    json!({"tool_calls": [{"index": self.tool_index, "function": {"arguments": event["delta"]["partial_json"]}}]}),
                    Value::Null,
                )),
                _ => {}
            },
            Some("message_delta") => {
                if let Ok(usage) = serde_json::from_value(event["usage"].clone()) {
                    self.usage.merge(usage);
                }
                out.push(self.chunk(json!({}), json!(finish_reason(event["delta"]["stop_reason"].as_str()))));
            }
            Some("message_stop") => {
                if let Some(usage) = self.usage.counted() {
                    if self.client_usage {
                        let chunk = json!({"id": self.id, "object": "chat.completion.chunk", "created": 0, "model": self.model,
                            "choices": [], "usage": usage::openai_json(&usage)});
                        out.push(Chunk::Events(Bytes::from(format!("data: {chunk}\n\n"))));
                    }
                    out.push(Chunk::Usage(usage));
                }
                out.push(Chunk::Done);
            }
            Some("error") => return Err(stream_error(&event)),
            _ => {}
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<Chunk>) {}
}

/// The client's own Messages request, for the target's model, with the output bound and
/// streaming of the chat request (which the gateway may have lowered and decides).
fn native_request(
    original: &Value,
    chat: &Map<String, Value>,
    model: &str,
    stream: bool,
) -> Result<Value, ProviderError> {
    let bound = crate::exchange::native_bound(chat)?;
    let mut request = original.clone();
    request["model"] = json!(model);
    request["max_tokens"] = json!(bound);
    request["stream"] = json!(stream);
    // A thinking budget must stay under the output bound (and at 1024 or more): lowered with
    // it, or left out when the bound leaves no room.
    if let Some(budget) = request["thinking"]["budget_tokens"].as_u64()
        && budget >= bound
    {
        if bound > MIN_THINKING_BUDGET {
            request["thinking"]["budget_tokens"] = json!(bound - 1);
        } else if let Some(object) = request.as_object_mut() {
            object.remove("thinking");
        }
    }
    Ok(request)
}

/// What Anthropic's token count reads of a Messages request; the rest (the output bound,
/// sampling, streaming, metadata) does not change the input's count.
const COUNTED_FIELDS: [&str; 5] = ["messages", "system", "tools", "tool_choice", "thinking"];

/// The input tokens of a Messages request as Anthropic counts them
/// (`POST /v1/messages/count_tokens`, which is not billed), for the target's model.
pub(crate) async fn count_tokens(
    http: &reqwest::Client,
    target: &Target,
    request: &Map<String, Value>,
    limits: &Limits,
) -> Result<Option<u64>, ProviderError> {
    let base = target
        .base_url
        .as_ref()
        .map_or(ANTHROPIC_BASE, |u| u.as_str())
        .trim_end_matches('/');
    let mut counted = Map::new();
    counted.insert("model".into(), json!(target.model));
    for field in COUNTED_FIELDS {
        if let Some(value) = request.get(field) {
            counted.insert(field.into(), value.clone());
        }
    }
    let key = target.api_key.expose_secret();
    let sent = http
        .post(format!("{base}/v1/messages/count_tokens"))
        .header("x-api-key", key)
        .header("anthropic-version", ANTHROPIC_VERSION)
        .header("content-type", "application/json")
        .body(Value::Object(counted).to_string());
    let response = exchange::send(sent, key, limits).await?;
    let body = exchange::body(response, limits).await?;
    let answer: Value =
        serde_json::from_slice(&body).map_err(|_| ProviderError::InvalidResponse)?;
    answer["input_tokens"]
        .as_u64()
        .map(Some)
        .ok_or(ProviderError::InvalidResponse)
}

/// The least thinking budget Anthropic accepts.
const MIN_THINKING_BUDGET: u64 = 1024;

pub(crate) async fn call(
    http: &reqwest::Client,
    target: &Target,
    body: &Map<String, Value>,
    operation: Operation,
    limits: &Limits,
) -> Result<Reply, ProviderError> {
    let (stream, client_usage) = match operation {
        Operation::Chat {
            stream,
            client_usage,
        } => (stream, client_usage),
        Operation::Embeddings => {
            return Err(ProviderError::Unsupported(
                "Anthropic has no embeddings".into(),
            ));
        }
    };
    let base = target
        .base_url
        .as_ref()
        .map_or(ANTHROPIC_BASE, |u| u.as_str())
        .trim_end_matches('/');
    let key = target.api_key.expose_secret();
    let native = body.get(crate::anthropic::NATIVE);
    let payload = match native.and_then(|n| n.get("body")) {
        Some(original) => native_request(original, body, &target.model, stream)?.to_string(),
        None => request(body, &target.model).to_string(),
    };
    let mut sent = http
        .post(format!("{base}/v1/messages"))
        .header("x-api-key", key)
        .header("anthropic-version", ANTHROPIC_VERSION)
        .header("content-type", "application/json");
    if let Some(beta) = native.and_then(|n| n.get("beta")).and_then(Value::as_str) {
        sent = sent.header("anthropic-beta", beta);
    }
    let sent = sent.body(payload);
    let response = exchange::send(sent, key, limits).await?;
    // A Messages client's own request is answered in its own format, under the alias it asked
    // for: thinking blocks and their signatures reach the client, which sends them back.
    let native_alias = native.map(|_| {
        body.get("model")
            .and_then(Value::as_str)
            .unwrap_or(&target.model)
            .to_owned()
    });
    if !stream {
        return exchange::translated_json(response, limits, |bytes| match &native_alias {
            Some(alias) => native_response(bytes, alias),
            None => self::response(bytes, &target.model),
        })
        .await;
    }
    let translator = ChunkTranslator {
        model: target.model.clone(),
        id: "chatcmpl-anthropic".to_owned(),
        usage: AnthropicUsage::default(),
        tool_index: -1,
        client_usage,
        native_alias,
    };
    exchange::stream(response, limits, translator).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn av_2_the_native_request_takes_the_gateways_bound_and_a_thinking_budget_under_it() {
        let original = json!({"model": "alias", "max_tokens": 64000, "stream": true,
            "thinking": {"type": "enabled", "budget_tokens": 30000}, "messages": []});
        let chat = |bound: u64| {
            json!({"max_completion_tokens": bound})
                .as_object()
                .cloned()
                .unwrap_or_default()
        };
        let sent = native_request(&original, &chat(4000), "claude-x", false).unwrap();
        assert_eq!(
            (
                sent["model"].clone(),
                sent["max_tokens"].clone(),
                sent["stream"].clone()
            ),
            (json!("claude-x"), json!(4000), json!(false))
        );
        assert_eq!(sent["thinking"]["budget_tokens"], 3999);
        let sent = native_request(&original, &chat(800), "claude-x", true).unwrap();
        assert!(
            sent.get("thinking").is_none(),
            "no room for thinking under 800: {sent}"
        );
        let sent = native_request(&original, &chat(40000), "claude-x", true).unwrap();
        assert_eq!(
            sent["thinking"]["budget_tokens"], 30000,
            "a budget under the bound stays"
        );
        assert!(
            native_request(&original, &Map::new(), "claude-x", true).is_err(),
            "no bound"
        );
    }
}
