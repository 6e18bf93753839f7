//! CF-1, property-based: over random orgs, people, teams and keys, org A's owner gets 404 for
//! every org-B resource on every route (never 403), and no listing of A shows a B row; org
//! A's virtual key reaches none of B's model aliases or prompts. Every path parameter of every
//! route is filled: a new parameter the test does not know fails it.

use axum::http::{Method, StatusCode};
use portcullis_gateway::admin;
use portcullis_gateway::guard::RouteAccess;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::json;

use crate::support::{Env, Who, body_for, route_body, unique};

struct Tenant {
    org: String,
    owner: String,
    members: Vec<String>,
    teams: Vec<String>,
    keys: Vec<String>,
    credential: String,
    alias: String,
    invite: String,
    /// A prompt deployed at `production`.
    prompt: String,
    /// A virtual key's secret, and the request it sent (in the logs, ledger and usage).
    secret: String,
    request_id: String,
}

async fn tenant(env: &Env, teams: usize, keys: usize, people: usize) -> Tenant {
    let created = env
        .call(
            Method::POST,
            "/admin/v1/orgs",
            Who::Master,
            Some(json!({"name": unique("org")})),
        )
        .await;
    let org: portcullis_core::OrgId = created.body["org_id"].as_str().unwrap().parse().unwrap();
    let (owner_id, owner) = env
        .add_person(org, &(unique("owner") + "@example.com"), "owner")
        .await;
    let path = |suffix: &str| format!("/admin/v1/orgs/{org}{suffix}");
    let credential = env
        .call_as(
            Method::POST,
            &path("/credentials"),
            &owner,
            body_for("POST", "/credentials"),
        )
        .await;
    let credential = credential.body["credential_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let alias = unique("alias");
    let route = env
        .call_as(
            Method::PUT,
            &path(&format!("/routes/{alias}")),
            &owner,
            Some(route_body(&credential)),
        )
        .await;
    assert_eq!(route.status, StatusCode::OK, "{}", route.body);
    let invited = env
        .call_as(
            Method::POST,
            &path("/members"),
            &owner,
            Some(json!({"email": unique("invited") + "@example.com", "role": "viewer"})),
        )
        .await;
    assert_eq!(invited.status, StatusCode::CREATED, "{}", invited.body);
    let prompt = env
        .call_as(
            Method::POST,
            &path("/prompts"),
            &owner,
            body_for("POST", "/prompts"),
        )
        .await;
    assert_eq!(prompt.status, StatusCode::CREATED, "{}", prompt.body);
    let prompt = prompt.body["name"].as_str().unwrap().to_owned();
    let deployed = env
        .call_as(
            Method::PUT,
            &path(&format!("/prompts/{prompt}/labels/production")),
            &owner,
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(deployed.status, StatusCode::OK, "{}", deployed.body);
    let traffic = env
        .call_as(
            Method::POST,
            &path("/keys"),
            &owner,
            Some(json!({"name": unique("traffic")})),
        )
        .await;
    assert_eq!(traffic.status, StatusCode::CREATED, "{}", traffic.body);
    let secret = traffic.body["secret"].as_str().unwrap().to_owned();
    let (status, request_id) = chat(env, &secret, &alias, None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the org's own key reaches its own route"
    );
    let (status, _) = chat(env, &secret, &alias, Some(&prompt)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the org's own key reaches its own prompt"
    );
    env.state.spend.flush().await;
    assert!(
        env.state
            .logs
            .flush(std::time::Duration::from_secs(10))
            .await
    );
    let mut tenant = Tenant {
        org: org.to_string(),
        owner,
        members: vec![owner_id],
        teams: Vec::new(),
        keys: Vec::new(),
        credential,
        alias,
        invite: invited.body["invite_id"].as_str().unwrap().to_owned(),
        prompt,
        secret,
        request_id,
    };
    for _ in 0..people {
        let user_id = env
            .add_member(org, &(unique("p") + "@example.com"), "member")
            .await;
        tenant.members.push(user_id);
    }
    for _ in 0..teams {
        let team = env
            .call_as(
                Method::POST,
                &path("/teams"),
                &tenant.owner,
                Some(json!({"name": unique("t")})),
            )
            .await;
        tenant
            .teams
            .push(team.body["team_id"].as_str().unwrap().to_owned());
    }
    for _ in 0..keys {
        let key = env
            .call_as(
                Method::POST,
                &path("/keys"),
                &tenant.owner,
                Some(json!({"name": unique("k")})),
            )
            .await;
        tenant
            .keys
            .push(key.body["key_id"].as_str().unwrap().to_owned());
    }
    tenant
        .keys
        .push(traffic.body["key_id"].as_str().unwrap().to_owned());
    tenant
}

/// A chat request with `secret` to `alias`, optionally through a stored prompt: its status
/// and request id.
async fn chat(env: &Env, secret: &str, alias: &str, prompt: Option<&str>) -> (StatusCode, String) {
    let mut body = json!({"model": alias, "messages": [{"role": "user", "content": "hi"}]});
    if let Some(prompt) = prompt {
        body["prompt"] = json!({"name": prompt, "variables": {"who": "me"}});
    }
    let response = env
        .call_as(Method::POST, "/v1/chat/completions", secret, Some(body))
        .await;
    let request_id = response.headers["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    (response.status, request_id)
}

async fn check_pair(env: &Env, a: &Tenant, b: &Tenant, stranger: &str) {
    let b_user = b.members.last().unwrap().as_str();
    let b_team = b.teams.first().map_or(stranger, String::as_str);
    let b_key = b.keys.first().map_or(stranger, String::as_str);
    for route in admin::routes()
        .into_iter()
        .filter(|r| matches!(r.access, RouteAccess::Org(_)))
    {
        let method = Method::from_bytes(route.method.as_bytes()).unwrap();
        let body = body_for(route.method, route.path);
        // B's org in the path, with B's ids.
        let in_b = route
            .path
            .replace("{org_id}", &b.org)
            .replace("{user_id}", b_user)
            .replace("{team_id}", b_team)
            .replace("{key_id}", b_key)
            .replace("{credential_id}", &b.credential)
            .replace("{alias}", &b.alias)
            .replace("{invite_id}", &b.invite)
            .replace("{name}", &b.prompt)
            .replace("{label}", "production")
            .replace("{request_id}", &b.request_id);
        assert!(
            !in_b.contains('{'),
            "{in_b}: a path parameter this test does not fill; give it B's id of its kind"
        );
        let response = env
            .call_as(method.clone(), &in_b, &a.owner, body.clone())
            .await;
        assert_eq!(
            response.status,
            StatusCode::NOT_FOUND,
            "{in_b}: {}",
            response.body
        );
        // A's own org in the path, with B's id of the route's kind, or an id nobody has.
        let b_id = [
            ("{user_id}", b_user),
            ("{team_id}", b_team),
            ("{key_id}", b_key),
            ("{credential_id}", b.credential.as_str()),
            ("{alias}", b.alias.as_str()),
            ("{invite_id}", b.invite.as_str()),
            ("{name}", b.prompt.as_str()),
            ("{request_id}", b.request_id.as_str()),
        ]
        .into_iter()
        .find(|(param, _)| route.path.contains(param));
        if let Some((param, b_id)) = b_id {
            for id in [b_id, stranger] {
                let in_a = route
                    .path
                    .replace("{org_id}", &a.org)
                    .replace(param, id)
                    .replace("{label}", "production");
                let response = env
                    .call_as(method.clone(), &in_a, &a.owner, body.clone())
                    .await;
                assert_eq!(
                    response.status,
                    StatusCode::NOT_FOUND,
                    "{in_a}: {}",
                    response.body
                );
            }
        }
    }
    // A route of A may not send traffic with B's credential.
    let path = format!("/admin/v1/orgs/{}/routes/{}", a.org, unique("steal"));
    let response = env
        .call_as(
            Method::PUT,
            &path,
            &a.owner,
            Some(route_body(&b.credential)),
        )
        .await;
    assert_eq!(response.status, StatusCode::NOT_FOUND, "{}", response.body);
    // A key of A may not name B's team.
    if let Some(team) = b.teams.first() {
        let path = format!("/admin/v1/orgs/{}/keys", a.org);
        let response = env
            .call_as(
                Method::POST,
                &path,
                &a.owner,
                Some(json!({"name": "x", "team_id": team})),
            )
            .await;
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{}", response.body);
    }
    // No listing of A shows anything of B.
    let b_ids: Vec<&String> = b
        .members
        .iter()
        .chain(&b.teams)
        .chain(&b.keys)
        .chain([
            &b.org,
            &b.credential,
            &b.alias,
            &b.invite,
            &b.prompt,
            &b.request_id,
        ])
        .collect();
    // Each listing, and what of A's own it must show (so that an empty answer cannot pass).
    let a_key = a.keys.last().unwrap();
    for (suffix, own) in [
        ("", Some(&a.org)),
        ("/members", Some(&a.members[0])),
        // A has no team in some cases: then its listing has nothing of its own to show.
        ("/teams", a.teams.first()),
        ("/keys", Some(a_key)),
        ("/credentials", Some(&a.credential)),
        ("/routes", Some(&a.alias)),
        ("/audit?limit=1000", Some(&a.org)),
        ("/prompts", Some(&a.prompt)),
        ("/logs?limit=1000", Some(&a.request_id)),
        ("/ledger?limit=1000", Some(&a.request_id)),
        ("/usage?group_by=day,model,key,team", Some(a_key)),
    ] {
        let listing = env
            .call_as(
                Method::GET,
                &format!("/admin/v1/orgs/{}{suffix}", a.org),
                &a.owner,
                None,
            )
            .await;
        assert_eq!(listing.status, StatusCode::OK, "{suffix}: {}", listing.body);
        let text = listing.body.to_string();
        if let Some(own) = own {
            assert!(
                text.contains(own.as_str()),
                "{suffix} of A does not show A's {own}"
            );
        }
        for id in &b_ids {
            assert!(!text.contains(id.as_str()), "{suffix} of A shows {id} of B");
        }
    }
    let orgs = env
        .call_as(Method::GET, "/admin/v1/orgs", &a.owner, None)
        .await;
    assert!(!orgs.body.to_string().contains(&b.org));
}

/// A's key reaches neither B's alias nor B's prompt (through A's own alias), and is told so
/// as of a name nobody has. Run after the listings: A's own log then names what A asked for.
async fn check_data_plane(env: &Env, a: &Tenant, b: &Tenant) {
    let (status, _) = chat(env, &a.secret, &b.alias, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "A's key reached B's alias");
    let (status, _) = chat(env, &a.secret, &a.alias, Some(&b.prompt)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "A's key reached B's prompt");
}

#[test]
fn cf_1_no_org_b_resource_is_reachable_or_listed_with_org_a_credentials() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let env = runtime.block_on(Env::new());
    let mut runner = TestRunner::new(Config {
        cases: 5,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        2usize..4,
        proptest::collection::vec((0usize..3, 0usize..3, 0usize..2), 3),
        any::<u128>(),
    );
    runner
        .run(&strategy, |(orgs, shapes, stranger)| {
            runtime.block_on(async {
                let mut tenants = Vec::new();
                for (teams, keys, people) in shapes.into_iter().take(orgs) {
                    tenants.push(tenant(&env, teams, keys, people).await);
                }
                let stranger = uuid::Uuid::from_u128(stranger).to_string();
                for a in &tenants {
                    for b in tenants.iter().filter(|b| b.org != a.org) {
                        check_pair(&env, a, b, &stranger).await;
                    }
                }
                for a in &tenants {
                    for b in tenants.iter().filter(|b| b.org != a.org) {
                        check_data_plane(&env, a, b).await;
                    }
                }
                // B's rows are all still there: nothing A tried reached them.
                for b in &tenants {
                    let keys = env
                        .call(
                            Method::GET,
                            &format!("/admin/v1/orgs/{}/keys", b.org),
                            Who::Master,
                            None,
                        )
                        .await;
                    let live = keys.body["data"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|k| k["revoked_at"].is_null())
                        .count();
                    assert_eq!(live, b.keys.len());
                    let teams = env
                        .call(
                            Method::GET,
                            &format!("/admin/v1/orgs/{}/teams", b.org),
                            Who::Master,
                            None,
                        )
                        .await;
                    assert_eq!(teams.body["data"].as_array().unwrap().len(), b.teams.len());
                }
            });
            Ok(())
        })
        .unwrap();
}
