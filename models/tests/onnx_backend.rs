//! The ONNX backend against real ONNX Runtime and the models `scripts/make_models.py` writes.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

use std::path::PathBuf;

use half::f16;
use weir_models::repository::{load_version, ModelConfig};
use weir_models::{Backend, BackendError, DataType, Dim, Tensor, TensorData};

fn test_models() -> PathBuf {
    let dir = std::env::var_os("WEIR_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-models"));
    assert!(
        dir.is_dir(),
        "{} is missing: run `make test-models` first",
        dir.display()
    );
    dir
}

fn load(model: &str) -> Result<std::sync::Arc<dyn Backend>, BackendError> {
    load_version(
        &test_models().join(model).join("1"),
        &ModelConfig::default(),
    )
}

#[test]
fn the_signature_comes_from_the_model() {
    let iris = load("iris").unwrap();
    let signature = iris.signature();
    assert_eq!(signature.inputs.len(), 1);
    assert_eq!(signature.inputs[0].name, "features");
    assert_eq!(signature.inputs[0].datatype, DataType::Fp32);
    assert_eq!(signature.inputs[0].shape, [Dim::Variable, Dim::Fixed(4)]);
    let outputs: Vec<_> = signature
        .outputs
        .iter()
        .map(|o| (o.name.as_str(), o.datatype))
        .collect();
    assert_eq!(
        outputs,
        [
            ("label", DataType::Int64),
            ("probabilities", DataType::Fp32)
        ]
    );
    assert_eq!(iris.platform(), "onnxruntime_onnx");
}

#[test]
fn every_protocol_datatype_passes_through_onnx_runtime() {
    let model = load("identity_all").unwrap();
    let inputs = vec![
        ("bool", TensorData::Bool(vec![true, false])),
        ("uint8", TensorData::Uint8(vec![0, 255])),
        ("uint16", TensorData::Uint16(vec![1, u16::MAX])),
        ("uint32", TensorData::Uint32(vec![2, u32::MAX])),
        ("uint64", TensorData::Uint64(vec![3, u64::MAX])),
        ("int8", TensorData::Int8(vec![i8::MIN, i8::MAX])),
        ("int16", TensorData::Int16(vec![i16::MIN, i16::MAX])),
        ("int32", TensorData::Int32(vec![i32::MIN, i32::MAX])),
        ("int64", TensorData::Int64(vec![i64::MIN, i64::MAX])),
        (
            "fp16",
            TensorData::Fp16(vec![f16::from_f32(0.5), f16::from_f32(-2.0)]),
        ),
        ("fp32", TensorData::Fp32(vec![0.25, -1e30])),
        ("fp64", TensorData::Fp64(vec![0.125, 1e300])),
        (
            "bytes",
            TensorData::Bytes(vec![b"hello".to_vec(), "wörld".as_bytes().to_vec()]),
        ),
    ];
    let tensors = inputs
        .iter()
        .map(|(t, data)| Tensor::new(format!("in_{t}"), vec![1, 2], data.clone()))
        .collect();
    let wanted: Vec<String> = inputs.iter().map(|(t, _)| format!("out_{t}")).collect();
    let outputs = model.infer(tensors, &wanted).unwrap();
    for ((t, data), output) in inputs.iter().zip(&outputs) {
        assert_eq!(output.name, format!("out_{t}"));
        assert_eq!(output.shape, [1, 2]);
        assert_eq!(&output.data, data, "{t}");
    }
}

#[test]
fn string_models_refuse_bytes_that_are_not_utf8() {
    let model = load("string_upper").unwrap();
    let outputs = model
        .infer(
            vec![Tensor::new(
                "text",
                vec![2],
                TensorData::Bytes(vec![b"abc".to_vec(), b"Ok".to_vec()]),
            )],
            &["upper".to_owned()],
        )
        .unwrap();
    assert_eq!(
        outputs[0].data,
        TensorData::Bytes(vec![b"ABC".to_vec(), b"OK".to_vec()])
    );
    let err = model
        .infer(
            vec![Tensor::new(
                "text",
                vec![1],
                TensorData::Bytes(vec![vec![0xff, 0xfe]]),
            )],
            &["upper".to_owned()],
        )
        .err()
        .unwrap();
    assert!(matches!(err, BackendError::InvalidInput(_)), "{err}");
    assert!(err.to_string().contains("'text' element 0"), "{err}");
}

#[test]
fn a_model_with_a_non_tensor_output_is_refused_naming_the_output() {
    let err = load("zipmap").err().unwrap();
    assert!(matches!(err, BackendError::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("output 'probabilities'"), "{err}");
}

#[test]
fn a_file_that_is_not_onnx_is_a_load_error_naming_the_file() {
    let err = load("broken").err().unwrap();
    assert!(matches!(err, BackendError::Load { .. }), "{err}");
    assert!(err.to_string().contains("broken/1/model.onnx"), "{err}");
}

#[test]
fn several_instances_answer_concurrently() {
    let config = ModelConfig {
        instance_count: 3,
        ..ModelConfig::default()
    };
    let model = load_version(&test_models().join("simple/1"), &config).unwrap();
    std::thread::scope(|scope| {
        for t in 0..6 {
            let model = model.clone();
            scope.spawn(move || {
                for i in 0..50 {
                    let a = TensorData::Int32((0..16).map(|x| x + t * 100 + i).collect());
                    let b = TensorData::Int32(vec![1; 16]);
                    let out = model
                        .infer(
                            vec![
                                Tensor::new("INPUT0", vec![1, 16], a),
                                Tensor::new("INPUT1", vec![1, 16], b),
                            ],
                            &["OUTPUT1".to_owned()],
                        )
                        .unwrap();
                    let expected: Vec<i32> = (0..16).map(|x| x + t * 100 + i - 1).collect();
                    assert_eq!(out[0].data, TensorData::Int32(expected));
                }
            });
        }
    });
}
