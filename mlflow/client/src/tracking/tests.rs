use serde_json::json;

use super::*;
use crate::loopback::{closed_port_url, refusal, Loopback};

fn metric(step: i64) -> Metric {
    Metric {
        key: "loss".into(),
        value: 1.0 / (step + 1) as f64,
        timestamp: 7,
        step,
    }
}

#[tokio::test]
async fn batches_are_split_within_mlflows_limits_in_order() {
    let server = Loopback::start(|_| (200, json!({}))).await;
    let client = TrackingClient::new(&server.url, Some("alice".into()));
    let metrics: Vec<Metric> = (0..1500).map(metric).collect();
    let params: Vec<KeyValue> = (0..150)
        .map(|i| KeyValue::new(format!("p{i}"), "v"))
        .collect();
    let tags = [KeyValue::new("team", "ml")];
    client
        .log_batch("r1", &metrics, &params, &tags)
        .await
        .unwrap();
    let seen = server.seen();
    let sizes: Vec<(usize, usize, usize)> = seen
        .iter()
        .map(|s| {
            assert_eq!(
                (s.method.as_str(), s.uri.as_str()),
                ("POST", "/api/2.0/mlflow/runs/log-batch")
            );
            let body = s.json();
            assert_eq!(body["run_id"], "r1");
            let count = |field: &str| body[field].as_array().map_or(0, Vec::len);
            (count("metrics"), count("params"), count("tags"))
        })
        .collect();
    assert_eq!(
        sizes,
        [
            (0, 100, 0),
            (0, 50, 0),
            (0, 0, 1),
            (1000, 0, 0),
            (500, 0, 0)
        ]
    );
    // Every metric arrives once, in order, as written.
    let sent: Vec<Metric> = seen[3..]
        .iter()
        .flat_map(|s| serde_json::from_value::<Vec<Metric>>(s.json()["metrics"].clone()).unwrap())
        .collect();
    assert_eq!(sent, metrics);
    // The user name goes as HTTP Basic with an empty password, as the mlflow client sends it.
    assert_eq!(seen[0].header("authorization"), Some("Basic YWxpY2U6"));
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn a_missing_experiment_is_created_and_an_existing_one_found() {
    let server = Loopback::start(|seen| {
        if seen.uri.contains("get-by-name") && seen.uri.ends_with("=new%20one") {
            (
                404,
                refusal("RESOURCE_DOES_NOT_EXIST", "no such experiment"),
            )
        } else if seen.uri.contains("get-by-name") {
            (200, json!({"experiment": {"experiment_id": "3"}}))
        } else {
            (200, json!({"experiment_id": 12}))
        }
    })
    .await;
    let client = TrackingClient::new(&server.url, None).with_token("t0ken".into());
    assert_eq!(client.experiment_id("old").await.unwrap(), "3");
    assert_eq!(client.experiment_id("new one").await.unwrap(), "12");
    let refused = client.find_experiment("new one").await.unwrap_err();
    assert!(refused.is_not_found(), "{refused}");
    let seen = server.seen();
    let calls: Vec<&str> = seen.iter().map(|s| s.uri.as_str()).collect();
    assert_eq!(
        calls,
        [
            "/api/2.0/mlflow/experiments/get-by-name?experiment_name=old",
            "/api/2.0/mlflow/experiments/get-by-name?experiment_name=new%20one",
            "/api/2.0/mlflow/experiments/create",
            "/api/2.0/mlflow/experiments/get-by-name?experiment_name=new%20one",
        ]
    );
    assert_eq!(seen[2].json(), json!({"name": "new one"}));
    assert!(seen
        .iter()
        .all(|s| s.header("authorization") == Some("Bearer t0ken")));
}

#[tokio::test]
async fn created_runs_and_logged_models_are_read_into_their_types() {
    let server = Loopback::start(|seen| match seen.uri.as_str() {
        "/api/2.0/mlflow/runs/create" => (
            200,
            json!({"run": {"info": {"run_id": "r9", "experiment_id": "1", "status": "RUNNING",
                "artifact_uri": "mlflow-artifacts:/1/r9/artifacts", "start_time": 5},
                "data": {"tags": seen.json()["tags"]}}}),
        ),
        "/api/2.0/mlflow/logged-models" => (200, json!({"model": {"info": {"model_id": "m-1"}}})),
        _ => (200, json!({})),
    })
    .await;
    let client = TrackingClient::as_identity(&server.url, Some(Identity::User("bo".into())));
    let run = client
        .create_run("1", "first", &[KeyValue::new("team", "ml")])
        .await
        .unwrap();
    assert_eq!(run.info.run_id, "r9");
    assert_eq!(run.info.artifact_uri, "mlflow-artifacts:/1/r9/artifacts");
    assert_eq!(run.data.tags, [KeyValue::new("team", "ml")]);
    let asked = server.seen()[0].json();
    assert_eq!(
        (asked["user_id"].as_str(), asked["run_name"].as_str()),
        (Some("bo"), Some("first"))
    );
    // A logged model without its location is not what MLflow answers: said, not defaulted.
    let err = client
        .create_logged_model("1", "model", "r9", "weir-native")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("the tracking server's answer to logged-models is not MLflow's: "),
        "{err}"
    );
}

#[tokio::test]
async fn uploads_go_only_to_locations_the_server_serves() {
    let server = Loopback::start(|_| (200, json!({}))).await;
    let client = TrackingClient::new(&server.url, None);
    let file = std::env::temp_dir().join(format!("weir-client-upload-{}", std::process::id()));
    std::fs::write(&file, "weights").unwrap();
    let refused = client
        .upload_artifact("s3://bucket/1/r/artifacts", &file, "model.safetensors")
        .await
        .unwrap_err();
    assert_eq!(
        refused.to_string(),
        "artifact location s3://bucket/1/r/artifacts is not served by the tracking server (mlflow-artifacts:/…)"
    );
    client
        .upload_artifact(
            "mlflow-artifacts:/1/r/artifacts/model/",
            &file,
            "model.safetensors",
        )
        .await
        .unwrap();
    let _ = std::fs::remove_file(&file);
    let missing = client
        .upload_artifact("mlflow-artifacts:/1", &file, "x")
        .await
        .unwrap_err();
    assert!(missing.to_string().starts_with("cannot read "), "{missing}");
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "only the served location was called");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].uri.as_str()),
        (
            "PUT",
            "/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/model/model.safetensors"
        )
    );
    assert_eq!(&seen[0].body[..], b"weights");
    assert_eq!(
        seen[0].header("authorization"),
        None,
        "anonymous sends no credential"
    );
}

#[tokio::test]
async fn searches_and_reads_return_the_servers_json_and_refusals_their_codes() {
    let server = Loopback::start(|seen| match seen.uri.as_str() {
        "/api/2.0/mlflow/runs/search" => (
            200,
            json!({"runs": [{"info": {"run_id": "a"}, "inputs": {}}]}),
        ),
        "/api/2.0/mlflow/runs/get?run_id=a" => (
            200,
            json!({"run": {"info": {"run_id": "a"}, "outputs": {"x": 1}}}),
        ),
        "/api/2.0/mlflow/logged-models" => (404, json!(null)),
        _ => (400, refusal("INVALID_PARAMETER_VALUE", "bad filter")),
    })
    .await;
    let client = TrackingClient::new(&server.url, None);
    let runs = client
        .search_runs(&["1".into()], "", &["metrics.acc DESC".into()], 5)
        .await
        .unwrap();
    assert_eq!(runs, [json!({"info": {"run_id": "a"}, "inputs": {}})]);
    assert_eq!(
        server.seen()[0].json(),
        json!({"experiment_ids": ["1"], "filter": "", "order_by": ["metrics.acc DESC"], "max_results": 5})
    );
    let run = client.get_run("a").await.unwrap();
    assert_eq!(
        run["outputs"]["x"], 1,
        "fields the client does not know are kept"
    );
    let refused = client.end_run("a", "FINISHED").await.unwrap_err();
    assert_eq!(refused.to_string(), "INVALID_PARAMETER_VALUE: bad filter");
    assert!(!refused.is_not_found() && !refused.is_missing_endpoint());
    let missing = client
        .create_logged_model("1", "m", "a", "t")
        .await
        .unwrap_err();
    assert!(missing.is_missing_endpoint(), "{missing}");
}

#[tokio::test]
async fn an_unreachable_server_is_named_as_the_tracking_server() {
    let url = closed_port_url();
    let client = TrackingClient::new(&format!("{url}/"), None);
    assert_eq!(client.base(), url);
    let err = client.get_run("a").await.unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "cannot reach the tracking server at {url}/api/2.0/mlflow/runs/get?run_id=a: "
        )),
        "{err}"
    );
}
