//! CF-1, property-based: over random orgs, people, teams and keys, org A's owner gets 404 for
//! every org-B resource on every route (never 403), and no listing of A shows a B row.

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
    let mut tenant = Tenant {
        org: org.to_string(),
        owner,
        members: vec![owner_id],
        teams: Vec::new(),
        keys: Vec::new(),
        credential,
        alias,
        invite: invited.body["invite_id"].as_str().unwrap().to_owned(),
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
            .replace("{invite_id}", &b.invite);
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
        ]
        .into_iter()
        .find(|(param, _)| route.path.contains(param));
        if let Some((param, b_id)) = b_id {
            for id in [b_id, stranger] {
                let in_a = route.path.replace("{org_id}", &a.org).replace(param, id);
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
        .chain([&b.org, &b.credential, &b.alias, &b.invite])
        .collect();
    for suffix in [
        "",
        "/members",
        "/teams",
        "/keys",
        "/credentials",
        "/routes",
        "/audit?limit=1000",
    ] {
        let listing = env
            .call_as(
                Method::GET,
                &format!("/admin/v1/orgs/{}{suffix}", a.org),
                &a.owner,
                None,
            )
            .await;
        assert_eq!(listing.status, StatusCode::OK);
        let text = listing.body.to_string();
        for id in &b_ids {
            assert!(!text.contains(id.as_str()), "{suffix} of A shows {id} of B");
        }
    }
    let orgs = env
        .call_as(Method::GET, "/admin/v1/orgs", &a.owner, None)
        .await;
    assert!(!orgs.body.to_string().contains(&b.org));
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
