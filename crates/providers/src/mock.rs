//! The `mock` provider: deterministic OpenAI-shaped replies without a network, for demos and
//! tests. The target's model name chooses the behaviour:
//! `mock-error-500` (and any `mock-error-NNN`), `mock-refuse` (connection refused),
//! `mock-slow-MS` (answers after MS milliseconds), `mock-echo` (answers with the last
//! message's text, as the provider received it: what the guardrail let through), anything else
//! answers at once.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Map, Value, json};

use crate::chain::{Operation, Reply};
use crate::error::ProviderError;
use crate::target::Target;
use base64::Engine;

const REPLY_WORDS: [&str; 8] = [
    "This",
    " is",
    " the",
    " Portcullis",
    " mock",
    " provider",
    " replying",
    ".",
];

/// A bound on prompt tokens from the request's size: about four bytes a token.
fn prompt_tokens(body: &Map<String, Value>) -> u64 {
    let bytes = body.get("messages").map_or(0, |m| m.to_string().len());
    (bytes as u64).div_ceil(4)
}

pub(crate) async fn call(
    target: &Target,
    body: &Map<String, Value>,
    operation: Operation,
) -> Result<Reply, ProviderError> {
    let model = target.model.as_str();
    if model == "mock-refuse" {
        return Err(ProviderError::Connect);
    }
    if let Some(code) = model
        .strip_prefix("mock-error-")
        .and_then(|c| c.parse::<u16>().ok())
    {
        return Err(ProviderError::Status {
            status: code,
            message: format!("mock error {code}"),
        });
    }
    if let Some(ms) = model
        .strip_prefix("mock-slow-")
        .and_then(|m| m.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let stream = match operation {
        Operation::Chat { stream } => stream,
        Operation::Embeddings => return Ok(embeddings(model, body)),
    };
    let prompt = prompt_tokens(body);
    let words: Vec<String> = if model == "mock-echo" {
        last_text(body)
            .split_inclusive(' ')
            .map(str::to_owned)
            .collect()
    } else {
        REPLY_WORDS.iter().map(|w| (*w).to_owned()).collect()
    };
    let completion = words.len() as u64;
    let usage = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
    let id = "chatcmpl-mock";
    if !stream {
        let reply = json!({
            "id": id, "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": words.concat()},
                         "finish_reason": "stop"}],
            "usage": usage,
        });
        return Ok(Reply::Json {
            status: 200,
            body: Bytes::from(reply.to_string()),
        });
    }
    let include_usage = crate::exchange::wants_usage(body);
    let chunk = |delta: Value, finish: Value, usage: Value| {
        let choices = if delta.is_null() {
            json!([])
        } else {
            json!([{"index": 0, "delta": delta, "finish_reason": finish}])
        };
        let event = json!({"id": id, "object": "chat.completion.chunk", "created": 0, "model": model,
                           "choices": choices, "usage": usage});
        Ok(Bytes::from(format!("data: {event}\n\n")))
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
        Value::Null,
    )];
    events.extend(
        words
            .iter()
            .map(|w| chunk(json!({"content": w}), Value::Null, Value::Null)),
    );
    events.push(chunk(json!({}), json!("stop"), Value::Null));
    if include_usage {
        events.push(chunk(Value::Null, Value::Null, usage));
    }
    events.push(Ok(Bytes::from_static(b"data: [DONE]\n\n")));
    let mut events = events.into_iter();
    let first = events.next().unwrap_or(Ok(Bytes::new()))?;
    Ok(Reply::Stream {
        first,
        rest: futures_util::stream::iter(events).boxed(),
    })
}

/// The text of the last message: its string content, or its text parts joined.
fn last_text(body: &Map<String, Value>) -> String {
    let content = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last())
        .and_then(|m| m.get("content"));
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

const DIMENSIONS: usize = 8;

/// Deterministic unit-length vectors from the input text, as floats or as OpenAI's base64 of
/// little-endian f32 (`encoding_format`).
fn embeddings(model: &str, body: &Map<String, Value>) -> Reply {
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(text)) => vec![text.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let base64 = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let mut vector = [0f32; DIMENSIONS];
            for (i, byte) in text.bytes().enumerate() {
                vector[i % DIMENSIONS] += f32::from(byte);
            }
            let norm = vector
                .iter()
                .map(|v| v * v)
                .sum::<f32>()
                .sqrt()
                .max(f32::EPSILON);
            vector.iter_mut().for_each(|v| *v /= norm);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let tokens: u64 = inputs.iter().map(|t| (t.len() as u64).div_ceil(4)).sum();
    let reply = json!({"object": "list", "model": model, "data": data,
                       "usage": {"prompt_tokens": tokens, "total_tokens": tokens}});
    Reply::Json {
        status: 200,
        body: Bytes::from(reply.to_string()),
    }
}
