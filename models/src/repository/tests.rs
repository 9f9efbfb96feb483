use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn temp_repository(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-repo-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn versions_are_positive_integers_and_the_policy_selects_among_them() {
    let root = temp_repository("versions");
    for version in ["1", "2", "10", "0", "latest"] {
        std::fs::create_dir_all(root.join("m").join(version)).unwrap();
    }
    let source = read_model(&root, "m").unwrap();
    assert_eq!(
        source.versions.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
        [1, 2, 10]
    );

    std::fs::write(
        root.join("m/config.toml"),
        "version_policy = { latest = 2 }",
    )
    .unwrap();
    let source = read_model(&root, "m").unwrap();
    assert_eq!(
        source.versions.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
        [2, 10]
    );

    std::fs::write(
        root.join("m/config.toml"),
        "version_policy = { specific = [1, 7] }",
    )
    .unwrap();
    let source = read_model(&root, "m").unwrap();
    assert_eq!(
        source.versions.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
        [1]
    );

    std::fs::write(
        root.join("m/config.toml"),
        "version_policy = { specific = [7] }",
    )
    .unwrap();
    assert!(matches!(
        read_model(&root, "m"),
        Err(RepositoryError::NoSelectedVersions { .. })
    ));
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn config_errors_stay_with_their_model() {
    let root = temp_repository("config");
    std::fs::create_dir_all(root.join("good/1")).unwrap();
    std::fs::create_dir_all(root.join("typo/1")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::write(root.join("typo/config.toml"), "max_batch_sise = 8").unwrap();
    let scanned = scan(&root).unwrap();
    let names: Vec<_> = scanned.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["empty", "good", "typo"]);
    assert!(matches!(
        scanned[0].1,
        Err(RepositoryError::NoVersions { .. })
    ));
    assert!(scanned[1].1.is_ok());
    let typo = scanned[2].1.as_ref().unwrap_err().to_string();
    assert!(typo.contains("max_batch_sise"), "{typo}");
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn model_folders_linked_in_from_elsewhere_are_found() {
    let root = temp_repository("linked");
    let elsewhere = temp_repository("linked-target");
    std::fs::create_dir_all(elsewhere.join("1")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, root.join("embedder")).unwrap();
    let scanned = scan(&root).unwrap();
    assert_eq!(scanned.len(), 1);
    assert_eq!(scanned[0].0, "embedder");
    assert!(scanned[0].1.is_ok());
    std::fs::remove_dir_all(root).unwrap();
    std::fs::remove_dir_all(elsewhere).unwrap();
}

#[test]
fn a_missing_repository_is_an_error_naming_it() {
    let err = scan(Path::new("/nonexistent/weir-models")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/weir-models"));
}

fn config_of(text: &str) -> Result<ModelConfig, String> {
    let root = temp_repository(&format!("durations-{:x}", {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut hasher);
        hasher.finish()
    }));
    std::fs::create_dir_all(root.join("m/1")).unwrap();
    std::fs::write(root.join("m/config.toml"), text).unwrap();
    let read = read_model(&root, "m")
        .map(|source| source.config)
        .map_err(|e| e.to_string());
    std::fs::remove_dir_all(root).unwrap();
    read
}

/// docs/serving.md's `config.toml` example once made its model UNAVAILABLE
/// (`max_batch_size = 0` with `[dynamic_batching]`): the example must be a config weir loads.
#[test]
fn the_documented_config_example_is_valid() {
    let doc = include_str!("../../../docs/serving.md");
    let start = doc
        .find("```toml\n")
        .expect("docs/serving.md has a config.toml example");
    let block = &doc[start + "```toml\n".len()..];
    let block = &block[..block.find("```").expect("the example is closed")];
    let text: String = block
        .lines()
        .map(|line| format!("{}\n", line.trim_start()))
        .collect();
    assert!(text.contains("[dynamic_batching]"), "{text}");
    let config = config_of(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(config.max_batch_size > 0 && config.dynamic_batching.is_some());
}

#[test]
fn durations_take_the_one_syntax_and_the_older_unit_keys() {
    let batching = |text: &str| {
        config_of(&format!("max_batch_size = 8\n[dynamic_batching]\n{text}"))
            .map(|c| c.dynamic_batching.unwrap().max_queue_delay)
    };
    assert_eq!(
        batching("max_queue_delay = \"2ms\""),
        Ok(Duration::from_millis(2))
    );
    assert_eq!(batching("max_queue_delay = 1"), Ok(Duration::from_secs(1)));
    assert_eq!(
        batching("max_queue_delay_us = 300"),
        Ok(Duration::from_micros(300))
    );
    assert_eq!(batching(""), Ok(Duration::ZERO));
    let both = batching("max_queue_delay = \"2ms\"\nmax_queue_delay_us = 300").unwrap_err();
    assert!(
        both.contains("max_queue_delay") && both.contains("max_queue_delay_us"),
        "{both}"
    );
    let bad = batching("max_queue_delay = \"soon\"").unwrap_err();
    assert!(bad.contains("'soon' is not a duration"), "{bad}");

    let queue = |text: &str| config_of(&format!("[queue]\n{text}")).map(|c| c.queue);
    assert_eq!(
        queue("timeout = \"500ms\"\nmax_size = 4"),
        Ok(QueuePolicy {
            max_size: 4,
            timeout: Duration::from_millis(500)
        })
    );
    assert_eq!(
        queue("timeout_ms = 30").map(|q| q.timeout),
        Ok(Duration::from_millis(30))
    );
    assert_eq!(queue(""), Ok(QueuePolicy::default()));
    let both = queue("timeout = \"1s\"\ntimeout_ms = 30").unwrap_err();
    assert!(both.contains("timeout_ms"), "{both}");
    // Typos are still caught inside the tables.
    let typo = queue("timeuot = 1").unwrap_err();
    assert!(typo.contains("timeuot"), "{typo}");
    let typo = batching("max_queue_dealy = 1").unwrap_err();
    assert!(typo.contains("max_queue_dealy"), "{typo}");
}

#[test]
fn bad_config_values_are_refused() {
    let root = temp_repository("values");
    std::fs::create_dir_all(root.join("m/1")).unwrap();
    std::fs::write(root.join("m/config.toml"), "instance_count = 0").unwrap();
    assert!(read_model(&root, "m")
        .unwrap_err()
        .to_string()
        .contains("instance_count"));
    std::fs::write(
        root.join("m/config.toml"),
        "platform = \"tensorflow_savedmodel\"",
    )
    .unwrap();
    assert!(matches!(
        read_model(&root, "m"),
        Err(RepositoryError::UnknownPlatform { .. })
    ));
    // The refusal says why and what to write instead, not just which key.
    std::fs::write(
        root.join("m/config.toml"),
        "max_batch_size = 0\n[dynamic_batching]\n",
    )
    .unwrap();
    let refused = read_model(&root, "m").unwrap_err().to_string();
    assert!(
        refused.contains("m/config.toml")
            && refused.contains("needs max_batch_size > 0")
            && refused.contains("max_batch_size = 32"),
        "{refused}"
    );
    let missing = load_version(&root.join("m/1"), &ModelConfig::default())
        .err()
        .unwrap();
    assert!(
        missing.to_string().contains("expected model.onnx"),
        "{missing}"
    );
    std::fs::remove_dir_all(root).unwrap();
}

/// A build without a backend refuses the versions that need it by naming the feature, not as
/// if the folder held no model.
#[cfg(not(all(feature = "onnx", feature = "candle")))]
#[test]
fn a_version_whose_backend_is_left_out_names_the_feature() {
    let root = temp_repository("left-out");
    let onnx = root.join("onnx/1");
    std::fs::create_dir_all(&onnx).unwrap();
    std::fs::write(onnx.join("model.onnx"), b"not read").unwrap();
    let native = root.join("native/1");
    std::fs::create_dir_all(&native).unwrap();
    std::fs::write(native.join("model.safetensors"), b"not read").unwrap();
    std::fs::write(native.join("weir.toml"), "layers = [4, 3]").unwrap();
    let mut refused = Vec::new();
    if !cfg!(feature = "onnx") {
        refused.push((onnx, "cargo feature `onnx`"));
    }
    if !cfg!(feature = "candle") {
        refused.push((native, "cargo feature `candle`"));
    }
    assert!(!refused.is_empty());
    for (dir, feature) in refused {
        let Err(crate::BackendError::RuntimeUnavailable(message)) =
            load_version(&dir, &ModelConfig::default())
        else {
            panic!(
                "{} should be refused for its missing backend",
                dir.display()
            );
        };
        assert!(message.contains(feature), "{message}");
        assert!(message.contains(&dir.display().to_string()), "{message}");
    }
    std::fs::remove_dir_all(root).unwrap();
}
