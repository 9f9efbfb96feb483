//! The demo's models, built into the binary so `weir up --demo` needs neither a checkout nor
//! Python: two tiny iris classifiers (logistic regression on scikit-learn's iris data, C = 1.0
//! for version 1 and 0.05 for version 2, input `features` [N, 4], outputs `label` and
//! `probabilities`), written by `scripts/make_models.py` (its `iris` function) and checked in
//! under `src/demo/` (532 bytes each). Serving them still needs ONNX Runtime.

use std::path::Path;

use anyhow::Context;

const IRIS: [(&str, &[u8]); 2] = [
    ("1", include_bytes!("../demo/iris/1/model.onnx")),
    ("2", include_bytes!("../demo/iris/2/model.onnx")),
];

/// Writes the built-in versions as `DIR/iris/1/model.onnx` and `DIR/iris/2/model.onnx`, the
/// layout `--demo-models` takes.
pub fn write_models(dir: &Path) -> anyhow::Result<()> {
    for (version, bytes) in IRIS {
        let folder = dir.join("iris").join(version);
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
        let file = folder.join("model.onnx");
        std::fs::write(&file, bytes).with_context(|| format!("cannot write {}", file.display()))?;
    }
    Ok(())
}

/// Refuses a `--demo-models` folder without both versions, before anything starts.
pub fn check_folder(models: &Path) -> anyhow::Result<()> {
    for (version, _) in IRIS {
        let file = models.join("iris").join(version).join("model.onnx");
        anyhow::ensure!(
            file.is_file(),
            "--demo-models {}: {} is missing (the folder needs iris/1/model.onnx and iris/2/model.onnx; leave the flag out to use the models built into weir)",
            models.display(),
            file.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_models_are_written_in_the_demo_models_layout() {
        let dir = std::env::temp_dir().join(format!("weir-up-demo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let err = check_folder(&dir).unwrap_err().to_string();
        assert!(err.contains("iris/1/model.onnx is missing"), "{err}");
        write_models(&dir).unwrap();
        check_folder(&dir).unwrap();
        for (version, bytes) in IRIS {
            let written = std::fs::read(dir.join("iris").join(version).join("model.onnx")).unwrap();
            assert_eq!(written, bytes);
            // An ONNX ModelProto starts with its ir_version (field 1, varint) and names the
            // input the demo's requests send.
            assert_eq!(written[0], 0x08, "version {version} is not an ONNX model");
            assert!(written.windows(8).any(|w| w == b"features"));
        }
        assert_ne!(IRIS[0].1, IRIS[1].1, "two different versions");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
