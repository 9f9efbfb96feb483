//! `weir models` against a real `weir registry`: register, approve, alias, list, show, audit.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod common;

use std::process::{Command, Output};

use common::Registry;

fn models(registry: &Registry, user: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["models", "--registry", &registry.url, "--as", user])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn register_approve_alias_and_inspect() {
    let registry = Registry::start("models-cli");
    let version_folder = registry.folder.join("v1");
    std::fs::create_dir_all(version_folder.join("extra")).unwrap();
    let models_dir = common::test_models();
    std::fs::copy(
        models_dir.join("iris/1/model.onnx"),
        version_folder.join("model.onnx"),
    )
    .unwrap();
    std::fs::write(version_folder.join("extra/notes.txt"), "trained on iris").unwrap();

    let registered = common::stdout(&models(
        &registry,
        "alice",
        &["register", "iris", version_folder.to_str().unwrap()],
    ));
    assert!(
        registered.starts_with("registered iris version 1"),
        "{registered}"
    );

    let own = models(&registry, "alice", &["approve", "iris", "1"]);
    assert_eq!(own.status.code(), Some(1));
    let error = String::from_utf8_lossy(&own.stderr);
    assert!(
        error
            .contains("PERMISSION_DENIED: alice created version 1 of 'iris' and cannot approve it"),
        "{error}"
    );
    assert!(
        !error.contains("backtrace") && !error.contains("panicked"),
        "{error}"
    );

    let early = models(&registry, "alice", &["alias", "iris", "production", "1"]);
    assert_eq!(
        early.status.code(),
        Some(1),
        "an unapproved version cannot become production"
    );
    let approved = common::stdout(&models(
        &registry,
        "bob",
        &["approve", "iris", "1", "--comment", "lgtm"],
    ));
    assert!(
        approved.contains("approved (1 of 1 approvals, by bob)"),
        "{approved}"
    );
    assert_eq!(
        common::stdout(&models(
            &registry,
            "alice",
            &["alias", "iris", "production", "1"]
        ))
        .trim(),
        "iris@production -> version 1"
    );

    let listed = common::stdout(&models(&registry, "carol", &["list"]));
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("iris") && l.contains("production=1")),
        "{listed}"
    );
    let shown = common::stdout(&models(&registry, "carol", &["show", "iris"]));
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with('1') && l.contains("alice") && l.contains("approved")),
        "{shown}"
    );
    let json: serde_json::Value = serde_json::from_str(&common::stdout(&models(
        &registry,
        "carol",
        &["--output", "json", "show", "iris"],
    )))
    .unwrap();
    assert_eq!(
        json[0]["approval"]["approved_by"],
        serde_json::json!(["bob"])
    );
    let audit = common::stdout(&models(&registry, "carol", &["audit", "iris"]));
    let actions: Vec<&str> = audit
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "set_alias",
            "approve",
            "create_model_version",
            "create_registered_model"
        ]
    );

    let unreachable = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["models", "--registry", "http://127.0.0.1:9", "list"])
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach the registry"));
}
