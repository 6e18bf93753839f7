//! The OpenAPI 3.1 document of the admin and auth API (`GET /admin/v1/openapi.json`), built
//! from the routers' own tables: a route added to a table is in the document, with its access
//! rule, and nothing else is. Bodies are described by API.md; here an operation says what it
//! takes (path parameters, a JSON body for writes), who may call it, and its error envelope.

use axum::Json;
use serde_json::{Map, Value, json};

use crate::guard::RouteAccess;
use crate::{admin, authn};

/// `GET /admin/v1/openapi.json`: not secret, so served to anyone, for client generators.
pub async fn openapi() -> Json<Value> {
    Json(document())
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in admin::routes() {
        let access = match route.access {
            RouteAccess::Org(action) => json!({
                "scope": "org",
                "action": format!("{action:?}"),
                "min_role": action.min_role().to_string(),
            }),
            RouteAccess::Platform { master_only } => json!({
                "scope": "platform",
                "master_only": master_only,
            }),
        };
        add(&mut paths, route.method, route.path, access, true);
    }
    for (method, path) in authn::routes() {
        let open = matches!(
            path,
            "/auth/v1/login" | "/auth/v1/login/mfa" | "/auth/v1/invites/accept"
        );
        let access = json!({"scope": "person", "session": !open});
        add(&mut paths, method, path, access, !open);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Portcullis admin and auth API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Bodies and errors as API.md describes them. A browser session \
                (the console) sends its cookie and, on every write, the `x-csrf-token` header.",
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "A session token (`pcs_`) or the master key (`pcm_`)."},
                "session_cookie": {"type": "apiKey", "in": "cookie", "name": crate::browser::SESSION_COOKIE},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "object", "required": ["code", "message", "type"],
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                                       "type": {"type": "string"}, "request_id": {"type": "string"}}}},
                },
            },
        },
        "paths": paths,
    })
}

fn add(paths: &mut Map<String, Value>, method: &str, path: &str, access: Value, secured: bool) {
    let parameters: Vec<Value> = path
        .split('/')
        .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    let mut operation = json!({
        "operationId": operation_id(method, path),
        "parameters": parameters,
        "x-portcullis-access": access,
        "responses": {
            "2XX": {"description": "Success: the body API.md gives for this route."},
            "default": {
                "description": "The error envelope.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        },
    });
    if secured {
        operation["security"] = json!([{"bearer": []}, {"session_cookie": []}]);
    }
    if method != "GET" {
        operation["requestBody"] = json!({
            "required": false,
            "content": {"application/json": {"schema": {"type": "object"}}},
        });
    }
    let item = paths
        .entry(path.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(item) = item {
        item.insert(method.to_ascii_lowercase(), operation);
    }
}

/// A stable, unique name: the method and the path's words (`by_x` for a parameter).
fn operation_id(method: &str, path: &str) -> String {
    let words: Vec<String> = path
        .split('/')
        .filter(|part| !part.is_empty() && *part != "v1")
        .map(
            |part| match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) => format!("by_{name}"),
                None => part.replace(['-', '.'], "_"),
            },
        )
        .collect();
    format!("{}_{}", method.to_ascii_lowercase(), words.join("_"))
}
