//! What the fuzz targets share: the model signatures the inference decoders are checked against,
//! and scratch files for the readers whose public entry point takes a path.
//!
//! The decoders validate against a signature before sizing anything, so a target that used one
//! signature would only ever explore that signature's branches. Each inference input is decoded
//! against all of [`signatures`]: a single FP32 input (V1's row form), a single BYTES input
//! (string tensors) and several inputs of other datatypes (named rows, FP16, BOOL, fixed dims).

use std::path::PathBuf;

use weir_models::{DataType, Dim, Signature, TensorSpec};

fn spec(name: &str, datatype: DataType, shape: &[i64]) -> TensorSpec {
    TensorSpec {
        name: name.to_owned(),
        datatype,
        shape: shape.iter().map(|&d| Dim::from_i64(d)).collect(),
    }
}

/// The signatures every inference body is decoded against, in this order.
pub fn signatures() -> Vec<Signature> {
    vec![
        Signature {
            inputs: vec![spec("input0", DataType::Fp32, &[-1, 4])],
            outputs: vec![spec("output0", DataType::Fp32, &[-1, 3])],
        },
        Signature {
            inputs: vec![spec("text", DataType::Bytes, &[-1])],
            outputs: vec![spec("embedding", DataType::Fp32, &[-1, 2])],
        },
        Signature {
            inputs: vec![
                spec("a", DataType::Int64, &[-1]),
                spec("b", DataType::Bool, &[2, 2]),
                spec("c", DataType::Fp16, &[-1, 2]),
                spec("d", DataType::Uint8, &[-1, -1]),
                spec("e", DataType::Fp64, &[-1]),
            ],
            outputs: vec![
                spec("y", DataType::Fp64, &[-1]),
                spec("z", DataType::Bytes, &[-1]),
            ],
        },
    ]
}

/// A scratch path private to this fuzzing process (libFuzzer's `-fork`/`-jobs` workers are
/// separate processes, so the pid keeps them apart).
pub fn scratch_path(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!("weir-fuzz-{what}-{}", std::process::id()))
}
