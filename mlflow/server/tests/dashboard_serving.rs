//! The serving pages against a router's admin API and an autoscaler's `/metrics` on loopback:
//! what each role sees, the admin forms reaching the router with the registry's router token
//! (and nobody else's reaching it at all), the router's refusals shown in its own words, an
//! unreachable router shown as such, and the autoscaler's decisions.
//!
//! The router is a faithful fake of router/src/admin.rs and status.rs (the same paths, token
//! check, JSON shapes and refusal bodies), counting the calls that would change it; the
//! dashboard is polled by hand (`sample_once`) so no assertion waits on a clock.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod dashboard_common;

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use dashboard_common::{start_with, Browser, IDENTITIES};
use weir_dashboard::serving::{Serving, ServingConfig};
use weir_http::admin_token::AdminToken;
use weir_mlflow_wire::{Authenticator, Identities};

const ADMIN_TOKEN: &str = "router-admin-secret";

/// A route of the fake router: stable and (maybe) canary weights, events, changes seen.
#[derive(Clone)]
struct FakeRoute {
    versions: Vec<(&'static str, &'static str, &'static str, u32)>,
    events: Vec<String>,
}

#[derive(Default)]
struct FakeRouter {
    routes: Vec<(&'static str, FakeRoute)>,
    /// POSTs that got past the token check.
    changes: usize,
}

type Fake = Arc<Mutex<FakeRouter>>;

fn iris() -> FakeRoute {
    FakeRoute {
        versions: vec![("stable", "1", "stable", 90), ("canary", "2", "canary", 10)],
        events: vec!["route loaded".into()],
    }
}

fn solo() -> FakeRoute {
    FakeRoute {
        versions: vec![("stable", "5", "stable", 100)],
        events: Vec::new(),
    }
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn refused(status: StatusCode, message: &str) -> Response {
    json(status, format!("{{\"error\": \"{message}\"}}"))
}

/// What router/src/status.rs answers for a route.
fn status_json(model: &str, route: &FakeRoute) -> String {
    let backends: Vec<String> = route
        .versions
        .iter()
        .enumerate()
        .map(|(index, (version, number, role, weight))| {
            let (requests, error_rate, p99) = if index == 0 { (90, 0.0, 4.5) } else { (10, 0.1, 12.0) };
            format!(
                r#"{{"version": "{version}", "registry_version": "{number}", "role": "{role}", "weight": {weight},
                   "last_minute": {{"seconds": 60.0, "requests": {requests}, "requests_per_second": {rps},
                                   "error_rate": {error_rate}, "overloaded": 0, "p50_ms": 1.0, "p99_ms": {p99}}},
                   "held": 0, "endpoints": [{{"url": "http://127.0.0.1:{port}", "available": true, "inflight": 0}}]}}"#,
                rps = f64::from(requests) / 60.0,
                port = 7000 + index,
            )
        })
        .collect();
    let events: Vec<String> = route
        .events
        .iter()
        .enumerate()
        .map(|(i, message)| {
            format!(
                r#"{{"at_ms": {}, "message": "{message}"}}"#,
                1_764_480_000_000u64 + i as u64
            )
        })
        .collect();
    format!(
        r#"{{"model": "{model}", "sticky_header": null, "shadow": null, "backends": [{}], "rollout": null, "events": [{}], "shared": null}}"#,
        backends.join(","),
        events.join(",")
    )
}

/// The refusal router/src/admin.rs answers a call without the admin token, if this is one.
fn unauthorized(headers: &HeaderMap) -> Option<Response> {
    let expected = format!("Bearer {ADMIN_TOKEN}");
    match headers.get(header::AUTHORIZATION) {
        Some(given) if given.as_bytes() == expected.as_bytes() => None,
        _ => Some(refused(
            StatusCode::UNAUTHORIZED,
            "the admin API needs Authorization: Bearer <token>",
        )),
    }
}

async fn list(State(fake): State<Fake>, headers: HeaderMap) -> Response {
    if let Some(refusal) = unauthorized(&headers) {
        return refusal;
    }
    let fake = fake.lock().unwrap();
    let routes: Vec<String> = fake
        .routes
        .iter()
        .map(|(model, _)| format!(r#"{{"model": "{model}", "weights": []}}"#))
        .collect();
    json(
        StatusCode::OK,
        format!(r#"{{"routes": [{}]}}"#, routes.join(",")),
    )
}

async fn status(
    State(fake): State<Fake>,
    Path(model): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = unauthorized(&headers) {
        return refusal;
    }
    let fake = fake.lock().unwrap();
    match fake.routes.iter().find(|(m, _)| *m == model) {
        Some((m, route)) => json(StatusCode::OK, status_json(m, route)),
        None => refused(
            StatusCode::NOT_FOUND,
            &format!("no route for model '{model}'"),
        ),
    }
}

/// POST canary / promote / rollback, as router/src/admin.rs and control.rs answer them.
async fn change(
    State(fake): State<Fake>,
    Path((model, verb)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = unauthorized(&headers) {
        return refusal;
    }
    let mut fake = fake.lock().unwrap();
    fake.changes += 1;
    let Some((m, route)) = fake.routes.iter_mut().find(|(m, _)| *m == model) else {
        return refused(
            StatusCode::NOT_FOUND,
            &format!("no route for model '{model}'"),
        );
    };
    if route.versions.len() < 2 {
        return refused(
            StatusCode::CONFLICT,
            &format!("route '{model}' has no canary to {verb}"),
        );
    }
    match verb.as_str() {
        "canary" => {
            // {"percent": N}: the fake reads the number the way serde would.
            let text = String::from_utf8_lossy(&body);
            let digits: String = text
                .split("\"percent\":")
                .nth(1)
                .unwrap_or("")
                .chars()
                .skip_while(|c| c.is_whitespace())
                .take_while(char::is_ascii_digit)
                .collect();
            let Ok(percent) = digits.parse::<u32>() else {
                return refused(
                    StatusCode::BAD_REQUEST,
                    &format!("invalid request body: {text}"),
                );
            };
            if percent > 100 {
                return refused(StatusCode::BAD_REQUEST, "percent must be 0..=100");
            }
            route.versions[0].3 = 100 - percent;
            route.versions[1].3 = percent;
            route.events.push(format!("canary set to {percent}%"));
        }
        "promote" => {
            route.versions.swap(0, 1);
            route.versions[0].2 = "stable";
            route.versions[0].3 = 100;
            route.versions[1].2 = "previous";
            route.versions[1].3 = 0;
            route.events.push("promoted".into());
        }
        "rollback" => {
            route.versions[0].3 = 100;
            route.versions[1].3 = 0;
            route.events.push("rolled back".into());
        }
        _ => return refused(StatusCode::NOT_FOUND, "not an admin API path"),
    }
    let body = status_json(m, route);
    json(StatusCode::OK, body)
}

/// The fake router's admin listener on 127.0.0.1:0: its base URL and its state.
async fn fake_router() -> (String, Fake) {
    let fake: Fake = Arc::new(Mutex::new(FakeRouter {
        routes: vec![("iris", iris()), ("solo", solo())],
        changes: 0,
    }));
    let app = axum::Router::new()
        .route("/admin/v1/routes", get(list))
        .route("/admin/v1/routes/{model}", get(status))
        .route("/admin/v1/routes/{model}/{verb}", post(change))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, fake)
}

/// An autoscaler's `/metrics` whose iris-canary target asks for `desired` replicas.
async fn fake_autoscaler() -> (String, Arc<Mutex<(u32, bool)>>) {
    let desired = Arc::new(Mutex::new((1u32, false)));
    let shared = desired.clone();
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let (count, panic) = *shared.lock().unwrap();
            async move {
                format!(
                    "# TYPE weir_autoscaler_desired_replicas gauge\n\
                     weir_autoscaler_desired_replicas{{target=\"iris-canary\"}} {count}\n\
                     weir_autoscaler_desired_replicas{{target=\"iris-stable\"}} 1\n\
                     weir_autoscaler_panic{{target=\"iris-canary\"}} {}\n\
                     weir_autoscaler_observed{{target=\"iris-canary\"}} 7.5\n\
                     weir_autoscaler_desired_replicas{{target=\"wine-stable\"}} 4\n# EOF\n",
                    u8::from(panic)
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, desired)
}

fn serving(routers: Vec<String>, autoscalers: Vec<String>, token: &str) -> Arc<Serving> {
    Arc::new(
        Serving::new(ServingConfig {
            routers,
            router_token: Some(AdminToken::new(token, "test").unwrap()),
            autoscalers,
        })
        .unwrap(),
    )
}

/// `text` as the templates write it (minijinja escapes `/` and quotes too).
fn html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
        .replace('/', "&#x2f;")
}

fn identities() -> Authenticator {
    Authenticator::with_identities(Identities::parse(IDENTITIES).unwrap())
}

/// A registry watching a fake router and autoscaler, polled once.
async fn watched(
    tag: &str,
) -> (
    dashboard_common::Harness,
    Arc<Serving>,
    Fake,
    Arc<Mutex<(u32, bool)>>,
) {
    let (router, fake) = fake_router().await;
    let (autoscaler, desired) = fake_autoscaler().await;
    let serving = serving(vec![router], vec![autoscaler], ADMIN_TOKEN);
    serving.sample_once().await;
    let harness = start_with(tag, identities(), serving.clone()).await;
    (harness, serving, fake, desired)
}

fn weights(fake: &Fake, model: &str) -> Vec<u32> {
    let fake = fake.lock().unwrap();
    let (_, route) = fake.routes.iter().find(|(m, _)| *m == model).unwrap();
    route.versions.iter().map(|v| v.3).collect()
}

#[tokio::test]
async fn every_role_reads_the_routes_and_only_an_admin_sees_the_controls() {
    let (harness, _serving, _fake, _) = watched("serving-roles").await;
    for name in ["rita", "sam", "avery", "ada", "cody"] {
        let mut browser = Browser::signed_in(&harness, name).await;
        let index = browser.get("/ui/serving").await;
        assert_eq!(index.status, StatusCode::OK, "{name}: {}", index.body);
        assert!(
            index
                .body
                .contains(&format!("href=\"{}\"", html("/ui/serving/iris?router=0"))),
            "{}",
            index.body
        );
        assert!(index.body.contains("solo"), "{}", index.body);
        assert!(index.body.contains("answering"), "{}", index.body);
        assert!(
            index.body.contains("<svg"),
            "a chart per route: {}",
            index.body
        );

        let page = browser.get("/ui/serving/iris").await;
        assert_eq!(page.status, StatusCode::OK, "{name}: {}", page.body);
        for shown in [
            "90%",
            "10%",
            "stable",
            "canary",
            "v2",
            "route loaded",
            "iris-canary",
            "http://127.0.0.1:7001",
        ] {
            assert!(
                page.body.contains(&html(shown)),
                "{name} sees {shown}: {}",
                page.body
            );
        }
        assert!(
            page.body.contains(&format!(
                "data-refresh=\"{}\"",
                html("/ui/serving/iris/panel?router=0")
            )),
            "{}",
            page.body
        );
        assert!(
            !page.body.contains("wine-stable"),
            "another model's target: {}",
            page.body
        );
        assert!(
            !page.body.contains(ADMIN_TOKEN),
            "the router token never shows"
        );
        let controls = page
            .body
            .contains(&format!("action=\"{}/canary\"", html("/ui/serving/iris")));
        assert_eq!(
            controls,
            name == "ada",
            "{name} sees the controls: {controls}"
        );
        assert_eq!(page.body.contains("Promote canary"), name == "ada");
        assert_eq!(page.body.contains("Roll back"), name == "ada");

        let panel = browser.get("/ui/serving/iris/panel?router=0").await;
        assert_eq!(panel.status, StatusCode::OK);
        assert!(!panel.body.contains("<html"), "a fragment: {}", panel.body);
        assert!(panel.body.contains("10%"), "{}", panel.body);
        let card = browser.get("/ui/serving/iris/panel?view=card").await;
        assert_eq!(card.status, StatusCode::OK);
        assert!(card.body.contains("<h3>"), "{}", card.body);
    }
    let mut rita = Browser::signed_in(&harness, "rita").await;
    assert_eq!(
        rita.get("/ui/serving/nope").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        rita.get("/ui/serving/nope/panel").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        rita.get("/ui/serving/iris?router=7").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        rita.get("/ui/serving/iris?router=x").await.status,
        StatusCode::BAD_REQUEST
    );
    // Not signed in: the sign-in page, not the routes.
    let mut stranger = Browser::new(&harness);
    let refused = stranger.get("/ui/serving/iris").await;
    assert_eq!(refused.status, StatusCode::SEE_OTHER);
    assert!(!refused.body.contains("90%"));
}

#[tokio::test]
async fn an_admin_sets_the_canary_promotes_and_rolls_back_through_the_router() {
    let (harness, serving, fake, _) = watched("serving-admin").await;
    let mut ada = Browser::signed_in(&harness, "ada").await;
    ada.get("/ui/serving/iris").await;
    let set = ada
        .post(
            "/ui/serving/iris/canary",
            &[("percent", "30"), ("router", "0")],
        )
        .await;
    assert_eq!(set.status, StatusCode::SEE_OTHER, "{}", set.body);
    assert_eq!(set.location(), Some("/ui/serving/iris?router=0"));
    assert_eq!(weights(&fake, "iris"), vec![70, 30], "the router changed");
    // The page shows the router's answer at once, before any poll.
    let page = ada.get("/ui/serving/iris").await;
    assert!(
        page.body.contains("30%") && page.body.contains("70%"),
        "{}",
        page.body
    );
    assert!(page.body.contains("canary set to 30%"), "{}", page.body);

    let promoted = ada
        .post("/ui/serving/iris/promote", &[("router", "0")])
        .await;
    assert_eq!(promoted.status, StatusCode::SEE_OTHER, "{}", promoted.body);
    assert_eq!(weights(&fake, "iris"), vec![100, 0]);
    let page = ada.get("/ui/serving/iris").await;
    assert!(page.body.contains("previous"), "{}", page.body);

    ada.post("/ui/serving/iris/canary", &[("percent", "20")])
        .await;
    let rolled = ada.post("/ui/serving/iris/rollback", &[]).await;
    assert_eq!(rolled.status, StatusCode::SEE_OTHER, "{}", rolled.body);
    assert_eq!(weights(&fake, "iris"), vec![100, 0]);
    serving.sample_once().await;
    let page = ada.get("/ui/serving/iris/panel").await;
    assert!(page.body.contains("rolled back"), "{}", page.body);
}

#[tokio::test]
async fn nobody_but_an_admin_reaches_the_router_and_forged_forms_are_refused() {
    let (harness, _serving, fake, _) = watched("serving-refusals").await;
    for name in ["rita", "sam", "avery", "cody"] {
        let mut browser = Browser::signed_in(&harness, name).await;
        browser.get("/ui/serving/iris").await;
        for (path, fields) in [
            ("/ui/serving/iris/canary", vec![("percent", "50")]),
            ("/ui/serving/iris/promote", vec![]),
            ("/ui/serving/iris/rollback", vec![]),
        ] {
            let refused = browser.post(path, &fields).await;
            assert_eq!(
                refused.status,
                StatusCode::FORBIDDEN,
                "{name} {path}: {}",
                refused.body
            );
        }
    }
    let mut ada = Browser::signed_in(&harness, "ada").await;
    ada.get("/ui/serving/iris").await;
    let forged = ada
        .post_raw("/ui/serving/iris/canary", &[("percent", "50")])
        .await;
    assert_eq!(
        forged.status,
        StatusCode::FORBIDDEN,
        "no CSRF token: {}",
        forged.body
    );
    let wrong = ada
        .post_raw("/ui/serving/iris/promote", &[("csrf", "not-the-token")])
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN, "{}", wrong.body);
    let bad = ada
        .post("/ui/serving/iris/canary", &[("percent", "150")])
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert!(
        bad.body.contains(&html("invalid canary percent '150'")),
        "{}",
        bad.body
    );
    assert_eq!(
        weights(&fake, "iris"),
        vec![90, 10],
        "the router is unchanged"
    );
    assert_eq!(
        fake.lock().unwrap().changes,
        0,
        "no change reached the router"
    );
}

#[tokio::test]
async fn the_routers_refusal_is_shown_in_its_own_words() {
    let (harness, _serving, fake, _) = watched("serving-router-refuses").await;
    let mut ada = Browser::signed_in(&harness, "ada").await;
    let page = ada.get("/ui/serving/solo").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        !page.body.contains("Promote canary"),
        "no canary, no promote form"
    );
    let refused = ada.post("/ui/serving/solo/promote", &[]).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert!(
        refused.body.contains("has no canary to promote"),
        "{}",
        refused.body
    );
    assert!(refused.body.contains("role=\"alert\""), "{}", refused.body);
    assert_eq!(fake.lock().unwrap().changes, 1);
    assert_eq!(weights(&fake, "solo"), vec![100]);
}

#[tokio::test]
async fn an_unreachable_router_is_shown_and_never_holds_a_page() {
    // A port that was free a moment ago: nobody listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gone = format!("http://127.0.0.1:{port}");
    let serving = serving(vec![gone.clone()], vec![gone.clone()], ADMIN_TOKEN);
    let harness = start_with("serving-unreachable", identities(), serving.clone()).await;
    let mut rita = Browser::signed_in(&harness, "rita").await;
    let before = rita.get("/ui/serving").await;
    assert_eq!(before.status, StatusCode::OK);
    assert!(before.body.contains("not polled yet"), "{}", before.body);
    serving.sample_once().await;
    let index = rita.get("/ui/serving").await;
    assert_eq!(index.status, StatusCode::OK);
    assert!(index.body.contains("unreachable"), "{}", index.body);
    assert!(
        index
            .body
            .contains(&html(&format!("cannot reach the router at {gone}"))),
        "{}",
        index.body
    );
    assert!(
        index.body.contains(&html(&format!(
            "cannot reach the autoscaler at {gone}/metrics"
        ))),
        "{}",
        index.body
    );
    assert_eq!(
        rita.get("/ui/serving/iris").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_router_refusing_the_registrys_token_is_shown_without_the_token() {
    let (router, _fake) = fake_router().await;
    let serving = serving(vec![router.clone()], Vec::new(), "not-the-admin-token");
    serving.sample_once().await;
    let harness = start_with("serving-wrong-token", identities(), serving).await;
    let mut rita = Browser::signed_in(&harness, "rita").await;
    let index = rita.get("/ui/serving").await;
    assert_eq!(index.status, StatusCode::OK);
    assert!(
        index
            .body
            .contains(&html(&format!("the router at {router} refused (401)"))),
        "{}",
        index.body
    );
    assert!(
        !index.body.contains("not-the-admin-token"),
        "{}",
        index.body
    );
}

#[tokio::test]
async fn without_routers_the_page_says_how_to_watch_one() {
    let harness = start_with("serving-none", identities(), Arc::default()).await;
    let mut rita = Browser::signed_in(&harness, "rita").await;
    let index = rita.get("/ui/serving").await;
    assert_eq!(index.status, StatusCode::OK);
    assert!(index.body.contains("watches no router"), "{}", index.body);
    let missing = rita.get("/ui/serving/iris").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body.contains("--router"), "{}", missing.body);
}

#[tokio::test]
async fn the_autoscalers_decisions_show_on_the_route() {
    let (harness, serving, _fake, desired) = watched("serving-decisions").await;
    *desired.lock().unwrap() = (3, true);
    serving.sample_once().await;
    let mut rita = Browser::signed_in(&harness, "rita").await;
    let page = rita.get("/ui/serving/iris/panel").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("1 → 3"), "{}", page.body);
    assert!(page.body.contains("panic"), "{}", page.body);
    assert!(page.body.contains("7.5"), "observed load: {}", page.body);
    assert!(
        page.body.contains("Desired replicas"),
        "the chart: {}",
        page.body
    );
    let index = rita.get("/ui/serving").await;
    assert!(
        index.body.contains("wine-stable"),
        "the overview lists every target: {}",
        index.body
    );
}

#[tokio::test]
async fn without_identities_an_action_names_who_does_it() {
    let (router, fake) = fake_router().await;
    let serving = serving(vec![router], Vec::new(), ADMIN_TOKEN);
    serving.sample_once().await;
    let harness = start_with("serving-anonymous", Authenticator::anonymous(), serving).await;
    let mut browser = Browser::new(&harness);
    let page = browser.get("/ui/serving/iris").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("name=\"as\""), "{}", page.body);
    let nameless = browser
        .post("/ui/serving/iris/canary", &[("percent", "40")])
        .await;
    assert_eq!(
        nameless.status,
        StatusCode::BAD_REQUEST,
        "{}",
        nameless.body
    );
    assert_eq!(weights(&fake, "iris"), vec![90, 10]);
    let named = browser
        .post(
            "/ui/serving/iris/canary",
            &[("percent", "40"), ("as", "dana")],
        )
        .await;
    assert_eq!(named.status, StatusCode::SEE_OTHER, "{}", named.body);
    assert_eq!(weights(&fake, "iris"), vec![60, 40]);
}
