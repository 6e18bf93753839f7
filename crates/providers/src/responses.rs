//! OpenAI's Responses API (`POST /v1/responses`) translated to and from Chat Completions, so
//! that Responses clients (Codex CLI, the openai SDK's `responses.create`) reach any route: the
//! request in, the answer out, and the stream event by event. Messages with text and images,
//! function calls and their outputs, function tools, `tool_choice`, output bounds, JSON output
//! formats and usage carry over. Stateless: nothing is stored, so `previous_response_id` and
//! `background` are refused, and reasoning items of earlier turns (the provider's own) are
//! left out.

use bytes::Bytes;
use portcullis_core::money::Usage;
use serde_json::{Map, Value, json};

use crate::error::ProviderError;
use crate::sse::Decoder;
use crate::translate::StreamTranslation;

/// Why a Responses request cannot be translated: the caller's mistake, a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

fn bad(message: impl Into<String>) -> BadInput {
    BadInput(message.into())
}

/// The field of a chat request translated from Responses that carries the client's own
/// request: an OpenAI target is sent that one (reasoning items, `include`, `prompt_cache_key`
/// and client-side tools kept; model, output bound, streaming and `store: false` set by the
/// gateway) and answers in the Responses format, passed through under the alias. Every other
/// target never sees it (the chain removes it), and the guardrail walks it with the rest.
pub const NATIVE: &str = "portcullis_native_responses";

/// Tools the client runs, which a native request keeps (a namespace keeps only such tools of
/// its own). OpenAI's hosted tools (web and file search, code interpreter, image generation,
/// remote MCP, computer use, hosted shells) are billed beyond the price table and act beyond
/// the request: left out, as the translation to chat leaves them.
const CLIENT_TOOLS: [&str; 5] = [
    "function",
    "custom",
    "namespace",
    "local_shell",
    "apply_patch",
];

/// What a native request may carry: the fields of a stateless request. Others (`conversation`
/// and `prompt` are refused before; `prompt_cache_retention` keeps prompts at OpenAI past the
/// request) are left out.
const NATIVE_FIELDS: [&str; 20] = [
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_tool_calls",
    "max_output_tokens",
    "temperature",
    "top_p",
    "top_logprobs",
    "text",
    "reasoning",
    "include",
    "metadata",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "truncation",
    "service_tier",
];

fn client_tool(tool: &Value) -> bool {
    tool["type"]
        .as_str()
        .is_some_and(|kind| CLIENT_TOOLS.contains(&kind))
}

/// The client-run tools of `tools`, namespaces' own tools included.
fn client_tools(tools: &[Value]) -> Vec<Value> {
    tools
        .iter()
        .filter(|tool| client_tool(tool))
        .map(|tool| {
            let mut tool = tool.clone();
            if let Some(Value::Array(inner)) = tool.get("tools") {
                tool["tools"] = Value::Array(client_tools(inner));
            }
            tool
        })
        .collect()
}

/// Keeps the stateless fields of `original` inside `chat`, under [`NATIVE`], less the hosted
/// tools (and a `tool_choice` that named one, which becomes `auto`).
pub fn keep_native(chat: &mut Map<String, Value>, original: &Map<String, Value>) {
    let mut body: Map<String, Value> = original
        .iter()
        .filter(|(field, _)| NATIVE_FIELDS.contains(&field.as_str()))
        .map(|(field, value)| (field.clone(), value.clone()))
        .collect();
    if let Some(Value::Array(tools)) = body.get("tools") {
        let kept = client_tools(tools);
        body.insert("tools".into(), Value::Array(kept));
    }
    if body
        .get("tool_choice")
        .is_some_and(|choice| choice.is_object() && !client_tool(choice))
    {
        body.insert("tool_choice".into(), json!("auto"));
    }
    chat.insert(NATIVE.into(), json!({ "body": body }));
}

/// A Responses request as a Chat Completions request (same `model` alias).
pub fn request_to_chat(request: &Map<String, Value>) -> Result<Map<String, Value>, BadInput> {
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("`model` is required"))?;
    if request
        .get("previous_response_id")
        .is_some_and(|v| !v.is_null())
    {
        return Err(bad(
            "`previous_response_id` needs stored responses, which this gateway does not keep: \
             send the whole conversation in `input` (as with `store: false`)",
        ));
    }
    if request.get("background").and_then(Value::as_bool) == Some(true) {
        return Err(bad(
            "`background` needs stored responses, which this gateway does not keep",
        ));
    }
    for (field, what) in [
        ("conversation", "stored conversations"),
        ("prompt", "prompts stored at OpenAI"),
    ] {
        if request.get(field).is_some_and(|v| !v.is_null()) {
            return Err(BadInput(format!(
                "`{field}` needs {what}, which this gateway does not use: send the whole \
                 conversation in `input`"
            )));
        }
    }
    let mut messages = Vec::new();
    if let Some(instructions) = request.get("instructions").and_then(Value::as_str) {
        messages.push(json!({"role": "system", "content": instructions}));
    }
    match request.get("input") {
        Some(Value::String(text)) => messages.push(json!({"role": "user", "content": text})),
        Some(Value::Array(items)) => {
            for item in items {
                translate_item(item, &mut messages)?;
            }
        }
        _ => return Err(bad("`input` is a string or a list of items")),
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("messages".into(), Value::Array(messages));
    for (from, to) in [
        ("max_output_tokens", "max_completion_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("parallel_tool_calls", "parallel_tool_calls"),
        ("user", "user"),
        ("safety_identifier", "safety_identifier"),
        ("service_tier", "service_tier"),
    ] {
        if let Some(value) = request.get(from).filter(|v| !v.is_null()) {
            out.insert(to.into(), value.clone());
        }
    }
    let tools: Vec<Value> = request
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        // Only function tools have a meaning for every provider; hosted tools (web search,
        // file search, ...) and namespaces are the Responses API's own.
        .filter(|t| t["type"] == "function")
        .map(|t| {
            let mut function = json!({"name": t["name"], "parameters": t.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object"}))});
            if let Some(description) = t.get("description").filter(|d| !d.is_null()) {
                function["description"] = description.clone();
            }
            if let Some(strict) = t.get("strict").filter(|s| s.is_boolean()) {
                function["strict"] = strict.clone();
            }
            json!({"type": "function", "function": function})
        })
        .collect();
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
        if let Some(choice) = request.get("tool_choice") {
            let mapped = match choice {
                Value::String(mode) if ["auto", "none", "required"].contains(&mode.as_str()) => {
                    choice.clone()
                }
                Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
                    json!({"type": "function", "function": {"name": o.get("name").cloned().unwrap_or(Value::Null)}})
                }
                _ => json!("auto"),
            };
            out.insert("tool_choice".into(), mapped);
        }
    }
    if let Some(format) = request.get("text").and_then(|t| t.get("format")) {
        match format["type"].as_str() {
            Some("json_schema") => {
                let mut schema = json!({"name": format["name"], "schema": format["schema"]});
                if let Some(strict) = format.get("strict").filter(|s| s.is_boolean()) {
                    schema["strict"] = strict.clone();
                }
                out.insert(
                    "response_format".into(),
                    json!({"type": "json_schema", "json_schema": schema}),
                );
            }
            Some("json_object") => {
                out.insert("response_format".into(), json!({"type": "json_object"}));
            }
            _ => {}
        }
    }
    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        out.insert("stream".into(), json!(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(out)
}

/// Text of an output or of a list of content parts.
fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str().or_else(|| p["refusal"].as_str()))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Appends a tool call to the assistant message at the end, or to a new one: consecutive
/// calls are one chat turn.
fn push_call(messages: &mut Vec<Value>, call: Value) {
    if let Some(last) = messages.last_mut()
        && last["role"] == "assistant"
        && let Some(calls) = last.get_mut("tool_calls").and_then(Value::as_array_mut)
    {
        calls.push(call);
        return;
    }
    messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call]}));
}

fn translate_item(item: &Value, messages: &mut Vec<Value>) -> Result<(), BadInput> {
    // An item without a type but with a role is a message (the API's shorthand).
    let kind = item["type"]
        .as_str()
        .or_else(|| item.get("role").map(|_| "message"));
    match kind {
        Some("message") => {
            let role = match item["role"].as_str() {
                Some("developer" | "system") => "system",
                Some("user") => "user",
                Some("assistant") => "assistant",
                _ => {
                    return Err(bad(
                        "a message's `role` is user, assistant, system or developer",
                    ));
                }
            };
            let content = match &item["content"] {
                Value::String(text) => json!(text),
                Value::Array(parts) => message_parts(role, parts)?,
                _ => return Err(bad("a message's `content` is a string or a list of parts")),
            };
            messages.push(json!({"role": role, "content": content}));
        }
        Some("function_call") => push_call(
            messages,
            json!({"id": item["call_id"], "type": "function",
                   "function": {"name": item["name"], "arguments": item["arguments"].as_str().unwrap_or("{}")}}),
        ),
        Some("custom_tool_call") => push_call(
            messages,
            json!({"id": item["call_id"], "type": "function",
                   "function": {"name": item["name"], "arguments": json!({"input": item["input"]}).to_string()}}),
        ),
        Some("function_call_output" | "custom_tool_call_output") => messages.push(
            json!({"role": "tool", "tool_call_id": item["call_id"], "content": text_of(&item["output"])}),
        ),
        Some("item_reference") => {
            return Err(bad(
                "`item_reference` needs stored items, which this gateway does not keep",
            ));
        }
        // Reasoning and hosted tools' records are the provider's own: other providers take
        // none, and a chat turn does not need them.
        Some(_) => {}
        None => return Err(bad("each `input` item has a `type`")),
    }
    Ok(())
}

fn message_parts(role: &str, parts: &[Value]) -> Result<Value, BadInput> {
    let mut out = Vec::new();
    for part in parts {
        match part["type"].as_str() {
            Some("input_text" | "output_text" | "text") => {
                out.push(json!({"type": "text", "text": part["text"]}));
            }
            Some("refusal") => out.push(json!({"type": "text", "text": part["refusal"]})),
            Some("input_image") => {
                let Some(url) = part["image_url"].as_str() else {
                    return Err(bad(
                        "an `input_image` needs an `image_url` (a URL or a data URL); file ids need stored files",
                    ));
                };
                let mut image = json!({"url": url});
                if let Some(detail) = part.get("detail").filter(|d| d.is_string()) {
                    image["detail"] = detail.clone();
                }
                out.push(json!({"type": "image_url", "image_url": image}));
            }
            Some("input_file") if part.get("file_data").is_some() => {
                out.push(json!({"type": "file", "file": {"file_data": part["file_data"], "filename": part["filename"]}}));
            }
            other => {
                return Err(BadInput(format!(
                    "content parts of type `{}` cannot be sent to this route's providers",
                    other.unwrap_or("(none)")
                )));
            }
        }
    }
    // Text alone as a string: what every chat provider takes, assistants' turns included.
    if role != "user" || out.iter().all(|p| p["type"] == "text") {
        return Ok(json!(
            out.iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    Ok(Value::Array(out))
}

/// The Responses API's `usage` for what was used.
fn responses_usage(usage: &Usage) -> Value {
    json!({"input_tokens": usage.input_tokens,
           "input_tokens_details": {"cached_tokens": usage.cached_input_tokens},
           "output_tokens": usage.output_tokens,
           "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
           "total_tokens": usage.input_tokens + usage.output_tokens})
}

/// A response object: `status` with its `output` and `usage`.
fn response_object(id: &str, alias: &str, status: &str, output: Vec<Value>, usage: Value) -> Value {
    let incomplete = (status == "incomplete").then(|| json!({"reason": "max_output_tokens"}));
    json!({"id": id, "object": "response", "created_at": unix_now(), "status": status,
           "error": null, "incomplete_details": incomplete, "model": alias, "output": output,
           "parallel_tool_calls": true, "tool_choice": "auto", "tools": [], "store": false,
           "metadata": {}, "text": {"format": {"type": "text"}}, "usage": usage})
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn status_of(finish: Option<&str>) -> &'static str {
    if finish == Some("length") {
        "incomplete"
    } else {
        "completed"
    }
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant",
           "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

fn call_item(id: &str, call_id: &Value, name: &Value, arguments: &str, status: &str) -> Value {
    json!({"type": "function_call", "id": id, "call_id": call_id, "name": name,
           "arguments": arguments, "status": status})
}

/// A chat completion as a response object with id `id`; `alias` is the model the client asked
/// for, `usage` what the upstream reported (else the body's own figures are used).
pub fn response_from_chat(
    body: &[u8],
    id: &str,
    alias: &str,
    usage: Option<&Usage>,
) -> Option<Bytes> {
    let reply: Value = serde_json::from_slice(body).ok()?;
    // An OpenAI target answered the client's own request in the client's own format.
    if reply["object"] == "response" {
        return Some(Bytes::copy_from_slice(body));
    }
    let choice = reply["choices"].get(0)?;
    let mut output = Vec::new();
    if let Some(text) = choice["message"]["content"]
        .as_str()
        .filter(|t| !t.is_empty())
    {
        output.push(message_item(&format!("msg_{id}"), text, "completed"));
    }
    for (n, call) in choice["message"]["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        output.push(call_item(
            &format!("fc_{id}_{n}"),
            &call["id"],
            &call["function"]["name"],
            call["function"]["arguments"].as_str().unwrap_or("{}"),
            "completed",
        ));
    }
    let usage = usage
        .copied()
        .or_else(|| crate::usage::openai_chat(body))
        .unwrap_or_default();
    let status = status_of(choice["finish_reason"].as_str());
    let response = response_object(id, alias, status, output, responses_usage(&usage));
    Some(Bytes::from(response.to_string()))
}

/// What a stream's translation keeps of the answer for its closing event, at most: past it the
/// stream ends as broken (AV-4), as an upstream answer too large to read does.
const MAX_KEPT_BYTES: usize = 16 * 1024 * 1024;

/// The most function calls one streamed answer may hold.
const MAX_CALLS: usize = 1024;

/// A function call being streamed.
#[derive(Debug)]
struct OpenCall {
    output_index: usize,
    item_id: String,
    call_id: Value,
    name: Value,
    arguments: String,
}

/// Turns a chat stream into the Responses API's events (`response.created`, the output items
/// with their deltas, `response.completed` with usage), chunk by chunk.
#[derive(Debug)]
pub struct StreamTranslator {
    id: String,
    alias: String,
    decoder: Decoder,
    sequence: u64,
    started: bool,
    /// The text item now open: its output index and text so far.
    text: Option<(usize, String)>,
    /// Function calls in the order they began, and where each chat tool-call index is.
    calls: Vec<OpenCall>,
    call_at: std::collections::HashMap<u64, usize>,
    /// Bytes of text and arguments kept so far.
    kept: usize,
    /// Items done, in output order.
    output: Vec<(usize, Value)>,
    next_index: usize,
    finish: Option<String>,
    usage: Usage,
    finished: bool,
}

impl StreamTranslator {
    /// A translator for the response `id` to a request for `alias`.
    pub fn new(id: &str, alias: &str) -> Self {
        Self {
            id: id.to_owned(),
            alias: alias.to_owned(),
            decoder: Decoder::default(),
            sequence: 0,
            started: false,
            text: None,
            calls: Vec::new(),
            call_at: std::collections::HashMap::new(),
            kept: 0,
            output: Vec::new(),
            next_index: 0,
            finish: None,
            usage: Usage::default(),
            finished: false,
        }
    }

    fn event(&mut self, kind: &str, mut data: Value) -> Bytes {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
    }

    fn start(&mut self, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        let response = response_object(
            &self.id,
            &self.alias,
            "in_progress",
            Vec::new(),
            Value::Null,
        );
        let created = self.event("response.created", json!({"response": response}));
        let in_progress = self.event("response.in_progress", json!({"response": response}));
        out.extend([created, in_progress]);
    }

    /// Counts `more` bytes kept; past the bound the stream ends.
    fn keep(&mut self, more: usize) -> Result<(), ProviderError> {
        self.kept = self.kept.saturating_add(more);
        if self.kept > MAX_KEPT_BYTES {
            return Err(ProviderError::InvalidResponse);
        }
        Ok(())
    }

    fn message_id(&self, output_index: usize) -> String {
        format!("msg_{}_{output_index}", self.id)
    }

    fn close_text(&mut self, out: &mut Vec<Bytes>) {
        let Some((index, text)) = self.text.take() else {
            return;
        };
        let item_id = self.message_id(index);
        let part = json!({"type": "output_text", "text": text, "annotations": []});
        let events = [
            self.event("response.output_text.done", json!({"item_id": item_id, "output_index": index, "content_index": 0, "text": text})),
            self.event("response.content_part.done", json!({"item_id": item_id, "output_index": index, "content_index": 0, "part": part})),
        ];
        out.extend(events);
        let item = message_item(&item_id, &text, "completed");
        let done = self.event(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
        out.push(done);
        self.output.push((index, item));
    }

    fn on_text(&mut self, text: &str, out: &mut Vec<Bytes>) -> Result<(), ProviderError> {
        self.keep(text.len())?;
        if self.text.is_none() {
            let index = self.next_index;
            self.next_index += 1;
            self.text = Some((index, String::new()));
            let item_id = self.message_id(index);
            let item = json!({"type": "message", "id": item_id, "status": "in_progress", "role": "assistant", "content": []});
            let added = self.event(
                "response.output_item.added",
                json!({"output_index": index, "item": item}),
            );
            let part = self.event(
                "response.content_part.added",
                json!({"item_id": item_id, "output_index": index, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []}}),
            );
            out.extend([added, part]);
        }
        let Some((index, so_far)) = self.text.as_mut() else {
            return Ok(());
        };
        so_far.push_str(text);
        let index = *index;
        let item_id = self.message_id(index);
        let delta = self.event(
            "response.output_text.delta",
            json!({"item_id": item_id, "output_index": index, "content_index": 0, "delta": text}),
        );
        out.push(delta);
        Ok(())
    }

    fn on_call(&mut self, call: &Value, out: &mut Vec<Bytes>) -> Result<(), ProviderError> {
        let chat_index = call["index"].as_u64().unwrap_or(0);
        let at = match self.call_at.get(&chat_index) {
            Some(at) => *at,
            None => {
                if self.calls.len() >= MAX_CALLS {
                    return Err(ProviderError::InvalidResponse);
                }
                self.close_text(out);
                let index = self.next_index;
                self.next_index += 1;
                let open = OpenCall {
                    output_index: index,
                    item_id: format!("fc_{}_{index}", self.id),
                    call_id: call["id"].clone(),
                    name: call["function"]["name"].clone(),
                    arguments: String::new(),
                };
                let item = call_item(&open.item_id, &open.call_id, &open.name, "", "in_progress");
                let added = self.event(
                    "response.output_item.added",
                    json!({"output_index": index, "item": item}),
                );
                out.push(added);
                self.calls.push(open);
                self.call_at.insert(chat_index, self.calls.len() - 1);
                self.calls.len() - 1
            }
        };
        let Some(arguments) = call["function"]["arguments"]
            .as_str()
            .filter(|a| !a.is_empty())
        else {
            return Ok(());
        };
        self.keep(arguments.len())?;
        let open = &mut self.calls[at];
        open.arguments.push_str(arguments);
        let (item_id, index) = (open.item_id.clone(), open.output_index);
        let delta = self.event(
            "response.function_call_arguments.delta",
            json!({"item_id": item_id, "output_index": index, "delta": arguments}),
        );
        out.push(delta);
        Ok(())
    }

    fn on_data(&mut self, data: &str, out: &mut Vec<Bytes>) -> Result<(), ProviderError> {
        if data == "[DONE]" {
            self.finish_into(out);
            return Ok(());
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            return Ok(());
        };
        // An OpenAI target's own events (the client's request went natively): as they came.
        if let Some(kind) = chunk["type"].as_str() {
            self.started = true;
            if matches!(
                kind,
                "response.completed" | "response.incomplete" | "response.failed"
            ) {
                self.finished = true;
            }
            out.push(Bytes::from(format!("event: {kind}\ndata: {data}\n\n")));
            return Ok(());
        }
        self.start(out);
        let Some(choice) = chunk["choices"].get(0) else {
            return Ok(());
        };
        let delta = &choice["delta"];
        if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            self.on_text(text, out)?;
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            self.on_call(call, out)?;
        }
        if let Some(finish) = choice["finish_reason"].as_str() {
            self.finish = Some(finish.to_owned());
        }
        Ok(())
    }

    fn finish_into(&mut self, out: &mut Vec<Bytes>) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.start(out);
        self.close_text(out);
        self.call_at.clear();
        for call in std::mem::take(&mut self.calls) {
            let done = self.event("response.function_call_arguments.done", json!({"item_id": call.item_id, "output_index": call.output_index, "arguments": call.arguments}));
            let item = call_item(
                &call.item_id,
                &call.call_id,
                &call.name,
                &call.arguments,
                "completed",
            );
            let item_done = self.event(
                "response.output_item.done",
                json!({"output_index": call.output_index, "item": item}),
            );
            out.extend([done, item_done]);
            self.output.push((call.output_index, item));
        }
        self.output.sort_by_key(|(index, _)| *index);
        let output = self.output.iter().map(|(_, item)| item.clone()).collect();
        let status = status_of(self.finish.as_deref());
        let response = response_object(
            &self.id,
            &self.alias,
            status,
            output,
            responses_usage(&self.usage),
        );
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        let closing = self.event(kind, json!({"response": response}));
        out.push(closing);
    }
}

impl StreamTranslation for StreamTranslator {
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<Bytes>, ProviderError> {
        let mut out = Vec::new();
        for data in crate::translate::event_data(&mut self.decoder, chunk)? {
            self.on_data(&data, &mut out)?;
        }
        Ok(out)
    }

    fn usage(&mut self, usage: &Usage) {
        self.usage = *usage;
    }

    fn finish(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        self.finish_into(&mut out);
        out
    }

    fn error_event(&self) -> Bytes {
        let mut response =
            response_object(&self.id, &self.alias, "failed", Vec::new(), Value::Null);
        response["error"] = json!({"code": "server_error", "message": "the upstream stream broke"});
        let data = json!({"type": "response.failed", "sequence_number": self.sequence, "response": response});
        Bytes::from(format!("event: response.failed\ndata: {data}\n\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    /// The first request of a Codex CLI turn, recorded from `codex exec` 0.171.0 (texts cut by
    /// `scripts/trim_fixture.py`).
    fn codex_request() -> Map<String, Value> {
        let fixture: Value = serde_json::from_str(include_str!(
            "../tests/fixtures/codex-0.171.0-responses.json"
        ))
        .unwrap();
        map(fixture["body"].clone())
    }

    #[test]
    fn codex_clis_request_becomes_a_chat_request() {
        let chat = Value::Object(request_to_chat(&codex_request()).unwrap());
        let roles: Vec<&str> = chat["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        // Developer messages are system messages; the user's turn comes last.
        assert_eq!(roles, ["system", "system", "user", "user"]);
        assert!(chat["messages"][3]["content"].is_string());
        // Function tools only: the namespace and the hosted web search are the API's own.
        let tools: Vec<&str> = chat["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            tools,
            [
                "exec_command",
                "write_stdin",
                "request_user_input",
                "view_image"
            ]
        );
        assert_eq!(chat["tools"][0]["function"]["strict"], false);
        assert_eq!(chat["tool_choice"], "auto");
        assert_eq!(chat["parallel_tool_calls"], true);
        assert_eq!(chat["stream"], true);
        assert_eq!(chat["stream_options"]["include_usage"], true);
        // Nothing of the Responses API's own leaks into the chat request.
        for field in [
            "store",
            "include",
            "reasoning",
            "prompt_cache_key",
            "client_metadata",
        ] {
            assert!(chat.get(field).is_none(), "{field}");
        }
    }

    #[test]
    fn a_later_turn_with_calls_outputs_images_and_reasoning_becomes_chat_turns() {
        let request = map(json!({
            "model": "m", "instructions": "Be brief.", "max_output_tokens": 300,
            "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": true}},
            "input": [
                {"role": "user", "content": [
                    {"type": "input_text", "text": "What is here?"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"}]},
                {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
                {"type": "function_call", "call_id": "call_1", "name": "ls", "arguments": "{\"path\":\".\"}"},
                {"type": "function_call", "call_id": "call_2", "name": "pwd", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"},
                {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "/w"}]},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Done."}]}
            ],
            "tools": [{"type": "function", "name": "ls", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "ls"}
        }));
        let chat = Value::Object(request_to_chat(&request).unwrap());
        let messages = chat["messages"].as_array().unwrap();
        assert_eq!(
            messages[0],
            json!({"role": "system", "content": "Be brief."})
        );
        assert_eq!(
            messages[1]["content"][1],
            json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}})
        );
        // Both calls in one assistant turn, then each output; the reasoning item is left out.
        assert_eq!(messages[2]["role"], "assistant");
        assert_eq!(messages[2]["tool_calls"].as_array().unwrap().len(), 2);
        assert_eq!(messages[2]["tool_calls"][1]["function"]["name"], "pwd");
        assert_eq!(
            messages[3],
            json!({"role": "tool", "tool_call_id": "call_1", "content": "a.txt"})
        );
        assert_eq!(messages[4]["content"], "/w");
        assert_eq!(
            messages[5],
            json!({"role": "assistant", "content": "Done."})
        );
        assert_eq!(messages.len(), 6);
        assert_eq!(chat["max_completion_tokens"], 300);
        assert_eq!(chat["tool_choice"]["function"]["name"], "ls");
        assert_eq!(chat["response_format"]["json_schema"]["strict"], true);
        assert!(chat.get("stream").is_none());
    }

    /// AV-2: what OpenAI would bill beyond tokens, or keep past the request, never goes out
    /// natively: hosted tools (also inside a namespace) and fields outside a stateless request.
    #[test]
    fn av_2_the_native_copy_keeps_only_client_tools_and_stateless_fields() {
        let original = map(json!({"model": "m", "input": "hi", "store": true,
            "prompt_cache_retention": "24h", "prompt_cache_key": "k",
            "tools": [
                {"type": "function", "name": "ls", "parameters": {}},
                {"type": "web_search"},
                {"type": "namespace", "name": "ns", "tools": [
                    {"type": "function", "name": "inner", "parameters": {}},
                    {"type": "code_interpreter", "container": {"type": "auto"}},
                    {"type": "mcp", "server_url": "https://example.com"}]}],
            "tool_choice": {"type": "web_search"}}));
        let mut chat = Map::new();
        keep_native(&mut chat, &original);
        let body = &chat[NATIVE]["body"];
        let text = body.to_string();
        for hosted in [
            "web_search",
            "code_interpreter",
            "mcp",
            "prompt_cache_retention",
            "store",
        ] {
            assert!(!text.contains(hosted), "{hosted} went out: {text}");
        }
        assert_eq!(body["tools"][0]["name"], "ls");
        assert_eq!(body["tools"][1]["tools"][0]["name"], "inner");
        assert_eq!(body["tools"][1]["tools"].as_array().map(Vec::len), Some(1));
        assert_eq!(body["tool_choice"], "auto");
        assert_eq!(body["prompt_cache_key"], "k");
    }

    #[test]
    fn what_needs_stored_state_is_refused_with_a_reason() {
        for (field, value) in [
            ("previous_response_id", json!("resp_1")),
            ("background", json!(true)),
            ("conversation", json!("conv_1")),
            ("prompt", json!({"id": "pmpt_1"})),
            ("input", json!([{"type": "item_reference", "id": "msg_1"}])),
            ("input", json!(42)),
            ("input", json!([{"role": "tool", "content": "x"}])),
            (
                "input",
                json!([{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]),
            ),
        ] {
            let mut request = map(json!({"model": "m", "input": "hi"}));
            request.insert(field.into(), value.clone());
            let refused = request_to_chat(&request).unwrap_err();
            assert!(!refused.0.is_empty(), "{field}: {value}");
        }
        assert!(
            request_to_chat(&map(json!({"input": "hi"}))).is_err(),
            "no model"
        );
    }

    #[test]
    fn a_chat_completion_becomes_a_response() {
        let reply = json!({"id": "chatcmpl-9", "choices": [{"message": {"content": "Hi", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "ls", "arguments": "{}"}}]},
            "finish_reason": "length"}], "usage": {"prompt_tokens": 5, "completion_tokens": 7}});
        let response: Value = serde_json::from_slice(
            &response_from_chat(reply.to_string().as_bytes(), "resp_1", "house", None).unwrap(),
        )
        .unwrap();
        assert_eq!(response["object"], "response");
        assert_eq!(response["id"], "resp_1");
        assert_eq!(response["model"], "house");
        assert_eq!(response["status"], "incomplete");
        assert_eq!(
            response["incomplete_details"]["reason"],
            "max_output_tokens"
        );
        assert_eq!(response["output"][0]["content"][0]["text"], "Hi");
        assert_eq!(response["output"][1]["type"], "function_call");
        assert_eq!(response["output"][1]["call_id"], "call_1");
        assert_eq!(response["usage"]["input_tokens"], 5);
        assert_eq!(response["usage"]["output_tokens"], 7);
        assert_eq!(response["usage"]["total_tokens"], 12);
    }

    /// AV-4: an upstream (a tenant may run its own) that streams without end, or a call for
    /// every index, ends its stream as broken instead of growing the process's memory.
    #[test]
    fn av_4_a_stream_past_what_a_translation_keeps_ends_as_broken() {
        let mut translator = StreamTranslator::new("resp_1", "house");
        let piece = "x".repeat(1024 * 1024);
        let chunk = format!(
            "data: {}\n\n",
            json!({"choices": [{"delta": {"content": piece}}]})
        );
        let mut ended = None;
        for n in 0..20 {
            if let Err(error) = translator.push(chunk.as_bytes()) {
                ended = Some((n, error));
                break;
            }
        }
        let (n, _) = ended.expect("never cut");
        assert!((15..=17).contains(&n), "cut after {n} MiB");

        let mut translator = StreamTranslator::new("resp_2", "house");
        let mut refused = false;
        for index in 0..2000 {
            let chunk = format!(
                "data: {}\n\n",
                json!({"choices": [{"delta": {"tool_calls": [{"index": index, "id": format!("c{index}"),
                    "function": {"name": "f", "arguments": "{}"}}]}}]})
            );
            if translator.push(chunk.as_bytes()).is_err() {
                assert_eq!(index, MAX_CALLS, "cut at the bound");
                refused = true;
                break;
            }
        }
        assert!(refused, "2000 calls were kept");
    }

    #[test]
    fn a_chat_stream_with_text_and_a_call_becomes_response_events_whatever_the_chunking() {
        let upstream = concat!(
            "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"Let me\"}}]}\n\n",
            "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\" look.\"}}]}\n\n",
            "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"ls\",\"arguments\":\"\"}}]}}]}\n\n",
            "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"path\\\":\"}}]}}]}\n\n",
            "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\".\\\"}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: [DONE]\n\n"
        );
        for split in [1, 9, 64, upstream.len()] {
            let mut translator = StreamTranslator::new("resp_1", "house");
            translator.usage(&Usage::totals(30, 12));
            let mut events = Vec::new();
            for piece in upstream.as_bytes().chunks(split) {
                events.extend(translator.push(piece).unwrap());
            }
            events.extend(translator.finish());
            let text: String = events
                .iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect();
            let kinds: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("event: "))
                .collect();
            assert_eq!(
                kinds,
                [
                    "response.created",
                    "response.in_progress",
                    "response.output_item.added",
                    "response.content_part.added",
                    "response.output_text.delta",
                    "response.output_text.delta",
                    "response.output_text.done",
                    "response.content_part.done",
                    "response.output_item.done",
                    "response.output_item.added",
                    "response.function_call_arguments.delta",
                    "response.function_call_arguments.delta",
                    "response.function_call_arguments.done",
                    "response.output_item.done",
                    "response.completed",
                ],
                "split {split}"
            );
            let datas: Vec<Value> = text
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .map(|d| serde_json::from_str(d).unwrap())
                .collect();
            // Numbered in order, each naming its own type.
            for (n, data) in datas.iter().enumerate() {
                assert_eq!(data["sequence_number"], n, "split {split}");
                assert_eq!(data["type"], kinds[n], "split {split}");
            }
            let completed = &datas.last().unwrap()["response"];
            assert_eq!(completed["status"], "completed");
            assert_eq!(completed["output"][0]["content"][0]["text"], "Let me look.");
            assert_eq!(completed["output"][1]["arguments"], "{\"path\":\".\"}");
            assert_eq!(completed["output"][1]["call_id"], "call_1");
            assert_eq!(completed["usage"]["input_tokens"], 30);
            assert_eq!(completed["usage"]["output_tokens"], 12);
            // Nothing more after the end, whatever is pushed or asked.
            assert!(translator.finish().is_empty());
        }
    }
}
