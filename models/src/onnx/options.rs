//! The `[onnx]` table of a model's `config.toml`. Read whether or not this build has ONNX
//! Runtime (the `onnx` feature), so a config is valid or invalid the same way in every build.

use serde::Deserialize;

/// ONNX Runtime settings from a model's `[onnx]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnnxOptions {
    /// Threads one inference call may use. One by default: small models gain nothing from a
    /// thread pool, and on few cores parallel requests use the cores better than parallel
    /// operators do.
    #[serde(default = "one")]
    pub intra_op_threads: usize,
}

fn one() -> usize {
    1
}

impl Default for OnnxOptions {
    fn default() -> Self {
        OnnxOptions {
            intra_op_threads: 1,
        }
    }
}
