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

/// Fields that make a provider bill what no reservation can bound: another model chosen by the
/// upstream (OpenRouter's `models`, `route`, `provider`), per-call fees (`plugins`,
/// `web_search_options`), documents fetched into the prompt (Azure's `data_sources`), billed
/// predictions. Refused, naming the field.
const UNBOUNDED_FIELDS: [&str; 7] = [
    "models",
    "route",
    "provider",
    "plugins",
    "web_search_options",
    "data_sources",
    "prediction",
];

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
    /// The request carries tools, which providers wrap in a prompt of their own.
    pub tools: bool,
    /// The answer is written output (chat), not only read input (embeddings).
    pub writes_output: bool,
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

/// Counts the parts of every message's content that are priced above their bytes. A part of
/// a kind not known here is refused: what it costs cannot be bounded.
fn media(request: &Map<String, Value>) -> Result<Media, ApiError> {
    let mut media = Media::default();
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    for message in messages {
        // An assistant's earlier audio (`audio: {id}`) comes back as audio input.
        if message.get("audio").is_some_and(|a| !a.is_null()) {
            media.audio += 1;
        }
        let parts = message.get("content").and_then(Value::as_array);
        for part in parts.into_iter().flatten() {
            match part.get("type").and_then(Value::as_str) {
                Some("text" | "input_text" | "output_text" | "refusal") => {}
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
                other => {
                    return Err(ApiError::invalid_request(format!(
                        "content parts of type `{}` are not accepted: what they cost cannot be \
                         bounded",
                        other.unwrap_or("(none)")
                    )));
                }
            }
        }
    }
    Ok(media)
}

/// Refuses the fields whose cost no reservation can bound.
fn boundable(request: &Map<String, Value>) -> Result<(), ApiError> {
    match UNBOUNDED_FIELDS.iter().find(|f| request.contains_key(**f)) {
        Some(field) => Err(ApiError::invalid_request(format!(
            "`{field}` is not accepted: what it makes the provider bill cannot be bounded"
        ))),
        None => Ok(()),
    }
}

/// The head of a chat request (`/v1/chat/completions`, or a translated `/v1/messages`).
pub fn chat(request: &Map<String, Value>) -> Result<RequestHead, ApiError> {
    let alias = alias(request)?;
    if !request.get("messages").is_some_and(Value::is_array) {
        return Err(ApiError::invalid_request("`messages` must be an array"));
    }
    boundable(request)?;
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
        media: media(request)?,
        tools: ["tools", "functions"].iter().any(|f| {
            request
                .get(*f)
                .and_then(Value::as_array)
                .is_some_and(|t| !t.is_empty())
        }),
        writes_output: true,
    })
}

/// The head of an embeddings request: no output, one answer.
pub fn embeddings(request: &Map<String, Value>) -> Result<RequestHead, ApiError> {
    let alias = alias(request)?;
    boundable(request)?;
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
        tools: false,
        writes_output: false,
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
        // What cannot be bounded is refused, naming it.
        for body in [
            json!({"model": "m", "messages": [], "models": ["a", "b"]}),
            json!({"model": "m", "messages": [], "web_search_options": {}}),
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "video_url", "video_url": {"url": "https://x/v.mp4"}}]}]}),
        ] {
            let error = head(body.clone()).unwrap_err();
            assert_eq!(error.status().as_u16(), 400, "{body}");
        }
        let replayed = head(json!({"model": "m", "messages": [
            {"role": "assistant", "audio": {"id": "audio_1"}}]}))
        .unwrap();
        assert_eq!(replayed.media.audio, 1, "earlier audio is audio input");
    }

    proptest! {
        /// Any shape of bound is a 400, or a positive integer within range.
        #[test]
        fn av_2_every_bound_shape_is_refused_or_a_positive_integer(
            shape in prop_oneof![
                Just(Value::Null),
                (-10i64..300).prop_map(Value::from),
                (0i64..3_000_000).prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>().prop_map(|f| json!(f)),
                (0u32..300).prop_map(|n| json!(f64::from(n))),
                "[0-9]{1,12}".prop_map(Value::from),
                Just(json!(true)),
                Just(json!([1])),
            ],
            field in prop_oneof![Just("max_tokens"), Just("max_completion_tokens"), Just("n")],
        ) {
            let mut body = json!({"model": "m", "messages": []});
            body[field] = shape.clone();
            let limit = if field == "n" { MAX_CHOICES } else { MAX_OUTPUT_BOUND };
            let accepted = shape.is_null()
                || shape.as_u64().is_some_and(|n| n >= 1 && n <= limit as u64);
            match head(body) {
                Ok(parsed) => {
                    prop_assert!(accepted, "{field} = {shape} was accepted");
                    let value = if field == "n" { Some(parsed.choices) } else { parsed.output_bound };
                    if let Some(n) = shape.as_i64() {
                        prop_assert_eq!(value, Some(n));
                    }
                }
                Err(error) => {
                    prop_assert!(!accepted, "{field} = {shape} was refused");
                    prop_assert_eq!(error.status().as_u16(), 400);
                }
            }
        }
    }
}
