//! `JsonBody`: `axum::Json` whose rejections speak the error envelope. Request types use
//! `#[serde(deny_unknown_fields)]`, so a field the API does not know (mass assignment) is a 400.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

#[derive(Debug, Clone, Copy, Default)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(match rejection {
                JsonRejection::JsonDataError(error) => ApiError::invalid_request(error.body_text()),
                JsonRejection::JsonSyntaxError(_) => ApiError::InvalidRequest {
                    code: "invalid_json",
                    message: "the body is not valid JSON".to_owned(),
                },
                JsonRejection::MissingJsonContentType(_) => {
                    ApiError::invalid_request("expected `content-type: application/json`")
                }
                JsonRejection::BytesRejection(_) => ApiError::PayloadTooLarge,
                _ => ApiError::invalid_request("the body could not be read"),
            }),
        }
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
