//! `weir models` against a real `weir registry`: register, approve, alias, list, show, audit.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod common;

use std::process::{Command, Output};

use common::Registry;

/// `weir` with none of the registry address variables of the environment running the tests.
fn weir() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    for variable in [
        "WEIR_REGISTRY",
        "WEIR_TRACKING_URI",
        "MLFLOW_TRACKING_URI",
        "WEIR_USER",
        "WEIR_TOKEN",
        "WEIR_TOKEN_FILE",
    ] {
        command.env_remove(variable);
    }
    command
}

fn models(registry: &Registry, user: &str, args: &[&str]) -> Output {
    weir()
        .args(["models", "--registry", &registry.url, "--as", user])
        .args(args)
        .output()
        .unwrap()
}

/// The command between backticks in a printed hint, as words.
fn hinted_command(text: &str) -> Vec<String> {
    let command = text
        .split('`')
        .nth(1)
        .unwrap_or_else(|| panic!("no command in {text}"));
    command.split_whitespace().map(str::to_owned).collect()
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

    let registered = models(
        &registry,
        "alice",
        &["register", "iris", version_folder.to_str().unwrap()],
    );
    assert!(
        String::from_utf8_lossy(&registered.stderr).is_empty(),
        "an ONNX version registers without a warning"
    );
    let registered = common::stdout(&registered);
    assert!(
        registered.starts_with("registered iris version 1"),
        "{registered}"
    );
    assert_eq!(
        hinted_command(&registered).join(" "),
        format!("weir models approve iris 1 --registry {}", registry.url)
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
    assert!(audit.starts_with("ID  TIME"), "{audit}");
    let times: Vec<&str> = audit
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    for time in &times {
        // RFC 3339, UTC, to the second: 2026-11-29T23:05:09Z.
        let shape: String = time
            .chars()
            .map(|c| if c.is_ascii_digit() { '9' } else { c })
            .collect();
        assert_eq!(shape, "9999-99-99T99:99:99Z", "{audit}");
    }
    let actions: Vec<&str> = audit
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(3).unwrap())
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

    let unreachable = weir()
        .args(["models", "--registry", "http://127.0.0.1:9", "list"])
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach the registry"));
}

/// An `mlflow.sklearn.log_model` folder registers (as MLflow's registry would) with a warning
/// on stderr, shows as not servable, and cannot be approved or made `champion`; the refusal
/// names what would make it servable.
#[test]
fn a_version_weir_cannot_serve_warns_and_is_refused() {
    let registry = Registry::start("models-cli-sklearn");
    let folder = registry.folder.join("sklearn");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("MLmodel"), "flavors:\n  sklearn: {}\n").unwrap();
    std::fs::write(folder.join("model.pkl"), b"\x80\x04pickle").unwrap();

    let registered = models(
        &registry,
        "alice",
        &["register", "fraud", folder.to_str().unwrap()],
    );
    let warning = String::from_utf8_lossy(&registered.stderr).into_owned();
    assert!(
        common::stdout(&registered).starts_with("registered fraud version 1"),
        "registration itself succeeds"
    );
    assert!(
        warning.contains("warning: version 1 of 'fraud' cannot be approved")
            && warning.contains("model.pkl")
            && warning.contains("skl2onnx"),
        "{warning}"
    );
    let shown = common::stdout(&models(&registry, "carol", &["show", "fraud"]));
    assert!(
        shown.lines().next().unwrap().contains("SERVABLE"),
        "{shown}"
    );
    assert!(
        shown
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .any(|w| w == "no"),
        "{shown}"
    );

    let approve = models(&registry, "bob", &["approve", "fraud", "1"]);
    assert_eq!(approve.status.code(), Some(1));
    let error = String::from_utf8_lossy(&approve.stderr);
    assert!(
        error.contains("INVALID_PARAMETER_VALUE: cannot approve version 1 of 'fraud'")
            && error.contains("skl2onnx"),
        "{error}"
    );
    let alias = models(&registry, "bob", &["alias", "fraud", "champion", "1"]);
    assert_eq!(alias.status.code(), Some(1));
    let error = String::from_utf8_lossy(&alias.stderr);
    assert!(
        error.contains("cannot point the protected alias 'champion' at version 1 of 'fraud'"),
        "{error}"
    );
}

/// One registry address for every client command: `--registry` (alias `--tracking-uri`), then
/// WEIR_REGISTRY, then MLFLOW_TRACKING_URI; and the printed hint runs as printed.
#[test]
fn the_registry_address_comes_from_the_flag_then_the_environment() {
    let registry = Registry::start("models-cli-address");
    let dead = "http://127.0.0.1:9";
    let list = |command: &mut Command| command.args(["models", "list"]).output().unwrap();

    let from_mlflow = list(weir().env("MLFLOW_TRACKING_URI", &registry.url));
    assert!(from_mlflow.status.success(), "MLFLOW_TRACKING_URI is read");
    let weir_first = list(
        weir()
            .env("WEIR_REGISTRY", dead)
            .env("MLFLOW_TRACKING_URI", &registry.url),
    );
    assert_eq!(weir_first.status.code(), Some(1), "WEIR_REGISTRY wins");
    assert!(
        String::from_utf8_lossy(&weir_first.stderr).contains(dead),
        "{}",
        String::from_utf8_lossy(&weir_first.stderr)
    );
    let flag_first = weir()
        .env("WEIR_REGISTRY", dead)
        .args(["models", "--registry", &registry.url, "list"])
        .output()
        .unwrap();
    assert!(flag_first.status.success(), "the flag wins");
    let alias = weir()
        .args(["runs", "--tracking-uri", &registry.url, "list"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&alias.stderr).contains("cannot find experiment 'Default'")
            || alias.status.success(),
        "--tracking-uri is the same option: {}",
        String::from_utf8_lossy(&alias.stderr)
    );
    let nowhere = list(&mut weir());
    assert!(
        String::from_utf8_lossy(&nowhere.stderr).contains("127.0.0.1:5000")
            || nowhere.status.success(),
        "the default is the local registry"
    );

    // Registered through the environment only: the hint still names the registry, and works
    // as printed for the approver.
    let folder = registry.folder.join("v1");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(
        common::test_models().join("iris/1/model.onnx"),
        folder.join("model.onnx"),
    )
    .unwrap();
    let registered = common::stdout(
        &weir()
            .env("WEIR_REGISTRY", &registry.url)
            .args(["models", "--as", "alice", "register", "iris"])
            .arg(&folder)
            .output()
            .unwrap(),
    );
    let hint = hinted_command(&registered);
    assert_eq!(hint[..2], ["weir", "models"], "{registered}");
    let approved = weir()
        .args(&hint[1..])
        .env("WEIR_USER", "bob")
        .output()
        .unwrap();
    assert!(
        common::stdout(&approved).contains("approved (1 of 1 approvals, by bob)"),
        "{registered}"
    );
}
