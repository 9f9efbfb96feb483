//! How a request or an admin call names a version: backend names and registry version numbers,
//! the precedence of path, header, sticky key and weights, promotion and rollback roles, and
//! `status` right after traffic. Replicas are tiny loopback servers that answer with their name
//! and the path they received.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::Request;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use weir_http::router_client::AdminClient;
use weir_router::proxy::handle;
use weir_router::Router;

/// A replica answering every request with `{"replica": NAME, "path": PATH_AND_QUERY}`.
async fn replica(name: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(move |request: Request<Body>| async move {
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        json!({ "replica": name, "path": path }).to_string()
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-router-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn router(dir: &std::path::Path, routes: &str) -> Arc<Router> {
    std::fs::write(dir.join("routes.toml"), routes).unwrap();
    Router::new(&dir.join("routes.toml"), None, None).unwrap()
}

/// One request through the data plane: status, `x-weir-version`, the replica's answer.
async fn send(router: &Arc<Router>, path: &str, headers: &[(&str, &str)]) -> (u16, String, Value) {
    let mut request = Request::post(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = handle(
        State(router.clone()),
        request.body(Body::from("{}")).unwrap(),
    )
    .await;
    let status = response.status().as_u16();
    let version = response
        .headers()
        .get("x-weir-version")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        version,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// `(version, role, weight)` of each backend in `status`, stable first.
fn roles(router: &Router, model: &str) -> Vec<(String, String, u64)> {
    let status = router.status(model).unwrap();
    status["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["version"].as_str().unwrap().to_owned(),
                b["role"].as_str().unwrap().to_owned(),
                b["weight"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The admin API on a loopback listener, and a client for it.
async fn admin(router: &Arc<Router>) -> AdminClient {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = router.admin_app();
    tokio::spawn(async move { axum::serve(listener, app).await });
    AdminClient::new(&format!("http://{address}"), None)
}

fn roles_routes(stable: &str, canary: &str, weights: (u32, u32)) -> String {
    format!(
        r#"[[route]]
model = "iris"
[[route.backend]]
version = "stable"
registry_version = 1
endpoints = ["{stable}"]
weight = {}
[[route.backend]]
version = "canary"
registry_version = 2
endpoints = ["{canary}"]
weight = {}
"#,
        weights.0, weights.1
    )
}

#[tokio::test]
async fn registry_version_numbers_work_wherever_backend_names_do() {
    let (one, two) = (replica("one").await, replica("two").await);
    let dir = folder("registry-versions");
    let router = router(&dir, &roles_routes(&one, &two, (100, 0)));

    // The header pin by number; the replica gets the path as sent.
    let (status, version, answer) =
        send(&router, "/v2/models/iris/infer", &[("x-weir-version", "2")]).await;
    assert_eq!((status, version.as_str()), (200, "canary"));
    assert_eq!(
        answer,
        json!({"replica": "two", "path": "/v2/models/iris/infer"})
    );
    // The path pin by number reaches the replica unchanged: it serves version 2.
    let (status, _, answer) = send(&router, "/v2/models/iris/versions/2/infer", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!({"replica": "two", "path": "/v2/models/iris/versions/2/infer"})
    );
    // The path pin by role is rewritten to the number the replica knows.
    let (status, _, answer) = send(
        &router,
        "/v2/models/iris/versions/canary/infer?trace=1",
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!({"replica": "two", "path": "/v2/models/iris/versions/2/infer?trace=1"})
    );
    let (_, _, answer) = send(&router, "/v2/models/iris/versions/stable", &[]).await;
    assert_eq!(
        answer,
        json!({"replica": "one", "path": "/v2/models/iris/versions/1"})
    );
    // A number no backend serves is a 404 naming it, by header and by path.
    for (path, headers) in [
        ("/v2/models/iris/infer", vec![("x-weir-version", "3")]),
        ("/v2/models/iris/versions/3/infer", vec![]),
    ] {
        let (status, _, answer) = send(&router, path, &headers).await;
        assert_eq!(status, 404, "{path}");
        assert!(
            answer["error"].as_str().unwrap().contains("no version '3'"),
            "{answer}"
        );
    }

    // The admin API takes numbers too: weights keep the stable version first.
    let client = admin(&router).await;
    let status = client
        .call(
            "POST",
            "routes/iris/weights",
            Some(json!({"weights": {"2": 30, "1": 70}})),
        )
        .await
        .unwrap();
    assert_eq!(status["backends"][0]["version"], "stable");
    assert_eq!(status["backends"][0]["registry_version"], "1");
    assert_eq!(
        roles(&router, "iris"),
        [
            ("stable".to_owned(), "stable".to_owned(), 70),
            ("canary".to_owned(), "canary".to_owned(), 30),
        ]
    );
    let extra = replica("two-b").await;
    let status = client
        .call(
            "POST",
            "routes/iris/versions/2/endpoints",
            Some(json!({"add": [extra]})),
        )
        .await
        .unwrap();
    assert_eq!(
        status["backends"][1]["endpoints"].as_array().unwrap().len(),
        2
    );
    let refused = client
        .call(
            "POST",
            "routes/iris/weights",
            Some(json!({"weights": {"1": 70, "3": 30}})),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("no version '3'") && refused.contains("canary (registry version 2)"),
        "{refused}"
    );
    let refused = client
        .call(
            "POST",
            "routes/iris/weights",
            Some(json!({"weights": {"1": 70, "stable": 30}})),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("each version of 'iris' once"), "{refused}");
}

#[tokio::test]
async fn the_path_beats_the_header_beats_the_sticky_key_beats_the_weights() {
    let (one, two) = (replica("one").await, replica("two").await);
    let dir = folder("precedence");
    let routes = |w1: u32, w2: u32| {
        format!(
            "[[route]]\nmodel = \"iris\"\nsticky_header = \"x-user\"\n\
             [[route.backend]]\nversion = \"1\"\nendpoints = [\"{one}\"]\nweight = {w1}\n\
             [[route.backend]]\nversion = \"2\"\nendpoints = [\"{two}\"]\nweight = {w2}\n"
        )
    };
    let router = router(&dir, &routes(100, 0));
    let replica_of = |answer: &Value| answer["replica"].as_str().unwrap().to_owned();

    // Path against header: the path's version.
    let (_, version, answer) = send(
        &router,
        "/v2/models/iris/versions/1/infer",
        &[("x-weir-version", "2")],
    )
    .await;
    assert_eq!(
        (version.as_str(), replica_of(&answer).as_str()),
        ("1", "one")
    );
    let (_, version, _) = send(
        &router,
        "/v2/models/iris/versions/2/infer",
        &[("x-weir-version", "1")],
    )
    .await;
    assert_eq!(version, "2");
    // Header against sticky key (which lands on version 1, the only one with weight).
    for user in ["alice", "bob", "carol"] {
        let (_, version, _) = send(&router, "/v2/models/iris/infer", &[("x-user", user)]).await;
        assert_eq!(version, "1");
        let (_, version, _) = send(
            &router,
            "/v2/models/iris/infer",
            &[("x-user", user), ("x-weir-version", "2")],
        )
        .await;
        assert_eq!(
            version, "2",
            "the header wins over the sticky key of {user}"
        );
    }
    // Path against sticky key.
    let (_, version, _) = send(
        &router,
        "/v2/models/iris/versions/2/infer",
        &[("x-user", "alice")],
    )
    .await;
    assert_eq!(version, "2");
    // Sticky key against weights: at 50/50 unkeyed requests go both ways, a key keeps one.
    router
        .set_weights("iris", vec![("1".into(), 50), ("2".into(), 50)], "test")
        .await
        .unwrap();
    let mut unkeyed = std::collections::HashSet::new();
    for _ in 0..20 {
        unkeyed.insert(send(&router, "/v2/models/iris/infer", &[]).await.1);
    }
    assert_eq!(
        unkeyed.len(),
        2,
        "unkeyed requests follow the weights: {unkeyed:?}"
    );
    for user in ["alice", "bob", "carol", "dave"] {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            seen.insert(
                send(&router, "/v2/models/iris/infer", &[("x-user", user)])
                    .await
                    .1,
            );
        }
        assert_eq!(seen.len(), 1, "{user} keeps one version: {seen:?}");
    }
}

#[tokio::test]
async fn rollback_after_a_promotion_returns_to_the_previous_stable_version() {
    let (one, two) = (replica("one").await, replica("two").await);
    let dir = folder("rollback");
    let router = router(&dir, &roles_routes(&one, &two, (90, 10)));
    let row = |v: &str, role: &str, w: u64| (v.to_owned(), role.to_owned(), w);

    router.promote("iris", "promoted").await.unwrap();
    assert_eq!(
        roles(&router, "iris"),
        [row("canary", "stable", 100), row("stable", "previous", 0)]
    );
    let (_, version, _) = send(&router, "/v2/models/iris/infer", &[]).await;
    assert_eq!(version, "canary");
    // Nothing to promote now, and no rollout without a canary: a 409 saying what to do.
    let client = admin(&router).await;
    for (method, path, body) in [
        ("POST", "routes/iris/promote", None),
        (
            "POST",
            "routes/iris/rollout",
            Some(json!({"steps": [50, 100], "interval": "1s"})),
        ),
    ] {
        let refused = client
            .call(method, path, body)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("(409)")
                && refused.contains("no canary")
                && refused.contains("weir canary rollback iris"),
            "{path}: {refused}"
        );
    }
    // A restart keeps the roles.
    drop(client);
    let restarted = Router::new(&dir.join("routes.toml"), None, None).unwrap();
    assert_eq!(
        roles(&restarted, "iris"),
        [row("canary", "stable", 100), row("stable", "previous", 0)]
    );

    // Rollback undoes the promotion.
    let client = admin(&router).await;
    let status = client
        .call("POST", "routes/iris/rollback", None)
        .await
        .unwrap();
    assert_eq!(status["backends"][0]["version"], "stable");
    assert_eq!(
        roles(&router, "iris"),
        [row("stable", "stable", 100), row("canary", "canary", 0)]
    );
    let events = status["events"].to_string();
    assert!(
        events.contains("rolled back the promotion of 'canary'"),
        "{events}"
    );
    // Again: the canary is already at 0 % and stays the canary.
    client
        .call("POST", "routes/iris/rollback", None)
        .await
        .unwrap();
    assert_eq!(
        roles(&router, "iris"),
        [row("stable", "stable", 100), row("canary", "canary", 0)]
    );

    // After a promotion, naming a percentage makes the former stable version a canary again.
    router.promote("iris", "promoted").await.unwrap();
    client
        .call("POST", "routes/iris/canary", Some(json!({"percent": 10})))
        .await
        .unwrap();
    assert_eq!(
        roles(&router, "iris"),
        [row("canary", "stable", 90), row("stable", "canary", 10)]
    );
    client
        .call("POST", "routes/iris/rollback", None)
        .await
        .unwrap();
    assert_eq!(
        roles(&router, "iris"),
        [row("canary", "stable", 100), row("stable", "canary", 0)]
    );

    // One version only: nothing to roll back, a 409.
    let lone = folder("rollback-lone");
    let lone = self::router(
        &lone,
        &format!("[[route]]\nmodel = \"m\"\n[[route.backend]]\nversion = \"1\"\nendpoints = [\"{one}\"]\nweight = 100\n"),
    );
    let refused = admin(&lone)
        .await
        .call("POST", "routes/m/rollback", None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("(409)") && refused.contains("one version"),
        "{refused}"
    );
}

#[tokio::test]
async fn status_counts_routed_traffic_at_once() {
    let (one, two) = (replica("one").await, replica("two").await);
    let dir = folder("status-now");
    let router = router(&dir, &roles_routes(&one, &two, (50, 50)));
    for _ in 0..12 {
        assert_eq!(send(&router, "/v2/models/iris/infer", &[]).await.0, 200);
    }
    let status = router.status("iris").unwrap();
    let minute = |i: usize| status["backends"][i]["last_minute"].clone();
    let requests =
        minute(0)["requests"].as_u64().unwrap() + minute(1)["requests"].as_u64().unwrap();
    assert_eq!(requests, 12);
    for i in 0..2 {
        let rate = minute(i)["requests_per_second"].as_f64().unwrap();
        let count = minute(i)["requests"].as_u64().unwrap();
        assert!(
            count == 0 || rate > 0.0,
            "version {i}: {count} requests read as {rate}/s"
        );
    }
}
