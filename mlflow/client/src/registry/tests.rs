use serde_json::json;

use super::*;
use crate::loopback::{closed_port_url, refusal, Loopback};

/// A registry where `models/create` answers as told and everything else succeeds, answering a
/// version create with the version it made.
async fn registry(model_exists: bool) -> Loopback {
    Loopback::start(move |seen| match seen.uri.as_str() {
        "/api/2.0/mlflow/registered-models/create" if model_exists => (
            400,
            refusal("RESOURCE_ALREADY_EXISTS", "Registered Model 'iris' already exists."),
        ),
        "/api/2.0/mlflow/model-versions/create" => {
            let asked = seen.json();
            (
                200,
                json!({"model_version": {"name": asked["name"], "version": "1", "source": asked["source"]}}),
            )
        }
        _ => (200, json!({})),
    })
    .await
}

fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-client-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn register_uploads_every_file_then_creates_the_version_as_the_user() {
    let server = registry(true).await;
    let folder = scratch("register");
    std::fs::create_dir_all(folder.join("sub")).unwrap();
    std::fs::write(folder.join("model.onnx"), "weights").unwrap();
    std::fs::write(folder.join("sub/vocab.txt"), "words").unwrap();
    let client = RegistryClient::new(&format!("{}/", server.url), Identity::User("alice".into()));
    let version = client.register("iris", &folder, "first").await.unwrap();
    let _ = std::fs::remove_dir_all(&folder);

    let seen = server.seen();
    let calls: Vec<(&str, &str)> = seen
        .iter()
        .map(|s| (s.method.as_str(), s.uri.as_str()))
        .collect();
    assert_eq!(calls.len(), 4, "{calls:?}");
    let source = version["source"].as_str().unwrap();
    let folder_on_server = source.strip_prefix("mlflow-artifacts:/").unwrap();
    assert!(folder_on_server.starts_with("models/iris/"), "{source}");
    let upload =
        |file: &str| format!("/api/2.0/mlflow-artifacts/artifacts/{folder_on_server}/{file}");
    assert_eq!(calls[0], ("PUT", upload("model.onnx").as_str()));
    assert_eq!(calls[1], ("PUT", upload("sub/vocab.txt").as_str()));
    assert_eq!(&seen[0].body[..], b"weights");
    assert_eq!(
        calls[2],
        ("POST", "/api/2.0/mlflow/registered-models/create")
    );
    assert_eq!(calls[3], ("POST", "/api/2.0/mlflow/model-versions/create"));
    assert_eq!(
        seen[3].json(),
        json!({"name": "iris", "source": source, "run_id": null, "model_id": null, "description": "first"})
    );
    // The caller is named on every call, JSON calls say so, and nothing else is sent as it.
    for call in &seen {
        assert_eq!(call.header("x-weir-user"), Some("alice"));
        assert_eq!(call.header("authorization"), None);
    }
    assert_eq!(seen[3].header("content-type"), Some("application/json"));
    assert_eq!(version["version"], "1");
}

#[tokio::test]
async fn a_token_is_sent_as_bearer_and_links_reach_the_version() {
    let server = registry(false).await;
    let client = RegistryClient::new(&server.url, Identity::Token("s3cret".into()));
    let link = Link {
        run_id: Some("run-1"),
        model_id: Some("m-1"),
    };
    client
        .create_version("iris", "models:/m-1", link, "")
        .await
        .unwrap();
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    for call in &seen {
        assert_eq!(call.header("authorization"), Some("Bearer s3cret"));
        assert_eq!(call.header("x-weir-user"), None);
    }
    assert_eq!(seen[1].json()["run_id"], "run-1");
    assert_eq!(seen[1].json()["model_id"], "m-1");
}

#[tokio::test]
async fn refusals_carry_the_registrys_code_and_message() {
    let server = Loopback::start(|seen| match seen.uri.as_str() {
        "/api/2.0/mlflow/registered-models/create" => (
            400,
            refusal("INVALID_PARAMETER_VALUE", "Invalid model name 'bad/name'."),
        ),
        _ => (404, json!("not json either")),
    })
    .await;
    let client = RegistryClient::new(&server.url, Identity::User("bob".into()));
    let refused = client.ensure_model("bad/name").await.unwrap_err();
    assert_eq!(
        refused.to_string(),
        "INVALID_PARAMETER_VALUE: Invalid model name 'bad/name'."
    );
    // A body without MLflow's fields: the status stands in for the code.
    let missing = client.approval("iris", "1").await.unwrap_err();
    assert!(missing.is_missing_endpoint(), "{missing}");
    assert_eq!(
        server.seen()[1].uri,
        "/api/2.0/weir/approvals/get?name=iris&version=1"
    );
    // The approval query is encoded.
    client.approval("my model", "1").await.unwrap_err();
    assert_eq!(
        server.seen()[2].uri,
        "/api/2.0/weir/approvals/get?name=my%20model&version=1"
    );
}

#[tokio::test]
async fn an_empty_or_missing_folder_is_refused_before_any_call() {
    let server = registry(false).await;
    let client = RegistryClient::new(&server.url, Identity::User("alice".into()));
    let empty = scratch("empty");
    let refused = client.register("iris", &empty, "").await.unwrap_err();
    assert_eq!(
        refused.to_string(),
        format!("{} holds no files to register", empty.display())
    );
    let missing = empty.join("nope");
    let refused = client.register("iris", &missing, "").await.unwrap_err();
    assert!(
        refused
            .to_string()
            .starts_with(&format!("cannot read {}: ", missing.display())),
        "{refused}"
    );
    let _ = std::fs::remove_dir_all(&empty);
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn an_unreachable_registry_is_named_with_its_address() {
    let url = closed_port_url();
    let client = RegistryClient::new(&url, Identity::User("alice".into()));
    let err = client
        .set_alias("iris", "production", "1")
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "cannot reach the registry at {url}/api/2.0/mlflow/registered-models/alias: "
        )),
        "{err}"
    );
}
