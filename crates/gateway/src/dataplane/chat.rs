//! The endpoints: `/v1/chat/completions`, `/v1/embeddings`, the formats translated to and
//! from chat (`/v1/messages`: Anthropic's; `/v1/responses`: OpenAI's Responses;
//! `/v1/completions`: OpenAI's legacy Completions), `/v1/messages/count_tokens` and
//! `/v1/models`. Each reads its body once into a head and passes the funnel.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use portcullis_core::money::{Price, Usage};
use portcullis_providers::{
    HOPS_HEADER, MAX_HOPS, Native, StreamTranslation, anthropic, completions, responses,
};
use portcullis_storage::dataplane::{self, LiveKey};
use serde_json::{Map, Value, json};

use super::answer::{self, Wire};
use super::funnel::{self, Answer, Call, allowed, serve_alias};
use super::head;
use super::key::authenticate;
use super::plan::RoutePlan;
use super::prompt::apply_prompt;
use crate::error::{ApiError, ErrorShape};
use crate::logs::{Draft, End, Endpoint};
use crate::state::AppState;

/// Chat requests carry whole conversations, images included.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The request's key, checked from its headers, then its body: a request without a valid key
/// is refused before one byte of its body is read (AV-4). A body over the limit is 413, one
/// that does not arrive within the state's time 408, any other failure to read it 400. A request
/// that already went through `MAX_HOPS` gateways is 508 before anything else.
async fn keyed_body(state: &AppState, request: Request) -> Result<Keyed, ApiError> {
    let (parts, body) = request.into_parts();
    let hops = hops(&parts.headers);
    if hops >= MAX_HOPS {
        return Err(ApiError::Upstream {
            status: StatusCode::LOOP_DETECTED,
            code: "loop_detected",
        });
    }
    let key = authenticate(state, &parts.headers).await?;
    let read = axum::body::to_bytes(body, MAX_BODY);
    let body = match tokio::time::timeout(state.body_read_timeout, read).await {
        Err(_) => return Err(ApiError::RequestTimeout),
        Ok(Ok(body)) => body,
        Ok(Err(error)) => {
            let too_large = std::error::Error::source(&error)
                .is_some_and(|cause| cause.is::<http_body_util::LengthLimitError>());
            return Err(if too_large {
                ApiError::PayloadTooLarge
            } else {
                ApiError::invalid_request("the body could not be read")
            });
        }
    };
    Ok(Keyed {
        key,
        headers: parts.headers,
        body,
        hops,
    })
}

/// A data-plane request whose key is known and whose body has arrived.
struct Keyed {
    key: LiveKey,
    headers: HeaderMap,
    body: Bytes,
    /// Gateways it already went through.
    hops: u32,
}

/// Gateways the request went through, by their header; a value that is not a count is none.
fn hops(headers: &HeaderMap) -> u32 {
    headers
        .get(HOPS_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The end user (RM-5): the body's `user`, else the `x-portcullis-end-user` header, which then
/// becomes the body's `user` (what OpenAI-shaped providers read it as).
fn end_user_from_header(headers: &HeaderMap, request: &mut Map<String, Value>) {
    if request.contains_key("user") {
        return;
    }
    let user = headers
        .get("x-portcullis-end-user")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|u| !u.is_empty() && u.len() <= 512);
    if let Some(user) = user {
        request.insert("user".into(), Value::String(user.to_owned()));
    }
}

/// A client's body may not carry what the gateway carries inside a request: a client's own
/// request in another format, for the providers that speak it (`Native::key`), is the
/// gateway's to set.
fn refuse_reserved(request: &Map<String, Value>) -> Result<(), ApiError> {
    match Native::carried_by(request) {
        Some(native) => Err(ApiError::invalid_request(format!(
            "`{}` is reserved for the gateway",
            native.key()
        ))),
        None => Ok(()),
    }
}

/// `POST /v1/chat/completions`: streaming is decided by the body, not by `Accept`.
pub async fn completions(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let Keyed {
        key,
        headers,
        body,
        hops,
    } = keyed_body(&state, request).await?;
    let mut request = crate::json::object(&body)?;
    refuse_reserved(&request)?;
    end_user_from_header(&headers, &mut request);
    // A stored prompt's rendered messages count toward the prompt bound like the body.
    let mut prompt_bytes = 0;
    if request.get("messages").is_some_and(Value::is_array)
        && let Some(prompt) = request.remove("prompt")
    {
        prompt_bytes = apply_prompt(&state, &key, prompt, &mut request).await?;
    }
    let head = head::chat(&request)?;
    let client_usage = head.client_usage;
    let call = Call {
        key: &key,
        head,
        request,
        endpoint: Endpoint::Chat,
        prompt_bytes: body.len() + prompt_bytes,
        hops,
    };
    let served = serve_alias(&state, call).await?;
    funnel::respond(served, Wire::OpenAi, client_usage)
}

/// `POST /v1/embeddings`: `encoding_format` (`float` or `base64`) passes through.
pub async fn embeddings(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let Keyed {
        key,
        headers,
        body,
        hops,
    } = keyed_body(&state, request).await?;
    let mut request = crate::json::object(&body)?;
    refuse_reserved(&request)?;
    end_user_from_header(&headers, &mut request);
    let head = head::embeddings(&request)?;
    let call = Call {
        key: &key,
        head,
        request,
        endpoint: Endpoint::Embeddings,
        prompt_bytes: body.len(),
        hops,
    };
    let served = serve_alias(&state, call).await?;
    funnel::respond(served, Wire::OpenAi, false)
}

/// A JSON object, as the bodies of the data plane are.
type Object = Map<String, Value>;

/// A client format other than Chat Completions, served over the same routes and chains: its
/// request translated to chat before the funnel, the answer and the stream translated back.
struct Format {
    endpoint: Endpoint,
    /// The prefix of the answer's id, before the request's own id.
    id_prefix: &'static str,
    /// The chat request for the client's request (and its headers).
    to_chat: fn(&Object, &HeaderMap) -> Result<Object, String>,
    /// A whole chat answer in this format: (body, id, alias, usage reported).
    answer: fn(&[u8], &str, &str, Option<&Usage>) -> Option<Bytes>,
    /// A stream translator: (id, alias, the client's request).
    stream: fn(&str, &str, &Object) -> Box<dyn StreamTranslation>,
}

const MESSAGES: Format = Format {
    endpoint: Endpoint::Messages,
    id_prefix: "msg_",
    to_chat: |request, headers| {
        let mut chat = anthropic::request_to_openai(request).map_err(|e| e.0)?;
        let beta = headers.get("anthropic-beta").and_then(|v| v.to_str().ok());
        anthropic::keep_native(&mut chat, request, beta);
        Ok(chat)
    },
    answer: |body, _, alias, usage| anthropic::response_from_openai(body, alias, usage),
    stream: |_, alias, _| Box::new(anthropic::StreamTranslator::new(alias)),
};

const RESPONSES: Format = Format {
    endpoint: Endpoint::Responses,
    id_prefix: "resp_",
    to_chat: |request, _| {
        let mut chat = responses::request_to_chat(request).map_err(|e| e.0)?;
        responses::keep_native(&mut chat, request);
        Ok(chat)
    },
    answer: responses::response_from_chat,
    stream: |id, alias, _| Box::new(responses::StreamTranslator::new(id, alias)),
};

const COMPLETIONS: Format = Format {
    endpoint: Endpoint::Completions,
    id_prefix: "cmpl-",
    to_chat: |request, _| {
        let mut chat = completions::request_to_chat(request).map_err(|e| e.0)?;
        completions::keep_native(&mut chat, request);
        Ok(chat)
    },
    answer: completions::response_from_chat,
    stream: |id, alias, request| {
        let include_usage = request
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Box::new(completions::StreamTranslator::new(id, alias, include_usage))
    },
};

async fn serve_translated(
    state: &AppState,
    request: Request,
    format: &Format,
) -> Result<Response, ApiError> {
    let Keyed {
        key,
        headers,
        body,
        hops,
    } = keyed_body(state, request).await?;
    let request = crate::json::object(&body)?;
    let mut chat = (format.to_chat)(&request, &headers).map_err(ApiError::invalid_request)?;
    end_user_from_header(&headers, &mut chat);
    let head = head::chat(&chat)?;
    let alias = head.alias.clone();
    let call = Call {
        key: &key,
        head,
        request: chat,
        endpoint: format.endpoint,
        prompt_bytes: body.len(),
        hops,
    };
    let served = serve_alias(state, call).await?;
    // The request's own id names the answer: unique, and found again in its log.
    let id = format!(
        "{}{}",
        format.id_prefix,
        crate::request_id::current()
            .unwrap_or_default()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "")
    );
    let mut response = match served.answer {
        Answer::Json {
            status: 200,
            body,
            usage,
        } => {
            let answer =
                (format.answer)(&body, &id, &alias, usage.as_ref()).ok_or(ApiError::Upstream {
                    status: StatusCode::BAD_GATEWAY,
                    code: "upstream_error",
                })?;
            answer::json(200, answer)?
        }
        Answer::Json { status, body, .. } => answer::json(status, body)?,
        Answer::Stream {
            first,
            rest,
            settle,
        } => {
            let translator = (format.stream)(&id, &alias, &request);
            answer::stream(first, rest, Wire::Translated(translator), *settle, false)?
        }
    };
    answer::served_by(&mut response, &served.target, served.attempts);
    Ok(response)
}

/// `POST /v1/messages`: Anthropic's format in and out, errors included.
pub async fn messages(State(state): State<AppState>, request: Request) -> Response {
    match serve_translated(&state, request, &MESSAGES).await {
        Ok(response) => response,
        Err(error) => error.shaped(ErrorShape::Anthropic),
    }
}

/// `POST /v1/responses`: OpenAI's Responses format in and out, stateless.
pub async fn responses(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    serve_translated(&state, request, &RESPONSES).await
}

/// `POST /v1/completions`: OpenAI's legacy Completions format in and out.
pub async fn completions_legacy(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    serve_translated(&state, request, &COMPLETIONS).await
}

/// `POST /v1/messages/count_tokens`: the input tokens of a Messages request, in Anthropic's
/// shape. The key, its allowlist and the route are checked as for the request itself, and
/// the request passes the guardrail before it leaves. The route's first target that can count
/// (an Anthropic one) is asked, which Anthropic does not bill: `x-portcullis-token-count:
/// provider`. Without one, or when it fails, a target model's own tokenizer counts it
/// (OpenAI's encodings): `tokenizer`; else the answer is an upper bound (each byte of the
/// prompt's text and tool definitions one token; images not counted): `estimate`.
pub async fn count_tokens(State(state): State<AppState>, request: Request) -> Response {
    match counted(&state, request).await {
        Ok(response) => response,
        Err(error) => error.shaped(ErrorShape::Anthropic),
    }
}

async fn counted(state: &AppState, request: Request) -> Result<Response, ApiError> {
    let Keyed {
        key, body, hops, ..
    } = keyed_body(state, request).await?;
    let mut request = crate::json::object(&body)?;
    // A count has no output bound; the translation asks for one.
    request.entry("max_tokens").or_insert(json!(1));
    let chat =
        anthropic::request_to_openai(&request).map_err(|e| ApiError::invalid_request(e.0))?;
    let alias = chat
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    // Logged like a prompt: it may leave for a provider.
    let mut draft = Draft::open(&key, Endpoint::CountTokens, &alias, false, &request);
    let count = Count {
        key: &key,
        alias: &alias,
        bytes: body.len(),
        hops,
    };
    let answer = count.run(state, &chat, request, &mut draft).await;
    let end = match &answer {
        Ok((_, target)) => End {
            status: 200,
            target: target.clone(),
            ..End::default()
        },
        Err(error) => End::refused(error),
    };
    draft.finish(&state.logs, end);
    answer.map(|(response, _)| response)
}

/// A token count's request, once its key is known.
struct Count<'a> {
    key: &'a LiveKey,
    alias: &'a str,
    /// The client's body size: where the guardrail scans it.
    bytes: usize,
    /// Gateways the request went through.
    hops: u32,
}

impl Count<'_> {
    /// The answer, and the target that counted (none for the estimate).
    async fn run(
        &self,
        state: &AppState,
        chat: &Map<String, Value>,
        mut request: Map<String, Value>,
        draft: &mut Draft,
    ) -> Result<(Response, Option<String>), ApiError> {
        let (key, alias) = (self.key, self.alias);
        if !allowed(key, alias) {
            return Err(ApiError::forbidden(
                "model_not_allowed",
                format!("this key may not use `{alias}`"),
            ));
        }
        let plan = funnel::plan(state, key, alias).await?;
        // A count is one of the key's requests: it takes its place under the rate limit (and
        // spends nothing).
        state
            .spend
            .reserve(key, Usage::default(), Price::default())
            .await?
            .keep_rate_place();
        // What leaves for a provider passes the guardrail, as a prompt does.
        let checked = funnel::scan(state, key, &mut request, self.bytes).await?;
        let refusal = (checked.record.action == "blocked")
            .then(|| crate::guardrail::blocked(&checked.record));
        draft.guardrail(checked.record);
        if let Some(refusal) = refusal {
            return Err(refusal);
        }
        if let Some((count, target)) = provider_count(state, &plan, &request, self.hops).await {
            draft.sent(request, self.bytes, None);
            return Ok((token_count(count, "provider"), Some(target)));
        }
        draft.sent(request, self.bytes, None);
        // Else the first target whose model has a published tokenizer counts it here, on the
        // compute workers (CPU in the size of the request); else the upper bound.
        let models: Vec<String> = plan
            .order()
            .into_iter()
            .map(|index| plan.targets[index].target.model.clone())
            .collect();
        let text = chat.clone();
        let counted = state
            .compute
            .run(move || {
                models
                    .iter()
                    .find_map(|model| portcullis_providers::tokens::count_chat(model, &text))
            })
            .await?;
        Ok(match counted {
            Some(count) => (token_count(count, "tokenizer"), None),
            None => (token_count(estimate(chat), "estimate"), None),
        })
    }
}

/// An upper bound on a request's input tokens: each byte of its messages' text and tool calls
/// and of its tool definitions one token; images not counted.
fn estimate(chat: &Map<String, Value>) -> u64 {
    let text_bytes: usize = chat
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|m| match &m["content"] {
            Value::String(text) => text.len(),
            other => other.to_string().len(),
        } + m.get("tool_calls").map_or(0, |c| c.to_string().len()))
        .sum();
    let tools_bytes = chat.get("tools").map_or(0, |t| t.to_string().len());
    u64::try_from(text_bytes + tools_bytes).unwrap_or(u64::MAX)
}

/// The count of the route's first target whose API counts tokens, in the plan's order; a
/// target whose circuit is open is skipped (looked at, not probed: a count never takes the
/// one probe that decides whether the target serves again), and a failure falls back to the
/// estimate. `hops`: gateways the request went through, as for a prompt.
async fn provider_count(
    state: &AppState,
    plan: &RoutePlan,
    request: &Map<String, Value>,
    hops: u32,
) -> Option<(u64, String)> {
    let limits = portcullis_providers::Limits {
        hops,
        ..plan.limits
    };
    for index in plan.order() {
        let target = &plan.targets[index].target;
        if !target.provider.speaks(Native::Messages)
            || state.upstreams.breakers.is_open(&target.circuit)
        {
            continue;
        }
        match target.provider.count_tokens(target, request, &limits).await {
            Ok(Some(count)) => return Some((count, target.label.clone())),
            Ok(None) => {}
            Err(error) => {
                tracing::info!(target = %target.label, error = %error.summary(), "token count failed: answering an estimate");
            }
        }
    }
    None
}

/// Anthropic's count answer; `how` says whether a provider counted or the gateway estimated.
fn token_count(count: u64, how: &'static str) -> Response {
    let mut response = Json(json!({ "input_tokens": count })).into_response();
    response.headers_mut().insert(
        "x-portcullis-token-count",
        axum::http::HeaderValue::from_static(how),
    );
    response
}

/// `GET /v1/models`: the aliases this key may use, in OpenAI's list shape.
pub async fn models(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let key = authenticate(&state, &headers).await?;
    let mut tx = state.db.begin_tenant(key.org_id).await?;
    let aliases = dataplane::aliases(&mut tx).await?;
    tx.commit().await?;
    let data: Vec<Value> = aliases
        .into_iter()
        .filter(|alias| allowed(&key, alias))
        .map(
            |alias| json!({"id": alias, "object": "model", "created": 0, "owned_by": "portcullis"}),
        )
        .collect();
    Ok(Json(json!({"object": "list", "data": data})))
}
