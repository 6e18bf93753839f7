//! The web console (`/console`): a page and its script and style, embedded in the binary and
//! served under a policy that lets them run and nothing else (no inline script or style, no
//! other origin, no frames). The page acts only through the admin and auth API, with the
//! session in a cookie and its CSRF token (`browser`).

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;

/// Marks a response as a console page's: the security headers give it the console's policy.
#[derive(Debug, Clone, Copy)]
pub struct ConsolePage;

const INDEX: &str = include_str!("../console/index.html");
const SCRIPT: &str = include_str!("../console/app.js");
const STYLE: &str = include_str!("../console/app.css");

/// Every path the console answers: the security-header tests iterate it.
pub const PATHS: [&str; 4] = [
    "/console",
    "/console/",
    "/console/app.js",
    "/console/app.css",
];

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response.extensions_mut().insert(ConsolePage);
    response
}

pub fn router() -> Router<AppState> {
    let page = || async { asset(INDEX, "text/html; charset=utf-8") };
    Router::new()
        .route("/console", get(page))
        .route("/console/", get(page))
        .route(
            "/console/app.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/console/app.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
}
