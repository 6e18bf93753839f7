//! A bootstrapped org with one person per role, the master key and a virtual key, behind the
//! in-process router: the harness of the admin-plane tests.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use portcullis_core::crypto::Keyring;
use portcullis_core::{OrgId, Role};
use portcullis_gateway::{AppState, AppStateBuilder, router};
use portcullis_testkit::TestDb;
use serde_json::{Value, json};
use tower::ServiceExt;

pub const PASSWORD: &str = "correct horse battery staple";
/// Peers in this range are trusted proxies in these tests.
pub const TRUSTED_PEER: [u8; 4] = [10, 9, 8, 7];
pub const UNTRUSTED_PEER: [u8; 4] = [203, 0, 113, 50];

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Who {
    Owner,
    Admin,
    Member,
    Viewer,
    Master,
    VirtualKey,
    Nobody,
}

impl Who {
    pub const ALL: [Who; 7] = [
        Who::Owner,
        Who::Admin,
        Who::Member,
        Who::Viewer,
        Who::Master,
        Who::VirtualKey,
        Who::Nobody,
    ];

    pub fn role(self) -> Option<Role> {
        match self {
            Who::Owner => Some(Role::Owner),
            Who::Admin => Some(Role::Admin),
            Who::Member => Some(Role::Member),
            Who::Viewer => Some(Role::Viewer),
            _ => None,
        }
    }
}

pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

pub struct Env {
    pub test: TestDb,
    pub state: AppState,
    pub org: OrgId,
    pub master: String,
    pub owner: String,
    pub admin: String,
    pub member: String,
    pub viewer: String,
    pub virtual_key: String,
    pub user_ids: std::collections::HashMap<Who, String>,
}

/// The built-in price table and a short lease TTL, so that expiry shows within a test.
pub fn spend_options() -> portcullis_gateway::spend::SpendOptions {
    let mut options = portcullis_gateway::spend::SpendOptions::new(
        portcullis_policy::spend::PriceTable::builtin().unwrap(),
    );
    options.lease_ttl = std::time::Duration::from_secs(2);
    options
}

impl Env {
    pub async fn new() -> Self {
        Self::new_with(|state| state).await
    }

    /// The harness with its state's choices adjusted by `adjust` before anything runs.
    pub async fn new_with(adjust: impl FnOnce(AppStateBuilder) -> AppStateBuilder) -> Self {
        let test = TestDb::new().await.unwrap();
        let builder = AppState::builder(
            test.db.clone(),
            Keyring::generate().unwrap(),
            spend_options(),
        )
        .trusted_proxies(vec!["10.0.0.0/8".parse().unwrap()])
        .egress(loopback_upstreams());
        let state = adjust(builder).build().unwrap();
        let master_key =
            portcullis_core::token::Token::generate(portcullis_core::token::TokenKind::Master)
                .unwrap();
        let owner_email = "owner@example.com";
        let hash = portcullis_core::password::hash(PASSWORD).unwrap();
        let done = portcullis_storage::platform::bootstrap(
            &test.db,
            &portcullis_storage::platform::Bootstrap {
                org_name: "Acme",
                owner_email,
                owner_password_hash: &hash,
                master_key_id: portcullis_core::KeyId::new(),
                master_key_hash: master_key.hash(),
                master_key_last4: &master_key.last4(),
            },
        )
        .await
        .unwrap();
        let mut env = Self {
            test,
            state,
            org: done.org_id,
            master: master_key.expose().to_owned(),
            owner: String::new(),
            admin: String::new(),
            member: String::new(),
            viewer: String::new(),
            virtual_key: String::new(),
            user_ids: std::collections::HashMap::new(),
        };
        env.user_ids.insert(Who::Owner, done.owner_id.to_string());
        env.owner = env.login(owner_email).await;
        for (who, role) in [
            (Who::Admin, "admin"),
            (Who::Member, "member"),
            (Who::Viewer, "viewer"),
        ] {
            let email = format!("{role}@example.com");
            let (user_id, token) = env.add_person(env.org, &email, role).await;
            env.user_ids.insert(who, user_id);
            match who {
                Who::Admin => env.admin = token,
                Who::Member => env.member = token,
                _ => env.viewer = token,
            }
        }
        let key = env
            .call(
                Method::POST,
                &env.org_path("/keys"),
                Who::Master,
                Some(json!({"name": "traffic"})),
            )
            .await;
        assert_eq!(key.status, StatusCode::CREATED, "{}", key.body);
        env.virtual_key = key.body["secret"].as_str().unwrap().to_owned();
        env
    }

    /// Invites a person as the master key, accepts, logs in: (user id, session token).
    pub async fn add_person(&self, org: OrgId, email: &str, role: &str) -> (String, String) {
        let user_id = self.add_member(org, email, role).await;
        (user_id, self.login(email).await)
    }

    /// Invites a new person as the master key; they accept with a password: their user id.
    pub async fn add_member(&self, org: OrgId, email: &str, role: &str) -> String {
        let invite = self.invite(org, email, role).await;
        let accepted = self
            .call(
                Method::POST,
                "/auth/v1/invites/accept",
                Who::Nobody,
                Some(json!({"invite_token": invite, "password": PASSWORD})),
            )
            .await;
        assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.body);
        accepted.body["user_id"].as_str().unwrap().to_owned()
    }

    /// Invites `email` to `org` as the master key: the invitation's token.
    pub async fn invite(&self, org: OrgId, email: &str, role: &str) -> String {
        let path = format!("/admin/v1/orgs/{org}/members");
        let added = self
            .call(
                Method::POST,
                &path,
                Who::Master,
                Some(json!({"email": email, "role": role})),
            )
            .await;
        assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
        added.body["invite_token"].as_str().unwrap().to_owned()
    }

    pub async fn login(&self, email: &str) -> String {
        let login = self
            .call(
                Method::POST,
                "/auth/v1/login",
                Who::Nobody,
                Some(json!({"email": email, "password": PASSWORD})),
            )
            .await;
        assert_eq!(login.status, StatusCode::OK, "{}", login.body);
        login.body["session_token"].as_str().unwrap().to_owned()
    }

    pub fn org_path(&self, suffix: &str) -> String {
        format!("/admin/v1/orgs/{}{suffix}", self.org)
    }

    pub fn token(&self, who: Who) -> Option<&str> {
        match who {
            Who::Owner => Some(&self.owner),
            Who::Admin => Some(&self.admin),
            Who::Member => Some(&self.member),
            Who::Viewer => Some(&self.viewer),
            Who::Master => Some(&self.master),
            Who::VirtualKey => Some(&self.virtual_key),
            Who::Nobody => None,
        }
    }

    pub fn app(&self, peer: [u8; 4]) -> Router {
        router(self.state.clone()).layer(MockConnectInfo(SocketAddr::from((peer, 40000))))
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        who: Who,
        body: Option<Value>,
    ) -> Response {
        self.send(Call::new(method, path, self.token(who), body))
            .await
    }

    pub async fn call_as(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Response {
        self.send(Call::new(method, path, Some(token), body)).await
    }

    pub async fn send(&self, call: Call<'_>) -> Response {
        let mut builder = Request::builder().method(call.method).uri(call.path);
        if let Some(token) = call.token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        if call.body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        for (name, value) in &call.headers {
            builder = builder.header(*name, value);
        }
        let request = builder
            .body(
                call.body
                    .map_or_else(Body::empty, |b| Body::from(b.to_string())),
            )
            .unwrap();
        let response = self.app(call.peer).oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 22)
            .await
            .unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            // A stream's events come back as one string.
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Response {
            status,
            headers,
            body,
        }
    }
}

/// One request to send.
pub struct Call<'a> {
    pub method: Method,
    pub path: String,
    pub token: Option<&'a str>,
    pub body: Option<Value>,
    pub headers: Vec<(&'static str, String)>,
    pub peer: [u8; 4],
}

impl<'a> Call<'a> {
    pub fn new(method: Method, path: &str, token: Option<&'a str>, body: Option<Value>) -> Self {
        Self {
            method,
            path: path.to_owned(),
            token,
            body,
            headers: Vec::new(),
            peer: UNTRUSTED_PEER,
        }
    }
}

/// A snapshot of every row of every table, to prove that a refused call changed nothing.
pub async fn snapshot(test: &TestDb) -> Vec<(String, String)> {
    snapshot_except(test, &[]).await
}

/// A snapshot of every row of every table but `skip`.
pub async fn snapshot_except(test: &TestDb, skip: &[&str]) -> Vec<(String, String)> {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(test.admin_url())
        .await
        .unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "select relname::text from pg_class where relnamespace = 'public'::regnamespace and relkind = 'r' order by 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut rows = Vec::new();
    for table in tables.into_iter().filter(|t| !skip.contains(&t.as_str())) {
        let digest: String = sqlx::query_scalar(&format!(
            "select md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from {table} t"
        ))
        .fetch_one(&mut conn)
        .await
        .unwrap();
        rows.push((table, digest));
    }
    rows
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

/// Makes what a call to `route` needs (a member to change, a team, a key created by
/// `key_creator`) as the master key, and returns the concrete path and a valid body.
pub async fn prepare(
    env: &Env,
    route: &portcullis_gateway::admin::AdminRoute,
    key_creator: Who,
) -> (String, Option<Value>) {
    let mut path = route.path.replace("{org_id}", &env.org.to_string());
    if path.contains("{user_id}") {
        let email = format!("{}@example.com", unique("target"));
        let user_id = env.add_member(env.org, &email, "viewer").await;
        path = path.replace("{user_id}", &user_id);
    }
    if path.contains("{invite_id}") {
        let email = format!("{}@example.com", unique("invited"));
        let added = env
            .call(
                Method::POST,
                &env.org_path("/members"),
                Who::Master,
                Some(json!({"email": email, "role": "viewer"})),
            )
            .await;
        assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
        path = path.replace("{invite_id}", added.body["invite_id"].as_str().unwrap());
    }
    if path.contains("{team_id}") {
        let team = env
            .call(
                Method::POST,
                &env.org_path("/teams"),
                Who::Master,
                Some(json!({"name": unique("team")})),
            )
            .await;
        path = path.replace("{team_id}", team.body["team_id"].as_str().unwrap());
    }
    if path.contains("{key_id}") {
        let key = env
            .call(
                Method::POST,
                &env.org_path("/keys"),
                key_creator,
                Some(json!({"name": unique("key")})),
            )
            .await;
        assert_eq!(key.status, StatusCode::CREATED, "{}", key.body);
        path = path.replace("{key_id}", key.body["key_id"].as_str().unwrap());
    }
    if path.contains("{credential_id}") {
        let credential = env
            .call(
                Method::POST,
                &env.org_path("/credentials"),
                Who::Master,
                body_for("POST", "/credentials"),
            )
            .await;
        path = path.replace(
            "{credential_id}",
            credential.body["credential_id"].as_str().unwrap(),
        );
    }
    if path.contains("{name}") {
        let created = env
            .call(
                Method::POST,
                &env.org_path("/prompts"),
                Who::Master,
                body_for("POST", "/prompts"),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        path = path.replace("{name}", created.body["name"].as_str().unwrap());
        path = path.replace("{label}", "production");
    }
    if path.contains("{request_id}") {
        let request_id = env.logged_request().await;
        path = path.replace("{request_id}", &request_id);
    }
    let mut body = body_for(route.method, route.path);
    if route.path.ends_with("/routes/{alias}") {
        let alias = unique("alias");
        if route.method == "PUT" {
            body = Some(route_body(&env.add_credential().await));
        } else {
            env.put_route(&alias).await;
        }
        path = path.replace("{alias}", &alias);
    }
    (path, body)
}

impl Env {
    /// `POST /v1/chat/completions` with the harness's virtual key.
    pub async fn chat(&self, body: Value) -> Response {
        self.call(
            Method::POST,
            "/v1/chat/completions",
            Who::VirtualKey,
            Some(body),
        )
        .await
    }

    /// Sends one chat request through a new route and waits for its log and ledger row: its
    /// request id.
    pub async fn logged_request(&self) -> String {
        let alias = unique("alias");
        self.put_route(&alias).await;
        let chat = self
            .call(
                Method::POST,
                "/v1/chat/completions",
                Who::VirtualKey,
                Some(json!({"model": alias, "messages": [{"role": "user", "content": "hi"}]})),
            )
            .await;
        assert_eq!(chat.status, StatusCode::OK, "{}", chat.body);
        // Both writers done, so that a snapshot taken next sees nothing arrive later.
        self.state.spend.flush().await;
        assert!(
            self.state
                .logs
                .flush(std::time::Duration::from_secs(10))
                .await
        );
        chat.headers["x-request-id"].to_str().unwrap().to_owned()
    }
}

/// A route body sending to one credential.
pub fn route_body(credential_id: &str) -> Value {
    json!({"targets": [{"credential_id": credential_id, "model": "mock-1"}], "timeout_ms": 5000})
}

impl Env {
    /// A mock-provider credential of the harness's org, made by the master key.
    pub async fn add_credential(&self) -> String {
        let created = self
            .call(
                Method::POST,
                &self.org_path("/credentials"),
                Who::Master,
                body_for("POST", "/credentials"),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        created.body["credential_id"].as_str().unwrap().to_owned()
    }

    /// A route to the mock provider with one target per model (the model names choose the
    /// mock's behaviour: `mock-1` answers, `mock-error-500` fails, `mock-refuse` refuses).
    pub async fn mock_route(&self, alias: &str, models: &[&str]) {
        let credential = self.add_credential().await;
        let targets: Vec<Value> = models
            .iter()
            .map(|m| json!({"credential_id": credential, "model": m}))
            .collect();
        let path = self.org_path(&format!("/routes/{alias}"));
        let put = self
            .call(
                Method::PUT,
                &path,
                Who::Master,
                Some(json!({"targets": targets})),
            )
            .await;
        assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    }

    /// A new virtual key of the org, optionally limited to some aliases.
    pub async fn virtual_key(&self, models: Option<&[&str]>) -> (String, String) {
        let mut body = json!({"name": unique("traffic")});
        if let Some(models) = models {
            body["models"] = json!(models);
        }
        let key = self
            .call(
                Method::POST,
                &self.org_path("/keys"),
                Who::Master,
                Some(body),
            )
            .await;
        assert_eq!(key.status, StatusCode::CREATED, "{}", key.body);
        (
            key.body["key_id"].as_str().unwrap().to_owned(),
            key.body["secret"].as_str().unwrap().to_owned(),
        )
    }

    /// A route of the harness's org to a new credential, made by the master key.
    pub async fn put_route(&self, alias: &str) {
        let credential = self.add_credential().await;
        let path = self.org_path(&format!("/routes/{alias}"));
        let put = self
            .call(
                Method::PUT,
                &path,
                Who::Master,
                Some(route_body(&credential)),
            )
            .await;
        assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    }
}

/// A valid body for a route.
pub fn body_for(method: &str, path: &str) -> Option<Value> {
    match (method, path.trim_start_matches("/admin/v1/orgs/{org_id}")) {
        ("POST", "/admin/v1/orgs") => Some(json!({"name": unique("org")})),
        ("PATCH", "/settings") => Some(json!({"logging_level": "content"})),
        ("POST", "/members") => {
            Some(json!({"email": format!("{}@example.com", unique("new")), "role": "viewer"}))
        }
        ("PATCH", "/members/{user_id}") => Some(json!({"role": "member"})),
        ("POST", "/teams") => Some(json!({"name": unique("team")})),
        ("PATCH", "/teams/{team_id}") => Some(json!({"name": unique("renamed")})),
        ("POST", "/keys") => Some(json!({"name": unique("key")})),
        ("POST", "/credentials") | ("PUT", "/credentials/{credential_id}") => Some(
            json!({"name": unique("cred"), "provider": "mock", "api_key": "sk-mock-0123456789"}),
        ),
        // A credential nobody has: tests that need the route stored put a real one in.
        ("PUT", "/routes/{alias}") => Some(route_body(&uuid::Uuid::now_v7().to_string())),
        ("POST", "/data-subject-deletions") => Some(json!({"end_user": unique("subject")})),
        ("POST", "/prompts") => Some(json!({"name": unique("prompt"),
            "messages": [{"role": "system", "content": "Help {{ who }}."}]})),
        ("POST", "/prompts/{name}/versions") => Some(json!({
            "messages": [{"role": "system", "content": "Help {{ who }} kindly."}]})),
        ("PUT", "/prompts/{name}/labels/{label}") => Some(json!({"version": 1})),
        ("GET" | "DELETE", _) | ("POST", "/keys/{key_id}/rotate") => None,
        (method, _) => panic!("{method} {path}: add a valid body for this new route"),
    }
}

/// Waits up to 10 s for `check` to give a value: a condition awaited, not a fixed sleep.
pub async fn eventually<T, F, Fut>(mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = std::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the condition did not hold within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

impl Env {
    /// The harness org's audit entries with this action, in chain order.
    pub async fn audit(&self, action: &str) -> Vec<portcullis_core::audit::ChainedRecord> {
        self.audit_in(self.org, action).await
    }

    pub async fn audit_in(
        &self,
        org: OrgId,
        action: &str,
    ) -> Vec<portcullis_core::audit::ChainedRecord> {
        let mut tx = self.test.db.begin_tenant(org).await.unwrap();
        let filter = portcullis_storage::audit::EventFilter {
            action: Some(action.to_owned()),
            limit: 1000,
            ..Default::default()
        };
        let entries = portcullis_storage::audit::list(&mut tx, &filter)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        entries
    }
}

/// A second gateway process on the harness's database: its own caches, listening for changes.
pub struct Replica {
    pub state: AppState,
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.state.background.stop();
    }
}

/// The tests' upstreams listen on loopback, which an operator allows by name (AV-4).
pub fn loopback_upstreams() -> portcullis_gateway::Egress {
    portcullis_gateway::Egress {
        destinations: portcullis_core::net::Destinations {
            allow_private: vec!["127.0.0.0/8".parse().unwrap()],
            ..Default::default()
        },
        proxy: None,
    }
}

impl Replica {
    /// Answers once the replica's listener is up (a change it missed would be a false pass).
    pub async fn start(env: &Env, caches: portcullis_gateway::dataplane::Caches) -> Self {
        // The same key-encryption key: one deployment.
        let keyring = std::sync::Arc::clone(&env.state.keyring);
        let state = AppState::builder(env.test.db.clone(), keyring, spend_options())
            .caches(caches)
            .build()
            .unwrap();
        portcullis_gateway::dataplane::spawn_change_listener(&state);
        // The listener drops everything once it listens: its first change heard.
        let caches = std::sync::Arc::clone(&state.caches);
        eventually(|| {
            let listening = caches.changes_heard() > 0;
            async move { listening.then_some(()) }
        })
        .await;
        Self { state }
    }

    /// The status of a `GET /v1/models` with `secret` on this replica.
    pub async fn models_status(&self, secret: &str) -> StatusCode {
        let request = Request::get("/v1/models")
            .header("authorization", format!("Bearer {secret}"))
            .body(Body::empty())
            .unwrap();
        self.status_of(request).await
    }

    /// The status of a chat completion on `alias` with `secret` on this replica.
    pub async fn chat_status(&self, secret: &str, alias: &str) -> StatusCode {
        let body = json!({"model": alias, "messages": [{"role": "user", "content": "hi"}]});
        let request = Request::post("/v1/chat/completions")
            .header("authorization", format!("Bearer {secret}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.status_of(request).await
    }

    async fn status_of(&self, request: Request<Body>) -> StatusCode {
        router(self.state.clone())
            .layer(MockConnectInfo(SocketAddr::from((UNTRUSTED_PEER, 40000))))
            .oneshot(request)
            .await
            .unwrap()
            .status()
    }
}

/// Polls until `status` answers `expected`, failing after `within`: how long a change takes
/// to reach a replica.
pub async fn within<F, Fut>(within: std::time::Duration, expected: StatusCode, mut status: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StatusCode>,
{
    let started = std::time::Instant::now();
    loop {
        let now = status().await;
        if now == expected {
            return;
        }
        assert!(
            started.elapsed() < within,
            "still {now} after {within:?}, expected {expected}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Seconds since the epoch, as TOTP counts them.
pub fn now() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).unwrap()
}

/// Enrols the person of `session` (whose email is `email`) in TOTP, confirming with the
/// current step's code: their authenticator and recovery codes. The next step's code
/// (`now() + 30`) is the first one fresh after this.
pub async fn enrol(
    env: &Env,
    session: &str,
    email: &str,
) -> (portcullis_core::mfa::Totp, Vec<String>) {
    let enrolment = env
        .call_as(Method::POST, "/auth/v1/mfa/enroll", session, None)
        .await;
    assert_eq!(enrolment.status, StatusCode::OK, "{}", enrolment.body);
    let secret = enrolment.body["secret"].as_str().unwrap();
    assert!(
        enrolment.body["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/")
    );
    let totp = portcullis_core::mfa::Totp::from_base32(secret, email).unwrap();
    let wrong = env
        .call_as(
            Method::POST,
            "/auth/v1/mfa/confirm",
            session,
            Some(json!({"code": "000000"})),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    let confirmed = env
        .call_as(
            Method::POST,
            "/auth/v1/mfa/confirm",
            session,
            Some(json!({"code": totp.code_at(now())})),
        )
        .await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
    let codes: Vec<String> = confirmed.body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    // The seed is stored sealed: not in clear anywhere.
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(env.test.admin_url())
        .await
        .unwrap();
    let rows: Vec<String> = sqlx::query_scalar("select t::text from users t")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert!(!rows.join("").contains(&secret.to_lowercase()) && !rows.join("").contains(secret));
    (totp, codes)
}

/// A small valid request to a prompt route of the data plane (`dataplane::prompt_routes()`),
/// for `alias`; a route added later fails here until it has one.
pub fn prompt_body(path: &str, alias: &str, stream: bool) -> Value {
    match path {
        "/v1/chat/completions" => json!({"model": alias, "stream": stream, "max_tokens": 16,
            "messages": [{"role": "user", "content": "hi"}]}),
        "/v1/embeddings" => json!({"model": alias, "input": "hi"}),
        "/v1/messages" => json!({"model": alias, "stream": stream, "max_tokens": 16,
            "messages": [{"role": "user", "content": "hi"}]}),
        "/v1/responses" => json!({"model": alias, "stream": stream, "max_output_tokens": 16,
            "input": "hi"}),
        "/v1/completions" => json!({"model": alias, "stream": stream, "max_tokens": 16,
            "prompt": "hi"}),
        other => panic!("{other} carries prompts: give it a body here"),
    }
}
