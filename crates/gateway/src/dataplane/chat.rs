//! `/v1/chat/completions`, `/v1/embeddings`, `/v1/messages` (Anthropic) and `/v1/models`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use futures_util::StreamExt;
use portcullis_providers::{
    ChainFailure, Operation, ProviderError, ProviderKind, Reply, Target, anthropic, serve,
    wants_usage, weighted_first,
};
use portcullis_storage::dataplane::{self, LiveKey, ResolvedRoute, ResolvedTarget};
use serde_json::{Map, Value, json};

use portcullis_core::money::{Price, Usage};
use portcullis_policy::prompt::{self, PromptMessage};
use portcullis_policy::spend::{DEFAULT_MAX_OUTPUT_TOKENS, input_token_bound};
use portcullis_storage::prompts;

use super::key::authenticate;
use crate::error::ApiError;
use crate::guardrail;
use crate::logs::{self, Draft, End, Endpoint, RequestLogs};
use crate::router::AppState;
use crate::spend::{Outcome, Reservation, UsageTap, usage_from_json};
use tracing::Instrument;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Bodies up to this size are scanned by the guardrail inline (tens of microseconds).
const INLINE_SCAN_BYTES: usize = 64 * 1024;

fn allowed(key: &LiveKey, alias: &str) -> bool {
    key.models
        .as_ref()
        .is_none_or(|models| models.iter().any(|m| m == alias))
}

async fn route(
    state: &AppState,
    key: &LiveKey,
    alias: &str,
) -> Result<Arc<ResolvedRoute>, ApiError> {
    if let Some(route) = state.caches.route(key.org_id, alias) {
        return Ok(route);
    }
    let fill = state.caches.fill_started();
    let mut tx = state.db.begin_tenant(key.org_id).await?;
    let resolved = dataplane::resolve_route(&mut tx, &state.keyring, alias).await?;
    tx.commit().await?;
    let route = Arc::new(resolved.ok_or_else(|| ApiError::NotFound {
        code: "model_not_found",
        message: format!("no model `{alias}` here"),
    })?);
    state.caches.before_insert().await;
    state.caches.put_route(key.org_id, Arc::clone(&route), fill);
    Ok(route)
}

fn target_label(resolved: &ResolvedTarget) -> String {
    format!("{}:{}", resolved.credential_name, resolved.model)
}

fn target(resolved: &ResolvedTarget) -> Option<Target> {
    Some(Target {
        label: target_label(resolved),
        provider: ProviderKind::parse(&resolved.provider)?,
        base_url: resolved.base_url.as_deref().and_then(|u| u.parse().ok()),
        api_key: resolved.api_key.clone().into(),
        model: resolved.model.clone(),
        weight: resolved.weight.unwrap_or(1),
    })
}

/// The route's targets in the order this request tries them: in declared order, unless the
/// route gives weights, which then choose the first.
fn chain(route: &ResolvedRoute) -> Vec<Target> {
    let mut primary: Vec<Target> = route.primary.iter().filter_map(target).collect();
    let mut draw = [0u8; 4];
    let weighted = route.primary.iter().any(|t| t.weight.is_some());
    if weighted && portcullis_core::token::random_bytes(&mut draw).is_ok() {
        weighted_first(&mut primary, u32::from_le_bytes(draw));
    }
    primary.extend(route.fallback.iter().filter_map(target));
    primary
}

/// A body over the limit is 413; any other failure to read it is the client's 400.
fn body_error(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge
    } else {
        ApiError::invalid_request("the body could not be read")
    }
}

/// All targets failed: the client learns which way, never the upstream's address or key.
fn failure_to_error(failure: &ChainFailure) -> ApiError {
    match &failure.last {
        ProviderError::Status { status, message }
            if !failure.last.should_fall_back()
                && (400..500).contains(status)
                && *status != 401
                && *status != 403 =>
        {
            ApiError::invalid_request(format!("the upstream refused the request: {message}"))
        }
        ProviderError::Unsupported(message) => ApiError::invalid_request(message.clone()),
        ProviderError::Timeout => ApiError::Upstream {
            status: StatusCode::GATEWAY_TIMEOUT,
            code: "upstream_timeout",
        },
        ProviderError::Connect | ProviderError::Status { status: 429, .. } => ApiError::Upstream {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "upstream_unavailable",
        },
        _ => ApiError::Upstream {
            status: StatusCode::BAD_GATEWAY,
            code: "upstream_error",
        },
    }
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
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_error)?;
    proxy(&state, &headers, &body, Kind::Chat).await
}

/// `POST /v1/messages`: Anthropic's format in and out, over the same routes and chains.
pub async fn messages(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_error)?;
    let key = authenticate(&state, &headers).await?;
    let request = crate::json::object(&body)?;
    let mut chat =
        anthropic::request_to_openai(&request).map_err(|e| ApiError::invalid_request(e.0))?;
    end_user_from_header(&headers, &mut chat);
    let alias = chat
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let stream = chat.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let call = Call {
        key: &key,
        alias: &alias,
        request: chat,
        endpoint: Endpoint::Messages,
        operation: Operation::Chat { stream },
        body_len: body.len(),
        // The translation asked for usage itself, and turns it into Anthropic's events.
        strip_usage: false,
    };
    let mut served = serve_alias(&state, call).await?;
    served.reply = match served.reply {
        Reply::Json { status: 200, body } => Reply::Json {
            status: 200,
            body: anthropic::response_from_openai(&body, &alias).ok_or(ApiError::Upstream {
                status: StatusCode::BAD_GATEWAY,
                code: "upstream_error",
            })?,
        },
        Reply::Stream { first, rest } => {
            let mut translator = anthropic::StreamTranslator::new(&alias);
            let head = translator.push(&first);
            let events = futures_util::stream::unfold(
                (Some(rest), Some(translator)),
                |(rest, translator)| async move {
                    let (mut rest, mut translator) = (rest?, translator?);
                    match rest.next().await {
                        Some(Ok(chunk)) => {
                            Some((Ok(translator.push(&chunk)), (Some(rest), Some(translator))))
                        }
                        Some(Err(error)) => Some((Err(error), (None, None))),
                        None => Some((Ok(translator.finish()), (None, None))),
                    }
                },
            )
            .map(|batch| batch.map(|events| Bytes::from(events.concat())))
            .boxed();
            Reply::Stream {
                first: Bytes::from(head.concat()),
                rest: events,
            }
        }
        other => other,
    };
    respond(served)
}

/// `POST /v1/embeddings`: `encoding_format` (`float` or `base64`) passes through.
pub async fn embeddings(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_error)?;
    proxy(&state, &headers, &body, Kind::Embeddings).await
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Embeddings,
}

/// Authenticates, checks the body's shape, resolves the alias and serves through the chain.
async fn proxy(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    kind: Kind,
) -> Result<Response, ApiError> {
    let key = authenticate(state, headers).await?;
    let mut request = crate::json::object(body)?;
    end_user_from_header(headers, &mut request);
    let alias = request
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid_request("`model` is required"))?
        .to_owned();
    let mut strip_usage = false;
    // A stored prompt's rendered messages count toward the prompt bound like the body.
    let mut prompt_bytes = 0;
    let operation = match kind {
        Kind::Chat => {
            if !request.get("messages").is_some_and(Value::is_array) {
                return Err(ApiError::invalid_request("`messages` must be an array"));
            }
            if let Some(prompt) = request.remove("prompt") {
                prompt_bytes = apply_prompt(state, &key, prompt, &mut request).await?;
            }
            let stream = request
                .get("stream")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if stream && !wants_usage(&request) {
                // Settling needs the usage chunk; the client, which did not ask, won't see it.
                request.insert("stream_options".into(), json!({"include_usage": true}));
                strip_usage = true;
            }
            Operation::Chat { stream }
        }
        Kind::Embeddings => {
            if !request
                .get("input")
                .is_some_and(|i| i.is_string() || i.is_array())
            {
                return Err(ApiError::invalid_request(
                    "`input` must be a string or an array",
                ));
            }
            if request
                .get("encoding_format")
                .is_some_and(|f| f != "float" && f != "base64")
            {
                return Err(ApiError::invalid_request(
                    "`encoding_format` is `float` or `base64`",
                ));
            }
            Operation::Embeddings
        }
    };
    let call = Call {
        key: &key,
        alias: &alias,
        request,
        endpoint: match kind {
            Kind::Chat => Endpoint::Chat,
            Kind::Embeddings => Endpoint::Embeddings,
        },
        operation,
        body_len: body.len() + prompt_bytes,
        strip_usage,
    };
    let served = serve_alias(state, call).await?;
    respond(served)
}

/// A stored prompt (CM-2), `{"name", "label" or "version", "variables"}`: its version (by
/// label, `production` when neither is given) rendered with the variables, its messages put
/// before the request's own. Returns the bytes the rendered messages add.
async fn apply_prompt(
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
    let rendered =
        prompt::render(&messages, &ask.variables).map_err(|e| ApiError::InvalidRequest {
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

/// One data-plane call, as `serve_alias` takes it.
struct Call<'a> {
    key: &'a LiveKey,
    alias: &'a str,
    /// In OpenAI's shape (a `/v1/messages` body is translated first).
    request: Map<String, Value>,
    endpoint: Endpoint,
    operation: Operation,
    /// Bytes of the client's body: the bound on its prompt tokens.
    body_len: usize,
    /// Drop the usage chunk from the stream: only the gateway asked for it.
    strip_usage: bool,
}

/// Checks the key's allowlist, applies the org's guardrail, resolves the alias, reserves the
/// worst case against the key's budgets and limits, serves through the chain and settles to
/// what was used. Every data-plane request passes here, and is logged from here on: a refusal
/// at once, an answer when it settles.
async fn serve_alias(
    state: &AppState,
    mut call: Call<'_>,
) -> Result<portcullis_providers::Served, ApiError> {
    let stream = matches!(call.operation, Operation::Chat { stream: true });
    let mut draft = Draft::open(call.key, call.endpoint, call.alias, stream, &call.request);
    let ready = match prepare(state, &mut call, &mut draft).await {
        Ok(ready) => ready,
        Err(error) => {
            if matches!(
                error.code(),
                "budget_exceeded" | "price_unknown" | "rate_limited"
            ) {
                state.metrics.rejected(error.code());
            }
            draft.finish(&state.logs, End::refused(&error));
            return Err(error);
        }
    };
    let org = tracing::field::display(call.key.org_id);
    let served = serve(
        &state.upstreams,
        &ready.targets,
        &call.request,
        call.operation,
        ready.timeout,
    )
    .instrument(tracing::info_span!("upstream", org_id = org))
    .await;
    draft.sent(call.request, call.body_len);
    let served = match served {
        Ok(served) => {
            state
                .metrics
                .upstream(served.attempts, &served.failed, true);
            served
        }
        Err(failure) => {
            let kinds: Vec<&'static str> = failure.failures.iter().map(|(_, e)| e.kind()).collect();
            state.metrics.upstream(failure.attempts, &kinds, false);
            let error = failure_to_error(&failure);
            draft.finish(&state.logs, End::refused(&error));
            return Err(error);
        }
    };
    let price = ready
        .prices
        .iter()
        .find(|(label, _)| *label == served.target)
        .and_then(|(_, price)| *price);
    let settle = Settle {
        reservation: ready.reservation,
        request_id: crate::request_id::current().unwrap_or_default(),
        model: call.alias.to_owned(),
        target: served.target.clone(),
        price,
        draft,
        logs: state.logs.clone(),
        span: tracing::Span::current(),
    };
    Ok(settle.on(served, call.strip_usage))
}

/// What a request needs before it leaves: its targets, their prices, its reservation.
struct Ready {
    targets: Vec<Target>,
    prices: Vec<(String, Option<Price>)>,
    reservation: Reservation,
    timeout: Duration,
}

async fn prepare(
    state: &AppState,
    call: &mut Call<'_>,
    draft: &mut Draft,
) -> Result<Ready, ApiError> {
    let (key, alias) = (call.key, call.alias);
    match call.request.get("user") {
        Some(Value::String(user)) if user.len() > crate::logs::MAX_END_USER => {
            return Err(ApiError::invalid_request(format!(
                "`user` is at most {} bytes",
                crate::logs::MAX_END_USER
            )));
        }
        Some(Value::String(_)) | None => {}
        Some(_) => return Err(ApiError::invalid_request("`user` is a string")),
    }
    if !allowed(key, alias) {
        return Err(ApiError::forbidden(
            "model_not_allowed",
            format!("this key may not use `{alias}`"),
        ));
    }
    let span = tracing::info_span!("guardrail", org_id = %key.org_id);
    let checked = if call.body_len <= INLINE_SCAN_BYTES {
        span.in_scope(|| {
            guardrail::check(
                &state.detector,
                &key.privacy.pii_guardrail,
                &mut call.request,
            )
        })
    } else {
        // A large body is scanned on the blocking pool: milliseconds of CPU must not hold up
        // the async workers that serve everyone else.
        let detector = Arc::clone(&state.detector);
        let mode = key.privacy.pii_guardrail.clone();
        let mut request = std::mem::take(&mut call.request);
        let (request, checked) = tokio::task::spawn_blocking(move || {
            let checked = span.in_scope(|| guardrail::check(&detector, &mode, &mut request));
            (request, checked)
        })
        .await
        .map_err(ApiError::internal)?;
        call.request = request;
        checked
    };
    state.metrics.guardrail(checked.record.action);
    let refusal = (checked.record.action == "blocked").then(|| guardrail::blocked(&checked.record));
    draft.guardrail(checked.record);
    if let Some(refusal) = refusal {
        return Err(refusal);
    }
    // Placeholders may be longer than what they replace: the prompt bound grows with them.
    call.body_len += checked.grown;
    let route = route(state, key, alias).await?;
    let timeout = route
        .timeout_ms
        .and_then(|ms| u64::try_from(ms).ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_millis);
    let targets = chain(&route);
    let prices = priced(state, &route);
    let estimate = estimate(call, &route);
    let reservation = state
        .spend
        .reserve(key, estimate, reservation_price(key, alias, &prices)?)
        .instrument(tracing::info_span!("budget.reserve", org_id = %key.org_id))
        .await?;
    Ok(Ready {
        targets,
        prices,
        reservation,
        timeout,
    })
}

/// Each target's label and price: its own or its route's, else the price table's for its
/// model, else none.
fn priced(state: &AppState, route: &ResolvedRoute) -> Vec<(String, Option<Price>)> {
    route
        .primary
        .iter()
        .chain(&route.fallback)
        .map(|t| {
            let price = t
                .price
                .map(|p| Price {
                    input: p.input,
                    output: p.output,
                    cached_input: p.cached_input,
                })
                .or_else(|| state.spend.prices().lookup(&t.model));
            (target_label(t), price)
        })
        .collect()
}

/// The dearest price of the targets that may serve. A target without a price is not free:
/// under a budget the request is refused until one is set (fail closed).
fn reservation_price(
    key: &LiveKey,
    alias: &str,
    prices: &[(String, Option<Price>)],
) -> Result<Option<Price>, ApiError> {
    let mut dearest: Option<Price> = None;
    for (label, price) in prices {
        match price {
            Some(p) => dearest = Some(dearest.map_or(*p, |d| d.max(*p))),
            None if key.limits.any_budget() => {
                return Err(ApiError::PaymentRequired {
                    code: "price_unknown",
                    message: format!(
                        "`{alias}` has no price for target `{label}` and a budget is in force: \
                         set its price on the route before using it"
                    ),
                });
            }
            None => {}
        }
    }
    Ok(dearest)
}

/// The worst case a request may use: every byte of the body a prompt token, plus the output
/// it may ask for (its `max_tokens`, else the route's default, else 4096).
fn estimate(call: &Call<'_>, route: &ResolvedRoute) -> Usage {
    let output = match call.operation {
        Operation::Embeddings => 0,
        Operation::Chat { .. } => ["max_completion_tokens", "max_tokens"]
            .iter()
            .find_map(|field| call.request.get(*field).and_then(Value::as_i64))
            .filter(|n| *n > 0)
            .or_else(|| route.max_output_tokens.map(i64::from))
            .unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS),
    };
    Usage {
        input_tokens: input_token_bound(call.body_len),
        output_tokens: output,
        cached_input_tokens: 0,
    }
}

/// What settles a served request: at once for a whole body, when the stream ends (or the
/// client leaves) for a stream.
struct Settle {
    reservation: Reservation,
    request_id: String,
    model: String,
    target: String,
    price: Option<Price>,
    draft: Draft,
    logs: RequestLogs,
    /// The request's span: a stream settles after its handler returned.
    span: tracing::Span,
}

impl Settle {
    fn outcome(&self, usage: Usage, estimated: bool) -> Outcome {
        Outcome {
            request_id: self.request_id.clone(),
            model: self.model.clone(),
            target: self.target.clone(),
            usage,
            price: self.price,
            estimated,
        }
    }

    /// Settles the reservation and finishes the request's log.
    fn finish(
        self,
        usage: Usage,
        estimated: bool,
        status: u16,
        error_code: Option<&'static str>,
        response: Option<logs::Response>,
    ) {
        let org = tracing::field::display(self.draft.org());
        let outcome = self.outcome(usage, estimated);
        let priced = outcome.price.is_some();
        let cost = tracing::info_span!(parent: &self.span, "budget.settle", org_id = org)
            .in_scope(|| self.reservation.settle(outcome));
        let end = End {
            status,
            error_code,
            target: Some(self.target),
            usage: Some(usage),
            cost_micro_usd: priced.then_some(cost),
            response,
        };
        tracing::info_span!(parent: &self.span, "request_log", org_id = org)
            .in_scope(|| self.draft.finish(&self.logs, end));
    }

    fn on(
        self,
        mut served: portcullis_providers::Served,
        strip: bool,
    ) -> portcullis_providers::Served {
        served.reply = match served.reply {
            Reply::Json { status, body } => {
                let response = self
                    .draft
                    .logs_content()
                    .then(|| logs::Response::Body(body.clone()));
                if (200..300).contains(&status) {
                    let (usage, estimated) = match usage_from_json(&body) {
                        Some(usage) => (usage, false),
                        None => (
                            self.bounded(i64::try_from(body.len()).unwrap_or(i64::MAX)),
                            true,
                        ),
                    };
                    self.finish(usage, estimated, status, None, response);
                } else {
                    let end = End {
                        status,
                        target: Some(self.target),
                        response,
                        ..End::default()
                    };
                    self.draft.finish(&self.logs, end);
                }
                Reply::Json { status, body }
            }
            Reply::Stream { first, rest } => {
                let mut watch = StreamWatch {
                    tap: UsageTap::new(strip, self.draft.logs_content()),
                    settle: Some(self),
                    broken: false,
                };
                let first = watch.tap.push(first);
                let rest = rest
                    .map(move |piece| {
                        watch.broken |= piece.is_err();
                        piece.map(|bytes| watch.tap.push(bytes))
                    })
                    .boxed();
                Reply::Stream { first, rest }
            }
        };
        served
    }

    /// Usage when the provider reported none: the prompt bound and `output` bytes.
    fn bounded(&self, output: i64) -> Usage {
        Usage {
            input_tokens: self.reservation.estimate.input_tokens,
            output_tokens: output,
            cached_input_tokens: 0,
        }
    }
}

/// Rides along a stream; settles when it is dropped: at its end, or when the client leaves.
struct StreamWatch {
    tap: UsageTap,
    settle: Option<Settle>,
    /// The upstream broke the stream: logged as an `upstream_error`, with what it had sent.
    broken: bool,
}

impl Drop for StreamWatch {
    fn drop(&mut self) {
        let Some(settle) = self.settle.take() else {
            return;
        };
        let (usage, estimated) = match self.tap.reported() {
            Some(usage) => (usage, false),
            None => (settle.bounded(self.tap.content_bytes()), true),
        };
        let response = self.tap.take_transcript().map(logs::Response::Text);
        let error = self.broken.then_some("upstream_error");
        settle.finish(usage, estimated, 200, error, response);
    }
}

/// The upstream's answer, with the headers that say who served it.
fn respond(served: portcullis_providers::Served) -> Result<Response, ApiError> {
    let mut response = match served.reply {
        Reply::Json { status, body } => Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body)),
        Reply::Stream { first, rest } => Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .header(header::CACHE_CONTROL, "no-cache")
            .body(Body::from_stream(sse(first, rest))),
    }
    .map_err(ApiError::internal)?;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&served.target) {
        headers.insert("x-portcullis-target", value);
    }
    headers.insert("x-portcullis-attempts", HeaderValue::from(served.attempts));
    Ok(response)
}

/// The upstream's events as they come; a break mid-stream ends it with a clean error event
/// (never a retry: the client already has part of an answer).
fn sse(
    first: Bytes,
    rest: futures_util::stream::BoxStream<'static, Result<Bytes, ProviderError>>,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> {
    let head = futures_util::stream::once(async move { Ok::<_, Infallible>(first) });
    let tail = futures_util::stream::unfold(Some(rest), |state| async move {
        let mut rest = state?;
        match rest.next().await {
            Some(Ok(chunk)) => Some((Ok(chunk), Some(rest))),
            Some(Err(error)) => {
                tracing::warn!(error = %error.summary(), "upstream stream broke");
                let event = json!({"error": {"type": "server_error", "code": "upstream_error",
                                             "message": "the upstream stream broke"}});
                Some((Ok(Bytes::from(format!("data: {event}\n\n"))), None))
            }
            None => None,
        }
    });
    head.chain(tail)
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
