//! Holding out a validation set and fitting the standardisation, both on the training rows only
//! so that nothing about the validation rows leaks into the model.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use weir_models::safetensors::Scaler;

use crate::data::{Dataset, Target};
use crate::TrainError;

/// Row indices of the training and validation sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
}

/// Holds out `fraction` of the rows, at random for a seed. Classes are split one by one
/// (stratified), so a rare class is not left out of either side by chance.
pub fn split(dataset: &Dataset, fraction: f64, rng: &mut StdRng) -> Result<Split, TrainError> {
    let groups: Vec<Vec<usize>> = match &dataset.target {
        Target::Classes { indices, .. } => {
            let mut by_class: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
            for (row, class) in indices.iter().enumerate() {
                by_class.entry(*class).or_default().push(row);
            }
            by_class.into_values().collect()
        }
        Target::Values(values) => vec![(0..values.len()).collect()],
    };
    let mut split = Split {
        train: Vec::new(),
        validation: Vec::new(),
    };
    for mut group in groups {
        group.shuffle(rng);
        let held = (group.len() as f64 * fraction).round() as usize;
        split.validation.extend_from_slice(&group[..held]);
        split.train.extend_from_slice(&group[held..]);
    }
    // Rounding per class can hold out nothing from a small table; one row is still a check.
    if fraction > 0.0 && split.validation.is_empty() && split.train.len() > 1 {
        if let Some(row) = split.train.pop() {
            split.validation.push(row);
        }
    }
    if split.train.is_empty() {
        return Err(TrainError::Config(format!(
            "{} rows with --val-split {fraction} leave no rows to train on",
            dataset.rows()
        )));
    }
    split.train.shuffle(rng);
    Ok(split)
}

/// Mean and standard deviation of each column over `rows`; a constant column gets scale 1
/// (it carries no information, and dividing by zero would poison every prediction).
pub fn fit_scaler(dataset: &Dataset, rows: &[usize]) -> Scaler {
    let width = dataset.width();
    let count = rows.len().max(1) as f64;
    let mut mean = vec![0.0; width];
    for &row in rows {
        for (sum, value) in mean.iter_mut().zip(dataset.row(row)) {
            *sum += value;
        }
    }
    mean.iter_mut().for_each(|m| *m /= count);
    let mut variance = vec![0.0; width];
    for &row in rows {
        for ((sum, value), m) in variance.iter_mut().zip(dataset.row(row)).zip(&mean) {
            *sum += (value - m) * (value - m);
        }
    }
    let scale = variance
        .iter()
        .map(|v| {
            let std = (v / count).sqrt();
            if std > 1e-12 {
                std
            } else {
                1.0
            }
        })
        .collect();
    Scaler { mean, scale }
}

/// The same statistics for a single series (a regression target).
pub fn fit_target_scaler(values: &[f64], rows: &[usize]) -> Scaler {
    let column = Dataset {
        features: vec![String::new()],
        target_name: String::new(),
        values: values.to_vec(),
        target: Target::Values(values.to_vec()),
    };
    fit_scaler(&column, rows)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use weir_models::safetensors::Labels;

    use super::*;

    fn classes(indices: Vec<u32>) -> Dataset {
        let rows = indices.len();
        Dataset {
            features: vec!["x".into()],
            target_name: "y".into(),
            values: (0..rows).map(|r| r as f64).collect(),
            target: Target::Classes {
                labels: Labels::Integers(vec![0, 1]),
                indices,
            },
        }
    }

    #[test]
    fn the_split_is_stratified_disjoint_and_fixed_by_the_seed() {
        // 90 rows of class 0, 10 of class 1: a 20% split holds out 18 and 2.
        let dataset = classes((0..100).map(|r| u32::from(r >= 90)).collect());
        let first = split(&dataset, 0.2, &mut StdRng::seed_from_u64(7)).unwrap();
        let held_rare = first.validation.iter().filter(|&&r| r >= 90).count();
        assert_eq!((first.validation.len(), held_rare), (20, 2));
        let mut all: Vec<usize> = first
            .train
            .iter()
            .chain(&first.validation)
            .copied()
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_eq!(
            first,
            split(&dataset, 0.2, &mut StdRng::seed_from_u64(7)).unwrap()
        );
        assert_ne!(
            first,
            split(&dataset, 0.2, &mut StdRng::seed_from_u64(8)).unwrap()
        );
    }

    #[test]
    fn tiny_tables_still_hold_out_a_row_or_refuse() {
        let three = classes(vec![0, 1, 0]);
        let split3 = split(&three, 0.1, &mut StdRng::seed_from_u64(1)).unwrap();
        assert_eq!((split3.train.len(), split3.validation.len()), (2, 1));
        let none = split(&three, 0.0, &mut StdRng::seed_from_u64(1)).unwrap();
        assert!(none.validation.is_empty());
        let err = split(&classes(vec![0, 1]), 0.9, &mut StdRng::seed_from_u64(1)).unwrap_err();
        assert!(
            err.to_string().contains("leave no rows to train on"),
            "{err}"
        );
    }

    #[test]
    fn scalers_use_the_given_rows_and_survive_constant_columns() {
        let dataset = Dataset {
            features: vec!["a".into(), "b".into()],
            target_name: "y".into(),
            values: vec![1.0, 5.0, 3.0, 5.0, 100.0, 5.0],
            target: Target::Values(vec![0.0; 3]),
        };
        let scaler = fit_scaler(&dataset, &[0, 1]);
        assert_eq!(scaler.mean, [2.0, 5.0]);
        assert_eq!(scaler.scale, [1.0, 1.0]);
        let target = fit_target_scaler(&[2.0, 4.0, 9.0], &[0, 1]);
        assert_eq!((target.mean, target.scale), (vec![3.0], vec![1.0]));
    }
}
