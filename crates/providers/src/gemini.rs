//! The Google Gemini adapter: an OpenAI-shaped chat request sent to `generateContent` (or
//! `streamGenerateContent` as server-sent events), its answer turned back into OpenAI's shape.
//! The key travels in the `x-goog-api-key` header, never in the URL.

use bytes::Bytes;
use portcullis_core::money::Usage;
use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};

use crate::chain::{Chunk, Limits, Operation, Reply};
use crate::error::ProviderError;
use crate::exchange::{self, Translate};
use crate::sse::Event;
use crate::target::Target;
use crate::usage::{self, GeminiUsage};

const GEMINI_BASE: &str = "https://generativelanguage.googleapis.com/v1beta";

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

fn parts_of(content: &Value) -> Vec<Value> {
    match content {
        Value::String(text) if !text.is_empty() => vec![json!({"text": text})],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| match part["type"].as_str() {
                Some("text") => Some(json!({"text": part["text"]})),
                Some("image_url") => {
                    let url = part["image_url"]["url"].as_str().unwrap_or_default();
                    let (mime, data) = url.strip_prefix("data:")?.split_once(";base64,")?;
                    Some(json!({"inline_data": {"mime_type": mime, "data": data}}))
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// An OpenAI chat request in Gemini's shape.
pub(crate) fn request(body: &Map<String, Value>) -> Value {
    let mut system = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    // Gemini answers a function call by name; OpenAI by call id.
    let mut call_names = std::collections::HashMap::new();
    for message in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match message["role"].as_str() {
            Some("system" | "developer") => system.push(text_of(&message["content"])),
            Some("user") => {
                contents.push(json!({"role": "user", "parts": parts_of(&message["content"])}))
            }
            Some("assistant") => {
                let mut parts = parts_of(&message["content"]);
                for call in message["tool_calls"].as_array().into_iter().flatten() {
                    let name = call["function"]["name"].clone();
                    call_names.insert(
                        call["id"].as_str().unwrap_or_default().to_owned(),
                        name.clone(),
                    );
                    let args: Value = call["function"]["arguments"]
                        .as_str()
                        .and_then(|a| serde_json::from_str(a).ok())
                        .unwrap_or_else(|| json!({}));
                    parts.push(json!({"functionCall": {"name": name, "args": args}}));
                }
                contents.push(json!({"role": "model", "parts": parts}));
            }
            Some("tool") => {
                let name = call_names
                    .get(message["tool_call_id"].as_str().unwrap_or_default())
                    .cloned()
                    .unwrap_or(Value::Null);
                let part = json!({"functionResponse": {"name": name, "response": {"content": text_of(&message["content"])}}});
                contents.push(json!({"role": "user", "parts": [part]}));
            }
            _ => {}
        }
    }
    let mut config = Map::new();
    if let Some(max) = body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
    {
        config.insert("maxOutputTokens".into(), max.clone());
    }
    if let Some(n) = body.get("n") {
        config.insert("candidateCount".into(), n.clone());
    }
    for (from, to) in [("temperature", "temperature"), ("top_p", "topP")] {
        if let Some(value) = body.get(from) {
            config.insert(to.into(), value.clone());
        }
    }
    match body.get("stop") {
        Some(Value::String(stop)) => {
            config.insert("stopSequences".into(), json!([stop]));
        }
        Some(Value::Array(stops)) => {
            config.insert("stopSequences".into(), json!(stops));
        }
        _ => {}
    }
    let mut out = json!({"contents": contents, "generationConfig": config});
    if !system.is_empty() {
        out["systemInstruction"] = json!({"parts": [{"text": system.join("\n")}]});
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        let declarations: Vec<Value> = tools
            .iter()
            .map(|t| json!({"name": t["function"]["name"], "description": t["function"]["description"], "parameters": t["function"]["parameters"]}))
            .collect();
        out["tools"] = json!([{"functionDeclarations": declarations}]);
    }
    out
}

fn finish_reason(reason: Option<&str>, has_calls: bool) -> Value {
    if has_calls {
        return json!("tool_calls");
    }
    match reason {
        None => Value::Null,
        Some("STOP") => json!("stop"),
        Some("MAX_TOKENS") => json!("length"),
        Some(_) => json!("content_filter"),
    }
}

/// Text and tool calls of a candidate's parts.
fn delta_of(candidate: &Value) -> (String, Vec<Value>) {
    let mut text = String::new();
    let mut calls = Vec::new();
    for (index, part) in candidate["content"]["parts"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(t) = part["text"].as_str() {
            text.push_str(t);
        }
        if let Some(call) = part.get("functionCall") {
            calls.push(json!({"index": index, "id": format!("call_{index}"), "type": "function",
                              "function": {"name": call["name"], "arguments": call["args"].to_string()}}));
        }
    }
    (text, calls)
}

fn usage_of(response: &Value) -> Option<Usage> {
    let meta = response.get("usageMetadata")?;
    serde_json::from_value::<GeminiUsage>(meta.clone())
        .ok()
        .and_then(|u| u.counted())
}

/// A Gemini answer as an OpenAI chat completion, with its usage.
pub(crate) fn response(body: &[u8], model: &str) -> Option<(Bytes, Option<Usage>)> {
    let reply: Value = serde_json::from_slice(body).ok()?;
    let candidate = reply["candidates"].get(0)?;
    let (text, calls) = delta_of(candidate);
    let mut message = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
    if !calls.is_empty() {
        let calls: Vec<Value> = calls
            .into_iter()
            .map(|mut c| {
                c.as_object_mut().map(|o| o.remove("index"));
                c
            })
            .collect();
        message["tool_calls"] = json!(calls);
    }
    let finish = finish_reason(
        candidate["finishReason"].as_str(),
        message.get("tool_calls").is_some(),
    );
    let usage = usage_of(&reply);
    let completion = json!({"id": "chatcmpl-gemini", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage::openai_json(&usage.unwrap_or_default())});
    Some((Bytes::from(completion.to_string()), usage))
}

struct ChunkTranslator {
    model: String,
    client_usage: bool,
    /// Gemini sends its running usage with each chunk: the last is the answer's.
    usage: Option<Usage>,
    started: bool,
    finished: bool,
}

impl ChunkTranslator {
    fn chunk(&self, delta: Value, finish: Value) -> Chunk {
        let chunk = json!({"id": "chatcmpl-gemini", "object": "chat.completion.chunk", "created": 0, "model": self.model,
                           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        Chunk::Events(Bytes::from(format!("data: {chunk}\n\n")))
    }
}

impl Translate for ChunkTranslator {
    fn event(&mut self, event: Event, out: &mut Vec<Chunk>) -> Result<(), ProviderError> {
        let Some(data) = event.data else {
            return Ok(());
        };
        let Ok(response) = serde_json::from_slice::<Value>(&data) else {
            return Ok(());
        };
        if response.get("error").is_some() {
            return Err(ProviderError::Status {
                status: 500,
                message: "the upstream stream reported an error".to_owned(),
            });
        }
        if !self.started {
            self.started = true;
            out.push(self.chunk(json!({"role": "assistant", "content": ""}), Value::Null));
        }
        if let Some(usage) = usage_of(&response) {
            self.usage = Some(usage);
        }
        let Some(candidate) = response["candidates"].get(0) else {
            return Ok(());
        };
        let (text, calls) = delta_of(candidate);
        if !text.is_empty() {
            out.push(self.chunk(json!({"content": text}), Value::Null));
        }
        if !calls.is_empty() {
            out.push(self.chunk(json!({"tool_calls": calls}), Value::Null));
        }
        let finish = finish_reason(candidate["finishReason"].as_str(), !calls.is_empty());
        if !finish.is_null() {
            self.finished = true;
            out.push(self.chunk(json!({}), finish));
        }
        Ok(())
    }

    /// Gemini ends its stream by closing it: complete if a candidate said why it finished.
    fn finish(&mut self, out: &mut Vec<Chunk>) {
        if !self.finished {
            return;
        }
        if let Some(usage) = self.usage {
            if self.client_usage {
                let chunk = json!({"id": "chatcmpl-gemini", "object": "chat.completion.chunk", "created": 0,
                                   "model": self.model, "choices": [], "usage": usage::openai_json(&usage)});
                out.push(Chunk::Events(Bytes::from(format!("data: {chunk}\n\n"))));
            }
            out.push(Chunk::Usage(usage));
        }
        out.push(Chunk::Done);
    }
}

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
                "Gemini embeddings are not served yet".into(),
            ));
        }
    };
    let base = target
        .base_url
        .as_ref()
        .map_or(GEMINI_BASE, |u| u.as_str())
        .trim_end_matches('/');
    let url = if stream {
        format!(
            "{base}/models/{}:streamGenerateContent?alt=sse",
            target.model
        )
    } else {
        format!("{base}/models/{}:generateContent", target.model)
    };
    let key = target.api_key.expose_secret();
    let sent = http
        .post(url)
        .header("x-goog-api-key", key)
        .header("content-type", "application/json")
        .body(request(body).to_string());
    let response = exchange::send(sent, key, limits).await?;
    if !stream {
        return exchange::translated_json(response, limits, |bytes| {
            self::response(bytes, &target.model)
        })
        .await;
    }
    let translator = ChunkTranslator {
        model: target.model.clone(),
        client_usage,
        usage: None,
        started: false,
        finished: false,
    };
    exchange::stream(response, limits, translator).await
}
