use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use half::f16;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor as OrtTensor, TensorElementType, ValueType};

use super::OnnxOptions;
use crate::backend::{Backend, BackendError};
use crate::format::{DataType, Dim, Signature, Tensor, TensorData, TensorSpec};

/// An ONNX model version: one ONNX Runtime session per instance.
///
/// A session runs one call at a time (`Session::run` takes `&mut self`), so each instance sits
/// behind its own lock and calls go to the first free one.
pub struct OnnxModel {
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
    signature: Signature,
}

impl OnnxModel {
    pub fn load(
        path: &Path,
        options: &OnnxOptions,
        instances: usize,
    ) -> Result<OnnxModel, BackendError> {
        let environment = super::environment()?;
        let load_error = |reason: String| BackendError::Load {
            path: path.display().to_string(),
            reason,
        };
        let mut sessions = Vec::with_capacity(instances.max(1));
        for _ in 0..instances.max(1) {
            let session = Session::builder(environment)
                .and_then(|b| {
                    b.with_optimization_level(GraphOptimizationLevel::All)
                        .map_err(Into::into)
                })
                .and_then(|b| {
                    b.with_intra_threads(options.intra_op_threads.max(1))
                        .map_err(Into::into)
                })
                .and_then(|b| b.with_inter_threads(1).map_err(Into::into))
                .and_then(|mut b| b.commit_from_file(path))
                .map_err(|e| load_error(e.to_string()))?;
            sessions.push(Mutex::new(session));
        }
        let signature = read_signature(&sessions[0].lock().unwrap_or_else(|p| p.into_inner()))?;
        Ok(OnnxModel {
            sessions,
            next: AtomicUsize::new(0),
            signature,
        })
    }

    fn session(&self) -> MutexGuard<'_, Session> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let count = self.sessions.len();
        for offset in 0..count {
            if let Ok(session) = self.sessions[(start + offset) % count].try_lock() {
                return session;
            }
        }
        // All busy: wait for the one round-robin chose. A panic inside a previous call cannot
        // leave ONNX Runtime's session half-updated, so a poisoned lock is still usable.
        self.sessions[start % count]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

fn read_signature(session: &Session) -> Result<Signature, BackendError> {
    let spec = |kind: &str, name: &str, dtype: &ValueType| -> Result<TensorSpec, BackendError> {
        let ValueType::Tensor { ty, shape, .. } = dtype else {
            return Err(BackendError::Unsupported(format!(
                "{kind} '{name}' is a {dtype}, not a tensor; weir serves only tensor {kind}s \
                 (for scikit-learn classifiers convert with skl2onnx option zipmap=False)"
            )));
        };
        let datatype = datatype_of(*ty).ok_or_else(|| {
            BackendError::Unsupported(format!(
                "{kind} '{name}' has element type {ty}, which the Open Inference Protocol cannot carry"
            ))
        })?;
        Ok(TensorSpec {
            name: name.to_owned(),
            datatype,
            shape: shape.iter().map(|&d| Dim::from_i64(d)).collect(),
        })
    };
    Ok(Signature {
        inputs: session
            .inputs()
            .iter()
            .map(|outlet| spec("input", outlet.name(), outlet.dtype()))
            .collect::<Result<_, _>>()?,
        outputs: session
            .outputs()
            .iter()
            .map(|outlet| spec("output", outlet.name(), outlet.dtype()))
            .collect::<Result<_, _>>()?,
    })
}

fn datatype_of(ty: TensorElementType) -> Option<DataType> {
    Some(match ty {
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::Uint8 => DataType::Uint8,
        TensorElementType::Uint16 => DataType::Uint16,
        TensorElementType::Uint32 => DataType::Uint32,
        TensorElementType::Uint64 => DataType::Uint64,
        TensorElementType::Int8 => DataType::Int8,
        TensorElementType::Int16 => DataType::Int16,
        TensorElementType::Int32 => DataType::Int32,
        TensorElementType::Int64 => DataType::Int64,
        TensorElementType::Float16 => DataType::Fp16,
        TensorElementType::Float32 => DataType::Fp32,
        TensorElementType::Float64 => DataType::Fp64,
        TensorElementType::String => DataType::Bytes,
        _ => return None,
    })
}

/// `name` only names the input in errors: the caller keeps it for the session's input list.
fn to_ort_value(name: &str, shape: &[usize], data: TensorData) -> Result<DynValue, BackendError> {
    let shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    let built = match data {
        TensorData::Bool(v) => OrtTensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::Uint8(v) => OrtTensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::Uint16(v) => OrtTensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::Uint32(v) => OrtTensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::Uint64(v) => OrtTensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::Int8(v) => OrtTensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::Int16(v) => OrtTensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::Int32(v) => OrtTensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::Int64(v) => OrtTensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::Fp16(v) => OrtTensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::Fp32(v) => OrtTensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::Fp64(v) => OrtTensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::Bytes(v) => {
            // ONNX strings are UTF-8 and NUL-terminated inside ONNX Runtime.
            let mut strings = Vec::with_capacity(v.len());
            for (index, bytes) in v.into_iter().enumerate() {
                let text = String::from_utf8(bytes).map_err(|_| {
                    BackendError::InvalidInput(format!("input '{name}' element {index} is not valid UTF-8, which ONNX string tensors require"))
                })?;
                if text.contains('\0') {
                    return Err(BackendError::InvalidInput(format!(
                        "input '{name}' element {index} contains a NUL byte, which ONNX string tensors cannot hold"
                    )));
                }
                strings.push(text);
            }
            OrtTensor::from_string_array((shape, strings.as_slice())).map(|t| t.into_dyn())
        }
    };
    built.map_err(|e| BackendError::InvalidInput(format!("input '{name}': {e}")))
}

fn from_ort_value(
    name: &str,
    datatype: DataType,
    value: &DynValue,
) -> Result<Tensor, BackendError> {
    let failed = |e: ort::Error| BackendError::Inference(format!("output '{name}': {e}"));
    macro_rules! extract {
        ($t:ty, $variant:ident) => {{
            let (shape, data) = value.try_extract_tensor::<$t>().map_err(failed)?;
            (
                shape.iter().map(|&d| d.max(0) as usize).collect(),
                TensorData::$variant(data.to_vec()),
            )
        }};
    }
    let (shape, data): (Vec<usize>, TensorData) = match datatype {
        DataType::Bool => extract!(bool, Bool),
        DataType::Uint8 => extract!(u8, Uint8),
        DataType::Uint16 => extract!(u16, Uint16),
        DataType::Uint32 => extract!(u32, Uint32),
        DataType::Uint64 => extract!(u64, Uint64),
        DataType::Int8 => extract!(i8, Int8),
        DataType::Int16 => extract!(i16, Int16),
        DataType::Int32 => extract!(i32, Int32),
        DataType::Int64 => extract!(i64, Int64),
        DataType::Fp16 => extract!(f16, Fp16),
        DataType::Fp32 => extract!(f32, Fp32),
        DataType::Fp64 => extract!(f64, Fp64),
        DataType::Bytes => {
            let (shape, strings) = value.try_extract_strings().map_err(failed)?;
            (
                shape.iter().map(|&d| d.max(0) as usize).collect(),
                TensorData::Bytes(strings.into_iter().map(String::into_bytes).collect()),
            )
        }
    };
    Ok(Tensor::new(name, shape, data))
}

impl Backend for OnnxModel {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn platform(&self) -> &'static str {
        "onnxruntime_onnx"
    }

    fn infer(&self, inputs: Vec<Tensor>, outputs: &[String]) -> Result<Vec<Tensor>, BackendError> {
        let values = inputs
            .into_iter()
            .map(|Tensor { name, shape, data }| {
                let value = to_ort_value(&name, &shape, data)?;
                Ok((name, SessionInputValue::from(value)))
            })
            .collect::<Result<Vec<_>, BackendError>>()?;
        let mut session = self.session();
        let results = session
            .run(values)
            .map_err(|e| BackendError::Inference(e.to_string()))?;
        outputs
            .iter()
            .map(|name| {
                let spec = self.signature.output(name).ok_or_else(|| {
                    BackendError::Inference(format!("the model has no output '{name}'"))
                })?;
                let value = results.get(name).ok_or_else(|| {
                    BackendError::Inference(format!("ONNX Runtime returned no output '{name}'"))
                })?;
                from_ort_value(name, spec.datatype, value)
            })
            .collect()
    }
}
