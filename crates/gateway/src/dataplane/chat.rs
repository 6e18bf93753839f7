//! The endpoints: `/v1/chat/completions`, `/v1/embeddings`, `/v1/messages` (Anthropic's
//! format in and out), `/v1/responses` (OpenAI's Responses format in and out) and
//! `/v1/models`. Each reads its body once into a head and passes the
//! funnel.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use portcullis_providers::{HOPS_HEADER, MAX_HOPS, anthropic};
use portcullis_storage::dataplane::{self, LiveKey};
use serde_json::{Map, Value, json};

use super::answer::{self, Wire};
use super::funnel::{self, Answer, Call, allowed, serve_alias};
use super::head;
use super::key::authenticate;
use super::prompt::apply_prompt;
use crate::error::{ApiError, ErrorShape};
use crate::logs::Endpoint;
use crate::router::AppState;

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

/// `POST /v1/messages`: Anthropic's format in and out, errors included, over the same routes
/// and chains.
pub async fn messages(State(state): State<AppState>, request: Request) -> Response {
    match messages_served(&state, request).await {
        Ok(response) => response,
        Err(error) => error.shaped(ErrorShape::Anthropic),
    }
}

async fn messages_served(state: &AppState, request: Request) -> Result<Response, ApiError> {
    let Keyed {
        key,
        headers,
        body,
        hops,
    } = keyed_body(state, request).await?;
    let request = crate::json::object(&body)?;
    let mut chat =
        anthropic::request_to_openai(&request).map_err(|e| ApiError::invalid_request(e.0))?;
    end_user_from_header(&headers, &mut chat);
    let head = head::chat(&chat)?;
    let alias = head.alias.clone();
    let call = Call {
        key: &key,
        head,
        request: chat,
        endpoint: Endpoint::Messages,
        prompt_bytes: body.len(),
        hops,
    };
    let served = serve_alias(state, call).await?;
    let mut response = match served.answer {
        Answer::Json {
            status: 200,
            body,
            usage,
        } => {
            let message = anthropic::response_from_openai(&body, &alias, usage.as_ref()).ok_or(
                ApiError::Upstream {
                    status: StatusCode::BAD_GATEWAY,
                    code: "upstream_error",
                },
            )?;
            answer::json(200, message)?
        }
        Answer::Json { status, body, .. } => answer::json(status, body)?,
        Answer::Stream {
            first,
            rest,
            settle,
        } => {
            let translator = Box::new(anthropic::StreamTranslator::new(&alias));
            answer::stream(first, rest, Wire::Translated(translator), *settle, false)?
        }
    };
    answer::served_by(&mut response, &served.target, served.attempts);
    Ok(response)
}

/// `POST /v1/responses`: OpenAI's Responses format in and out, stateless, over the same routes
/// and chains (translated to chat for every provider).
pub async fn responses(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let Keyed {
        key,
        headers,
        body,
        hops,
    } = keyed_body(&state, request).await?;
    let request = crate::json::object(&body)?;
    let mut chat = portcullis_providers::responses::request_to_chat(&request)
        .map_err(|e| ApiError::invalid_request(e.0))?;
    end_user_from_header(&headers, &mut chat);
    let head = head::chat(&chat)?;
    let alias = head.alias.clone();
    let call = Call {
        key: &key,
        head,
        request: chat,
        endpoint: Endpoint::Responses,
        prompt_bytes: body.len(),
        hops,
    };
    let served = serve_alias(&state, call).await?;
    // The request's own id names the response: unique, and found again in its log.
    let id = format!(
        "resp_{}",
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
            let answer = portcullis_providers::responses::response_from_chat(
                &body,
                &id,
                &alias,
                usage.as_ref(),
            )
            .ok_or(ApiError::Upstream {
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
            let translator = Box::new(portcullis_providers::responses::StreamTranslator::new(
                &id, &alias,
            ));
            answer::stream(first, rest, Wire::Translated(translator), *settle, false)?
        }
    };
    answer::served_by(&mut response, &served.target, served.attempts);
    Ok(response)
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
