//! Security headers (EN-3) on every response, admin and auth included, errors and fallbacks
//! too: a browser shown one runs no script, frames nothing, sniffs no type and sends no
//! referrer; over TLS it is also told to come back only over TLS.

use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::Response;

use crate::console::ConsolePage;
use crate::state::AppState;

/// What an API answer may do in a browser: nothing.
const API_POLICY: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// What a console page may do: run its own script and style, call its own origin, and
/// nothing inline, from elsewhere, or in a frame.
pub const CONSOLE_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; \
     form-action 'self'; base-uri 'none'";

const ALWAYS: [(HeaderName, &str); 4] = [
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-store"),
];

/// Two years, subdomains included: what preload lists ask for.
const HSTS: &str = "max-age=63072000; includeSubDomains";

pub async fn security(State(state): State<AppState>, mut response: Response) -> Response {
    let policy = if response.extensions().get::<ConsolePage>().is_some() {
        CONSOLE_POLICY
    } else {
        API_POLICY
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(policy),
    );
    for (name, value) in ALWAYS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if state.serving_tls {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    response
}
