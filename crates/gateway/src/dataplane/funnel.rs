//! The one funnel every prompt-carrying request passes (CF-3, AV-2, RM-1): the key's
//! allowlist, the org's guardrail, the route's plan, the request's bounds and their
//! reservation, the chain of targets, and the settle. A request is logged from here on: a
//! refusal at once, an answer when it settles.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use portcullis_core::money::{Price, Usage};
use portcullis_providers::{
    Attempts, ChainFailure, Limits, Native, Operation, ProviderError, Reply, serve,
};
use portcullis_storage::dataplane::{self, LiveKey};
use serde_json::{Map, Value, json};
use tracing::Instrument;

use super::answer::{self, Settle, Wire};
use super::head::RequestHead;
use super::plan::{self, Bounds, RoutePlan};
use crate::error::ApiError;
use crate::guardrail;
use crate::logs::{Draft, End, Endpoint};
use crate::spend::Reservation;
use crate::state::AppState;

/// Bodies up to this size are scanned by the guardrail inline (tens of microseconds).
const INLINE_SCAN_BYTES: usize = 64 * 1024;

/// One data-plane call, as the funnel takes it.
pub(super) struct Call<'a> {
    pub key: &'a LiveKey,
    pub head: RequestHead,
    /// In OpenAI's shape (a `/v1/messages` body is translated first).
    pub request: Map<String, Value>,
    pub endpoint: Endpoint,
    /// Bytes of the client's body and of anything added to it (a stored prompt): the bound on
    /// its prompt tokens.
    pub prompt_bytes: usize,
    /// Gateways the request already went through (AV-4: a loop ends).
    pub hops: u32,
}

/// What a served request became: the upstream's answer in OpenAI's shape, ready to be written
/// by the endpoint (a stream settles when it ends).
pub(super) enum Answer {
    Json {
        status: u16,
        body: bytes::Bytes,
        usage: Option<Usage>,
    },
    Stream {
        first: bytes::Bytes,
        rest: futures_util::stream::BoxStream<
            'static,
            Result<portcullis_providers::Chunk, ProviderError>,
        >,
        settle: Box<Settle>,
    },
}

/// A served request: its answer and who served it.
pub(super) struct Served {
    pub answer: Answer,
    pub target: String,
    pub attempts: u32,
}

/// Whether the key may use the alias (its allowlist, if any).
pub(super) fn allowed(key: &LiveKey, alias: &str) -> bool {
    key.models
        .as_ref()
        .is_none_or(|models| models.iter().any(|m| m == alias))
}

/// The alias's plan: cached, or resolved and built once for every request until it changes.
pub(super) async fn plan(
    state: &AppState,
    key: &LiveKey,
    alias: &str,
) -> Result<Arc<RoutePlan>, ApiError> {
    if let Some(plan) = state.caches.route(key.org_id, alias) {
        return Ok(plan);
    }
    let fill = state.caches.fill_started();
    let mut tx = state.db.begin_tenant(key.org_id).await?;
    let resolved = dataplane::resolve_route(&mut tx, &state.keyring, alias).await?;
    tx.commit().await?;
    let resolved = resolved.ok_or_else(|| ApiError::NotFound {
        code: "model_not_found",
        message: format!("no model `{alias}` here"),
    })?;
    let plan = Arc::new(RoutePlan::build(
        key.org_id,
        &resolved,
        state.spend.prices(),
        &state.upstreams,
    ));
    state.caches.before_insert().await;
    state.caches.put_route(key.org_id, Arc::clone(&plan), fill);
    Ok(plan)
}

/// All targets failed: the client learns which way, never the upstream's address or key.
fn failure_to_error(failure: &ChainFailure) -> ApiError {
    use axum::http::StatusCode;
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
        ProviderError::BudgetSpent => ApiError::PaymentRequired {
            code: "budget_exceeded",
            message: "an upstream took the request and did not answer in time; the budget \
                      holds no second attempt"
                .to_owned(),
        },
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

/// What a request holds before it leaves.
struct Ready {
    plan: Arc<RoutePlan>,
    bounds: Bounds,
    reservation: Reservation,
}

/// Checks the key's allowlist, applies the org's guardrail, plans the route, bounds and
/// reserves the request, serves it through the chain and settles it. Every data-plane request
/// passes here.
pub(super) async fn serve_alias(state: &AppState, mut call: Call<'_>) -> Result<Served, ApiError> {
    let stream = call.head.stream;
    let mut draft = Draft::open(
        call.key,
        call.endpoint,
        &call.head.alias,
        stream,
        &call.request,
    );
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
    let Ready {
        plan,
        bounds,
        reservation,
    } = ready;
    let order = plan.order();
    let targets: Vec<&portcullis_providers::Target> =
        order.iter().map(|i| &plan.targets[*i].target).collect();
    let operation = match call.endpoint {
        Endpoint::Embeddings => Operation::Embeddings,
        Endpoint::Chat | Endpoint::Messages | Endpoint::Responses | Endpoint::Completions => {
            Operation::Chat {
                stream,
                client_usage: call.head.client_usage,
            }
        }
        // A count is answered by `chat::count_tokens`, which asks no chain.
        Endpoint::CountTokens => {
            return Err(ApiError::Internal("a token count reached the chain".into()));
        }
    };
    let request_id = crate::request_id::current().unwrap_or_default();
    let mut reservation = reservation;
    reservation.mark_sent(&request_id, &call.head.alias, bounds.priced);
    let mut budget = Budgeted {
        state,
        key: call.key,
        bounds,
        request_id: request_id.clone(),
        alias: call.head.alias.clone(),
        current: Some(reservation),
        billed: Vec::new(),
    };
    let org = tracing::field::display(call.key.org_id);
    let limits = Limits {
        hops: call.hops,
        ..plan.limits
    };
    let served = serve(
        &state.upstreams,
        &targets,
        &call.request,
        operation,
        &limits,
        &mut budget,
    )
    .instrument(tracing::info_span!("upstream", org_id = org))
    .await;
    // Attempts that may have been billed are recorded at their worst case, whatever followed.
    for (index, held) in budget.billed.drain(..) {
        let planned = &plan.targets[order[index]];
        held.settle_at_estimate(
            request_id.clone(),
            call.head.alias.clone(),
            planned.target.label.clone(),
            planned.pricing.is_some(),
        );
    }
    // The request as the serving target received it: the client's own (redacted like the
    // rest) when its provider speaks the client's format, else the chat request.
    let native = Native::carried_by(&call.request).filter(|format| {
        served.as_ref().is_ok_and(|served| {
            plan.targets[order[served.index]]
                .target
                .provider
                .speaks(*format)
        })
    });
    draft.sent(call.request, call.prompt_bytes, native);
    let served = match served {
        Ok(served) => served,
        Err(failure) => {
            // The last attempt failed unbilled (a refused connection, an error status): its
            // reservation goes back. A billed one was handed to `billed` by the chain.
            if let Some(unbilled) = budget.current.take() {
                unbilled.release();
            }
            let kinds: Vec<&'static str> = failure.failures.iter().map(|(_, e)| e.kind()).collect();
            state.metrics.upstream(failure.attempts, &kinds, false);
            let error = failure_to_error(&failure);
            draft.finish(&state.logs, End::refused(&error));
            return Err(error);
        }
    };
    state
        .metrics
        .upstream(served.attempts, &served.failed, true);
    let planned = &plan.targets[order[served.index]];
    let reservation = budget
        .current
        .take()
        .ok_or_else(|| ApiError::internal(ProviderError::BudgetSpent))?;
    let settle = Settle {
        reservation,
        request_id,
        alias: call.head.alias.clone(),
        target: served.target.clone(),
        pricing: plan::pricing_for(&call.head, planned)?,
        draft,
        logs: state.logs.clone(),
        span: tracing::Span::current(),
    };
    let answer = match served.reply {
        Reply::Json {
            status,
            body,
            usage,
        } => {
            let response = settle
                .draft
                .logs_content()
                .then(|| crate::logs::Response::Body(body.clone()));
            settle.finish(usage, status, None, response);
            Answer::Json {
                status,
                body,
                usage,
            }
        }
        Reply::Stream { first, rest } => Answer::Stream {
            first,
            rest,
            settle: Box::new(settle),
        },
    };
    Ok(Served {
        answer,
        target: served.target,
        attempts: served.attempts,
    })
}

/// Everything before the request leaves: a refusal here is logged as one.
async fn prepare(
    state: &AppState,
    call: &mut Call<'_>,
    draft: &mut Draft,
) -> Result<Ready, ApiError> {
    let (key, alias) = (call.key, call.head.alias.clone());
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
    if !allowed(key, &alias) {
        return Err(ApiError::forbidden(
            "model_not_allowed",
            format!("this key may not use `{alias}`"),
        ));
    }
    let plan = plan(state, key, &alias).await?;
    // The client's own request rides along only for a route with a target that speaks its
    // format: otherwise it would be scanned twice and stripped on every attempt for nothing.
    if let Some(native) = Native::carried_by(&call.request)
        && !plan
            .targets
            .iter()
            .any(|planned| planned.target.provider.speaks(native))
    {
        call.request.remove(native.key());
    }
    let checked = scan(state, key, &mut call.request, call.prompt_bytes).await?;
    let refusal = (checked.record.action == "blocked").then(|| guardrail::blocked(&checked.record));
    draft.guardrail(checked.record);
    if let Some(refusal) = refusal {
        return Err(refusal);
    }
    // Placeholders may be longer than what they replace: the prompt bound grows with them.
    call.prompt_bytes += checked.grown;
    let prompt_bytes = i64::try_from(call.prompt_bytes).unwrap_or(i64::MAX);
    let bounds = plan::bounds(&call.head, &plan, prompt_bytes)?;
    bound_the_request(&mut call.request, &call.head, &bounds, call.endpoint);
    let reservation = state
        .spend
        .reserve(key, bounds.estimate, bounds.ceiling)
        .instrument(tracing::info_span!("budget.reserve", org_id = %key.org_id))
        .await?;
    Ok(Ready {
        plan,
        bounds,
        reservation,
    })
}

/// Applies the org's guardrail to what is about to leave for a provider (`bytes`: its size),
/// and counts what it did. A `blocked` record is the caller's to turn into the refusal.
pub(super) async fn scan(
    state: &AppState,
    key: &LiveKey,
    request: &mut Map<String, Value>,
    bytes: usize,
) -> Result<guardrail::Checked, ApiError> {
    let span = tracing::info_span!("guardrail", org_id = %key.org_id);
    let checked = if bytes <= INLINE_SCAN_BYTES {
        span.in_scope(|| guardrail::check(&state.detector, key.privacy.pii_guardrail, request))
    } else {
        // A large body is scanned on the compute workers: milliseconds of CPU must not hold up
        // the async workers that serve everyone else, and no number of large bodies may run
        // more scans at once than there are cores (AV-4).
        let detector = Arc::clone(&state.detector);
        let mode = key.privacy.pii_guardrail;
        let mut taken = std::mem::take(request);
        let (taken, checked) = state
            .compute
            .run(move || {
                let checked = span.in_scope(|| guardrail::check(&detector, mode, &mut taken));
                (taken, checked)
            })
            .await?;
        *request = taken;
        checked
    };
    state.metrics.guardrail(checked.record.action);
    Ok(checked)
}

/// Writes the reserved output bound into the request, in the field the adapters read for
/// every provider (`max_completion_tokens`), and asks a stream for its usage.
fn bound_the_request(
    request: &mut Map<String, Value>,
    head: &RequestHead,
    bounds: &Bounds,
    endpoint: Endpoint,
) {
    if endpoint == Endpoint::Embeddings {
        return;
    }
    request.remove("max_tokens");
    request.insert(
        "max_completion_tokens".into(),
        Value::from(bounds.output_bound),
    );
    if head.stream {
        // Settling reads the usage chunk; whether the client sees it is the adapters' to keep.
        request.insert("stream_options".into(), json!({"include_usage": true}));
    }
}

/// Holds a request's budget through the chain: an attempt that may have been billed keeps its
/// reservation (to be recorded at its worst case), and the next attempt needs a new one.
struct Budgeted<'a> {
    state: &'a AppState,
    key: &'a LiveKey,
    bounds: Bounds,
    request_id: String,
    alias: String,
    current: Option<Reservation>,
    billed: Vec<(usize, Reservation)>,
}

impl Attempts for Budgeted<'_> {
    fn billed(&mut self, index: usize, more: bool) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            if let Some(held) = self.current.take() {
                self.billed.push((index, held));
            }
            if !more {
                return true;
            }
            let ceiling: Price = self.bounds.ceiling;
            match self
                .state
                .spend
                .reserve(self.key, self.bounds.estimate, ceiling)
                .await
            {
                Ok(mut next) => {
                    next.mark_sent(&self.request_id, &self.alias, self.bounds.priced);
                    self.current = Some(next);
                    true
                }
                Err(_) => false,
            }
        })
    }
}

/// Writes a served request's answer for an OpenAI client.
pub(super) fn respond(
    served: Served,
    wire: Wire,
    client_usage: bool,
) -> Result<axum::response::Response, ApiError> {
    let mut response = match served.answer {
        Answer::Json { status, body, .. } => answer::json(status, body)?,
        Answer::Stream {
            first,
            rest,
            settle,
        } => answer::stream(first, rest, wire, *settle, client_usage)?,
    };
    answer::served_by(&mut response, &served.target, served.attempts);
    Ok(response)
}
