//! Opening the stores: a database that cannot be opened is said without its password, and
//! registry sources named `models:/m-…` resolve to the tracking server's logged models.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

use std::error::Error;

use weir_mlflow_server::{open, Config, ServerError};

fn config(tag: &str, database: Option<String>) -> (Config, std::path::PathBuf) {
    let folder = std::env::temp_dir().join(format!("weir-open-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(&folder).unwrap();
    let database =
        database.unwrap_or_else(|| format!("sqlite://{}", folder.join("r.db").display()));
    let config = Config {
        database,
        pool_size: weir_mlflow_server::DEFAULT_POOL_SIZE,
        artifacts: folder.join("artifacts"),
        max_artifact_bytes: 1 << 20,
        protected_aliases: vec!["production".into()],
    };
    (config, folder)
}

/// The error and its causes, as `weir registry` prints them.
fn chain(err: &dyn Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        text.push_str(&format!(": {inner}"));
        cause = inner.source();
    }
    text
}

#[tokio::test]
async fn a_database_that_cannot_open_is_named_without_its_password() {
    let (config, folder) = config(
        "bad-url",
        Some("mysql://ops:hunter2@db.example/weir".into()),
    );
    let err = open(config).await.err().unwrap();
    let _ = std::fs::remove_dir_all(&folder);
    assert!(matches!(err, ServerError::Database(_)), "{err:?}");
    let said = chain(&err);
    assert!(
        said.starts_with("cannot open the registry database: unsupported database URL"),
        "{said}"
    );
    assert!(!said.contains("hunter2"), "{said}");
}

#[tokio::test]
async fn an_unusable_artifact_folder_is_refused() {
    let (mut config, folder) = config("bad-artifacts", None);
    let blocker = folder.join("a-file");
    std::fs::write(&blocker, "not a folder").unwrap();
    config.artifacts = blocker.join("artifacts");
    let err = open(config).await.err().unwrap();
    let _ = std::fs::remove_dir_all(&folder);
    assert!(matches!(err, ServerError::Artifacts(_)), "{err:?}");
}

#[tokio::test]
async fn logged_model_sources_resolve_to_their_artifact_location() {
    let (config, folder) = config("sources", None);
    let stores = open(config).await.unwrap();
    let tracking = &stores.tracking.store;
    let experiment = tracking.create_experiment("e", None, &[]).unwrap();
    let model = tracking
        .create_logged_model(&experiment, "model", "", "weir-native", &[], &[])
        .unwrap();
    let resolve = stores.registry.sources.clone().unwrap();
    let found = resolve(&format!("models:/{}", model.info.model_id)).unwrap();
    assert_eq!(found, Some(model.info.artifact_uri.clone()));
    assert!(found.unwrap().ends_with("/artifacts"));
    // Other sources are the registry's own to read; an unknown logged model is not found.
    assert_eq!(resolve("models:/iris/1").unwrap(), None);
    assert_eq!(resolve("mlflow-artifacts:/models/iris").unwrap(), None);
    let missing = resolve("models:/m-0000").unwrap_err();
    assert!(
        matches!(missing, weir_registry::StoreError::NotFound(_)),
        "{missing:?}"
    );
    let _ = std::fs::remove_dir_all(&folder);
}
