use super::files::{fingerprint, is_plain_name};
use super::*;

#[test]
fn model_names_cannot_leave_the_repository() {
    for bad in ["", ".", "..", "../etc", "a/b", ".hidden", "a\\b"] {
        assert!(!is_plain_name(bad), "{bad:?}");
    }
    assert!(is_plain_name("iris-v2_final"));
}

#[test]
fn the_fingerprint_changes_with_files_and_config() {
    let dir = std::env::temp_dir().join(format!("weir-fingerprint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.onnx"), b"one").unwrap();
    let config = ModelConfig::default();
    let first = fingerprint(&dir, &config);
    assert_eq!(first, fingerprint(&dir, &config));
    std::fs::write(dir.join("model.onnx"), b"three").unwrap();
    let changed = fingerprint(&dir, &config);
    assert_ne!(first, changed);
    let other = ModelConfig {
        instance_count: 2,
        ..ModelConfig::default()
    };
    assert_ne!(changed, fingerprint(&dir, &other));
    std::fs::remove_dir_all(dir).unwrap();
}
