//! Browser sessions (the console): the session token in an HttpOnly, SameSite=Strict cookie,
//! and a CSRF token that every state-changing call must carry in a header. The token is
//! derived from the session's own secret, so it is worth nothing without the cookie and
//! nothing is stored for it. A bearer credential (`Authorization`) is never a cookie's: it is
//! read first, and needs no CSRF token (no browser sends it on its own).

use axum::extract::Request;
use axum::http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cookie::{Cookie, SameSite};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// The session token's cookie: HttpOnly, so no script reads it. `__Host-`: the browser keeps it
/// only if it is Secure, for `/` and this host alone, so no sibling subdomain and no plaintext
/// answer can plant one.
pub const SESSION_COOKIE: &str = "__Host-portcullis_session";
/// The CSRF token's cookie: readable by the console's script, which sends it back in
/// [`CSRF_HEADER`]; a page of another site can neither read it nor set the header.
pub const CSRF_COOKIE: &str = "__Host-portcullis_csrf";
/// Where a cookie session's state-changing call carries its CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Sent with `cookie` on a login or MFA step: the session goes into cookies, not the body.
pub const MODE_HEADER: &str = "x-portcullis-session";

/// The session token of the request's cookie, if it has exactly one: two are a planted
/// cookie beside the real one, and neither is used.
pub fn session(headers: &HeaderMap) -> Option<String> {
    cookie_value(headers, SESSION_COOKIE)
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut found = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .filter(|cookie| cookie.name() == name);
    let first = found.next()?;
    match found.next() {
        Some(_) => None,
        None => Some(first.value().to_owned()),
    }
}

/// The CSRF token of a session: a digest of its secret, apart from every other use of it.
pub fn csrf_token(session_token: &str) -> String {
    let mut digest = Sha256::new();
    digest.update(b"portcullis csrf v1\0");
    digest.update(session_token.as_bytes());
    hex::encode(digest.finalize())
}

/// Whether the client asked for its session in cookies.
pub fn wants_cookie(headers: &HeaderMap) -> bool {
    headers
        .get(MODE_HEADER)
        .is_some_and(|mode| mode.as_bytes().eq_ignore_ascii_case(b"cookie"))
}

fn set(headers: &mut HeaderMap, cookie: &Cookie<'_>) {
    if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
        headers.append(SET_COOKIE, value);
    }
}

/// Puts a new session into cookies, always `Secure`: a plaintext listener is either behind a
/// TLS-terminating proxy or on this host (`http://localhost` and `127.0.0.1` count as secure
/// to browsers), and a session cookie must never travel in clear. No `Max-Age`: the browser
/// forgets it when it closes; the server's idle and absolute timeouts end it in any case.
pub fn issue(headers: &mut HeaderMap, session_token: &str) {
    let session = Cookie::build((SESSION_COOKIE, session_token.to_owned()))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(true)
        .path("/")
        .build();
    let csrf = Cookie::build((CSRF_COOKIE, csrf_token(session_token)))
        .same_site(SameSite::Strict)
        .secure(true)
        .path("/")
        .build();
    set(headers, &session);
    set(headers, &csrf);
}

/// Removes both cookies (a logout).
pub fn clear(headers: &mut HeaderMap) {
    for name in [SESSION_COOKIE, CSRF_COOKIE] {
        let mut gone = Cookie::build((name, ""))
            .same_site(SameSite::Strict)
            .secure(true)
            .path("/")
            .build();
        gone.make_removal();
        set(headers, &gone);
    }
}

/// Refuses a state-changing call made with a cookie session unless it carries that session's
/// CSRF token (403 `csrf_failed`). Reads pass, and so does a call with a bearer credential,
/// whose cookie (if any) is never used.
pub async fn require_csrf(request: Request, next: Next) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let headers = request.headers();
    if safe || headers.contains_key(AUTHORIZATION) {
        return next.run(request).await;
    }
    let Some(session) = session(headers) else {
        return next.run(request).await;
    };
    let expected = csrf_token(&session);
    let given = headers
        .get(CSRF_HEADER)
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    if bool::from(given.ct_eq(expected.as_bytes())) {
        next.run(request).await
    } else {
        ApiError::forbidden(
            "csrf_failed",
            format!("a call with a session cookie carries its `{CSRF_HEADER}` header"),
        )
        .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_http_only_strict_and_always_secure() {
        let mut headers = HeaderMap::new();
        issue(&mut headers, "pcs_secret");
        let cookies: Vec<&str> = headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(cookies.len(), 2);
        let session = cookies
            .iter()
            .find(|c| c.starts_with(SESSION_COOKIE))
            .unwrap();
        for attribute in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
            assert!(session.contains(attribute), "{session}");
        }
        let csrf = cookies.iter().find(|c| c.starts_with(CSRF_COOKIE)).unwrap();
        assert!(
            !csrf.contains("HttpOnly") && !csrf.contains("pcs_secret"),
            "{csrf}"
        );
        assert!(csrf.contains("Secure") && csrf.contains("Path=/"), "{csrf}");
    }

    #[test]
    fn the_csrf_token_belongs_to_its_session() {
        assert_eq!(csrf_token("pcs_a"), csrf_token("pcs_a"));
        assert_ne!(csrf_token("pcs_a"), csrf_token("pcs_b"));
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("other=1; __Host-portcullis_session=pcs_a"),
        );
        assert_eq!(session(&headers).as_deref(), Some("pcs_a"));
        // A planted second cookie beside the real one: neither is believed.
        headers.insert(
            COOKIE,
            HeaderValue::from_static(
                "__Host-portcullis_session=pcs_x; __Host-portcullis_session=pcs_a",
            ),
        );
        assert_eq!(session(&headers), None);
    }
}
