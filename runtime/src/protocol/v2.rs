//! Open Inference Protocol V2 inference requests and responses, JSON and binary.

use std::borrow::Cow;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use weir_models::{Signature, Tensor, TensorData, TensorSpec};

use super::json_data::{self, FlatData};
use crate::error::ApiError;
use crate::observe::Answered;
use crate::scheduler::Answer;
use crate::store::LoadedVersion;

/// The header that splits a binary-extension body into its JSON part and raw tensor bytes.
pub const HEADER_CONTENT_LENGTH: &str = "inference-header-content-length";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    parameters: Option<RequestParameters>,
    #[serde(borrow)]
    inputs: Vec<RawInput<'a>>,
    #[serde(default, borrow)]
    outputs: Option<Vec<RawOutput<'a>>>,
}

#[derive(Deserialize, Default)]
struct RequestParameters {
    #[serde(default)]
    binary_data_output: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    shape: Vec<u64>,
    #[serde(borrow)]
    datatype: Cow<'a, str>,
    #[serde(default)]
    parameters: Option<InputParameters>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct InputParameters {
    binary_data_size: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(default)]
    parameters: Option<OutputParameters>,
}

#[derive(Deserialize, Default)]
struct OutputParameters {
    binary_data: Option<bool>,
}

/// A decoded, validated inference request, ready for a backend.
#[derive(Debug, Clone, PartialEq)]
pub struct InferRequest {
    pub id: Option<String>,
    pub inputs: Vec<Tensor>,
    /// Outputs to return, in order, each with whether it goes back as raw bytes.
    pub outputs: Vec<(String, bool)>,
}

/// Splits a body by the `Inference-Header-Content-Length` header value (if any) into the JSON
/// header and the binary tensor bytes that follow it.
pub fn split_body<'a>(
    body: &'a [u8],
    header_length: Option<&str>,
) -> Result<(&'a [u8], &'a [u8]), ApiError> {
    let Some(value) = header_length else {
        return Ok((body, &[]));
    };
    let length: usize = value.trim().parse().map_err(|_| {
        ApiError::bad_request(format!(
            "Inference-Header-Content-Length must be a byte count, found {value:?}"
        ))
    })?;
    if length > body.len() {
        return Err(ApiError::bad_request(format!(
            "Inference-Header-Content-Length is {length} but the body has only {} bytes",
            body.len()
        )));
    }
    Ok(body.split_at(length))
}

/// Decodes and validates an inference request against the model's signature. Nothing is sized
/// by the request before its shape has been checked against the signature and the body.
pub fn decode_request(
    json: &[u8],
    mut binary: &[u8],
    signature: &Signature,
) -> Result<InferRequest, ApiError> {
    let raw: RawRequest = serde_json::from_slice(json)
        .map_err(|e| ApiError::bad_request(format!("invalid inference request: {e}")))?;
    signature.check_all_inputs_given(raw.inputs.iter().map(|input| input.name.as_ref()))?;
    let mut inputs = Vec::with_capacity(raw.inputs.len());
    for input in &raw.inputs {
        let (spec, count) = signature.check_input(&input.name, &input.datatype, &input.shape)?;
        let binary_size = input.parameters.as_ref().and_then(|p| p.binary_data_size);
        let data = match (input.data, binary_size) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(format!(
                    "input '{}' has both \"data\" and a binary_data_size parameter; give one",
                    input.name
                )))
            }
            (None, None) => {
                return Err(ApiError::bad_request(format!(
                    "input '{}' has no \"data\"",
                    input.name
                )))
            }
            (Some(json), None) => decode_json_input(spec, count, json)?,
            (None, Some(size)) => {
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                if size > binary.len() {
                    return Err(ApiError::bad_request(format!(
                        "input '{}' declares binary_data_size {size} but only {} binary bytes remain in the body",
                        input.name,
                        binary.len()
                    )));
                }
                let (bytes, rest) = binary.split_at(size);
                binary = rest;
                TensorData::read_raw(spec.datatype, count, bytes)
                    .map_err(|e| ApiError::bad_request(format!("input '{}': {e}", input.name)))?
            }
        };
        let shape = input.shape.iter().map(|&d| d as usize).collect();
        inputs.push(Tensor::new(spec.name.clone(), shape, data));
    }
    if !binary.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{} bytes after the JSON header belong to no input (check each input's binary_data_size)",
            binary.len()
        )));
    }
    let binary_default = raw.parameters.unwrap_or_default().binary_data_output;
    let requested = raw.outputs.unwrap_or_default();
    let names = signature.select_outputs(requested.iter().map(|o| o.name.as_ref()))?;
    let outputs = names
        .into_iter()
        .map(|name| {
            let binary = requested
                .iter()
                .find(|o| o.name == name)
                .and_then(|o| o.parameters.as_ref()?.binary_data)
                .unwrap_or(binary_default);
            (name, binary)
        })
        .collect();
    Ok(InferRequest {
        id: raw.id.map(Cow::into_owned),
        inputs,
        outputs,
    })
}

/// [`split_body`] then [`decode_request`] against `backend`'s signature, off the async threads
/// when the body is large (see [`super::decode_off_thread`]).
pub async fn decode_body(
    body: bytes::Bytes,
    header_length: Option<&str>,
    backend: &std::sync::Arc<dyn weir_models::Backend>,
) -> Result<InferRequest, ApiError> {
    let header_length = header_length.map(str::to_owned);
    let backend = backend.clone();
    super::decode_off_thread(body.len(), move || {
        let (json, binary) = split_body(&body, header_length.as_deref())?;
        decode_request(json, binary, backend.signature())
    })
    .await
}

/// Answers one V2 inference request on `loaded`: reads the body (up to `max_body_bytes`),
/// decodes it against the model's signature, runs the model through its scheduler, and encodes
/// the answer in the request's own form (JSON, or raw tensors after a JSON header).
pub async fn infer(
    loaded: &LoadedVersion,
    headers: &HeaderMap,
    body: Body,
    max_body_bytes: usize,
) -> Result<Answered, ApiError> {
    let (body, _) = crate::budget::read_body(headers, body, max_body_bytes, None).await?;
    let header_length = headers
        .get(HEADER_CONTENT_LENGTH)
        .map(|v| v.to_str().unwrap_or("invalid"));
    let request = decode_body(body, header_length, &loaded.backend).await?;
    let (names, binary_flags): (Vec<String>, Vec<bool>) = request.outputs.into_iter().unzip();
    let Answer {
        outputs,
        queued,
        execution,
    } = loaded.scheduler.infer(request.inputs, names).await?;
    // A large answer (an embedding batch, an image) takes as long to encode as a large
    // request takes to decode: off the async threads too. ~8 bytes per element in JSON.
    let answer_size = outputs.iter().map(|t| t.data.len()).sum::<usize>() * 8;
    let (model, label, id) = (loaded.model.clone(), loaded.label.clone(), request.id);
    let encoded = super::off_thread(answer_size, move || {
        encode_response(&model, &label, id.as_deref(), &outputs, &binary_flags)
    })
    .await?;
    let mut response = Response::new(Body::from(encoded.body));
    let content_type = match encoded.header_length {
        Some(length) => {
            response
                .headers_mut()
                .insert(HEADER_CONTENT_LENGTH, HeaderValue::from(length));
            "application/octet-stream"
        }
        None => "application/json",
    };
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(Answered {
        response,
        queued,
        execution,
    })
}

fn decode_json_input(
    spec: &TensorSpec,
    count: usize,
    json: &RawValue,
) -> Result<TensorData, ApiError> {
    let decoded = json_data::decode(json.get(), spec.datatype, Some(count))
        .map_err(|e| ApiError::bad_request(format!("input '{}' data: {e}", spec.name)))?;
    if decoded.data.len() != count {
        return Err(ApiError::bad_request(format!(
            "input '{}' has {} elements in \"data\", but its shape holds {count}",
            spec.name,
            decoded.data.len()
        )));
    }
    Ok(decoded.data)
}

#[derive(Serialize)]
struct ResponseHeader<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<ResponseOutput<'a>>,
}

#[derive(Serialize)]
struct ResponseOutput<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinaryParameters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<FlatData<'a>>,
}

#[derive(Serialize)]
struct BinaryParameters {
    binary_data_size: usize,
}

/// An encoded response: the body, and the JSON header's length when raw tensors follow it.
pub struct EncodedResponse {
    pub body: Vec<u8>,
    pub header_length: Option<usize>,
}

/// Encodes outputs; those marked binary go after the JSON header as raw bytes, in order.
pub fn encode_response(
    model: &str,
    version: &str,
    id: Option<&str>,
    outputs: &[Tensor],
    binary: &[bool],
) -> EncodedResponse {
    let mut raw = Vec::new();
    let mut header_outputs = Vec::with_capacity(outputs.len());
    for (tensor, &as_binary) in outputs.iter().zip(binary) {
        let (parameters, data) = if as_binary {
            let before = raw.len();
            tensor.data.write_raw(&mut raw);
            (
                Some(BinaryParameters {
                    binary_data_size: raw.len() - before,
                }),
                None,
            )
        } else {
            (None, Some(FlatData(&tensor.data)))
        };
        header_outputs.push(ResponseOutput {
            name: &tensor.name,
            datatype: tensor.datatype().as_str(),
            shape: &tensor.shape,
            parameters,
            data,
        });
    }
    let header = ResponseHeader {
        model_name: model,
        model_version: version,
        id,
        outputs: header_outputs,
    };
    // Serialising plain structs and slices into a Vec cannot fail.
    let mut body = serde_json::to_vec(&header).unwrap_or_default();
    if raw.is_empty() && !binary.iter().any(|&b| b) {
        return EncodedResponse {
            body,
            header_length: None,
        };
    }
    let header_length = body.len();
    body.extend_from_slice(&raw);
    EncodedResponse {
        body,
        header_length: Some(header_length),
    }
}

/// `{"name", "datatype", "shape"}` as model metadata lists inputs and outputs.
#[derive(Serialize)]
pub struct TensorMetadata<'a> {
    pub name: &'a str,
    pub datatype: &'static str,
    pub shape: Vec<i64>,
}

impl<'a> From<&'a TensorSpec> for TensorMetadata<'a> {
    fn from(spec: &'a TensorSpec) -> Self {
        TensorMetadata {
            name: &spec.name,
            datatype: spec.datatype.as_str(),
            shape: spec.shape.iter().map(|d| d.as_i64()).collect(),
        }
    }
}

/// Model metadata: `GET /v2/models/{m}[/versions/{v}]`.
#[derive(Serialize)]
pub struct ModelMetadata<'a> {
    pub name: &'a str,
    pub versions: Vec<String>,
    pub platform: &'a str,
    pub inputs: Vec<TensorMetadata<'a>>,
    pub outputs: Vec<TensorMetadata<'a>>,
}

#[cfg(test)]
mod tests;
