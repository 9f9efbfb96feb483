//! The candle backends: native networks from a manifest, and the MiniLM sentence encoder
//! against reference embeddings computed outside weir (scripts/reference_embeddings.py).

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor as CandleTensor};
use weir_models::repository::{load_version, ModelConfig};
use weir_models::{Backend, BackendError, DataType, Tensor, TensorData};

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-st-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A tensor to write: name, values, shape.
type Named = (&'static str, Vec<f32>, &'static [usize]);

fn write_model(dir: &Path, manifest: &str, tensors: &[Named]) {
    let map: HashMap<String, CandleTensor> = tensors
        .iter()
        .map(|(name, values, shape)| {
            (
                name.to_string(),
                CandleTensor::from_vec(values.clone(), *shape, &Device::Cpu).unwrap(),
            )
        })
        .collect();
    candle_core::safetensors::save(&map, dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("weir.toml"), manifest).unwrap();
}

fn load(dir: &Path) -> Result<std::sync::Arc<dyn Backend>, BackendError> {
    load_version(dir, &ModelConfig::default())
}

fn run(model: &dyn Backend, rows: usize, values: Vec<f32>) -> Vec<f32> {
    let spec = &model.signature().inputs[0];
    let width = values.len() / rows.max(1);
    let output = model
        .infer(
            vec![Tensor::new(
                spec.name.clone(),
                vec![rows, width],
                TensorData::Fp32(values),
            )],
            &[],
        )
        .unwrap();
    match &output[0].data {
        TensorData::Fp32(v) => v.clone(),
        other => panic!("{other:?}"),
    }
}

/// A 2 → 2 → 1 network small enough to compute by hand.
const TINY: &str =
    "architecture = \"mlp\"\nlayers = [2, 2, 1]\nactivation = \"relu\"\noutput = \"none\"\n";

fn tiny_tensors() -> Vec<Named> {
    vec![
        ("0.weight", vec![1.0, -1.0, 0.5, 2.0], &[2, 2]),
        ("0.bias", vec![0.0, -1.0], &[2]),
        ("2.weight", vec![3.0, -2.0], &[1, 2]),
        ("2.bias", vec![0.25], &[1]),
    ]
}

#[test]
fn a_hand_computed_network_gives_the_hand_computed_answer() {
    let dir = temp_dir("tiny");
    write_model(&dir, TINY, &tiny_tensors());
    let model = load(&dir).unwrap();
    assert_eq!(model.platform(), "candle_safetensors");
    assert_eq!(model.signature().inputs[0].name, "input");
    // x = (1, 2): hidden = relu(1*1 - 1*2 + 0, 0.5*1 + 2*2 - 1) = relu(-1, 3.5) = (0, 3.5)
    // y = 3*0 - 2*3.5 + 0.25 = -6.75.  x = (4, 0): hidden = relu(4, 1) -> y = 12 - 2 + 0.25.
    assert_eq!(
        run(model.as_ref(), 2, vec![1.0, 2.0, 4.0, 0.0]),
        [-6.75, 10.25]
    );
    let sigmoid = TINY.replace("output = \"none\"", "output = \"sigmoid\"");
    write_model(&dir, &sigmoid, &tiny_tensors());
    let y = run(load(&dir).unwrap().as_ref(), 1, vec![1.0, 2.0])[0];
    assert!((y - 1.0 / (1.0 + 6.75f32.exp())).abs() < 1e-7, "{y}");
    assert_eq!(
        run(load(&dir).unwrap().as_ref(), 0, vec![]),
        Vec::<f32>::new()
    );
}

/// One linear layer 2 → 3 whose output is x0, x1 and x0 + x1 (identity-like), for checking
/// the scalers and labels by hand.
fn three_way(manifest_tail: &str) -> PathBuf {
    let dir = temp_dir(&format!("three-{}", manifest_tail.len()));
    let manifest = format!("architecture = \"linear\"\nlayers = [2, 3]\n{manifest_tail}");
    write_model(
        &dir,
        &manifest,
        &[("0.weight", vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2])],
    );
    dir
}

fn outputs(model: &dyn Backend, values: Vec<f32>, names: &[&str]) -> Vec<Tensor> {
    let rows = values.len() / 2;
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    model
        .infer(
            vec![Tensor::new(
                "input",
                vec![rows, 2],
                TensorData::Fp32(values),
            )],
            &names,
        )
        .unwrap()
}

#[test]
fn scalers_standardise_inputs_and_restore_outputs() {
    // inputs: ((x - mean) / scale) = ((x0 - 1) / 2, (x1 + 1) / 4)
    let dir = three_way("[scaler]\nmean = [1.0, -1.0]\nscale = [2.0, 4.0]\n");
    let model = load(&dir).unwrap();
    assert_eq!(run(model.as_ref(), 1, vec![5.0, 3.0]), [2.0, 1.0, 3.0]);
    // outputs: y * scale + mean, per column.
    let dir = three_way("[output_scaler]\nmean = [10.0, 20.0, 30.0]\nscale = [1.0, 2.0, 0.5]\n");
    let model = load(&dir).unwrap();
    assert_eq!(run(model.as_ref(), 1, vec![2.0, 4.0]), [12.0, 28.0, 33.0]);
}

#[test]
fn labelled_models_answer_a_label_output_and_v1_uses_it() {
    let dir = three_way("labels = [\"small\", \"large\", \"sum\"]\n");
    let model = load(&dir).unwrap();
    let signature = model.signature();
    assert_eq!(signature.outputs.len(), 2);
    assert_eq!(signature.outputs[1].name, "label");
    assert_eq!(signature.outputs[1].datatype, DataType::Bytes);
    assert_eq!(model.v1_predictions(), Some("label"));
    // Rows (3, -1) → scores (3, -1, 2): "small"; (-1, 5) → (-1, 5, 4): "large";
    // (1, 1) → (1, 1, 2): "sum".
    let answer = outputs(
        model.as_ref(),
        vec![3.0, -1.0, -1.0, 5.0, 1.0, 1.0],
        &["label", "output"],
    );
    assert_eq!(answer[0].shape, [3]);
    assert_eq!(
        answer[0].data,
        TensorData::Bytes(vec![b"small".to_vec(), b"large".to_vec(), b"sum".to_vec()])
    );
    assert_eq!(answer[1].shape, [3, 3]);
    // All outputs when none are named, main output first.
    let all = outputs(model.as_ref(), vec![3.0, -1.0], &[]);
    assert_eq!(
        all.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["output", "label"]
    );
    // Integer labels come back as INT64.
    let dir = three_way("labels = [7, 8, 9]\n");
    let model = load(&dir).unwrap();
    assert_eq!(model.signature().outputs[1].datatype, DataType::Int64);
    let answer = outputs(model.as_ref(), vec![-1.0, 5.0], &["label"]);
    assert_eq!(answer[0].data, TensorData::Int64(vec![8]));
    // One sigmoid output and two labels: the label is whether it reaches one half.
    let dir = temp_dir("binary");
    write_model(
        &dir,
        "architecture = \"logistic\"\nlayers = [2, 1]\nlabels = [\"no\", \"yes\"]\n",
        &[("0.weight", vec![1.0, 0.0], &[1, 2])],
    );
    let model = load(&dir).unwrap();
    let answer = outputs(model.as_ref(), vec![-2.0, 0.0, 2.0, 0.0], &["label"]);
    assert_eq!(
        answer[0].data,
        TensorData::Bytes(vec![b"no".to_vec(), b"yes".to_vec()])
    );
    // Without labels, V1 answers every output.
    assert_eq!(load(&three_way("")).unwrap().v1_predictions(), None);
}

#[test]
fn manifests_written_by_code_read_back_the_same() {
    use weir_models::safetensors::{Architecture, InputSpec, Labels, Manifest, Scaler};
    let manifest = Manifest {
        architecture: Architecture::Mlp,
        layers: vec![2, 4, 3],
        activation: None,
        output: None,
        input: InputSpec {
            name: "features".to_owned(),
            datatype: "FP32".to_owned(),
        },
        output_name: "probabilities".to_owned(),
        features: vec!["a".to_owned(), "b".to_owned()],
        labels: Some(Labels::Names(vec!["x".into(), "y".into(), "z".into()])),
        scaler: Some(Scaler {
            mean: vec![0.1, -3.25],
            scale: vec![1.0 / 3.0, 2.0],
        }),
        output_scaler: None,
    };
    let dir = temp_dir("roundtrip");
    std::fs::write(dir.join("weir.toml"), manifest.to_toml().unwrap()).unwrap();
    assert_eq!(Manifest::read(&dir.join("weir.toml")).unwrap(), manifest);
}

#[test]
fn every_manifest_and_weight_problem_names_what_is_wrong() {
    let dir = temp_dir("errors");
    let mut cases: Vec<(String, Vec<Named>, &str)> = vec![
        (
            TINY.to_owned(),
            tiny_tensors()[..2].to_vec(),
            "layers [2, 2, 1] need 2 linear layers, but the file has 1 weight tensors",
        ),
        (
            TINY.to_owned(),
            vec![
                tiny_tensors()[0].clone(),
                tiny_tensors()[1].clone(),
                ("2.weight", vec![1.0; 3], &[1, 3]),
            ],
            "tensor '2.weight' has shape [1, 3], expected [1, 2]",
        ),
        (
            TINY.to_owned(),
            vec![
                tiny_tensors()[0].clone(),
                ("0.bias", vec![0.0; 3], &[3]),
                tiny_tensors()[2].clone(),
            ],
            "tensor '0.bias' has shape [3], expected [2]",
        ),
        (
            TINY.replace("[2, 2, 1]", "[3]"),
            tiny_tensors(),
            "layers must list at least an input and an output size",
        ),
        (
            TINY.replace("mlp", "transformer"),
            tiny_tensors(),
            "unknown variant `transformer`",
        ),
        (
            TINY.replace("mlp", "linear"),
            tiny_tensors(),
            "a linear model has exactly two sizes in layers",
        ),
        (
            format!("{TINY}input = {{ datatype = \"INT8\" }}\n"),
            tiny_tensors(),
            "input datatype must be FP32, FP64 or FP16",
        ),
        (
            format!("{TINY}colour = \"blue\"\n"),
            tiny_tensors(),
            "unknown field `colour`",
        ),
        (
            format!("{TINY}features = [\"a\", \"b\", \"c\"]\n"),
            tiny_tensors(),
            "features names 3 columns but the first layer takes 2",
        ),
        (
            format!("{TINY}[scaler]\nmean = [0.0]\nscale = [1.0]\n"),
            tiny_tensors(),
            "scaler needs 2 means and scales (one per column); found 1 and 1",
        ),
        (
            format!("{TINY}[scaler]\nmean = [0.0, 0.0]\nscale = [1.0, 0.0]\n"),
            tiny_tensors(),
            "scaler.scale holds 0; scales must be positive and finite",
        ),
        (
            format!("{TINY}[output_scaler]\nmean = [0.0, 1.0]\nscale = [1.0, 1.0]\n"),
            tiny_tensors(),
            "output_scaler needs 1 means and scales",
        ),
        (
            format!("{TINY}labels = [\"a\", \"b\", \"c\"]\n"),
            tiny_tensors(),
            "labels holds 3 classes but the model has 1",
        ),
        (
            TINY.replace("\"none\"", "\"sigmoid\"") + "labels = [\"a\", \"a\"]\n",
            tiny_tensors(),
            "labels holds the same class twice",
        ),
    ];
    for (manifest, tensors, message) in cases.drain(..) {
        write_model(&dir, &manifest, &tensors);
        let err = load(&dir).err().unwrap().to_string();
        assert!(err.contains(message), "want {message:?} in: {err}");
        assert!(
            err.contains(&dir.display().to_string()),
            "the error names the file: {err}"
        );
    }
    // Integer weights are not weights.
    let ints: HashMap<String, CandleTensor> = [(
        "0.weight".to_owned(),
        CandleTensor::zeros((1, 2), DType::I64, &Device::Cpu).unwrap(),
    )]
    .into();
    candle_core::safetensors::save(&ints, dir.join("model.safetensors")).unwrap();
    std::fs::write(
        dir.join("weir.toml"),
        "architecture = \"linear\"\nlayers = [2, 1]\n",
    )
    .unwrap();
    let err = load(&dir).err().unwrap().to_string();
    assert!(
        err.contains("tensor '0.weight' is I64; weir reads FP32, FP16 and BF16 weights"),
        "{err}"
    );
    std::fs::write(dir.join("model.safetensors"), b"not safetensors").unwrap();
    assert!(matches!(load(&dir), Err(BackendError::Load { .. })));
}

fn test_models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-models")
}

#[test]
fn generated_networks_load_in_fp32_fp16_and_bf16() {
    for (model, input, datatype, output, width) in [
        ("tabular", "features", DataType::Fp32, "probabilities", 3),
        ("tabular_fp16", "x", DataType::Fp64, "score", 1),
        ("tabular_bf16", "features", DataType::Fp32, "output", 3),
    ] {
        let backend = load(&test_models().join(model).join("1")).unwrap();
        let signature = backend.signature();
        assert_eq!(
            (
                signature.inputs[0].name.as_str(),
                signature.inputs[0].datatype
            ),
            (input, datatype)
        );
        assert_eq!(signature.outputs[0].name, output);
        let columns = signature.inputs[0].shape[1].as_i64() as usize;
        let values: Vec<f64> = (0..2 * columns).map(|i| i as f64 * 0.3 - 1.0).collect();
        let data = match datatype {
            DataType::Fp64 => TensorData::Fp64(values),
            _ => TensorData::Fp32(values.into_iter().map(|v| v as f32).collect()),
        };
        let out = backend
            .infer(vec![Tensor::new(input, vec![2, columns], data)], &[])
            .unwrap();
        assert_eq!(out[0].shape, [2, width]);
        let TensorData::Fp32(probabilities) = &out[0].data else {
            panic!()
        };
        if width == 3 {
            for row in probabilities.chunks(3) {
                assert!(
                    (row.iter().sum::<f32>() - 1.0).abs() < 1e-5,
                    "softmax rows sum to one: {row:?}"
                );
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct Reference {
    sentences: Vec<ReferenceRow>,
}

#[derive(serde::Deserialize)]
struct ReferenceRow {
    text: String,
    embedding: Vec<f32>,
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    dot / (a.iter().map(|x| x * x).sum::<f32>().sqrt()
        * b.iter().map(|x| x * x).sum::<f32>().sqrt())
}

fn embed(model: &dyn Backend, texts: &[&str]) -> Vec<Vec<f32>> {
    let data = TensorData::Bytes(texts.iter().map(|t| t.as_bytes().to_vec()).collect());
    let out = model
        .infer(vec![Tensor::new("text", vec![texts.len()], data)], &[])
        .unwrap();
    let TensorData::Fp32(values) = &out[0].data else {
        panic!()
    };
    assert_eq!(out[0].shape, [texts.len(), 384]);
    values.chunks(384).map(<[f32]>::to_vec).collect()
}

#[test]
fn minilm_matches_the_reference_implementation_batched_and_alone() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/text-models/minilm/1");
    assert!(
        dir.is_dir(),
        "{} is missing: run `make setup`",
        dir.display()
    );
    let started = std::time::Instant::now();
    let model = load(&dir).unwrap();
    eprintln!("MiniLM ready in {:?}", started.elapsed());
    assert_eq!(model.platform(), "candle_bert");
    assert_eq!(model.signature().inputs[0].datatype, DataType::Bytes);
    let reference: Reference =
        serde_json::from_str(include_str!("fixtures/minilm_reference.json")).unwrap();
    let texts: Vec<&str> = reference
        .sentences
        .iter()
        .map(|r| r.text.as_str())
        .collect();
    let batched = embed(model.as_ref(), &texts);
    for (row, got) in reference.sentences.iter().zip(&batched) {
        let similarity = cosine(got, &row.embedding);
        assert!(similarity >= 0.9999, "{:?}: cosine {similarity}", row.text);
        let alone = &embed(model.as_ref(), &[row.text.as_str()])[0];
        assert!(
            cosine(alone, got) >= 0.99999,
            "{:?}: batched and alone differ",
            row.text
        );
        let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "embeddings are L2-normalised");
    }
    assert!((cosine(&batched[0], &batched[1]) - 0.6788).abs() < 5e-4);
    assert!((cosine(&batched[2], &batched[3]) - 0.7553).abs() < 5e-4);
    let invalid = TensorData::Bytes(vec![vec![0xff, 0xfe]]);
    let err = model
        .infer(vec![Tensor::new("text", vec![1], invalid)], &[])
        .err()
        .unwrap();
    assert!(matches!(err, BackendError::InvalidInput(_)), "{err}");
    assert_eq!(embed(model.as_ref(), &[]).len(), 0);
}
