//! A route's plan, built once per cache fill: its targets as the chain takes them, each with
//! what the price table knows of its model, and the caps that bound a request's cost. What a
//! request may cost is worked out here from the plan and the request's head, before anything
//! leaves (AV-2): the output bound sent upstream is the one reserved, and every priced input is
//! counted at its worst case.

use std::time::Duration;

use portcullis_core::OrgId;
use portcullis_core::money::{Price, Pricing, Usage};
use portcullis_policy::spend::{DEFAULT_MAX_OUTPUT_TOKENS, ModelEntry, PriceTable};
use portcullis_providers::{Limits, Target, Upstreams, weighted_index};
use portcullis_storage::dataplane::{ResolvedRoute, ResolvedTarget};

use super::head::{RequestHead, Tier};
use crate::error::ApiError;

/// The attempt's time when the route sets none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Choices a request may ask for when its route sets no cap.
pub const DEFAULT_MAX_CHOICES: i64 = 8;
/// Prompt tokens reserved beyond the body when a request carries tools.
const TOOLS_OVERHEAD: i64 = 1_000;

/// One target of a plan.
#[derive(Debug)]
pub struct PlannedTarget {
    pub target: Target,
    /// What the price table knows of its model (image bounds, output limit), or nothing.
    pub model: ModelEntry,
    /// Its price (its own, its route's, or the table's); `None`: it has none.
    pub pricing: Option<Pricing>,
    /// Its route serves it without a price.
    pub unpriced: bool,
}

/// A route resolved for serving.
#[derive(Debug)]
pub struct RoutePlan {
    pub alias: String,
    /// The route's own targets, then its fallback routes' in chain order.
    pub targets: Vec<PlannedTarget>,
    /// How many of `targets` are the route's own.
    primary: usize,
    /// The route gives weights: its first attempt is spread by them.
    weighted: bool,
    pub limits: Limits,
    /// The most output tokens a request may ask for: the route's, else the smallest limit of
    /// its targets' models, else the default.
    pub output_cap: i64,
    pub max_choices: i64,
    pub file_part_tokens: Option<i64>,
}

fn planned(
    org: OrgId,
    resolved: &ResolvedTarget,
    prices: &PriceTable,
    upstreams: &Upstreams,
) -> PlannedTarget {
    let target = Target {
        label: format!("{}:{}", resolved.credential_name, resolved.model),
        circuit: format!("{org}:{}:{}", resolved.credential_id, resolved.model),
        provider: upstreams.provider(resolved.provider),
        base_url: resolved.base_url.as_deref().and_then(|u| u.parse().ok()),
        api_key: resolved.api_key.clone().into(),
        model: resolved.model.clone(),
        weight: resolved.weight.unwrap_or(1),
    };
    let entry = prices.lookup(&resolved.model).copied();
    // A route's own price sets the plain rates; what the table knows of the model's other
    // kinds of token (cache writes, reasoning, audio, long context) still applies.
    let pricing = match (resolved.price, entry.map(|e| e.pricing)) {
        (Some(own), Some(table)) => Some(Pricing {
            base: Price {
                input: own.input,
                output: own.output,
                cached_input: own.cached_input.or(table.base.cached_input),
                ..table.base
            },
            long_context: table.long_context,
        }),
        (Some(own), None) => Some(Pricing::from(Price {
            input: own.input,
            output: own.output,
            cached_input: own.cached_input,
            ..Price::default()
        })),
        (None, table) => table,
    };
    PlannedTarget {
        target,
        pricing,
        unpriced: resolved.unpriced,
        model: entry.unwrap_or_default(),
    }
}

impl RoutePlan {
    /// The plan of `org`'s route, each target served by `upstreams`' adapter of its kind.
    pub fn build(
        org: OrgId,
        route: &ResolvedRoute,
        prices: &PriceTable,
        upstreams: &Upstreams,
    ) -> Self {
        let primary: Vec<PlannedTarget> = route
            .primary
            .iter()
            .map(|t| planned(org, t, prices, upstreams))
            .collect();
        let primary_count = primary.len();
        let targets: Vec<PlannedTarget> = primary
            .into_iter()
            .chain(
                route
                    .fallback
                    .iter()
                    .map(|t| planned(org, t, prices, upstreams)),
            )
            .collect();
        let output_cap = route.max_output_tokens.map_or_else(
            || {
                targets
                    .iter()
                    .filter_map(|t| t.model.max_output)
                    .min()
                    .unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS)
            },
            i64::from,
        );
        let ms = |v: Option<i32>| {
            v.and_then(|v| u64::try_from(v).ok())
                .map(Duration::from_millis)
        };
        let mut limits = Limits::new(ms(route.timeout_ms).unwrap_or(DEFAULT_TIMEOUT));
        if let Some(idle) = ms(route.stream_idle_ms) {
            limits.idle = idle;
        }
        if let Some(total) = ms(route.stream_max_ms) {
            limits.total = total;
        }
        Self {
            alias: route.alias.clone(),
            primary: primary_count,
            weighted: route.primary.iter().any(|t| t.weight.is_some()),
            targets,
            limits,
            output_cap,
            max_choices: route.max_choices.map_or(DEFAULT_MAX_CHOICES, i64::from),
            file_part_tokens: route.file_part_tokens.map(i64::from),
        }
    }

    /// The order this request tries the targets in (indices into `targets`): declared,
    /// unless the route gives weights, which then choose the first.
    pub fn order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.targets.len()).collect();
        let mut draw = [0u8; 4];
        if self.weighted && portcullis_core::token::random_bytes(&mut draw).is_ok() {
            let weights: Vec<u32> = self.targets[..self.primary]
                .iter()
                .map(|t| t.target.weight)
                .collect();
            if let Some(chosen) = weighted_index(&weights, u32::from_le_bytes(draw)) {
                order[..=chosen].rotate_right(1);
            }
        }
        order
    }
}

/// What a request may cost, worked out before it leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// The output bound sent upstream: the client's, lowered to the route's cap, or the cap.
    pub output_bound: i64,
    /// The worst case reserved: every prompt byte a token plus each dear part's worst case,
    /// and the output bound for every choice.
    pub estimate: Usage,
    /// The dearest rate any target may bill those tokens at.
    pub ceiling: Price,
    /// Whether every target has a price (else the request is recorded unpriced).
    pub priced: bool,
}

/// Works out the bounds of a request of `prompt_bytes` (its body and anything added to it)
/// with `head` on `plan`. Refused: what cannot be bounded or priced.
pub fn bounds(head: &RequestHead, plan: &RoutePlan, prompt_bytes: i64) -> Result<Bounds, ApiError> {
    if head.choices > plan.max_choices {
        return Err(ApiError::invalid_request(format!(
            "`n` is at most {} on this route",
            plan.max_choices
        )));
    }
    let media = head.media;
    if media.files > 0 && plan.file_part_tokens.is_none() {
        return Err(ApiError::invalid_request(
            "file parts are not accepted on this route: what they cost cannot be bounded \
             (a route accepts them with `file_part_tokens`)",
        ));
    }
    let output_bound = head
        .output_bound
        .map_or(plan.output_cap, |b| b.min(plan.output_cap));
    let high_images = media.images - media.low_detail_images;
    let dear_parts = plan
        .targets
        .iter()
        .map(|t| {
            t.model.image_bound(false) * high_images
                + t.model.image_bound(true) * media.low_detail_images
        })
        .max()
        .unwrap_or(0)
        + plan.file_part_tokens.unwrap_or(0) * media.files;
    // Tools are wrapped by the provider in a prompt of its own (Anthropic adds hundreds of
    // tokens): a margin above any published overhead.
    let tools = if head.tools { TOOLS_OVERHEAD } else { 0 };
    let input = prompt_bytes
        .saturating_add(dear_parts)
        .saturating_add(tools);
    let output = if head.writes_output {
        output_bound.saturating_mul(head.choices)
    } else {
        0
    };
    let mut ceiling: Option<Price> = None;
    let mut priced = true;
    for planned in &plan.targets {
        let Some(pricing) = pricing_for(head, planned)? else {
            priced = false;
            continue;
        };
        let base = &pricing.base;
        let label = &planned.target.label;
        if media.audio > 0 && base.audio_input.is_none() {
            return Err(ApiError::invalid_request(format!(
                "audio input is not priced for `{label}`: set its price before sending audio"
            )));
        }
        if head.audio_out && base.audio_output.is_none() {
            return Err(ApiError::invalid_request(format!(
                "audio output is not priced for `{label}`: set its price before asking for audio"
            )));
        }
        let worst = pricing.ceiling(input, media.audio > 0, head.audio_out);
        ceiling = Some(ceiling.map_or(worst, |c| c.max(worst)));
    }
    Ok(Bounds {
        output_bound,
        estimate: Usage::totals(input, output),
        ceiling: ceiling.unwrap_or_default(),
        priced,
    })
}

/// The rates a target bills this request at, or `None` for an unpriced target its route
/// serves anyway; a target with no price, or no price for the tier asked, is refused.
pub fn pricing_for(
    head: &RequestHead,
    planned: &PlannedTarget,
) -> Result<Option<Pricing>, ApiError> {
    let label = &planned.target.label;
    let Some(pricing) = planned.pricing else {
        if planned.unpriced {
            return Ok(None);
        }
        return Err(ApiError::PaymentRequired {
            code: "price_unknown",
            message: format!(
                "target `{label}` has no price: set one on its route (or `unpriced: true` to \
                 serve it unpriced)"
            ),
        });
    };
    match head.tier {
        Tier::Standard => Ok(Some(pricing)),
        Tier::Priority => planned.model.priority.map(Some).ok_or_else(|| {
            ApiError::invalid_request(format!(
                "`service_tier` priority is not priced for `{label}`; send `default` or `flex`"
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::head;
    use proptest::prelude::*;
    use serde_json::json;

    fn plan(max_output: Option<i32>) -> RoutePlan {
        let target = ResolvedTarget {
            credential_id: uuid::Uuid::now_v7(),
            credential_name: "c".to_owned(),
            provider: portcullis_core::provider::ProviderKind::OpenAi,
            base_url: None,
            api_key: "sk".to_owned(),
            model: "gpt-4o-mini".to_owned(),
            weight: None,
            price: None,
            unpriced: false,
        };
        let route = ResolvedRoute {
            alias: "a".to_owned(),
            primary: vec![target],
            fallback: Vec::new(),
            timeout_ms: None,
            max_output_tokens: max_output,
            max_choices: None,
            file_part_tokens: None,
            stream_idle_ms: None,
            stream_max_ms: None,
        };
        let upstreams = Upstreams::new(
            Duration::from_secs(1),
            portcullis_providers::Breakers::new(5, Duration::from_secs(1)),
            &portcullis_providers::Egress::default(),
        )
        .unwrap();
        RoutePlan::build(
            OrgId::new(),
            &route,
            &PriceTable::builtin().unwrap(),
            &upstreams,
        )
    }

    fn bounds_of(body: serde_json::Value, plan: &RoutePlan) -> Result<Bounds, ApiError> {
        let head = head::chat(body.as_object().unwrap())?;
        bounds(&head, plan, 100)
    }

    #[test]
    fn av_2_the_bound_sent_is_the_one_reserved_and_a_larger_one_is_lowered() {
        let route = plan(Some(1_000));
        let none = bounds_of(json!({"model": "a", "messages": []}), &route).unwrap();
        assert_eq!(none.output_bound, 1_000);
        assert_eq!(none.estimate.output_tokens, 1_000);
        let huge = bounds_of(
            json!({"model": "a", "messages": [], "max_tokens": 100_000}),
            &route,
        )
        .unwrap();
        assert_eq!(huge.output_bound, 1_000);
        let n = bounds_of(
            json!({"model": "a", "messages": [], "max_tokens": 100, "n": 5}),
            &route,
        )
        .unwrap();
        assert_eq!((n.output_bound, n.estimate.output_tokens), (100, 500));
        // Without a route cap: the model's limit from the table.
        let table = bounds_of(json!({"model": "a", "messages": []}), &plan(None)).unwrap();
        assert_eq!(table.output_bound, 16_384);
        let too_many = bounds_of(json!({"model": "a", "messages": [], "n": 20}), &route);
        assert!(too_many.is_err());
    }

    #[test]
    fn av_2_images_count_at_their_worst_case_and_files_need_a_route_bound() {
        let route = plan(Some(10));
        let images = bounds_of(
            json!({"model": "a", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://x/a.png"}},
            {"type": "image_url", "image_url": {"url": "https://x/b.png", "detail": "low"}}]}]}),
            &route,
        )
        .unwrap();
        assert_eq!(images.estimate.input_tokens, 100 + 48_169 + 2_833);
        let file = bounds_of(
            json!({"model": "a", "messages": [{"role": "user", "content": [
            {"type": "file", "file": {"file_id": "f"}}]}]}),
            &route,
        );
        assert!(file.is_err());
        let priority = bounds_of(
            json!({"model": "a", "messages": [], "service_tier": "priority"}),
            &route,
        );
        assert!(
            priority.is_err(),
            "gpt-4o-mini has no priority price in the table"
        );
    }

    proptest! {
        /// Whatever bound a client sends, the request is refused, or what is reserved is at
        /// least what is sent for every choice (AV-2).
        #[test]
        fn av_2_any_bound_is_refused_or_reserved_at_least_as_sent(
            bound in prop_oneof![
                Just(serde_json::Value::Null),
                any::<i64>().prop_map(serde_json::Value::from),
                any::<f64>().prop_map(|f| json!(f)),
                "[0-9]{1,12}".prop_map(serde_json::Value::from),
                (1u64..5_000_000).prop_map(serde_json::Value::from),
            ],
            n in prop_oneof![Just(serde_json::Value::Null), (0i64..200).prop_map(serde_json::Value::from)],
            cap in prop_oneof![Just(None), (1i32..200_000).prop_map(Some)],
        ) {
            let route = plan(cap);
            let body = json!({"model": "a", "messages": [], "max_tokens": bound, "n": n});
            if let Ok(b) = bounds_of(body.clone(), &route) {
                let choices = body["n"].as_i64().unwrap_or(1);
                prop_assert!(b.output_bound >= 1);
                prop_assert!(b.output_bound <= route.output_cap);
                prop_assert!(b.estimate.output_tokens >= b.output_bound * choices);
            }
        }
    }
}
