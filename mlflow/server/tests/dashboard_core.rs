//! The dashboard's frame: signing in and out, the session cookie, CSRF on every form, pages
//! refused as pages, and the cookie never reaching the API.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod dashboard_common;

use axum::http::{header, StatusCode};
use dashboard_common::{start, start_anonymous, Browser};

#[tokio::test]
async fn signing_in_sets_an_http_only_strict_cookie_and_returns_to_the_page_asked_for() {
    let harness = start("sign-in").await;
    let mut browser = Browser::new(&harness);
    let refused = browser.get("/ui/models").await;
    assert_eq!(refused.status, StatusCode::SEE_OTHER);
    assert_eq!(refused.location(), Some("/ui/sign-in?next=/ui/models"));

    let form = browser.get("/ui/sign-in?next=/ui/models").await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("name=\"token\""), "{}", form.body);
    let answer = browser
        .post(
            "/ui/sign-in",
            &[("token", "rita-token"), ("next", "/ui/models")],
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    assert_eq!(answer.location(), Some("/ui/models"));
    let cookie = answer
        .headers
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap();
    assert!(cookie.starts_with("weir_session=t."), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(
        !cookie.contains("rita-token"),
        "the token is encoded, not spelled: {cookie}"
    );

    let home = browser.get("/ui/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("rita"), "{}", home.body);
}

#[tokio::test]
async fn a_wrong_token_or_a_foreign_return_address_signs_nobody_in_anywhere() {
    let harness = start("wrong-token").await;
    let mut browser = Browser::new(&harness);
    browser.get("/ui/sign-in").await;
    let wrong = browser
        .post("/ui/sign-in", &[("token", "not-a-token")])
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("not valid"), "{}", wrong.body);
    assert_eq!(browser.get("/ui/").await.status, StatusCode::SEE_OTHER);

    let away = browser
        .post(
            "/ui/sign-in",
            &[("token", "rita-token"), ("next", "//evil.example/x")],
        )
        .await;
    assert_eq!(away.location(), Some("/ui/"));
}

#[tokio::test]
async fn a_sign_in_without_the_session_csrf_token_is_refused() {
    let harness = start("sign-in-csrf").await;
    let mut browser = Browser::new(&harness);
    browser.get("/ui/sign-in").await;
    let forged = browser
        .post_raw("/ui/sign-in", &[("token", "ada-token"), ("csrf", "0000")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(browser.get("/ui/").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn signing_out_forgets_the_token() {
    let harness = start("sign-out").await;
    let mut browser = Browser::signed_in(&harness, "ada").await;
    let out = browser.post("/ui/sign-out", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(browser.cookie().unwrap().starts_with("weir_session=a."));
    assert_eq!(browser.get("/ui/").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_session_cookie_opens_pages_but_never_the_api() {
    let harness = start("cookie-api").await;
    let mut browser = Browser::signed_in(&harness, "ada").await;
    let api = browser
        .get("/api/2.0/mlflow/registered-models/search")
        .await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED, "{}", api.body);
    assert!(api.body.contains("UNAUTHENTICATED"));
}

#[tokio::test]
async fn pages_forbid_framing_inline_scripts_and_caching() {
    let harness = start("headers").await;
    let mut browser = Browser::signed_in(&harness, "rita").await;
    let page = browser.get("/ui/").await;
    let csp = page.headers.get(header::CONTENT_SECURITY_POLICY).unwrap();
    assert!(csp.to_str().unwrap().contains("default-src 'self'"));
    assert!(csp.to_str().unwrap().contains("frame-ancestors 'none'"));
    assert_eq!(page.headers.get(header::X_FRAME_OPTIONS).unwrap(), "DENY");
    assert_eq!(page.headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
    assert!(!page.body.contains("<script>"), "no inline script");
    let css = browser.get("/ui/static/weir.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    let js = browser.get("/ui/static/weir.js").await;
    assert!(js.body.contains("weirPageForMlflowLink"));
    assert_eq!(
        browser.get("/ui/static/..%2Fsecret").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_root_page_maps_mlflow_links_without_revealing_anything() {
    let harness = start("root").await;
    let mut browser = Browser::new(&harness);
    let root = browser.get("/").await;
    assert_eq!(root.status, StatusCode::OK);
    assert!(root.body.contains("data-mlflow-links"));
    assert!(root.body.contains("/ui/static/weir.js"));
}

#[tokio::test]
async fn a_refused_role_reads_as_a_page_not_json() {
    let harness = start("refused-page").await;
    let mut browser = Browser::signed_in(&harness, "rita").await;
    let refused = browser.post("/ui/serving/iris/promote", &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(refused.body.contains("admin"), "{}", refused.body);
}

#[tokio::test]
async fn without_identities_pages_are_open_and_there_is_no_sign_in() {
    let harness = start_anonymous("anonymous").await;
    let mut browser = Browser::new(&harness);
    let home = browser.get("/ui/").await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    assert!(home.body.contains("open registry"));
    assert!(browser.cookie().unwrap().starts_with("weir_session=a."));
    let sign_in = browser.get("/ui/sign-in").await;
    assert_eq!(sign_in.status, StatusCode::SEE_OTHER);
}
