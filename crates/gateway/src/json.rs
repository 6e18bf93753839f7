//! JSON bodies: `JsonBody` for the admin and auth planes, and `object` for the data plane. Both
//! refuse what a lenient parser would quietly accept: a key written twice (which of the two
//! values did the guardrail, the budget and the provider each read?) and nesting deeper than
//! `MAX_DEPTH`. Request types use `#[serde(deny_unknown_fields)]`, so a field the API does not
//! know (mass assignment) is a 400. Every failure speaks the error envelope.

use std::collections::HashSet;
use std::fmt;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use serde::de::{DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Deeper bodies are refused: no API here needs more than a handful of levels.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, Copy, Default)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                let v = v.trim();
                v.eq_ignore_ascii_case("application/json") || v.ends_with("+json")
            });
        if !json {
            return Err(ApiError::invalid_request(
                "expected `content-type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::invalid_request("the body could not be read")
                }
            })?;
        strict(&bytes)?;
        serde_json::from_slice(&bytes)
            .map(Self)
            .map_err(|error| match error.classify() {
                serde_json::error::Category::Data => ApiError::invalid_request(error.to_string()),
                _ => invalid_json("the body is not valid JSON"),
            })
    }
}

fn invalid_json(message: &str) -> ApiError {
    ApiError::InvalidRequest {
        code: "invalid_json",
        message: message.to_owned(),
    }
}

/// A data-plane body: one JSON object, strictly.
pub fn object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    strict(bytes)?;
    serde_json::from_slice(bytes).map_err(|_| invalid_json("the body is not a JSON object"))
}

/// Refuses a duplicate key at any level, and nesting past `MAX_DEPTH`.
fn strict(bytes: &[u8]) -> Result<(), ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    match (Strict { depth: 0 }).deserialize(&mut deserializer) {
        Ok(()) => Ok(()),
        Err(error) if error.is_data() => Err(invalid_json(&error.to_string())),
        // A syntax error is reported by the real parse, with its usual message.
        Err(_) => Ok(()),
    }
}

/// Walks a JSON document without keeping it.
#[derive(Clone, Copy)]
struct Strict {
    depth: usize,
}

impl Strict {
    fn deeper<E: serde::de::Error>(self) -> Result<Self, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format_args!(
                "the body nests deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(Self {
            depth: self.depth + 1,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.deeper()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.deeper()?;
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format_args!(
                    "the key `{}` appears twice in one object",
                    key.chars().take(64).collect::<String>()
                )));
            }
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

/// Deserialises a field that may be absent (`None`), `null` (`Some(None)`) or a value.
pub fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde::Deserialize::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_and_depth_are_refused_and_the_rest_parses() {
        assert!(object(br#"{"model": "a", "messages": [{"role": "user"}]}"#).is_ok());
        let twice = object(br#"{"model": "a", "model": "b"}"#).unwrap_err();
        assert!(
            twice.to_string().contains("`model` appears twice"),
            "{twice}"
        );
        assert!(object(br#"{"m": [{"x": 1, "x": 2}]}"#).is_err());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let deep = format!(r#"{{"a": {deep}}}"#);
        assert!(
            object(deep.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("deeper")
        );
        let fine = format!("{}{}", "[".repeat(10), "]".repeat(10));
        assert!(object(format!(r#"{{"a": {fine}}}"#).as_bytes()).is_ok());
        assert!(object(b"not json").is_err());
        assert!(object(b"[1]").is_err());
    }
}
