//! Search filters as any caller can send them, through the registry's router: multi-byte and
//! malformed text is answered 400 INVALID_PARAMETER_VALUE (it used to panic the handler and
//! drop the connection), and operators or quotes inside quoted values are values (the old
//! parser split `name LIKE 'a=b%'` at its `=`).

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

use std::path::PathBuf;
use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::Value;
use weir_mlflow_wire::filter::conformance;
use weir_registry::store::{NewVersion, Tag};
use weir_registry::Registry;

mod support;

const SEARCHES: [(&str, &str); 2] = [
    (
        "/api/2.0/mlflow/registered-models/search",
        "registered_models",
    ),
    ("/api/2.0/mlflow/model-versions/search", "model_versions"),
];

struct Harness {
    registry: Arc<Registry>,
    root: PathBuf,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Harness {
    /// A registry holding model `a=b é` (tag `note` = `x != y`, one version from run `r=1`
    /// with the same tag) and model `plain`.
    fn new(tag: &str) -> Harness {
        let (registry, root) = support::fresh("filters", tag);
        let store = &registry.store;
        let note = Tag {
            key: "note".into(),
            value: "x != y".into(),
        };
        store
            .create_registered_model("alice", "a=b é", "", std::slice::from_ref(&note))
            .unwrap();
        store
            .create_model_version(
                "alice",
                "a=b é",
                &NewVersion {
                    source: "mlflow-artifacts:/a".into(),
                    run_id: "r=1".into(),
                    tags: vec![note],
                    ..NewVersion::default()
                },
            )
            .unwrap();
        store
            .create_registered_model("alice", "plain", "", &[])
            .unwrap();
        Harness { registry, root }
    }

    async fn search(&self, path: &str, filter: &str) -> (StatusCode, Value) {
        let uri = format!("{path}?filter={}", encode(filter));
        let (status, bytes) = support::call(
            &self.registry,
            support::request(None, "GET", &uri, Vec::new()),
        )
        .await;
        (status, support::json(&bytes))
    }

    /// The names found by a search that must succeed.
    async fn names(&self, path: &str, key: &str, filter: &str) -> Vec<String> {
        let (status, answer) = self.search(path, filter).await;
        assert_eq!(status, StatusCode::OK, "{path} {filter:?}: {answer}");
        answer[key]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|i| i["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Percent-encodes every byte but the unreserved ASCII ones.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn multi_byte_and_malformed_filters_are_refused_with_400() {
    let h = Harness::new("bad");
    let long = format!("name = '{}'", "x".repeat(10 * 1024));
    for (path, _) in SEARCHES {
        let registry_only = ["name IN ('a')", "creation_timestamp > 1", "\u{FFFD}", &long];
        for &bad in conformance::MALFORMED.iter().chain(&registry_only) {
            let (status, answer) = h.search(path, bad).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {bad:?}: {answer}");
            if let Some(problem) = conformance::refusal_problem(bad, &answer) {
                panic!("{path}: {problem}");
            }
        }
        // Bytes that are not UTF-8 at all read as replacement characters: refused the same.
        let uri = format!("{path}?filter=%FF%FE");
        let request = support::request(None, "GET", &uri, Vec::new());
        let (status, _) = support::call(&h.registry, request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
    }
}

#[tokio::test]
async fn the_exact_position_and_expectation_come_back() {
    let h = Harness::new("position");
    let (_, answer) = h.search(SEARCHES[0].0, "params.x IN (é)").await;
    assert_eq!(
        answer["message"],
        "invalid filter at position 14: expected a quoted string in the list, found 'é'"
    );
    let (_, answer) = h.search(SEARCHES[1].0, "name = 'a' AND version > 1").await;
    assert_eq!(
        answer["message"],
        "invalid filter at position 16: expected name, run_id or tags.<key> (what the registry searches), found 'version'"
    );
}

#[tokio::test]
async fn operators_quotes_and_backticks_inside_values_are_values() {
    let h = Harness::new("good");
    let found = ["a=b é".to_owned()];
    for (path, key) in SEARCHES {
        for filter in [
            "name LIKE 'a=b%'",
            "name = 'a=b é'",
            "name ILIKE 'A=B é'",
            "name = \"a=b é\"",
            "tags.note = 'x != y'",
            "tags.`note` = 'x != y'",
            "tag.\"note\" LIKE 'x !%'",
            "name != 'plain' AND tags.note = 'x != y'",
        ] {
            assert_eq!(h.names(path, key, filter).await, found, "{path} {filter}");
        }
        for filter in ["name = 'a=b'", "tags.note = 'x'", "tags.`x != y` = 'note'"] {
            assert!(
                h.names(path, key, filter).await.is_empty(),
                "{path} {filter}"
            );
        }
    }
    let versions = SEARCHES[1];
    assert_eq!(
        h.names(versions.0, versions.1, "run_id = 'r=1'").await,
        found
    );
    // `!=` on a tag keeps what lacks it, as MLflow does.
    assert_eq!(
        h.names(SEARCHES[0].0, SEARCHES[0].1, "tags.note != 'x != y'")
            .await,
        ["plain"]
    );
}
