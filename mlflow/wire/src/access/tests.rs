use super::*;

use std::sync::Mutex;

use axum::body::Body;
use axum::http::Request as HttpRequest;
use tower::ServiceExt;

use crate::identity::Identities;

fn table() -> (Router, EndpointTable) {
    let (router, endpoints) = Routes::<()>::new()
        .get("/health", Access::Public, || async { "OK" })
        .get(
            "/things/get",
            Access::Needs(Role::Reader),
            |who: Identity| async move { who.name },
        )
        .post("/things/create", Access::Needs(Role::Submitter), || async {
            "made"
        })
        .delete("/things/{id}", Access::Needs(Role::Admin), || async {
            "gone"
        })
        .put("/files/{*path}", Access::Needs(Role::Submitter), || async {
            "put"
        })
        .get("/files/{*path}", Access::Needs(Role::Reader), || async {
            "file"
        })
        .into_parts();
    (router, EndpointTable::new(endpoints))
}

fn identities() -> Identities {
    Identities::parse(
        r#"
        [[user]]
        name = "rita"
        token = "reader-token"
        roles = ["reader"]
        [[user]]
        name = "sam"
        token = "submitter-token"
        roles = ["submitter"]
        [[user]]
        name = "ada"
        token = "admin-token"
        roles = ["admin"]
        "#,
    )
    .unwrap()
}

async fn call(
    app: &Router,
    method: &str,
    path: &str,
    authorization: Option<&str>,
) -> (u16, String) {
    let mut request = HttpRequest::builder().method(method).uri(path);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn patterns_match_the_way_axum_routes() {
    assert!(pattern_matches("/a/{id}", "/a/7"));
    assert!(!pattern_matches("/a/{id}", "/a/"));
    assert!(!pattern_matches("/a/{id}", "/a/7/8"));
    assert!(pattern_matches("/f/{*p}", "/f/x/y/z"));
    assert!(!pattern_matches("/f/{*p}", "/f/"));
    assert!(!pattern_matches("/f/{*p}", "/f"));
    assert!(!pattern_matches("/a/b", "/a/b/"));
    let (_, table) = table();
    assert_eq!(table.access(&Method::GET, "/health"), Access::Public);
    assert_eq!(
        table.access(&Method::POST, "/health"),
        Access::Needs(Role::Reader)
    );
    assert_eq!(
        table.access(&Method::DELETE, "/things/3"),
        Access::Needs(Role::Admin)
    );
    assert_eq!(
        table.access(&Method::PUT, "/files/a/b"),
        Access::Needs(Role::Submitter)
    );
    assert_eq!(
        table.access(&Method::GET, "/nowhere"),
        Access::Needs(Role::Reader)
    );
}

#[tokio::test]
async fn every_route_answers_by_role_and_nothing_but_health_answers_anonymously() {
    let (router, table) = table();
    let refused = Arc::new(Mutex::new(Vec::new()));
    let log = refused.clone();
    let app = router.layer(
        AccessLayer::new(table, Authenticator::with_identities(identities()))
            .with_refusals(Arc::new(move |r| log.lock().unwrap().push(r))),
    );
    assert_eq!(call(&app, "GET", "/health", None).await.0, 200);
    for (method, path) in [
        ("GET", "/things/get"),
        ("POST", "/things/create"),
        ("DELETE", "/things/1"),
        ("PUT", "/files/x"),
        ("GET", "/nowhere"),
        ("PATCH", "/things/get"),
    ] {
        let (status, body) = call(&app, method, path, None).await;
        assert_eq!(status, 401, "{method} {path}");
        assert!(body.contains("UNAUTHENTICATED"), "{body}");
        assert_eq!(call(&app, method, path, Some("Bearer nope")).await.0, 401);
    }
    assert_eq!(
        call(&app, "GET", "/things/get", Some("Bearer reader-token")).await,
        (200, "rita".to_owned())
    );
    let (status, body) = call(&app, "POST", "/things/create", Some("Bearer reader-token")).await;
    assert_eq!(status, 403);
    assert!(
        body.contains("PERMISSION_DENIED") && body.contains("submitter"),
        "{body}"
    );
    assert_eq!(
        call(
            &app,
            "POST",
            "/things/create",
            Some("Bearer submitter-token")
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(&app, "DELETE", "/things/1", Some("Bearer submitter-token"))
            .await
            .0,
        403
    );
    assert_eq!(
        call(&app, "DELETE", "/things/1", Some("Bearer admin-token"))
            .await
            .0,
        200
    );
    // A known caller reaches axum's own answers for what does not exist.
    assert_eq!(
        call(&app, "GET", "/nowhere", Some("Bearer reader-token"))
            .await
            .0,
        404
    );
    // HTTP Basic: the token is the password; a user name must be the token's own.
    let basic = |pair: &str| format!("Basic {}", base64::encode(pair));
    assert_eq!(
        call(
            &app,
            "GET",
            "/things/get",
            Some(&basic("rita:reader-token"))
        )
        .await,
        (200, "rita".to_owned())
    );
    assert_eq!(
        call(&app, "GET", "/things/get", Some(&basic(":reader-token")))
            .await
            .0,
        200
    );
    assert_eq!(
        call(&app, "GET", "/things/get", Some(&basic("ada:reader-token")))
            .await
            .0,
        401
    );
    let refused = refused.lock().unwrap();
    assert!(refused.iter().any(|r| r.who == "rita"
        && r.needed == Some(Role::Submitter)
        && r.path == "/things/create"
        && r.status == 403));
    assert!(refused
        .iter()
        .any(|r| r.who == "anonymous" && r.status == 401));
}

#[tokio::test]
async fn without_identities_callers_name_themselves_and_hold_every_role() {
    let (router, table) = table();
    let app = router.layer(AccessLayer::new(table, Authenticator::anonymous()));
    assert_eq!(call(&app, "DELETE", "/things/1", None).await.0, 200);
    assert_eq!(
        call(&app, "GET", "/things/get", None).await,
        (200, "anonymous".to_owned())
    );
    let basic = format!("Basic {}", base64::encode("alice:"));
    assert_eq!(
        call(&app, "GET", "/things/get", Some(&basic)).await,
        (200, "alice".to_owned())
    );
}

#[tokio::test]
async fn the_queued_sink_drops_rather_than_blocks_when_full() {
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let written = Arc::new(Mutex::new(0usize));
    let count = written.clone();
    let sink = queued_sink(2, move |_| {
        let _ = wait.recv();
        *count.lock().unwrap() += 1;
    });
    let refusal = Refusal {
        who: "x".into(),
        method: "GET".into(),
        path: "/".into(),
        needed: None,
        status: 401,
    };
    // One held by the writer, two queued, the rest dropped — and none of these calls blocks.
    for _ in 0..50 {
        sink(refusal.clone());
    }
    for _ in 0..50 {
        let _ = release.send(());
    }
    drop(release);
    for _ in 0..200 {
        if *written.lock().unwrap() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let written = *written.lock().unwrap();
    assert!((1..=3).contains(&written), "{written} written");
}
