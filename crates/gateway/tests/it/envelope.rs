//! Health routes, the error envelope and `x-request-id` (API.md conventions, AV-3).

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use portcullis_gateway::{AppState, router};
use portcullis_storage::{Db, DbOptions};
use portcullis_testkit::TestDb;
use serde_json::Value;
use tower::ServiceExt;

async fn call(app: &Router, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, body)
}

fn state(db: Db) -> AppState {
    AppState::builder(
        db,
        portcullis_core::crypto::Keyring::generate().unwrap(),
        crate::support::spend_options(),
    )
    .build()
    .unwrap()
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn av_3_healthz_and_readyz_answer_on_a_migrated_database() {
    let test = TestDb::new().await.unwrap();
    let app = router(state(test.db.clone()));
    let (status, headers, body) = call(&app, get("/healthz")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    assert!(headers.contains_key("x-request-id"));
    let (status, _, body) = call(&app, get("/readyz")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready");
}

#[tokio::test]
async fn av_3_readyz_is_503_when_the_database_is_unreachable_and_healthz_stays_up() {
    // Port 1 on loopback: nothing listens there.
    let options = DbOptions::new(
        "postgres://portcullis_app@127.0.0.1:1/none"
            .to_owned()
            .into(),
    );
    let app = router(state(Db::connect_lazy(&options).unwrap()));
    let (status, _, body) = call(&app, get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "not_ready");
    assert!(
        !body.to_string().contains("127.0.0.1"),
        "readiness must not reveal the database address"
    );
    let (status, _, _) = call(&app, get("/healthz")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn av_3_readyz_is_503_while_migrations_are_behind_the_binary() {
    let test = TestDb::new().await.unwrap();
    let app = router(state(test.db.clone()));
    let (status, _, _) = call(&app, get("/readyz")).await;
    assert_eq!(status, StatusCode::OK, "ready when every migration is in");
    // One migration behind, as a database is while a rollout waits for `migrate`: only the
    // latest row goes, so readiness must compare versions, not merely find rows.
    sqlx::query(
        "delete from _sqlx_migrations where version = (select max(version) from _sqlx_migrations)",
    )
    .execute(&test.owner)
    .await
    .unwrap();
    let (status, _, _) = call(&app, get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // A migration that failed half-way is not ready either.
    let test = TestDb::new().await.unwrap();
    sqlx::query("update _sqlx_migrations set success = false where version = (select min(version) from _sqlx_migrations)")
        .execute(&test.owner)
        .await
        .unwrap();
    let app = router(state(test.db.clone()));
    let (status, _, _) = call(&app, get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn unknown_routes_answer_404_in_the_envelope_with_the_request_id() {
    let options = DbOptions::new(
        "postgres://portcullis_app@127.0.0.1:1/none"
            .to_owned()
            .into(),
    );
    let app = router(state(Db::connect_lazy(&options).unwrap()));
    let (status, headers, body) = call(&app, get("/no/such/route")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(body["error"]["type"], "not_found_error");
    let id = headers["x-request-id"].to_str().unwrap();
    assert_eq!(body["error"]["request_id"], id);
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);

    let (status, _, body) =
        call(&app, Request::post("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn a_well_formed_incoming_request_id_is_kept_and_a_malformed_one_replaced() {
    let options = DbOptions::new(
        "postgres://portcullis_app@127.0.0.1:1/none"
            .to_owned()
            .into(),
    );
    let app = router(state(Db::connect_lazy(&options).unwrap()));
    let request = Request::get("/nowhere")
        .header("x-request-id", "client-42")
        .body(Body::empty())
        .unwrap();
    let (_, headers, body) = call(&app, request).await;
    assert_eq!(headers["x-request-id"], "client-42");
    assert_eq!(body["error"]["request_id"], "client-42");

    let request = Request::get("/nowhere")
        .header("x-request-id", "bad id\t")
        .body(Body::empty())
        .unwrap();
    let (_, headers, _) = call(&app, request).await;
    assert_ne!(headers["x-request-id"], "bad id\t");
}
