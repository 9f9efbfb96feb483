use std::fmt;

use super::DataType;

/// One dimension of a declared shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dim {
    /// Any size (the protocol writes it as `-1`).
    Variable,
    Fixed(u64),
}

impl Dim {
    /// The protocol's integer form: the size, or `-1` for a variable dimension.
    pub fn as_i64(self) -> i64 {
        match self {
            Dim::Variable => -1,
            Dim::Fixed(size) => i64::try_from(size).unwrap_or(i64::MAX),
        }
    }

    /// Reads the protocol's integer form; anything negative is variable, as ONNX writes it.
    pub fn from_i64(value: i64) -> Dim {
        u64::try_from(value).map_or(Dim::Variable, Dim::Fixed)
    }
}

/// A named tensor a model takes or gives: what a request is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<Dim>,
}

impl TensorSpec {
    /// Checks a shape against this spec (rank and fixed dimensions) and returns its element count.
    pub fn check_shape(&self, shape: &[u64]) -> Result<usize, ValidationError> {
        let name = &self.name;
        if shape.len() != self.shape.len() {
            return Err(ValidationError::WrongRank {
                name: name.to_owned(),
                expected: ShapeDisplay(&self.shape).to_string(),
                rank: self.shape.len(),
                found: shape.to_vec(),
            });
        }
        for (index, (declared, &given)) in self.shape.iter().zip(shape).enumerate() {
            if let Dim::Fixed(expected) = *declared {
                if expected != given {
                    return Err(ValidationError::WrongDimension {
                        name: name.to_owned(),
                        index,
                        expected,
                        found: shape.to_vec(),
                        model_shape: ShapeDisplay(&self.shape).to_string(),
                    });
                }
            }
        }
        element_count(shape).ok_or_else(|| ValidationError::ShapeOverflow {
            name: name.to_owned(),
            shape: shape.to_vec(),
        })
    }
}

/// Formats a shape the way users write it: `[-1, 4]`.
pub struct ShapeDisplay<'a>(pub &'a [Dim]);

impl fmt::Display for ShapeDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (index, dim) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", dim.as_i64())?;
        }
        f.write_str("]")
    }
}

/// The inputs and outputs of a model.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Signature {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

/// A request that does not fit the model's signature. Each message names the tensor and what was
/// expected, because the person reading it usually cannot see the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("unknown input '{name}'; the model's inputs are: {expected}")]
    UnknownInput { name: String, expected: String },
    #[error("missing input '{name}' ({datatype} {shape})")]
    MissingInput {
        name: String,
        datatype: DataType,
        shape: String,
    },
    #[error("input '{name}' is given more than once")]
    DuplicateInput { name: String },
    #[error("input '{name}' has datatype {found}, but the model expects {expected}")]
    WrongDatatype {
        name: String,
        expected: DataType,
        found: String,
    },
    #[error("input '{name}' has shape {found:?}, but the model expects {expected} (rank {rank})")]
    WrongRank {
        name: String,
        expected: String,
        rank: usize,
        found: Vec<u64>,
    },
    #[error("input '{name}' has shape {found:?}, but dimension {index} must be {expected} (model shape {model_shape})")]
    WrongDimension {
        name: String,
        index: usize,
        expected: u64,
        found: Vec<u64>,
        model_shape: String,
    },
    #[error("input '{name}' has shape {shape:?}, whose element count does not fit in memory")]
    ShapeOverflow { name: String, shape: Vec<u64> },
    #[error("unknown output '{name}' requested; the model's outputs are: {available}")]
    UnknownOutput { name: String, available: String },
    #[error("output '{name}' is requested more than once")]
    DuplicateOutput { name: String },
}

fn names(specs: &[TensorSpec]) -> String {
    specs
        .iter()
        .map(|spec| spec.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Signature {
    pub fn input(&self, name: &str) -> Option<&TensorSpec> {
        self.inputs.iter().find(|spec| spec.name == name)
    }

    pub fn output(&self, name: &str) -> Option<&TensorSpec> {
        self.outputs.iter().find(|spec| spec.name == name)
    }

    /// Checks an input's name, datatype and shape before its data is decoded, and returns the
    /// spec it matched and its element count. Checking first means a bad request is refused
    /// before the server allocates or parses anything sized by it.
    pub fn check_input(
        &self,
        name: &str,
        datatype: &str,
        shape: &[u64],
    ) -> Result<(&TensorSpec, usize), ValidationError> {
        let spec = self
            .input(name)
            .ok_or_else(|| ValidationError::UnknownInput {
                name: name.to_owned(),
                expected: names(&self.inputs),
            })?;
        if datatype != spec.datatype.as_str() {
            return Err(ValidationError::WrongDatatype {
                name: name.to_owned(),
                expected: spec.datatype,
                found: datatype.to_owned(),
            });
        }
        Ok((spec, spec.check_shape(shape)?))
    }

    /// Checks that the names a request carried are the model's inputs, each exactly once.
    /// Unknown names are reported first: a misspelt input also shows up as a missing one, and
    /// the misspelling is the useful message.
    pub fn check_all_inputs_given<'a>(
        &self,
        given: impl IntoIterator<Item = &'a str> + Clone,
    ) -> Result<(), ValidationError> {
        if let Some(unknown) = given
            .clone()
            .into_iter()
            .find(|name| self.input(name).is_none())
        {
            return Err(ValidationError::UnknownInput {
                name: unknown.to_owned(),
                expected: names(&self.inputs),
            });
        }
        let mut seen: Vec<&str> = Vec::new();
        for name in given {
            if seen.contains(&name) {
                return Err(ValidationError::DuplicateInput {
                    name: name.to_owned(),
                });
            }
            seen.push(name);
        }
        match self
            .inputs
            .iter()
            .find(|spec| !seen.contains(&spec.name.as_str()))
        {
            Some(missing) => Err(ValidationError::MissingInput {
                name: missing.name.clone(),
                datatype: missing.datatype,
                shape: ShapeDisplay(&missing.shape).to_string(),
            }),
            None => Ok(()),
        }
    }

    /// Resolves the outputs a request asked for; none requested means all of them.
    pub fn select_outputs<'a>(
        &self,
        requested: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<String>, ValidationError> {
        let mut selected: Vec<String> = Vec::new();
        for name in requested {
            if self.output(name).is_none() {
                return Err(ValidationError::UnknownOutput {
                    name: name.to_owned(),
                    available: names(&self.outputs),
                });
            }
            if selected.iter().any(|s| s == name) {
                return Err(ValidationError::DuplicateOutput {
                    name: name.to_owned(),
                });
            }
            selected.push(name.to_owned());
        }
        if selected.is_empty() {
            selected = self.outputs.iter().map(|spec| spec.name.clone()).collect();
        }
        Ok(selected)
    }
}

/// The product of a shape, or `None` when it overflows `usize`.
pub fn element_count(shape: &[u64]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &dim| {
        acc.checked_mul(usize::try_from(dim).ok()?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iris() -> Signature {
        Signature {
            inputs: vec![
                TensorSpec {
                    name: "features".into(),
                    datatype: DataType::Fp32,
                    shape: vec![Dim::Variable, Dim::Fixed(4)],
                },
                TensorSpec {
                    name: "mask".into(),
                    datatype: DataType::Bool,
                    shape: vec![Dim::Variable],
                },
            ],
            outputs: vec![
                TensorSpec {
                    name: "label".into(),
                    datatype: DataType::Int64,
                    shape: vec![Dim::Variable],
                },
                TensorSpec {
                    name: "probabilities".into(),
                    datatype: DataType::Fp32,
                    shape: vec![Dim::Variable, Dim::Fixed(3)],
                },
            ],
        }
    }

    #[test]
    fn a_matching_input_gives_its_element_count() {
        let signature = iris();
        let (spec, count) = signature.check_input("features", "FP32", &[3, 4]).unwrap();
        assert_eq!(spec.name, "features");
        assert_eq!(count, 12);
        assert_eq!(
            signature
                .check_input("features", "FP32", &[0, 4])
                .unwrap()
                .1,
            0
        );
    }

    #[test]
    fn every_validation_error_names_the_tensor_and_the_expectation() {
        let signature = iris();
        let cases = [
            (signature.check_input("feature", "FP32", &[1, 4]).unwrap_err(), "unknown input 'feature'; the model's inputs are: features, mask"),
            (signature.check_input("features", "FP64", &[1, 4]).unwrap_err(), "input 'features' has datatype FP64, but the model expects FP32"),
            (signature.check_input("features", "FP32", &[4]).unwrap_err(), "input 'features' has shape [4], but the model expects [-1, 4] (rank 2)"),
            (signature.check_input("features", "FP32", &[2, 5]).unwrap_err(), "input 'features' has shape [2, 5], but dimension 1 must be 4 (model shape [-1, 4])"),
        ];
        for (err, message) in &cases {
            assert_eq!(err.to_string(), *message);
        }
        let overflow = signature
            .check_input("features", "FP32", &[u64::MAX / 2, 4])
            .unwrap_err();
        assert!(
            matches!(overflow, ValidationError::ShapeOverflow { .. }),
            "{overflow}"
        );
    }

    #[test]
    fn missing_and_duplicate_inputs_are_named() {
        let signature = iris();
        assert_eq!(
            signature
                .check_all_inputs_given(["features"])
                .unwrap_err()
                .to_string(),
            "missing input 'mask' (BOOL [-1])"
        );
        assert_eq!(
            signature
                .check_all_inputs_given(["mask", "features", "mask"])
                .unwrap_err(),
            ValidationError::DuplicateInput {
                name: "mask".into()
            }
        );
        signature
            .check_all_inputs_given(["mask", "features"])
            .unwrap();
    }

    #[test]
    fn outputs_default_to_all_and_unknown_ones_are_named() {
        let signature = iris();
        assert_eq!(
            signature.select_outputs([]).unwrap(),
            ["label", "probabilities"]
        );
        assert_eq!(
            signature.select_outputs(["probabilities"]).unwrap(),
            ["probabilities"]
        );
        assert_eq!(
            signature.select_outputs(["proba"]).unwrap_err().to_string(),
            "unknown output 'proba' requested; the model's outputs are: label, probabilities"
        );
        assert!(signature.select_outputs(["label", "label"]).is_err());
    }

    #[test]
    fn element_count_detects_overflow() {
        assert_eq!(element_count(&[]), Some(1));
        assert_eq!(element_count(&[2, 3, 4]), Some(24));
        assert_eq!(element_count(&[u64::MAX, 2]), None);
    }
}
