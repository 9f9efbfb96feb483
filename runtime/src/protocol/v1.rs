//! KServe V1 (`:predict`): rows in, rows out, no declared shapes or types.
//!
//! A V1 request carries neither datatypes nor shapes, so both come from the model: the datatype
//! from its signature, the shape from the nesting of the JSON. Two forms are accepted:
//! - rows for a single-input model: `{"instances": [[5.1, 3.5, 1.4, 0.2], …]}`;
//! - named rows for any model: `{"instances": [{"INPUT0": […], "INPUT1": […]}, …]}`;
//! - rows keyed by feature name for a single-input model whose manifest names its columns
//!   (`features` in `weir.toml`): `{"instances": [{"sepal_length": 5.1, …}, …]}`, placed in the
//!   declared order, as KServe's sklearn server takes them;
//!
//! and `"inputs"` in place of `"instances"` (TensorFlow Serving's columnar form): a batch array
//! for a single-input model, or an object of batch arrays by input name.
//! The answer is `{"predictions": [...]}`: one entry per row, holding the row of the single
//! output, or an object of rows by output name when the model has several.

use std::collections::{BTreeMap, HashMap};

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;
use weir_models::{Signature, Tensor, TensorData, TensorSpec};

use super::json_data::{self, nested_json};
use crate::error::ApiError;
use crate::observe::Answered;
use crate::scheduler::Answer;
use crate::store::LoadedVersion;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictRequest<'a> {
    #[serde(default, borrow)]
    instances: Option<&'a RawValue>,
    #[serde(default, borrow)]
    inputs: Option<&'a RawValue>,
}

/// Decodes a `:predict` body into validated input tensors, for a model whose columns have no
/// names.
pub fn decode_predict(body: &[u8], signature: &Signature) -> Result<Vec<Tensor>, ApiError> {
    decode_predict_with_features(body, signature, &[])
}

/// [`decode_predict`] for a model whose single input's columns are named `features`, in order
/// (empty: unnamed): instances may then be objects keyed by those names.
pub fn decode_predict_with_features(
    body: &[u8],
    signature: &Signature,
    features: &[String],
) -> Result<Vec<Tensor>, ApiError> {
    let request: PredictRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid predict request: {e}")))?;
    let tensors = match (request.instances, request.inputs) {
        (Some(instances), None) => decode_instances(instances, signature, features)?,
        (None, Some(inputs)) if is_object(inputs) => decode_columns(inputs, signature)?,
        (None, Some(inputs)) => vec![decode_batch(single_input(signature)?, inputs)?],
        _ => {
            return Err(ApiError::bad_request(
                "a predict request needs exactly one of \"instances\" or \"inputs\"",
            ))
        }
    };
    signature.check_all_inputs_given(tensors.iter().map(|t| t.name.as_str()))?;
    Ok(tensors)
}

/// [`decode_predict`] against `backend`'s signature, off the async threads when the body is
/// large (see [`super::decode_off_thread`]).
pub async fn decode_predict_body(
    body: bytes::Bytes,
    backend: &std::sync::Arc<dyn weir_models::Backend>,
) -> Result<Vec<Tensor>, ApiError> {
    let backend = backend.clone();
    super::decode_off_thread(body.len(), move || {
        decode_predict_with_features(&body, backend.signature(), backend.feature_names())
    })
    .await
}

/// Answers one `:predict` request on `loaded`: reads the body (up to `max_body_bytes`), decodes
/// its rows against the model's signature, runs the model through its scheduler, and answers
/// `{"predictions": …}`.
pub async fn predict(
    loaded: &LoadedVersion,
    headers: &HeaderMap,
    body: Body,
    max_body_bytes: usize,
) -> Result<Answered, ApiError> {
    let (body, _) = crate::budget::read_body(headers, body, max_body_bytes, None).await?;
    let inputs = decode_predict_body(body, &loaded.backend).await?;
    let names = loaded
        .backend
        .signature()
        .select_outputs(loaded.backend.v1_predictions())?;
    let Answer {
        outputs,
        queued,
        execution,
    } = loaded.scheduler.infer(inputs, names).await?;
    let answer_size = outputs.iter().map(|t| t.data.len()).sum::<usize>() * 8;
    let predictions =
        super::off_thread(answer_size, move || encode_predictions(&outputs)).await??;
    Ok(Answered {
        response: super::json_response(StatusCode::OK, &predictions),
        queued,
        execution,
    })
}

fn is_object(json: &RawValue) -> bool {
    json.get().trim_start().starts_with('{')
}

fn single_input(signature: &Signature) -> Result<&TensorSpec, ApiError> {
    match signature.inputs.as_slice() {
        [only] => Ok(only),
        inputs => Err(ApiError::bad_request(format!(
            "the model has {} inputs ({}); give each row as an object keyed by input name",
            inputs.len(),
            inputs
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// One input's whole batch: the JSON nesting gives the shape.
fn decode_batch(spec: &TensorSpec, json: &RawValue) -> Result<Tensor, ApiError> {
    let decoded = json_data::decode(json.get(), spec.datatype, None)
        .map_err(|e| ApiError::bad_request(format!("input '{}': {e}", spec.name)))?;
    checked(spec, decoded.shape, decoded.data)
}

fn checked(spec: &TensorSpec, shape: Vec<usize>, data: TensorData) -> Result<Tensor, ApiError> {
    let wide: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    spec.check_shape(&wide)?;
    Ok(Tensor::new(spec.name.clone(), shape, data))
}

fn decode_instances(
    instances: &RawValue,
    signature: &Signature,
    features: &[String],
) -> Result<Vec<Tensor>, ApiError> {
    let rows: Vec<&RawValue> = serde_json::from_str(instances.get()).map_err(|e| {
        ApiError::bad_request(format!("\"instances\" must be an array of rows: {e}"))
    })?;
    let objects = rows.first().is_some_and(|row| is_object(row));
    if let Some(index) = rows.iter().position(|row| is_object(row) != objects) {
        let form = |object: bool| {
            if object {
                "an object keyed by name"
            } else {
                "a plain row"
            }
        };
        return Err(ApiError::bad_request(format!(
            "\"instances\" mixes two forms: instance 0 is {} but instance {index} is {}; give \
             every instance in the same form",
            form(objects),
            form(!objects)
        )));
    }
    if !objects {
        return Ok(vec![decode_batch(single_input(signature)?, instances)?]);
    }
    if let Some(spec) = keyed_by_feature(&rows, signature, features) {
        return Ok(vec![decode_feature_rows(spec, features, &rows)?]);
    }
    // Per input: the shape of one row, the rows' elements so far, and how many rows gave it.
    let mut columns: HashMap<&str, (Vec<usize>, TensorData, usize)> = HashMap::new();
    for (index, row) in rows.iter().enumerate() {
        let named: HashMap<&str, &RawValue> = serde_json::from_str(row.get()).map_err(|e| {
            ApiError::bad_request(format!(
                "instance {index} must be an object of inputs by name: {e}"
            ))
        })?;
        for (name, value) in named {
            let spec = signature.input(name).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "instance {index} names unknown input '{name}'; the model's inputs are: {}",
                    signature
                        .inputs
                        .iter()
                        .map(|i| i.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            let decoded = json_data::decode(value.get(), spec.datatype, None).map_err(|e| {
                ApiError::bad_request(format!("instance {index} input '{name}': {e}"))
            })?;
            let (row_shape, data, count) = columns.entry(spec.name.as_str()).or_insert_with(|| {
                (
                    decoded.shape.clone(),
                    TensorData::with_capacity(spec.datatype, 0),
                    0,
                )
            });
            if *row_shape != decoded.shape {
                return Err(ApiError::bad_request(format!(
                    "instance {index} input '{name}' has shape {:?}, unlike earlier rows' {:?}",
                    decoded.shape, row_shape
                )));
            }
            data.append(decoded.data);
            *count += 1;
        }
    }
    let mut tensors = Vec::with_capacity(columns.len());
    for spec in &signature.inputs {
        if let Some((row_shape, data, count)) = columns.remove(spec.name.as_str()) {
            if count != rows.len() {
                return Err(ApiError::bad_request(format!(
                    "input '{}' is missing from some instances",
                    spec.name
                )));
            }
            let mut shape = vec![rows.len()];
            shape.extend(row_shape);
            tensors.push(checked(spec, shape, data)?);
        }
    }
    Ok(tensors)
}

/// The input that instances keyed by feature name fill: the model's only input, when its
/// manifest names the columns and the first instance is not keyed by that input's own name
/// (`{"features": [5.1, 3.5, 1.4, 0.2]}` stays the named-input form).
fn keyed_by_feature<'s>(
    rows: &[&RawValue],
    signature: &'s Signature,
    features: &[String],
) -> Option<&'s TensorSpec> {
    let [only] = signature.inputs.as_slice() else {
        return None;
    };
    if features.is_empty() {
        return None;
    }
    if features.contains(&only.name) {
        return Some(only);
    }
    let first: HashMap<&str, &RawValue> = serde_json::from_str(rows.first()?.get()).ok()?;
    (!first.contains_key(only.name.as_str())).then_some(only)
}

/// Instances keyed by feature name, as one batch of `spec` with the columns in the declared
/// order. Every instance must give every feature, and nothing else, each as one value.
fn decode_feature_rows(
    spec: &TensorSpec,
    features: &[String],
    rows: &[&RawValue],
) -> Result<Tensor, ApiError> {
    let declared = || features.join(", ");
    let mut batch = String::with_capacity(rows.iter().map(|r| r.get().len()).sum::<usize>() + 2);
    batch.push('[');
    for (index, row) in rows.iter().enumerate() {
        // Sorted, so a row with several unknown keys is always answered naming the same one.
        let named: BTreeMap<&str, &RawValue> = serde_json::from_str(row.get()).map_err(|e| {
            ApiError::bad_request(format!(
                "instance {index} must be an object of features by name: {e}"
            ))
        })?;
        if let Some(unknown) = named.keys().find(|key| !features.iter().any(|f| f == *key)) {
            return Err(ApiError::bad_request(format!(
                "instance {index} names unknown feature '{unknown}'; the model's features are: {}",
                declared()
            )));
        }
        if index > 0 {
            batch.push(',');
        }
        batch.push('[');
        for (column, feature) in features.iter().enumerate() {
            let value = named.get(feature.as_str()).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "instance {index} lacks feature '{feature}'; the model's features are: {}",
                    declared()
                ))
            })?;
            if value.get().trim_start().starts_with(['[', '{']) {
                return Err(ApiError::bad_request(format!(
                    "instance {index} feature '{feature}' must be a single value, found {}",
                    value.get()
                )));
            }
            if column > 0 {
                batch.push(',');
            }
            batch.push_str(value.get());
        }
        batch.push(']');
    }
    batch.push(']');
    let decoded = json_data::decode(&batch, spec.datatype, None).map_err(|e| {
        ApiError::bad_request(format!(
            "instances by feature ({}) for input '{}': {e}",
            declared(),
            spec.name
        ))
    })?;
    checked(spec, decoded.shape, decoded.data)
}

fn decode_columns(inputs: &RawValue, signature: &Signature) -> Result<Vec<Tensor>, ApiError> {
    let named: HashMap<&str, &RawValue> = serde_json::from_str(inputs.get()).map_err(|e| {
        ApiError::bad_request(format!(
            "\"inputs\" must be an object of inputs by name: {e}"
        ))
    })?;
    let mut tensors = Vec::with_capacity(named.len());
    for spec in &signature.inputs {
        if let Some(value) = named.get(spec.name.as_str()) {
            tensors.push(decode_batch(spec, value)?);
        }
    }
    if let Some(unknown) = named.keys().find(|name| signature.input(name).is_none()) {
        return Err(ApiError::bad_request(format!(
            "\"inputs\" names unknown input '{unknown}'"
        )));
    }
    Ok(tensors)
}

/// `{"predictions": [...]}`, one entry per row of the outputs' first dimension. Outputs that
/// disagree on their rows (or whose data does not fill their shape) cannot be cut into rows:
/// that is the model's fault, answered as an internal error naming the outputs.
pub fn encode_predictions(outputs: &[Tensor]) -> Result<serde_json::Value, ApiError> {
    for tensor in outputs {
        let holds = tensor
            .shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d));
        if holds != Some(tensor.data.len()) {
            return Err(ApiError::internal(format!(
                "output '{}' has shape {:?} but {} elements; cannot answer in rows",
                tensor.name,
                tensor.shape,
                tensor.data.len()
            )));
        }
    }
    let first_dimension = |t: &Tensor| t.shape.first().copied().unwrap_or(1);
    let rows = outputs.first().map_or(0, first_dimension);
    if let Some(other) = outputs.iter().find(|t| first_dimension(t) != rows) {
        return Err(ApiError::internal(format!(
            "the model's outputs differ in their first dimension ('{}' has {rows} rows, '{}' has {}); a V1 answer needs one row per instance",
            outputs[0].name,
            other.name,
            first_dimension(other)
        )));
    }
    let row = |tensor: &Tensor, index: usize| match tensor.shape.split_first() {
        Some((_, inner)) => {
            nested_json(&tensor.data, inner, index * inner.iter().product::<usize>())
        }
        None => nested_json(&tensor.data, &[], 0),
    };
    let predictions: Vec<serde_json::Value> = (0..rows)
        .map(|index| match outputs {
            [only] => row(only, index),
            many => serde_json::Value::Object(
                many.iter()
                    .map(|t| (t.name.clone(), row(t, index)))
                    .collect(),
            ),
        })
        .collect();
    Ok(serde_json::json!({ "predictions": predictions }))
}

#[cfg(test)]
mod tests;
