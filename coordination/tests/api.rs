//! The coordination API over HTTP, behind the registry's access layer as the registry mounts
//! it: roles, documents by compare-and-set, leases, and every refusal with its status and the
//! field it names.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use weir_coordination::{Coordination, API_PREFIX};
use weir_http::{HttpClient, JsonCallError};
use weir_mlflow_wire::{AccessLayer, Authenticator, EndpointTable, Identities};

const IDENTITIES: &str = r#"
[[user]]
name = "rita"
token = "reader-token"
roles = ["reader"]

[[user]]
name = "ada"
token = "admin-token"
roles = ["admin"]
"#;

struct Server {
    base: String,
    http: HttpClient,
    _db: weir_sql::testing::TestDatabase,
}

async fn serve() -> Server {
    let db = weir_sql::testing::sqlite("coordination_api");
    let url = db.url.clone();
    let coordination = tokio::task::spawn_blocking(move || Coordination::open(&url).unwrap())
        .await
        .unwrap();
    let (router, endpoints) = weir_coordination::routes(Arc::new(coordination));
    let authenticator = Authenticator::with_identities(Identities::parse(IDENTITIES).unwrap());
    let app = router.layer(AccessLayer::new(
        EndpointTable::new(endpoints),
        authenticator,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        base: format!("http://{address}{API_PREFIX}"),
        http: HttpClient::default(),
        _db: db,
    }
}

impl Server {
    /// `(status, body)` of one call with `token`.
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (u16, Value) {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(bearer) = &bearer {
            headers.push(("authorization", bearer.as_str()));
        }
        let answer = self
            .http
            .call_json(
                method,
                &format!("{}/{path}", self.base),
                &headers,
                Bytes::from(body.to_owned()),
                Duration::from_secs(10),
            )
            .await;
        match answer {
            Ok(body) => (200, body),
            Err(JsonCallError::Refused(refusal)) => (refusal.status, refusal.body),
            Err(JsonCallError::Unreachable(why)) => panic!("unreachable: {why}"),
        }
    }

    async fn admin(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some("admin-token"), &body.to_string())
            .await
    }
}

#[tokio::test]
async fn reading_needs_a_reader_and_writing_an_admin() {
    let server = serve().await;
    let get = "documents/get?key=routes%2Firis";
    let (status, _) = server.call("GET", get, None, "").await;
    assert_eq!(status, 401);
    let (status, body) = server.call("GET", get, Some("reader-token"), "").await;
    assert_eq!(
        (status, body),
        (200, json!({})),
        "never written: an empty answer"
    );
    let put = json!({"key": "routes/iris", "value": {"w": 1}}).to_string();
    let (status, body) = server
        .call("POST", "documents/put", Some("reader-token"), &put)
        .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (403, Some("PERMISSION_DENIED"))
    );
    let acquire = json!({"name": "rollout/iris", "holder": "r", "ttl": "10s"}).to_string();
    let (status, _) = server
        .call("POST", "leases/acquire", Some("reader-token"), &acquire)
        .await;
    assert_eq!(status, 403);
    let (status, _) = server.call("POST", "leases/release", None, "{}").await;
    assert_eq!(status, 401);
    // Nothing was written by the refused calls.
    let (_, body) = server.call("GET", get, Some("reader-token"), "").await;
    assert_eq!(body, json!({}));
}

#[tokio::test]
async fn documents_change_by_compare_and_set_and_a_lost_race_is_a_409() {
    let server = serve().await;
    let (status, body) = server
        .admin(
            "documents/put",
            json!({"key": "routes/iris", "value": {"w": 10}}),
        )
        .await;
    assert_eq!((status, body), (200, json!({"revision": 1})));
    let (status, body) = server
        .admin(
            "documents/put",
            json!({"key": "routes/iris", "value": {"w": 20}, "expected_revision": "1"}),
        )
        .await;
    assert_eq!((status, body), (200, json!({"revision": 2})));
    for stale in [json!(1), Value::Null] {
        let (status, body) = server
            .admin(
                "documents/put",
                json!({"key": "routes/iris", "value": {"w": 30}, "expected_revision": stale}),
            )
            .await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["error_code"], "RESOURCE_CONFLICT");
        assert!(
            body["message"].as_str().unwrap().contains("revision 2"),
            "{body}"
        );
    }
    let (status, body) = server
        .call(
            "GET",
            "documents/get?key=routes/iris",
            Some("reader-token"),
            "",
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["document"]["revision"], 2);
    assert_eq!(body["document"]["value"], json!({"w": 20}));
    assert_eq!(body["document"]["key"], "routes/iris");
}

#[tokio::test]
async fn leases_are_granted_to_one_holder_and_handed_over_on_release() {
    let server = serve().await;
    let acquire = |holder: &str| json!({"name": "rollout/iris", "holder": holder, "ttl": "30s"});
    let (status, body) = server.admin("leases/acquire", acquire("a")).await;
    assert_eq!(status, 200);
    assert_eq!(body["lease"]["granted"], true);
    assert_eq!(body["lease"]["holder"], "a");
    let remaining = body["lease"]["remaining_ms"].as_i64().unwrap();
    assert!(remaining > 0 && remaining <= 30_000, "{body}");
    let (_, body) = server.admin("leases/acquire", acquire("b")).await;
    assert_eq!(
        (
            body["lease"]["granted"].clone(),
            body["lease"]["holder"].clone()
        ),
        (json!(false), json!("a"))
    );
    let (_, body) = server
        .admin(
            "leases/release",
            json!({"name": "rollout/iris", "holder": "b"}),
        )
        .await;
    assert_eq!(body, json!({"released": false}));
    let (_, body) = server
        .admin(
            "leases/release",
            json!({"name": "rollout/iris", "holder": "a"}),
        )
        .await;
    assert_eq!(body, json!({"released": true}));
    let (_, body) = server.admin("leases/acquire", acquire("b")).await;
    assert_eq!(body["lease"]["granted"], true);
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_field() {
    let server = serve().await;
    let (status, body) = server
        .call("GET", "documents/get", Some("reader-token"), "")
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("'key'"),
        "{body}"
    );
    let (status, body) = server
        .call(
            "GET",
            "documents/get?key=has%20space",
            Some("reader-token"),
            "",
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("'key'"),
        "{body}"
    );
    for (path, request, field) in [
        ("documents/put", json!({"value": 1}), "'key'"),
        ("documents/put", json!({"key": "k"}), "'value'"),
        (
            "documents/put",
            json!({"key": "k", "value": 1, "expected_revision": "x"}),
            "'expected_revision'",
        ),
        (
            "documents/put",
            json!({"key": "k", "value": 1, "expected_revision": 0}),
            "'expected_revision'",
        ),
        (
            "documents/put",
            json!({"key": "k", "value": 1, "revision": 1}),
            "revision",
        ),
        (
            "leases/acquire",
            json!({"name": "n", "holder": "h"}),
            "'ttl'",
        ),
        (
            "leases/acquire",
            json!({"name": "n", "holder": "h", "ttl": "soon"}),
            "'ttl'",
        ),
        (
            "leases/acquire",
            json!({"name": "n", "holder": "h", "ttl": 0}),
            "'ttl'",
        ),
        (
            "leases/acquire",
            json!({"holder": "h", "ttl": "1s"}),
            "'name'",
        ),
        (
            "leases/acquire",
            json!({"name": "n", "holder": "", "ttl": "1s"}),
            "'holder'",
        ),
        ("leases/release", json!({"name": "n"}), "'holder'"),
    ] {
        let (status, body) = server.admin(path, request.clone()).await;
        assert_eq!(status, 400, "{path} {request}: {body}");
        assert_eq!(body["error_code"], "INVALID_PARAMETER_VALUE", "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(field), "{path} {request}: {message}");
    }
    let (status, body) = server
        .call("POST", "documents/put", Some("admin-token"), "{not json")
        .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (400, Some("INVALID_PARAMETER_VALUE"))
    );
}
