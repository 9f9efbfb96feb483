//! `ModelInferRequest` to tensors and tensors to `ModelInferResponse`.
//!
//! Validation is the HTTP path's: the model's [`Signature`] checks names, datatypes and shapes
//! (`check_all_inputs_given`, `check_input`, `select_outputs`) and raw bytes decode through
//! [`TensorData::read_raw`], the reader of Triton's binary tensor extension, whose encoding
//! `raw_input_contents` shares. What is gRPC's own is only where the elements sit: a typed
//! `contents` list per element family, or one `raw_input_contents` entry per input.

use weir_models::{DataType, Signature, Tensor, TensorData, TensorSpec};

use super::proto::model_infer_request::InferInputTensor;
use super::proto::model_infer_response::InferOutputTensor;
use super::proto::{infer_parameter::ParameterChoice, InferParameter, InferTensorContents};
use super::proto::{ModelInferRequest, ModelInferResponse};
use crate::error::ApiError;
use crate::protocol::v2::InferRequest;

/// Decodes and validates a request against the model's signature; nothing is sized by the
/// request before its shape has been checked against the signature.
pub fn decode_request(
    request: ModelInferRequest,
    signature: &Signature,
) -> Result<(InferRequest, OutputForm), ApiError> {
    signature.check_all_inputs_given(request.inputs.iter().map(|input| input.name.as_str()))?;
    let raw = request.raw_input_contents;
    if !raw.is_empty() && raw.len() != request.inputs.len() {
        return Err(ApiError::bad_request(format!(
            "raw_input_contents has {} entries for {} inputs; give one per input, in order",
            raw.len(),
            request.inputs.len()
        )));
    }
    let mut raw = raw.into_iter();
    let mut inputs = Vec::with_capacity(request.inputs.len());
    for input in request.inputs {
        let shape = unsigned_shape(&input)?;
        let (spec, count) = signature.check_input(&input.name, &input.datatype, &shape)?;
        // With raw_input_contents, an input may still carry typed contents in place of an
        // empty raw entry: FP16 has only the raw form, so a request mixing FP16 with typed
        // inputs needs it. Elements in both places are refused rather than one picked.
        let typed = input.contents.filter(|contents| has_elements(contents));
        let data = match (raw.next(), typed) {
            (Some(bytes), Some(_)) if !bytes.is_empty() => {
                return Err(ApiError::bad_request(format!(
                    "input '{}' has both typed contents and raw_input_contents bytes; give one form",
                    input.name
                )))
            }
            (_, Some(contents)) => from_contents(spec, count, *contents)?,
            (Some(bytes), None) => TensorData::read_raw(spec.datatype, count, &bytes)
                .map_err(|e| ApiError::bad_request(format!("input '{}': {e}", input.name)))?,
            (None, None) => from_contents(spec, count, InferTensorContents::default())?,
        };
        let shape = shape.iter().map(|&d| d as usize).collect();
        inputs.push(Tensor::new(spec.name.clone(), shape, data));
    }
    let names = signature.select_outputs(request.outputs.iter().map(|o| o.name.as_str()))?;
    let every_named_output_typed = !request.outputs.is_empty()
        && request
            .outputs
            .iter()
            .all(|o| flag(o.parameters.get("binary_data")) == Some(false));
    let typed = every_named_output_typed
        || flag(request.parameters.get("binary_data_output")) == Some(false);
    let form = if typed {
        OutputForm::Typed
    } else {
        OutputForm::Raw
    };
    Ok((
        InferRequest {
            id: (!request.id.is_empty()).then_some(request.id),
            inputs,
            outputs: names.into_iter().map(|name| (name, !typed)).collect(),
        },
        form,
    ))
}

/// How the answer carries its tensors: as `raw_output_contents` (what Triton sends, and
/// `tritonclient.grpc` reads) unless the request asked for typed `contents` by setting the
/// `binary_data` parameter false on every output it names (or `binary_data_output` false on
/// the request). FP16 has no typed list, so an answer with an FP16 output is always raw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputForm {
    Raw,
    Typed,
}

fn flag(parameter: Option<&InferParameter>) -> Option<bool> {
    match parameter?.parameter_choice {
        Some(ParameterChoice::BoolParam(value)) => Some(value),
        _ => None,
    }
}

/// The request's shape in the form the signature checks; a negative size names the input.
fn unsigned_shape(input: &InferInputTensor) -> Result<Vec<u64>, ApiError> {
    input
        .shape
        .iter()
        .map(|&d| {
            u64::try_from(d).map_err(|_| {
                ApiError::bad_request(format!(
                    "input '{}' has shape {:?}: a dimension cannot be negative",
                    input.name, input.shape
                ))
            })
        })
        .collect()
}

fn has_elements(contents: &InferTensorContents) -> bool {
    let c = contents;
    !(c.bool_contents.is_empty()
        && c.int_contents.is_empty()
        && c.int64_contents.is_empty()
        && c.uint_contents.is_empty()
        && c.uint64_contents.is_empty()
        && c.fp32_contents.is_empty()
        && c.fp64_contents.is_empty()
        && c.bytes_contents.is_empty())
}

/// The typed list `datatype` travels in, by its field name in `InferTensorContents`.
fn contents_field(datatype: DataType) -> Option<&'static str> {
    Some(match datatype {
        DataType::Bool => "bool_contents",
        DataType::Int8 | DataType::Int16 | DataType::Int32 => "int_contents",
        DataType::Int64 => "int64_contents",
        DataType::Uint8 | DataType::Uint16 | DataType::Uint32 => "uint_contents",
        DataType::Uint64 => "uint64_contents",
        DataType::Fp32 => "fp32_contents",
        DataType::Fp64 => "fp64_contents",
        DataType::Bytes => "bytes_contents",
        DataType::Fp16 => return None,
    })
}

/// Narrows a widened list (INT8 in `int_contents`, …), naming the first element that does not
/// fit.
fn narrow<W: Copy + std::fmt::Display, T: TryFrom<W>>(
    name: &str,
    datatype: DataType,
    values: Vec<W>,
) -> Result<Vec<T>, ApiError> {
    values
        .into_iter()
        .enumerate()
        .map(|(index, value)| {
            T::try_from(value).map_err(|_| {
                ApiError::bad_request(format!(
                    "input '{name}' element {index} is {value}, which does not fit {}",
                    datatype.as_str()
                ))
            })
        })
        .collect()
}

/// Reads an input's typed contents: the list of its datatype, holding exactly the elements its
/// shape declares, and no other list.
fn from_contents(
    spec: &TensorSpec,
    count: usize,
    mut contents: InferTensorContents,
) -> Result<TensorData, ApiError> {
    let name = spec.name.as_str();
    let datatype = spec.datatype;
    let no_typed_list = || {
        ApiError::bad_request(format!(
            "input '{name}' is {}, which has no typed contents; send it in raw_input_contents",
            datatype.as_str()
        ))
    };
    let field = contents_field(datatype).ok_or_else(no_typed_list)?;
    let c = &mut contents;
    let data = match datatype {
        DataType::Bool => TensorData::Bool(std::mem::take(&mut c.bool_contents)),
        DataType::Int8 => {
            TensorData::Int8(narrow(name, datatype, std::mem::take(&mut c.int_contents))?)
        }
        DataType::Int16 => {
            TensorData::Int16(narrow(name, datatype, std::mem::take(&mut c.int_contents))?)
        }
        DataType::Int32 => TensorData::Int32(std::mem::take(&mut c.int_contents)),
        DataType::Int64 => TensorData::Int64(std::mem::take(&mut c.int64_contents)),
        DataType::Uint8 => TensorData::Uint8(narrow(
            name,
            datatype,
            std::mem::take(&mut c.uint_contents),
        )?),
        DataType::Uint16 => TensorData::Uint16(narrow(
            name,
            datatype,
            std::mem::take(&mut c.uint_contents),
        )?),
        DataType::Uint32 => TensorData::Uint32(std::mem::take(&mut c.uint_contents)),
        DataType::Uint64 => TensorData::Uint64(std::mem::take(&mut c.uint64_contents)),
        DataType::Fp32 => TensorData::Fp32(std::mem::take(&mut c.fp32_contents)),
        DataType::Fp64 => TensorData::Fp64(std::mem::take(&mut c.fp64_contents)),
        DataType::Bytes => TensorData::Bytes(std::mem::take(&mut c.bytes_contents)),
        DataType::Fp16 => return Err(no_typed_list()),
    };
    if has_elements(&contents) {
        return Err(ApiError::bad_request(format!(
            "input '{name}' is {} and travels in {field}, but its contents fill another list",
            datatype.as_str()
        )));
    }
    if data.len() != count {
        return Err(ApiError::bad_request(format!(
            "input '{name}' has {} elements in {field}, but its shape holds {count}",
            data.len()
        )));
    }
    Ok(data)
}

/// Fills `contents` with a tensor's elements in their typed list.
fn to_contents(data: &TensorData) -> InferTensorContents {
    let mut c = InferTensorContents::default();
    match data {
        TensorData::Bool(v) => c.bool_contents = v.clone(),
        TensorData::Int8(v) => c.int_contents = v.iter().map(|&x| i32::from(x)).collect(),
        TensorData::Int16(v) => c.int_contents = v.iter().map(|&x| i32::from(x)).collect(),
        TensorData::Int32(v) => c.int_contents = v.clone(),
        TensorData::Int64(v) => c.int64_contents = v.clone(),
        TensorData::Uint8(v) => c.uint_contents = v.iter().map(|&x| u32::from(x)).collect(),
        TensorData::Uint16(v) => c.uint_contents = v.iter().map(|&x| u32::from(x)).collect(),
        TensorData::Uint32(v) => c.uint_contents = v.clone(),
        TensorData::Uint64(v) => c.uint64_contents = v.clone(),
        TensorData::Fp32(v) => c.fp32_contents = v.clone(),
        TensorData::Fp64(v) => c.fp64_contents = v.clone(),
        TensorData::Bytes(v) => c.bytes_contents = v.clone(),
        // Never called for FP16: an answer holding one is raw (see OutputForm).
        TensorData::Fp16(v) => c.fp32_contents = v.iter().map(|x| x.to_f32()).collect(),
    }
    c
}

/// Encodes the outputs in the asked form (raw when any output is FP16, which has no typed list).
pub fn encode_response(
    model: &str,
    version: &str,
    id: Option<String>,
    outputs: &[Tensor],
    form: OutputForm,
) -> ModelInferResponse {
    let raw = form == OutputForm::Raw
        || outputs
            .iter()
            .any(|t| contents_field(t.datatype()).is_none());
    let mut raw_output_contents = Vec::new();
    let outputs = outputs
        .iter()
        .map(|tensor| {
            let contents = if raw {
                let mut bytes = Vec::new();
                tensor.data.write_raw(&mut bytes);
                raw_output_contents.push(bytes);
                None
            } else {
                Some(to_contents(&tensor.data))
            };
            InferOutputTensor {
                name: tensor.name.clone(),
                datatype: tensor.datatype().as_str().to_owned(),
                shape: tensor
                    .shape
                    .iter()
                    .map(|&d| i64::try_from(d).unwrap_or(i64::MAX))
                    .collect(),
                parameters: Default::default(),
                contents,
            }
        })
        .collect();
    ModelInferResponse {
        model_name: model.to_owned(),
        model_version: version.to_owned(),
        id: id.unwrap_or_default(),
        parameters: Default::default(),
        outputs,
        raw_output_contents,
    }
}

#[cfg(test)]
mod tests;
