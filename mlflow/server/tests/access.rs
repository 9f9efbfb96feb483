//! Every endpoint of the registry server × every kind of caller, from the server's own table:
//! an endpoint added without thinking about access cannot slip through.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request};
use tower::ServiceExt;
use weir_mlflow_server::{app, open, Config};
use weir_mlflow_wire::{Access, Authenticator, EndpointTable, Identities, Role};

const IDENTITIES: &str = r#"
[[user]]
name = "rita"
token = "reader-token"
roles = ["reader"]

[[user]]
name = "sam"
token = "submitter-token"
roles = ["submitter"]

[[user]]
name = "avery"
token = "approver-token"
roles = ["approver"]

[[user]]
name = "ada"
token = "admin-token"
roles = ["admin"]
"#;

/// A caller: its Authorization header and the roles it holds (`None`: no valid credential).
const CALLERS: [(&str, Option<&str>, Option<Role>); 6] = [
    ("anonymous", None, None),
    ("bad token", Some("Bearer not-a-token"), None),
    ("reader", Some("Bearer reader-token"), Some(Role::Reader)),
    (
        "submitter",
        Some("Bearer submitter-token"),
        Some(Role::Submitter),
    ),
    (
        "approver",
        Some("Bearer approver-token"),
        Some(Role::Approver),
    ),
    ("admin", Some("Bearer admin-token"), Some(Role::Admin)),
];

struct Server {
    app: axum::Router,
    table: EndpointTable,
    registry: Arc<weir_registry::Registry>,
    _folder: tempdir::Folder,
}

mod tempdir {
    pub struct Folder(pub std::path::PathBuf);
    impl Drop for Folder {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn server(tag: &str, authenticator: Authenticator) -> Server {
    let folder = std::env::temp_dir().join(format!("weir-access-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(&folder).unwrap();
    let stores = open(Config {
        database: format!("sqlite://{}", folder.join("r.db").display()),
        pool_size: weir_mlflow_server::DEFAULT_POOL_SIZE,
        artifacts: folder.join("artifacts"),
        max_artifact_bytes: 1 << 20,
        protected_aliases: vec!["production".into()],
    })
    .await
    .unwrap();
    let (app, table) = app(&stores, authenticator);
    Server {
        app,
        table,
        registry: stores.registry,
        _folder: tempdir::Folder(folder),
    }
}

/// A concrete path for a route pattern.
fn concrete(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|segment| {
            if segment.starts_with("{*") {
                "probe/file.txt"
            } else if segment.starts_with('{') {
                "probe"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

async fn status(
    app: &axum::Router,
    method: &Method,
    path: &str,
    auth: Option<&str>,
) -> (u16, String) {
    let mut request = Request::builder().method(method.clone()).uri(path);
    if let Some(value) = auth {
        request = request.header("authorization", value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from("{}")).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The dashboard's pages answer refusals as pages: no credential → the sign-in form, a role
/// missing → a 403 page naming it. (A page's form without its CSRF token is refused too, but
/// for that reason, not the role: the dashboard tests check it.)
fn check_page(
    endpoint: &weir_mlflow_wire::Endpoint,
    path: &str,
    caller: &str,
    role: Option<Role>,
    got: u16,
    body: &str,
    failures: &mut Vec<String>,
) {
    let method = &endpoint.method;
    let sent_to_sign_in = got == 303;
    let role_refused = got == 403 && body.contains("it needs the");
    let expected_ok = match (endpoint.access, role) {
        (Access::Public, _) => true,
        (Access::Needs(_), None) => {
            if !sent_to_sign_in {
                failures.push(format!(
                    "{caller} {method} {path}: {got}, expected the sign-in form"
                ));
            }
            return;
        }
        (Access::Needs(needed), Some(held)) => weir_mlflow_wire::Identity {
            name: caller.to_owned(),
            roles: [held].into(),
        }
        .holds(needed),
    };
    if expected_ok == role_refused {
        failures.push(format!(
            "{caller} {method} {path}: got {got} ({body}), expected {}",
            if expected_ok {
                "an answer"
            } else {
                "a 403 page naming the role"
            }
        ));
    }
}

#[tokio::test]
async fn every_endpoint_answers_each_caller_by_role() {
    let server = server(
        "table",
        Authenticator::with_identities(Identities::parse(IDENTITIES).unwrap()),
    )
    .await;
    let endpoints = server.table.endpoints();
    // Registry, approvals, artifacts and tracking are all in the one table.
    for must in [
        "/api/2.0/mlflow/model-versions/create",
        "/api/2.0/weir/approvals/approve",
        "/api/2.0/mlflow-artifacts/artifacts/{*path}",
        "/api/2.0/mlflow/runs/log-batch",
    ] {
        assert!(endpoints.iter().any(|e| e.path == must), "{must} missing");
    }
    // The decisions that carry the promise, pinned: the rest follow the table in security.md.
    for (method, path, role) in [
        (Method::POST, "/api/2.0/weir/approvals/policy", Role::Admin),
        (
            Method::POST,
            "/api/2.0/weir/approvals/approve",
            Role::Approver,
        ),
        (
            Method::POST,
            "/api/2.0/weir/approvals/reject",
            Role::Approver,
        ),
        (
            Method::POST,
            "/api/2.0/mlflow/registered-models/alias",
            Role::Approver,
        ),
        (
            Method::DELETE,
            "/api/2.0/mlflow/model-versions/delete",
            Role::Admin,
        ),
        (
            Method::DELETE,
            "/api/2.0/mlflow/registered-models/delete",
            Role::Admin,
        ),
        (
            Method::DELETE,
            "/api/2.0/mlflow-artifacts/artifacts/a/b",
            Role::Admin,
        ),
        (
            Method::PUT,
            "/api/2.0/mlflow-artifacts/artifacts/a/b",
            Role::Submitter,
        ),
        (
            Method::POST,
            "/api/2.0/mlflow/model-versions/create",
            Role::Submitter,
        ),
        (Method::GET, "/api/2.0/weir/resolve", Role::Reader),
    ] {
        assert_eq!(
            server.table.access(&method, path),
            Access::Needs(role),
            "{method} {path}"
        );
    }
    let mut failures = Vec::new();
    for endpoint in endpoints {
        let path = concrete(&endpoint.path);
        for (caller, auth, role) in CALLERS {
            let (got, body) = status(&server.app, &endpoint.method, &path, auth).await;
            if endpoint.path == "/" || endpoint.path.starts_with("/ui") {
                check_page(endpoint, &path, caller, role, got, &body, &mut failures);
                continue;
            }
            let expected_ok = match (endpoint.access, role) {
                (Access::Public, _) => true,
                (Access::Needs(_), None) => {
                    if got != 401 || !body.contains("UNAUTHENTICATED") {
                        failures.push(format!("{caller} {} {path}: {got} {body}", endpoint.method));
                    }
                    continue;
                }
                (Access::Needs(needed), Some(held)) => weir_mlflow_wire::Identity {
                    name: caller.to_owned(),
                    roles: [held].into(),
                }
                .holds(needed),
            };
            let refused = got == 401 || got == 403;
            if expected_ok == refused
                || (!expected_ok && (got != 403 || !body.contains("PERMISSION_DENIED")))
            {
                failures.push(format!(
                    "{caller} {} {path}: got {got} ({body}), expected {}",
                    endpoint.method,
                    if expected_ok { "an answer" } else { "403" }
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Only probes are public.
    let public: Vec<&str> = endpoints
        .iter()
        .filter(|e| e.access == Access::Public)
        .map(|e| e.path.as_str())
        .collect();
    assert_eq!(
        public,
        [
            "/health",
            "/version",
            "/",
            "/ui",
            "/ui/sign-in",
            "/ui/sign-in",
            "/ui/sign-out",
            "/ui/static/{file}"
        ]
    );
    // Unknown paths and methods answer nobody anonymous.
    assert_eq!(
        status(&server.app, &Method::GET, "/api/2.0/nope", None)
            .await
            .0,
        401
    );
    assert_eq!(
        status(
            &server.app,
            &Method::GET,
            "/api/2.0/nope",
            Some("Bearer reader-token")
        )
        .await
        .0,
        404
    );
    // Refusals reach the audit log with who asked.
    let mut audited = Vec::new();
    for _ in 0..500 {
        audited = server
            .registry
            .store
            .audit(None, Some("refused"), Some("rita"), 1000)
            .unwrap();
        if !audited.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        audited
            .iter()
            .any(|e| e.after.contains("needs the submitter role")),
        "{audited:?}"
    );
}

#[tokio::test]
async fn an_anonymous_upload_cannot_overwrite_a_registered_file() {
    let server = server(
        "overwrite",
        Authenticator::with_identities(Identities::parse(IDENTITIES).unwrap()),
    )
    .await;
    let path = "/api/2.0/mlflow-artifacts/artifacts/models/iris/model.onnx";
    let put = |auth: Option<&'static str>, bytes: &'static str| {
        let app = server.app.clone();
        async move {
            let mut request = Request::put(path);
            if let Some(value) = auth {
                request = request.header("authorization", value);
            }
            app.oneshot(request.body(Body::from(bytes)).unwrap())
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        put(Some("Bearer submitter-token"), "the real model").await,
        200
    );
    assert_eq!(put(None, "attacker's model").await, 401);
    assert_eq!(
        put(Some("Basic YXR0YWNrZXI6"), "attacker's model").await,
        401
    );
    assert_eq!(
        put(Some("Bearer reader-token"), "attacker's model").await,
        403
    );
    let (status_code, body) =
        status(&server.app, &Method::GET, path, Some("Bearer reader-token")).await;
    assert_eq!((status_code, body.as_str()), (200, "the real model"));
    // And nobody anonymous deletes anything, the root least of all.
    for target in ["models/iris/model.onnx", "."] {
        let uri = format!("/api/2.0/mlflow-artifacts/artifacts/{target}");
        assert_eq!(
            status(&server.app, &Method::DELETE, &uri, None).await.0,
            401
        );
    }
    assert_eq!(
        status(&server.app, &Method::GET, path, Some("Bearer admin-token"))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn without_identities_the_local_default_still_answers_everyone() {
    let server = server("anonymous", Authenticator::anonymous()).await;
    let (code, body) = status(
        &server.app,
        &Method::POST,
        "/api/2.0/mlflow/registered-models/create",
        None,
    )
    .await;
    // Reached the handler: the empty body is refused for its missing name, not for the caller.
    assert_eq!(code, 400, "{body}");
}
