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

/// An instance keeps its output buffers from call to call, keyed by the inputs' shapes: every
/// call must still get its own rows, for every datatype, whatever shapes came before it.
#[test]
fn each_call_gets_its_own_outputs_when_output_buffers_are_reused() {
    let simple = load("simple").unwrap();
    for (call, rows) in [1usize, 3, 1, 3, 2, 1, 3].into_iter().enumerate() {
        let call = call as i32;
        let a: Vec<i32> = (0..16 * rows as i32).map(|x| x * (call + 1)).collect();
        let b: Vec<i32> = (0..16 * rows as i32).map(|x| x - call).collect();
        let outputs = simple
            .infer(
                vec![
                    Tensor::new("INPUT0", vec![rows, 16], TensorData::Int32(a.clone())),
                    Tensor::new("INPUT1", vec![rows, 16], TensorData::Int32(b.clone())),
                ],
                &["OUTPUT0".to_owned(), "OUTPUT1".to_owned()],
            )
            .unwrap();
        let sum: Vec<i32> = a.iter().zip(&b).map(|(a, b)| a + b).collect();
        let difference: Vec<i32> = a.iter().zip(&b).map(|(a, b)| a - b).collect();
        assert_eq!(outputs[0].shape, [rows, 16], "call {call}");
        assert_eq!(outputs[0].data, TensorData::Int32(sum), "call {call}");
        assert_eq!(
            outputs[1].data,
            TensorData::Int32(difference),
            "call {call}"
        );
    }

    let identity = load("identity_all").unwrap();
    for call in 0..3u8 {
        let flip = call % 2 == 1;
        fn pick<T>(flip: bool, first: T, second: T) -> T {
            if flip {
                second
            } else {
                first
            }
        }
        let inputs = [
            (
                "bool",
                TensorData::Bool(vec![pick(flip, true, false), flip]),
            ),
            ("uint8", TensorData::Uint8(vec![call, pick(flip, 255, 7)])),
            (
                "int64",
                TensorData::Int64(vec![i64::from(call), pick(flip, i64::MIN, -9)]),
            ),
            (
                "fp16",
                TensorData::Fp16(vec![f16::from_f32(f32::from(call)), f16::from_f32(-2.0)]),
            ),
            (
                "fp64",
                TensorData::Fp64(vec![f64::from(call), pick(flip, 1e300, -0.5)]),
            ),
            (
                "bytes",
                TensorData::Bytes(vec![
                    vec![b'a' + call],
                    pick(flip, b"xy".to_vec(), b"z".to_vec()),
                ]),
            ),
        ];
        let all: Vec<Tensor> = inputs
            .iter()
            .map(|(t, data)| Tensor::new(format!("in_{t}"), vec![1, 2], data.clone()))
            .collect();
        // identity_all needs every input; the types not checked above get zeros.
        let rest = [
            ("uint16", TensorData::Uint16(vec![0; 2])),
            ("uint32", TensorData::Uint32(vec![0; 2])),
            ("uint64", TensorData::Uint64(vec![0; 2])),
            ("int8", TensorData::Int8(vec![0; 2])),
            ("int16", TensorData::Int16(vec![0; 2])),
            ("int32", TensorData::Int32(vec![0; 2])),
            ("fp32", TensorData::Fp32(vec![0.0; 2])),
        ];
        let tensors = all
            .into_iter()
            .chain(
                rest.iter()
                    .map(|(t, data)| Tensor::new(format!("in_{t}"), vec![1, 2], data.clone())),
            )
            .collect();
        let wanted: Vec<String> = inputs.iter().map(|(t, _)| format!("out_{t}")).collect();
        let outputs = identity.infer(tensors, &wanted).unwrap();
        for ((t, data), output) in inputs.iter().zip(&outputs) {
            assert_eq!(&output.data, data, "call {call}, {t}");
        }
    }
}

/// `positives` keeps the positive elements of its input, so its output's length depends on the
/// values: a buffer kept from a call of the same input shape cannot hold the next answer.
#[test]
fn an_output_sized_by_the_values_is_right_on_every_call() {
    let model = load("positives").unwrap();
    let calls: [(&[f32], &[f32]); 5] = [
        (&[1.0, -1.0, 2.0], &[1.0, 2.0]),
        (&[3.0, -1.0, 4.0], &[3.0, 4.0]),
        (&[5.0, -1.0, -2.0], &[5.0]),
        (&[-1.0, -1.0, -1.0], &[]),
        (&[6.0, 7.0, 8.0], &[6.0, 7.0, 8.0]),
    ];
    for (input, expected) in calls {
        let outputs = model
            .infer(
                vec![Tensor::new(
                    "x",
                    vec![input.len()],
                    TensorData::Fp32(input.to_vec()),
                )],
                &["y".to_owned()],
            )
            .unwrap();
        assert_eq!(outputs[0].shape, [expected.len()], "{input:?}");
        assert_eq!(
            outputs[0].data,
            TensorData::Fp32(expected.to_vec()),
            "{input:?}"
        );
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
