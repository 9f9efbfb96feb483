//! Training on generated tables with known answers, and the trained folder served by the same
//! loader `weir serve` uses.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use weir_models::repository::{load_version, ModelConfig};
use weir_models::{Tensor, TensorData};
use weir_training::{read_csv, train, Columns, ModelKind, TrainConfig};

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-train-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn normal(rng: &mut StdRng) -> f64 {
    // Box–Muller: two uniforms make one standard normal.
    let (u, v): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random());
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// 50 rows per species drawn from the per-class means and standard deviations of Fisher's iris
/// measurements (sepal length/width, petal length/width in cm).
fn iris_like(path: &Path) {
    let species = [
        (
            "setosa",
            [5.006, 3.428, 1.462, 0.246],
            [0.352, 0.379, 0.174, 0.105],
        ),
        (
            "versicolor",
            [5.936, 2.770, 4.260, 1.326],
            [0.516, 0.314, 0.470, 0.198],
        ),
        (
            "virginica",
            [6.588, 2.974, 5.552, 2.026],
            [0.636, 0.322, 0.552, 0.275],
        ),
    ];
    let mut rng = StdRng::seed_from_u64(1936);
    let mut text = String::from("sepal_length,sepal_width,petal_length,petal_width,species\n");
    for row in 0..150 {
        let (name, mean, std) = species[row % 3];
        let cells: Vec<String> = (0..4)
            .map(|i| format!("{:.2}", mean[i] + std[i] * normal(&mut rng)))
            .collect();
        text.push_str(&format!("{},{name}\n", cells.join(",")));
    }
    std::fs::write(path, text).unwrap();
}

/// y = 3·a − 2·b + 0.5·c + 4 with noise of standard deviation 0.1: the best possible RMSE is
/// 0.1.
fn linear_with_noise(path: &Path) {
    let mut rng = StdRng::seed_from_u64(2026);
    let mut text = String::from("a,b,c,y\n");
    for _ in 0..1000 {
        let x: Vec<f64> = (0..3).map(|_| rng.random_range(-2.0..2.0)).collect();
        let y = 3.0 * x[0] - 2.0 * x[1] + 0.5 * x[2] + 4.0 + 0.1 * normal(&mut rng);
        text.push_str(&format!("{:.4},{:.4},{:.4},{y:.4}\n", x[0], x[1], x[2]));
    }
    std::fs::write(path, text).unwrap();
}

fn columns(target: &str) -> Columns {
    Columns {
        target: target.to_owned(),
        ..Columns::default()
    }
}

/// The served model's answers for every row of the data file, as (label or value) per row.
fn served(dir: &Path, data: &Path, target: &str) -> (Vec<Tensor>, Vec<f64>) {
    let dataset = read_csv(data, &columns(target)).unwrap();
    let model = load_version(dir, &ModelConfig::default()).unwrap();
    let values: Vec<f32> = dataset.values.iter().map(|&v| v as f32).collect();
    let input = Tensor::new(
        "features",
        vec![dataset.rows(), dataset.width()],
        TensorData::Fp32(values),
    );
    (model.infer(vec![input], &[]).unwrap(), dataset.values)
}

#[test]
fn iris_like_data_reaches_ninety_percent_and_serves_labels() {
    let dir = scratch("iris");
    let data = dir.join("iris.csv");
    iris_like(&data);
    let dataset = read_csv(&data, &columns("species")).unwrap();
    for model in [ModelKind::Mlp, ModelKind::Logistic] {
        let config = TrainConfig {
            model,
            epochs: 60,
            ..TrainConfig::default()
        };
        let mut seen = 0;
        let (trained, history) = train(&dataset, config, |_| seen += 1).unwrap();
        assert_eq!((seen, history.len()), (60, 60));
        let last = history.last().unwrap();
        let accuracy = last.metric("val_accuracy").unwrap();
        assert!(accuracy >= 0.9, "{model:?}: validation accuracy {accuracy}");
        assert!(
            last.metric("loss").unwrap() < history[0].metric("loss").unwrap(),
            "{model:?}: the training loss fell"
        );
        // Served as written: the scaler and labels travel with the weights.
        let folder = dir.join(model.as_str());
        trained.write(&folder).unwrap();
        let manifest = std::fs::read_to_string(folder.join("weir.toml")).unwrap();
        assert!(
            manifest.contains("labels = [\"setosa\", \"versicolor\", \"virginica\"]"),
            "{manifest}"
        );
        let (outputs, _) = served(&folder, &data, "species");
        assert_eq!(outputs[0].name, "probabilities");
        let TensorData::Bytes(labels) = &outputs[1].data else {
            panic!("labels are strings: {:?}", outputs[1]);
        };
        let right = labels
            .iter()
            .enumerate()
            .filter(|(row, label)| {
                label.as_slice() == ["setosa", "versicolor", "virginica"][row % 3].as_bytes()
            })
            .count();
        assert!(
            right >= 135,
            "{model:?}: the served model labels {right} of 150 rows right"
        );
    }
}

#[test]
fn regression_reaches_the_noise_floor_in_the_targets_units() {
    let dir = scratch("regression");
    let data = dir.join("linear.csv");
    linear_with_noise(&data);
    let dataset = read_csv(&data, &columns("y")).unwrap();
    for (model, epochs) in [(ModelKind::Linear, 40), (ModelKind::Mlp, 60)] {
        let config = TrainConfig {
            model,
            epochs,
            ..TrainConfig::default()
        };
        let (trained, history) = train(&dataset, config, |_| {}).unwrap();
        let rmse = history.last().unwrap().metric("val_rmse").unwrap();
        // The noise alone makes 0.1; a model that learned the function lands just above it.
        assert!(
            (0.08..0.15).contains(&rmse),
            "{model:?}: validation RMSE {rmse}"
        );
        let folder = dir.join(model.as_str());
        trained.write(&folder).unwrap();
        let (outputs, values) = served(&folder, &data, "y");
        let TensorData::Fp32(predicted) = &outputs[0].data else {
            panic!("{:?}", outputs[0]);
        };
        let squared: f64 = predicted
            .iter()
            .zip(values.chunks(3))
            .map(|(p, x)| {
                let truth = 3.0 * x[0] - 2.0 * x[1] + 0.5 * x[2] + 4.0;
                (f64::from(*p) - truth).powi(2)
            })
            .sum();
        let served_rmse = (squared / predicted.len() as f64).sqrt();
        assert!(
            served_rmse < 0.1,
            "{model:?}: served predictions are {served_rmse} from the noiseless function"
        );
    }
}

#[test]
fn the_same_seed_gives_identical_weights_and_another_does_not() {
    let dir = scratch("seed");
    let data = dir.join("iris.csv");
    iris_like(&data);
    let dataset = read_csv(&data, &columns("species")).unwrap();
    let run = |seed| {
        let config = TrainConfig {
            epochs: 5,
            seed,
            ..TrainConfig::default()
        };
        let (trained, history) = train(&dataset, config, |_| {}).unwrap();
        (trained.weights().unwrap(), history)
    };
    let (first, first_history) = run(7);
    let (again, again_history) = run(7);
    assert_eq!(first, again);
    assert_eq!(first_history, again_history);
    assert_eq!(first.len(), 6, "three layers, each a weight and a bias");
    let (other, _) = run(8);
    assert_ne!(first, other);
}

#[test]
fn models_that_do_not_fit_the_task_are_refused_before_training() {
    let dir = scratch("refused");
    let data = dir.join("iris.csv");
    iris_like(&data);
    let dataset = read_csv(&data, &columns("species")).unwrap();
    let refuse = |config: TrainConfig| train(&dataset, config, |_| {}).err().unwrap().to_string();
    let linear = refuse(TrainConfig {
        model: ModelKind::Linear,
        ..TrainConfig::default()
    });
    assert!(
        linear.contains("--model linear is for regression"),
        "{linear}"
    );
    for (config, expected) in [
        (
            TrainConfig {
                hidden: vec![],
                ..TrainConfig::default()
            },
            "--hidden must list",
        ),
        (
            TrainConfig {
                epochs: 0,
                ..TrainConfig::default()
            },
            "--epochs and --batch-size",
        ),
        (
            TrainConfig {
                learning_rate: -1.0,
                ..TrainConfig::default()
            },
            "--lr must be a positive",
        ),
        (
            TrainConfig {
                val_split: 1.0,
                ..TrainConfig::default()
            },
            "--val-split must be",
        ),
    ] {
        let err = refuse(config);
        assert!(err.contains(expected), "want {expected:?} in {err}");
    }
}
