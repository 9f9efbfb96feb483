//! The Kubernetes scaler against a fake API server on loopback that answers as the real one
//! does for `apps/v1` Deployments and their `scale` subresource: Status bodies, 404, 403, 409
//! on a stale `resourceVersion`, and a resourceVersion that moves with every write.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{json, Value};
use weir_autoscaler::kubernetes::{KubernetesError, KubernetesScaler, PAUSED_ANNOTATION};

#[derive(Clone)]
struct FakeDeployment {
    replicas: i32,
    ready: i32,
    resource_version: u64,
    paused: bool,
}

#[derive(Default)]
struct FakeCluster {
    deployments: HashMap<String, FakeDeployment>,
    /// Deployments whose reads and writes are forbidden to us.
    forbidden: Vec<String>,
    /// Writes that will be answered 409 as if someone else wrote first (their change bumps
    /// the resourceVersion).
    conflicts_to_inject: usize,
    writes: Vec<i32>,
}

type Shared = Arc<Mutex<FakeCluster>>;

fn status(code: u16, reason: &str, message: String) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    (
        StatusCode::from_u16(code).unwrap(),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn json_response(value: Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn lookup(
    cluster: &FakeCluster,
    namespace: &str,
    name: &str,
    verb: &str,
) -> Result<FakeDeployment, Box<Response>> {
    if cluster.forbidden.iter().any(|f| f == name) {
        return Err(Box::new(status(403, "Forbidden", format!(
            "deployments.apps \"{name}\" is forbidden: User \"system:serviceaccount:{namespace}:weir\" cannot {verb} resource \"deployments\" in API group \"apps\" in the namespace \"{namespace}\""))));
    }
    cluster.deployments.get(name).cloned().ok_or_else(|| {
        Box::new(status(
            404,
            "NotFound",
            format!("deployments.apps \"{name}\" not found"),
        ))
    })
}

fn scale_json(namespace: &str, name: &str, d: &FakeDeployment) -> Value {
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": d.resource_version.to_string()},
        "spec": {"replicas": d.replicas}, "status": {"replicas": d.replicas, "selector": format!("app={name}")}})
}

async fn get_deployment(
    State(cluster): State<Shared>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let cluster = cluster.lock().unwrap();
    match lookup(&cluster, &namespace, &name, "get") {
        Err(response) => *response,
        Ok(d) => {
            let annotations = if d.paused {
                json!({PAUSED_ANNOTATION: "true"})
            } else {
                json!({})
            };
            json_response(json!({"kind": "Deployment", "apiVersion": "apps/v1",
                "metadata": {"name": name, "namespace": namespace, "resourceVersion": d.resource_version.to_string(), "annotations": annotations},
                "spec": {"replicas": d.replicas, "selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "weir", "image": "weir"}]}}},
                "status": {"replicas": d.replicas, "readyReplicas": d.ready}}))
        }
    }
}

async fn get_scale(
    State(cluster): State<Shared>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let cluster = cluster.lock().unwrap();
    match lookup(&cluster, &namespace, &name, "get") {
        Err(response) => *response,
        Ok(d) => json_response(scale_json(&namespace, &name, &d)),
    }
}

async fn patch_scale(
    State(cluster): State<Shared>,
    Path((namespace, name)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let mut cluster = cluster.lock().unwrap();
    if let Err(response) = lookup(&cluster, &namespace, &name, "patch") {
        return *response;
    }
    if headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        != Some("application/merge-patch+json")
    {
        return status(
            415,
            "UnsupportedMediaType",
            "the scaler sends merge patches".to_owned(),
        );
    }
    // A merge patch (application/merge-patch+json): only what it names changes.
    let Ok(scale) = serde_json::from_slice::<Value>(&body) else {
        return status(400, "BadRequest", "the body is not JSON".to_owned());
    };
    if cluster.conflicts_to_inject > 0 {
        // Someone else scaled first: their write moved the resourceVersion.
        cluster.conflicts_to_inject -= 1;
        let d = cluster.deployments.get_mut(&name).unwrap();
        d.resource_version += 1;
    }
    let current_version = cluster.deployments[&name].resource_version.to_string();
    // A resourceVersion in the patch is a precondition, as on a real API server.
    if scale["metadata"]["resourceVersion"]
        .as_str()
        .is_some_and(|given| given != current_version)
    {
        return status(409, "Conflict", format!(
            "Operation cannot be fulfilled on deployments.apps \"{name}\": the object has been modified; please apply your changes to the latest version and try again"));
    }
    let Some(replicas) = scale["spec"]["replicas"].as_i64() else {
        return status(422, "Invalid", "spec.replicas is required".to_owned());
    };
    let d = cluster.deployments.get_mut(&name).unwrap();
    d.replicas = replicas as i32;
    d.resource_version += 1;
    let answer = scale_json(&namespace, &name, &d.clone());
    cluster.writes.push(replicas as i32);
    json_response(answer)
}

/// Pods of every deployment: two ready, one starting (not Ready), one of another app.
async fn list_pods(
    Path(namespace): Path<String>,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let selector = query.get("labelSelector").cloned().unwrap_or_default();
    let pod = |name: &str, app: &str, ip: &str, ready: &str| {
        json!({"metadata": {"name": name, "namespace": namespace, "labels": {"app": app}},
               "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": ready}]}})
    };
    let all = [
        pod("iris-v2-a", "iris-v2", "10.0.0.1", "True"),
        pod("iris-v2-b", "iris-v2", "10.0.0.2", "True"),
        pod("iris-v2-c", "iris-v2", "10.0.0.3", "False"),
        pod("other-a", "other", "10.0.0.9", "True"),
    ];
    let items: Vec<&Value> = all
        .iter()
        .filter(|p| format!("app={}", p["metadata"]["labels"]["app"].as_str().unwrap()) == selector)
        .collect();
    json_response(
        json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}),
    )
}

async fn fake_cluster() -> (Shared, kube::Client) {
    let mut cluster = FakeCluster::default();
    for (name, paused) in [("iris-v2", false), ("paused", true)] {
        cluster.deployments.insert(
            name.to_owned(),
            FakeDeployment {
                replicas: 2,
                ready: 2,
                resource_version: 100,
                paused,
            },
        );
    }
    cluster.forbidden.push("secret".to_owned());
    let shared: Shared = Arc::new(Mutex::new(cluster));
    let app = axum::Router::new()
        .route(
            "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
            get(get_deployment),
        )
        .route(
            "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale",
            get(get_scale).patch(patch_scale),
        )
        .route("/api/v1/namespaces/{namespace}/pods", get(list_pods))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let config = kube::Config::new(url.parse().unwrap());
    (shared, kube::Client::try_from(config).unwrap())
}

#[tokio::test]
async fn scales_through_the_scale_subresource_and_retries_conflicts() {
    let (cluster, client) = fake_cluster().await;
    let scaler = KubernetesScaler::new(client, "ml", "iris-v2", false);
    let seen = scaler.observe().await.unwrap();
    assert_eq!((seen.replicas, seen.ready, seen.paused), (2, 2, false));
    assert!(scaler.scale_to(5).await.unwrap());
    assert_eq!(cluster.lock().unwrap().deployments["iris-v2"].replicas, 5);
    assert!(
        !scaler.scale_to(5).await.unwrap(),
        "already there: no write"
    );

    // Two conflicting writers: re-read and retry on fresh data.
    cluster.lock().unwrap().conflicts_to_inject = 2;
    assert!(scaler.scale_to(3).await.unwrap());
    assert_eq!(cluster.lock().unwrap().deployments["iris-v2"].replicas, 3);
    // A cluster that never stops changing: give up with a clear error.
    cluster.lock().unwrap().conflicts_to_inject = 10;
    let err = scaler.scale_to(7).await.unwrap_err();
    assert!(matches!(err, KubernetesError::Conflicts { .. }), "{err}");
    assert_eq!(cluster.lock().unwrap().writes, [5, 3]);
}

#[tokio::test]
async fn missing_forbidden_paused_and_dry_run_deployments() {
    let (cluster, client) = fake_cluster().await;
    let missing = KubernetesScaler::new(client.clone(), "ml", "nope", false);
    let err = missing.scale_to(3).await.unwrap_err();
    assert!(matches!(err, KubernetesError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("ml/nope"), "{err}");

    let forbidden = KubernetesScaler::new(client.clone(), "ml", "secret", false);
    let err = forbidden.observe().await.unwrap_err();
    assert!(matches!(err, KubernetesError::Forbidden { .. }), "{err}");
    assert!(err.to_string().contains("deployments/scale"), "{err}");

    let paused = KubernetesScaler::new(client.clone(), "ml", "paused", false);
    assert!(paused.observe().await.unwrap().paused);
    assert!(!paused.scale_to(9).await.unwrap());
    let dry = KubernetesScaler::new(client, "ml", "iris-v2", true);
    assert!(!dry.scale_to(9).await.unwrap());
    let cluster = cluster.lock().unwrap();
    assert_eq!(cluster.deployments["paused"].replicas, 2);
    assert_eq!(cluster.deployments["iris-v2"].replicas, 2);
    assert!(cluster.writes.is_empty());
}

#[tokio::test]
async fn the_scrape_signal_finds_the_ready_pods_by_the_deployments_selector() {
    let (_cluster, client) = fake_cluster().await;
    let scaler = KubernetesScaler::new(client, "ml", "iris-v2", false);
    let urls = scaler.ready_pod_urls(8080).await.unwrap();
    assert_eq!(urls, ["http://10.0.0.1:8080", "http://10.0.0.2:8080"]);
}
