//! The dashboard's test harness: the registry's whole app (API and pages behind one access
//! layer) on a temporary SQLite database, and a small browser that keeps the session cookie
//! and sends forms with the CSRF token of the page it last read, as a real one would.

#![allow(dead_code, clippy::unwrap_used)] // each test file uses a part; set-up fails loudly

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use tower::ServiceExt;
use weir_dashboard::serving::Serving;
use weir_mlflow_server::{app_with_dashboard, open, Config, RegistryMetrics, Stores};
use weir_mlflow_wire::{Authenticator, Identities};

/// rita reads, sam submits, avery approves, ada administers, cody both submits and approves
/// (a creator who could otherwise approve their own version). Each token is `<name>-token`.
pub const IDENTITIES: &str = r#"
[[user]]
name = "rita"
token = "rita-token"
roles = ["reader"]

[[user]]
name = "sam"
token = "sam-token"
roles = ["submitter"]

[[user]]
name = "avery"
token = "avery-token"
roles = ["approver"]

[[user]]
name = "ada"
token = "ada-token"
roles = ["admin"]

[[user]]
name = "cody"
token = "cody-token"
roles = ["submitter", "approver"]
"#;

/// What the pages are served by; a browser's requests reach the app without a socket.
pub const HOST: &str = "weir.test";

pub struct Harness {
    pub app: axum::Router,
    pub stores: Stores,
    folder: std::path::PathBuf,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

/// A registry with the identities above.
pub async fn start(tag: &str) -> Harness {
    start_with(
        tag,
        Authenticator::with_identities(Identities::parse(IDENTITIES).unwrap()),
        Arc::default(),
    )
    .await
}

/// A registry without identities (the loopback default): pages open, actions ask a name.
pub async fn start_anonymous(tag: &str) -> Harness {
    start_with(tag, Authenticator::anonymous(), Arc::default()).await
}

pub async fn start_with(tag: &str, authenticator: Authenticator, serving: Arc<Serving>) -> Harness {
    let folder = std::env::temp_dir().join(format!(
        "weir-dashboard-{tag}-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(&folder).unwrap();
    let stores = open(Config {
        database: format!("sqlite://{}", folder.join("r.db").display()),
        pool_size: weir_mlflow_server::DEFAULT_POOL_SIZE,
        artifacts: folder.join("artifacts"),
        max_artifact_bytes: 1 << 24,
        protected_aliases: vec!["production".into()],
    })
    .await
    .unwrap();
    let (app, _) = app_with_dashboard(&stores, authenticator, RegistryMetrics::new(), serving);
    Harness {
        app,
        stores,
        folder,
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// One answer: status, headers and the body as text.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> Option<&str> {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
    }

    /// The value of the first hidden `csrf` input on the page.
    pub fn csrf(&self) -> Option<String> {
        let at = self.body.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
        let end = self.body[at..].find('"')?;
        Some(self.body[at..at + end].to_owned())
    }
}

/// A browser: keeps the session cookie the server sets and the last CSRF token it saw.
pub struct Browser {
    app: axum::Router,
    cookie: Option<String>,
    csrf: Option<String>,
}

impl Browser {
    /// A browser that has signed in nowhere.
    pub fn new(harness: &Harness) -> Browser {
        Browser {
            app: harness.app.clone(),
            cookie: None,
            csrf: None,
        }
    }

    /// A browser signed in with `<name>-token` through the sign-in form.
    pub async fn signed_in(harness: &Harness, name: &str) -> Browser {
        let mut browser = Browser::new(harness);
        let form = browser.get("/ui/sign-in").await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        let token = format!("{name}-token");
        let answer = browser
            .post(
                "/ui/sign-in",
                &[("token", token.as_str()), ("next", "/ui/")],
            )
            .await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        let home = browser.get("/ui/").await;
        assert_eq!(home.status, StatusCode::OK, "{}", home.body);
        browser
    }

    pub fn cookie(&self) -> Option<&str> {
        self.cookie.as_deref()
    }

    pub fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }

    pub async fn get(&mut self, path: &str) -> Page {
        self.send(Method::GET, path, None, Body::empty()).await
    }

    /// Posts a form as the page last read would: with its CSRF token and our Origin.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.csrf.clone().unwrap_or_default();
        let mut all: Vec<(&str, &str)> = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &all).await
    }

    /// Posts exactly `fields` (no CSRF token added): for the forged requests.
    pub async fn post_raw(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = serde_urlencoded::to_string(fields).unwrap();
        self.send(
            Method::POST,
            path,
            Some("application/x-www-form-urlencoded"),
            Body::from(body),
        )
        .await
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Body,
    ) -> Page {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::HOST, HOST);
        if method == Method::POST {
            request = request.header(header::ORIGIN, format!("http://{HOST}"));
        }
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        if let Some(cookie) = &self.cookie {
            request = request.header(header::COOKIE, cookie.as_str());
        }
        let response = self
            .app
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        for set in headers.get_all(header::SET_COOKIE) {
            let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
            self.cookie = Some(pair);
        }
        let body = axum::body::to_bytes(response.into_body(), 16 << 20)
            .await
            .unwrap();
        let page = Page {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        if let Some(csrf) = page.csrf() {
            self.csrf = Some(csrf);
        }
        page
    }
}
