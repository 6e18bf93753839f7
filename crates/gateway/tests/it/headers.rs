//! EN-3: every admin and auth route, enumerated from the routers' own tables, answers with the
//! security headers, whoever calls and whatever the status; HSTS only when serving TLS.

use axum::http::{HeaderMap, Method};
use portcullis_gateway::{admin, authn};

use serde_json::{Value, json};

use crate::support::{Env, Who, body_for};

fn assert_secure(headers: &HeaderMap, tls: bool, context: &str) {
    for (name, value) in [
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(
            headers.get(name).map(|v| v.to_str().unwrap()),
            Some(value),
            "{name}: {context}"
        );
    }
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{context}"
    );
    assert_eq!(
        headers.contains_key("strict-transport-security"),
        tls,
        "HSTS: {context}"
    );
}

async fn check_all(env: &Env, tls: bool) {
    let mut routes: Vec<(&str, String, Option<Value>)> = admin::routes()
        .iter()
        .map(|r| {
            let path = r.path.replace("{org_id}", &env.org.to_string());
            (r.method, path, body_for(r.method, r.path))
        })
        .collect();
    for (method, path) in authn::routes() {
        routes.push((
            method,
            path.to_owned(),
            (method == "POST").then(|| json!({})),
        ));
    }
    assert!(routes.len() >= 30, "{}", routes.len());
    for (method, path, body) in routes {
        // Placeholders stay unfilled: a 404 or 400 must carry the headers as much as a 200.
        for who in [Who::Nobody, Who::VirtualKey, Who::Viewer, Who::Master] {
            let body = body.clone();
            let response = env
                .call(
                    Method::from_bytes(method.as_bytes()).unwrap(),
                    &path,
                    who,
                    body,
                )
                .await;
            let context = format!("{method} {path} as {who:?}: {}", response.status);
            assert_secure(&response.headers, tls, &context);
        }
    }
}

/// EN-3 on the console: every path it serves carries the console's policy (its own script
/// and style only, nothing inline, no frames) and the other headers; HSTS under TLS. With the
/// console turned off, nothing is served there.
#[tokio::test]
async fn en_3_every_console_path_carries_the_console_policy() {
    for tls in [false, true] {
        let env = Env::new_with(|state| state.serving_tls(tls)).await;
        for path in portcullis_gateway::console::PATHS {
            let response = env.call(Method::GET, path, Who::Nobody, None).await;
            assert_eq!(response.status, axum::http::StatusCode::OK, "{path}");
            let headers = &response.headers;
            let csp = headers["content-security-policy"].to_str().unwrap();
            assert_eq!(csp, portcullis_gateway::headers::CONSOLE_POLICY, "{path}");
            for forbidden in ["unsafe-inline", "unsafe-eval", "*"] {
                assert!(!csp.contains(forbidden), "{path}: {csp}");
            }
            for directive in [
                "default-src 'self'",
                "frame-ancestors 'none'",
                "form-action 'self'",
                "base-uri 'none'",
            ] {
                assert!(csp.contains(directive), "{path}: {csp}");
            }
            for (name, value) in [
                ("x-frame-options", "DENY"),
                ("x-content-type-options", "nosniff"),
                ("referrer-policy", "no-referrer"),
            ] {
                assert_eq!(headers[name], value, "{path}");
            }
            assert_eq!(
                headers.contains_key("strict-transport-security"),
                tls,
                "{path}"
            );
        }
        // The page carries no script or style of its own: everything it runs is a file.
        let page = env.call(Method::GET, "/console", Who::Nobody, None).await;
        let html = page.body.as_str().unwrap();
        assert!(
            !html.contains("<style") && !html.contains(" style="),
            "{html}"
        );
        assert_eq!(html.matches("<script").count(), 1, "{html}");
        assert!(
            html.contains(r#"<script type="module" src="/console/app.js">"#),
            "{html}"
        );
    }
    let off = Env::new_with(|state| state.console(false)).await;
    let response = off.call(Method::GET, "/console", Who::Nobody, None).await;
    assert_eq!(response.status, axum::http::StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn en_3_every_admin_and_auth_route_carries_the_security_headers() {
    let env = Env::new().await;
    check_all(&env, false).await;
}

#[tokio::test]
async fn en_3_hsts_is_sent_when_serving_tls() {
    let env = Env::new_with(|state| state.serving_tls(true)).await;
    check_all(&env, true).await;
}

/// The OpenAPI document is the route tables': every admin and auth route is in it with its
/// method, path parameters and access rule, and nothing else is; operation ids are unique.
#[tokio::test]
async fn the_openapi_document_lists_exactly_the_admin_and_auth_routes() {
    let env = Env::new().await;
    let response = env
        .call(Method::GET, "/admin/v1/openapi.json", Who::Nobody, None)
        .await;
    assert_eq!(response.status, axum::http::StatusCode::OK);
    let document = response.body;
    assert_eq!(document["openapi"], "3.1.0");
    let mut documented = std::collections::BTreeSet::new();
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            documented.insert((method.to_ascii_uppercase(), path.clone()));
            assert!(
                ids.insert(operation["operationId"].as_str().unwrap().to_owned()),
                "{path}"
            );
            let params: Vec<&str> = operation["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            let in_path: Vec<&str> = path
                .split('/')
                .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            assert_eq!(params, in_path, "{method} {path}");
            assert!(
                operation["x-portcullis-access"]["scope"].is_string(),
                "{method} {path}"
            );
        }
    }
    let mut routed: std::collections::BTreeSet<(String, String)> = admin::routes()
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    for (method, path) in authn::routes() {
        routed.insert((method.to_owned(), path.to_owned()));
    }
    assert_eq!(documented, routed);
    // An org route names the least role that may call it.
    let keys = &document["paths"]["/admin/v1/orgs/{org_id}/keys"]["post"];
    assert_eq!(keys["x-portcullis-access"]["min_role"], "member");
}
