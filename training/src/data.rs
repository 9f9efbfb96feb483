//! Reading a CSV into a numeric feature matrix and a target.
//!
//! Every problem is found before training starts and named precisely (file, row, line, column,
//! value): a user with a 100,000-row file needs to know *which* cell is wrong, not that one is.

use std::collections::BTreeSet;
use std::path::Path;

use weir_models::safetensors::Labels;

use crate::TrainError;

/// What is learned from the target column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    Classification,
    Regression,
}

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Classification => "classification",
            Task::Regression => "regression",
        }
    }
}

/// The target column, decoded for its task.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Class indices into `labels` (labels sorted: numerically for integers, else by text).
    Classes {
        labels: Labels,
        indices: Vec<u32>,
    },
    Values(Vec<f64>),
}

impl Target {
    pub fn task(&self) -> Task {
        match self {
            Target::Classes { .. } => Task::Classification,
            Target::Values(_) => Task::Regression,
        }
    }
}

/// A table ready for training: `rows × features.len()` values, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub features: Vec<String>,
    pub target_name: String,
    pub values: Vec<f64>,
    pub target: Target,
}

impl Dataset {
    pub fn rows(&self) -> usize {
        match &self.target {
            Target::Classes { indices, .. } => indices.len(),
            Target::Values(values) => values.len(),
        }
    }

    pub fn width(&self) -> usize {
        self.features.len()
    }

    pub fn row(&self, index: usize) -> &[f64] {
        let width = self.width();
        &self.values[index * width..(index + 1) * width]
    }
}

/// Which columns to read and how to read the target.
#[derive(Debug, Clone, Default)]
pub struct Columns {
    pub target: String,
    /// Feature columns in order; empty means every column but the target.
    pub features: Vec<String>,
    /// Forces the task; `None` decides from the target's values: integers or text are
    /// classes, anything else numeric is regression.
    pub task: Option<Task>,
}

/// Reads `path` (a header row, then one row per example).
pub fn read_csv(path: &Path, columns: &Columns) -> Result<Dataset, TrainError> {
    let file = path.display().to_string();
    let bad = |message: String| TrainError::Data(format!("{file}: {message}"));
    let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(bad(
            "the file is empty; expected a header row and data rows".to_owned(),
        ));
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(bytes.as_slice());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| bad(csv_problem(&e)))?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect();
    let mut seen = BTreeSet::new();
    if let Some(twice) = header.iter().find(|h| !seen.insert(h.as_str())) {
        return Err(bad(format!("column '{twice}' appears twice in the header")));
    }
    let position = |name: &str| {
        header.iter().position(|h| h == name).ok_or_else(|| {
            bad(format!(
                "no column '{name}'; the columns are {}",
                header.join(", ")
            ))
        })
    };
    let target_at = position(&columns.target)?;
    let features: Vec<String> = if columns.features.is_empty() {
        header
            .iter()
            .filter(|h| **h != columns.target)
            .cloned()
            .collect()
    } else {
        columns.features.clone()
    };
    let mut listed = BTreeSet::new();
    if let Some(twice) = features.iter().find(|f| !listed.insert(f.as_str())) {
        return Err(bad(format!("feature '{twice}' is listed twice")));
    }
    if features.contains(&columns.target) {
        return Err(bad(format!(
            "'{}' is the target; it cannot also be a feature",
            columns.target
        )));
    }
    if features.is_empty() {
        return Err(bad(
            "there are no feature columns besides the target".to_owned()
        ));
    }
    let feature_at = features
        .iter()
        .map(|f| position(f))
        .collect::<Result<Vec<usize>, _>>()?;

    let mut values = Vec::new();
    let mut raw_target = Vec::new();
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(|e| bad(csv_problem(&e)))?;
        // Row 1 is the first data row, on line 2 (after the header) unless fields span lines.
        let place = |column: &str| {
            let line = record
                .position()
                .map_or(String::new(), |p| format!(" (line {})", p.line()));
            format!("row {}{line}, column '{column}'", row + 1)
        };
        if record.iter().all(|field| field.trim().is_empty()) {
            continue;
        }
        for (name, &at) in features.iter().zip(&feature_at) {
            let cell = record.get(at).unwrap_or("").trim();
            values.push(number(cell).map_err(|why| bad(format!("{}: {why}", place(name))))?);
        }
        let cell = record.get(target_at).unwrap_or("").trim();
        if cell.is_empty() {
            return Err(bad(format!(
                "{}: the target is empty",
                place(&columns.target)
            )));
        }
        raw_target.push((cell.to_owned(), place(&columns.target)));
    }
    if raw_target.is_empty() {
        return Err(bad("the file has a header but no data rows".to_owned()));
    }
    let target = decode_target(&columns.target, raw_target, columns.task).map_err(bad)?;
    Ok(Dataset {
        features,
        target_name: columns.target.clone(),
        values,
        target,
    })
}

fn csv_problem(err: &csv::Error) -> String {
    match err.kind() {
        csv::ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => format!(
            "{} has {len} fields but the header has {expected_len}",
            pos.as_ref()
                .map_or("a row".to_owned(), |p| format!("line {}", p.line()))
        ),
        csv::ErrorKind::Utf8 { pos, .. } => format!(
            "{} is not valid UTF-8",
            pos.as_ref()
                .map_or("a row".to_owned(), |p| format!("line {}", p.line()))
        ),
        _ => err.to_string(),
    }
}

fn number(cell: &str) -> Result<f64, String> {
    if cell.is_empty() {
        return Err("the value is empty; features must be numbers".to_owned());
    }
    match cell.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        Ok(_) => Err(format!("'{cell}' is not a finite number")),
        Err(_) => Err(format!("'{cell}' is not a number")),
    }
}

/// Decides the task (unless forced) and encodes the target for it.
fn decode_target(
    name: &str,
    cells: Vec<(String, String)>,
    task: Option<Task>,
) -> Result<Target, String> {
    let integers: Option<Vec<i64>> = cells.iter().map(|(c, _)| c.parse().ok()).collect();
    let all_numeric = cells.iter().all(|(c, _)| number(c).is_ok());
    let task = task.unwrap_or(if integers.is_some() || !all_numeric {
        Task::Classification
    } else {
        Task::Regression
    });
    let target = match task {
        Task::Regression => Target::Values(
            cells
                .iter()
                .map(|(cell, place)| {
                    number(cell).map_err(|why| {
                        format!("{place}: {why} (a regression target must be numeric)")
                    })
                })
                .collect::<Result<_, _>>()?,
        ),
        Task::Classification => match integers {
            Some(integers) => {
                let classes: Vec<i64> = integers
                    .iter()
                    .copied()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let indices = integers
                    .iter()
                    .map(|v| classes.binary_search(v).unwrap_or(0) as u32)
                    .collect();
                Target::Classes {
                    labels: Labels::Integers(classes),
                    indices,
                }
            }
            None => {
                let classes: Vec<String> = cells
                    .iter()
                    .map(|(c, _)| c.clone())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let indices = cells
                    .iter()
                    .map(|(c, _)| classes.binary_search(c).unwrap_or(0) as u32)
                    .collect();
                Target::Classes {
                    labels: Labels::Names(classes),
                    indices,
                }
            }
        },
    };
    if let Target::Classes { labels, .. } = &target {
        if labels.len() < 2 {
            let only = cells.first().map_or("", |(c, _)| c.as_str());
            return Err(format!(
                "the target '{name}' has only one class ('{only}'); classification needs at least two"
            ));
        }
    }
    Ok(target)
}

#[cfg(test)]
mod tests;
