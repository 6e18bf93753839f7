//! A data-plane request's head, read once at the edge: what the gateway decides on. Every
//! field that changes what a request may cost is checked here (AV-2): output bounds and `n`
//! are positive integers in range or a 400 naming the field; the parts that cost more than
//! their bytes (images, audio, files) are counted; a service tier or audio output is noted
//! for pricing. Everything else of the body rides along untouched.

use portcullis_policy::spend::MAX_OUTPUT_BOUND;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Most choices one request may ask for anywhere (OpenAI's own limit).
pub const MAX_CHOICES: i64 = 128;

/// What the gateway reads of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The route alias the client named.
    pub alias: String,
    pub stream: bool,
    /// The client's output bound: the smaller of `max_tokens` and `max_completion_tokens`.
    pub output_bound: Option<i64>,
    /// `n`: answers the provider writes, and bills, at once.
    pub choices: i64,
    /// The client asked for a stream's usage chunk.
    pub client_usage: bool,
    pub tier: Tier,
    /// The client asked for audio out (`modalities`), billed at audio rates.
    pub audio_out: bool,
    pub media: Media,
}

/// The processing tier, as it bears on price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Standard rates (`default`, `flex`, or none).
    Standard,
    /// Priority rates: `priority`, and `auto` and `scale`, which may be served as priority.
    Priority,
}

/// Parts of a request's messages that cost more than their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Media {
    pub images: i64,
    /// Of `images`, those at `detail: "low"`.
    pub low_detail_images: i64,
    pub audio: i64,
    pub files: i64,
}

/// `field` as a positive integer of at most `max`; absent or null is `None`. A float, a
/// string, zero or a negative number is the client's mistake.
fn positive_integer(
    request: &Map<String, Value>,
    field: &str,
    max: i64,
) -> Result<Option<i64>, ApiError> {
    match request.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .and_then(|n| i64::try_from(n).ok())
            .filter(|n| (1..=max).contains(n))
            .map(Some)
            .ok_or_else(|| {
                ApiError::invalid_request(format!(
                    "`{field}` must be a positive integer of at most {max}"
                ))
            }),
    }
}

fn flag(request: &Map<String, Value>, field: &str) -> Result<bool, ApiError> {
    match request.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(value)) => Ok(*value),
        Some(_) => Err(ApiError::invalid_request(format!(
            "`{field}` must be true or false"
        ))),
    }
}

fn alias(request: &Map<String, Value>) -> Result<String, ApiError> {
    request
        .get("model")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ApiError::invalid_request("`model` is required"))
}

fn tier(request: &Map<String, Value>) -> Result<Tier, ApiError> {
    match request.get("service_tier") {
        None | Some(Value::Null) => Ok(Tier::Standard),
        Some(Value::String(tier)) => match tier.as_str() {
            "default" | "flex" => Ok(Tier::Standard),
            "priority" | "auto" | "scale" => Ok(Tier::Priority),
            _ => Err(ApiError::invalid_request(
                "`service_tier` is one of auto, default, flex, priority, scale",
            )),
        },
        Some(_) => Err(ApiError::invalid_request("`service_tier` must be a string")),
    }
}

/// Counts the parts of every message's content that are priced above their bytes.
fn media(request: &Map<String, Value>) -> Media {
    let mut media = Media::default();
    let parts = request
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("content").and_then(Value::as_array))
        .flatten();
    for part in parts {
        match part.get("type").and_then(Value::as_str) {
            Some("image_url" | "image" | "input_image") => {
                media.images += 1;
                let detail = part
                    .pointer("/image_url/detail")
                    .or_else(|| part.get("detail"))
                    .and_then(Value::as_str);
                if detail == Some("low") {
                    media.low_detail_images += 1;
                }
            }
            Some("input_audio") => media.audio += 1,
            Some("file" | "input_file" | "document") => media.files += 1,
            _ => {}
        }
    }
    media
}

/// The head of a chat request (`/v1/chat/completions`, or a translated `/v1/messages`).
pub fn chat(request: &Map<String, Value>) -> Result<RequestHead, ApiError> {
    let alias = alias(request)?;
    if !request.get("messages").is_some_and(Value::is_array) {
        return Err(ApiError::invalid_request("`messages` must be an array"));
    }
    let bounds = [
        positive_integer(request, "max_tokens", MAX_OUTPUT_BOUND)?,
        positive_integer(request, "max_completion_tokens", MAX_OUTPUT_BOUND)?,
    ];
    let choices = positive_integer(request, "n", MAX_CHOICES)?.unwrap_or(1);
    let audio_out = request
        .get("modalities")
        .and_then(Value::as_array)
        .is_some_and(|m| m.iter().any(|m| m == "audio"));
    Ok(RequestHead {
        alias,
        stream: flag(request, "stream")?,
        output_bound: bounds.into_iter().flatten().min(),
        choices,
        client_usage: portcullis_providers::wants_usage(request),
        tier: tier(request)?,
        audio_out,
        media: media(request),
    })
}

/// The head of an embeddings request: no output, one answer.
pub fn embeddings(request: &Map<String, Value>) -> Result<RequestHead, ApiError> {
    let alias = alias(request)?;
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
    Ok(RequestHead {
        alias,
        stream: false,
        output_bound: None,
        choices: 1,
        client_usage: false,
        tier: Tier::Standard,
        audio_out: false,
        media: Media::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn head(body: Value) -> Result<RequestHead, ApiError> {
        chat(body.as_object().unwrap())
    }

    #[test]
    fn av_2_bounds_and_choices_are_positive_integers_named_when_wrong() {
        let base = json!({"model": "m", "messages": []});
        for (field, value) in [
            ("max_tokens", json!(0)),
            ("max_tokens", json!(-5)),
            ("max_tokens", json!(100_000.0)),
            ("max_tokens", json!("100000")),
            ("max_completion_tokens", json!(2_147_483_648_u64)),
            ("n", json!(0)),
            ("n", json!(129)),
            ("n", json!(2.0)),
            ("stream", json!("yes")),
        ] {
            let mut body = base.clone();
            body[field] = value.clone();
            let error = head(body).unwrap_err();
            assert_eq!(error.status().as_u16(), 400, "{field} = {value}");
            assert!(error.to_string().contains(field), "{field}: {error}");
        }
        let mut body = base.clone();
        body["max_tokens"] = json!(500);
        body["max_completion_tokens"] = json!(200);
        body["n"] = json!(3);
        let parsed = head(body).unwrap();
        assert_eq!((parsed.output_bound, parsed.choices), (Some(200), 3));
        assert_eq!(head(base).unwrap().output_bound, None);
    }

    #[test]
    fn av_2_parts_priced_above_their_bytes_are_counted() {
        let parsed = head(json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "see"},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/b.png", "detail": "low"}},
            {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}},
            {"type": "file", "file": {"file_id": "file-1"}}]}],
            "service_tier": "priority", "modalities": ["text", "audio"]}))
        .unwrap();
        assert_eq!(
            parsed.media,
            Media {
                images: 2,
                low_detail_images: 1,
                audio: 1,
                files: 1
            }
        );
        assert_eq!(parsed.tier, Tier::Priority);
        assert!(parsed.audio_out);
        assert!(head(json!({"model": "m", "messages": [], "service_tier": "gold"})).is_err());
    }

    proptest! {
        /// Any shape of bound is a 400, or a positive integer within range.
        #[test]
        fn av_2_every_bound_shape_is_refused_or_a_positive_integer(
            shape in prop_oneof![
                Just(Value::Null),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>().prop_map(|f| json!(f)),
                "[0-9]{1,12}".prop_map(Value::from),
                Just(json!(true)),
                Just(json!([1])),
            ],
            field in prop_oneof![Just("max_tokens"), Just("max_completion_tokens"), Just("n")],
        ) {
            let mut body = json!({"model": "m", "messages": []});
            body[field] = shape;
            if let Ok(parsed) = head(body) {
                let value = if field == "n" { Some(parsed.choices) } else { parsed.output_bound };
                if let Some(value) = value {
                    prop_assert!(value >= 1);
                    prop_assert!(value <= MAX_OUTPUT_BOUND);
                }
            }
        }
    }
}
