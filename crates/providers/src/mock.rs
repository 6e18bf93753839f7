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

use crate::chain::{Chunk, Limits, Operation, Reply};
use crate::error::ProviderError;
use crate::target::Target;
use base64::Engine;
use portcullis_core::money::Usage;

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
    limits: &Limits,
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
        // As a real upstream that takes the request and answers late: a timeout past the
        // attempt's time.
        if Duration::from_millis(ms) >= limits.attempt {
            tokio::time::sleep(limits.attempt).await;
            return Err(ProviderError::Timeout);
        }
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let (stream, client_usage) = match operation {
        Operation::Chat {
            stream,
            client_usage,
        } => (stream, client_usage),
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
    let completion = i64::try_from(words.len()).unwrap_or(i64::MAX);
    let prompt = i64::try_from(prompt).unwrap_or(i64::MAX);
    let usage = Usage::totals(prompt, completion);
    let usage_json = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
    let id = "chatcmpl-mock";
    if !stream {
        let reply = json!({
            "id": id, "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": words.concat()},
                         "finish_reason": "stop"}],
            "usage": usage_json,
        });
        return Ok(Reply::Json {
            status: 200,
            body: Bytes::from(reply.to_string()),
            usage: Some(usage),
        });
    }
    let chunk = |delta: Value, finish: Value, usage: Value| {
        let choices = if delta.is_null() {
            json!([])
        } else {
            json!([{"index": 0, "delta": delta, "finish_reason": finish}])
        };
        let event = json!({"id": id, "object": "chat.completion.chunk", "created": 0, "model": model,
                           "choices": choices, "usage": usage});
        Bytes::from(format!("data: {event}\n\n"))
    };
    let first = chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
        Value::Null,
    );
    let mut rest: Vec<Result<Chunk, ProviderError>> = words
        .iter()
        .map(|w| {
            Ok(Chunk::Events(chunk(
                json!({"content": w}),
                Value::Null,
                Value::Null,
            )))
        })
        .collect();
    rest.push(Ok(Chunk::Events(chunk(
        json!({}),
        json!("stop"),
        Value::Null,
    ))));
    if client_usage {
        rest.push(Ok(Chunk::Events(chunk(
            Value::Null,
            Value::Null,
            usage_json,
        ))));
    }
    rest.push(Ok(Chunk::Usage(usage)));
    rest.push(Ok(Chunk::Done));
    Ok(Reply::Stream {
        first,
        rest: futures_util::stream::iter(rest).boxed(),
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
        usage: Some(Usage::totals(i64::try_from(tokens).unwrap_or(i64::MAX), 0)),
    }
}
