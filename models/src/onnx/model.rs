use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use half::f16;
use ort::memory::Allocator;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{
    HasSelectedOutputs, OutputSelector, RunOptions, Session, SessionInputValue, SessionOutputs,
};
use ort::value::{DynTensor, DynValue, Tensor as OrtTensor, TensorElementType, ValueType};

use super::OnnxOptions;
use crate::backend::{Backend, BackendError};
use crate::format::{DataType, Dim, Signature, Tensor, TensorData, TensorSpec};

/// An ONNX model version: one ONNX Runtime session per instance.
///
/// A session runs one call at a time (`Session::run` takes `&mut self`), so each instance sits
/// behind its own lock and calls go to the first free one.
pub struct OnnxModel {
    instances: Vec<Mutex<Instance>>,
    next: AtomicUsize,
    signature: Signature,
}

/// One session and the output buffers it writes into.
struct Instance {
    session: Session,
    prepared: PreparedOutputs,
}

/// How many input shapes an instance keeps output buffers for: one per batch size up to 64 for
/// a model with one variable dimension.
const PREPARED_SHAPES: usize = 64;
/// The most output memory an instance keeps for reuse. Outputs larger than this are not kept:
/// next to the arithmetic that makes them, wrapping a fresh output costs nothing worth saving.
const PREPARED_BYTES: usize = 4 << 20;

/// Output tensors kept from one call to the next, keyed by the shapes of the call's inputs.
///
/// Without them every call has ONNX Runtime allocate each output and the `ort` crate query its
/// type, shape and allocator to wrap it, then release all of that once the rows are copied out;
/// for a small model that is a fifth to a third of a call's time on the model's thread (see
/// benches/README). Given a buffer of the right shape, ONNX Runtime writes into it instead.
///
/// A model's output shapes usually follow from its input shapes, which is why the input shapes
/// are the key. When they do not (an output sized by the data, as after `NonZero`), ONNX Runtime
/// refuses the kept buffer; the call is then run again without one and the instance stops
/// keeping buffers, so such a model pays one extra run once and behaves as before.
struct PreparedOutputs {
    runs: VecDeque<PreparedRun>,
    bytes: usize,
    /// Set once a call's output shapes did not follow from its input shapes.
    data_dependent: bool,
}

struct PreparedRun {
    /// Each input's name and shape, in the order the call gave them.
    inputs: Vec<(String, Vec<usize>)>,
    options: RunOptions<HasSelectedOutputs>,
    bytes: usize,
}

impl PreparedOutputs {
    fn new() -> PreparedOutputs {
        PreparedOutputs {
            runs: VecDeque::new(),
            bytes: 0,
            data_dependent: false,
        }
    }

    /// The kept run for inputs of these names and shapes, in this order.
    fn find(&self, inputs: &[(String, Vec<usize>, DynValue)]) -> Option<usize> {
        self.runs.iter().position(|run| {
            run.inputs.len() == inputs.len()
                && run
                    .inputs
                    .iter()
                    .zip(inputs)
                    .all(|((name, shape), (given, given_shape, _))| {
                        name == given && shape == given_shape
                    })
        })
    }

    /// Keeps buffers shaped like `results` for the next call whose inputs have these shapes,
    /// dropping the oldest kept shapes to stay within the bounds.
    fn learn(&mut self, inputs: Vec<(String, Vec<usize>)>, results: &SessionOutputs<'_>) {
        // Sized first, so that an output too large to keep is never allocated a second time.
        let mut keep = Vec::new();
        let mut bytes = 0usize;
        for (name, value) in results.iter() {
            let ValueType::Tensor { ty, shape, .. } = value.dtype() else {
                continue;
            };
            let Some(size) = datatype_of(*ty).and_then(DataType::element_size) else {
                continue; // strings are not kept: ONNX Runtime allocates each one anyway
            };
            bytes = bytes.saturating_add(shape.num_elements().saturating_mul(size));
            keep.push((name, *ty, shape.clone()));
        }
        if keep.is_empty() || bytes > PREPARED_BYTES {
            return;
        }
        let mut selector = OutputSelector::default();
        for (name, ty, shape) in keep {
            let Ok(buffer) = DynTensor::new(&Allocator::default(), ty, shape) else {
                return;
            };
            selector = selector.preallocate(name, buffer);
        }
        let Ok(options) = RunOptions::new().map(|options| options.with_outputs(selector)) else {
            return;
        };
        while self.runs.len() >= PREPARED_SHAPES || self.bytes + bytes > PREPARED_BYTES {
            let Some(oldest) = self.runs.pop_front() else {
                break;
            };
            self.bytes -= oldest.bytes;
        }
        self.bytes += bytes;
        self.runs.push_back(PreparedRun {
            inputs,
            options,
            bytes,
        });
    }

    fn give_up(&mut self) {
        self.data_dependent = true;
        self.runs.clear();
        self.bytes = 0;
    }
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
            sessions.push(session);
        }
        let signature = read_signature(&sessions[0])?;
        Ok(OnnxModel {
            instances: sessions
                .into_iter()
                .map(|session| {
                    Mutex::new(Instance {
                        session,
                        prepared: PreparedOutputs::new(),
                    })
                })
                .collect(),
            next: AtomicUsize::new(0),
            signature,
        })
    }

    fn instance(&self) -> MutexGuard<'_, Instance> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let count = self.instances.len();
        for offset in 0..count {
            if let Ok(instance) = self.instances[(start + offset) % count].try_lock() {
                return instance;
            }
        }
        // All busy: wait for the one round-robin chose. A panic inside a previous call cannot
        // leave ONNX Runtime's session half-updated, and the kept outputs are only a cache, so a
        // poisoned lock is still usable.
        self.instances[start % count]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Copies the requested outputs out of ONNX Runtime's results.
    fn read_outputs(
        &self,
        results: &SessionOutputs<'_>,
        outputs: &[String],
    ) -> Result<Vec<Tensor>, BackendError> {
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
        // Made before the instance is locked, so that calls on other instances' threads are
        // not held up by this one's copying.
        let values = inputs
            .into_iter()
            .map(|Tensor { name, shape, data }| {
                let value = to_ort_value(&name, &shape, data)?;
                Ok((name, shape, value))
            })
            .collect::<Result<Vec<_>, BackendError>>()?;
        let views = || {
            values
                .iter()
                .map(|(name, _, value)| (name.as_str(), SessionInputValue::from(value)))
                .collect::<Vec<_>>()
        };
        let mut instance = self.instance();
        let Instance { session, prepared } = &mut *instance;
        let kept = prepared.find(&values);
        if let Some(index) = kept {
            if let Ok(results) = session.run_with_options(views(), &prepared.runs[index].options) {
                return self.read_outputs(&results, outputs);
            }
        }
        let results = session
            .run(views())
            .map_err(|e| BackendError::Inference(e.to_string()))?;
        if kept.is_some() {
            // The kept buffers were refused and fresh ones were not: the outputs' shapes depend
            // on more than the inputs' shapes.
            prepared.give_up();
        } else if !prepared.data_dependent {
            let shapes = values
                .iter()
                .map(|(name, shape, _)| (name.clone(), shape.clone()))
                .collect();
            prepared.learn(shapes, &results);
        }
        self.read_outputs(&results, outputs)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

    use super::*;

    fn simple() -> OnnxModel {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/test-models/simple/1/model.onnx");
        OnnxModel::load(&path, &OnnxOptions::default(), 1).unwrap()
    }

    fn add(model: &OnnxModel, rows: usize) -> Vec<Tensor> {
        let input =
            |name: &str| Tensor::new(name, vec![rows, 16], TensorData::Int32(vec![1; rows * 16]));
        model
            .infer(
                vec![input("INPUT0"), input("INPUT1")],
                &["OUTPUT0".to_owned()],
            )
            .unwrap()
    }

    #[test]
    fn kept_outputs_stay_within_their_bounds() {
        let model = simple();
        for rows in 1..=PREPARED_SHAPES + 6 {
            assert_eq!(
                add(&model, rows)[0].data,
                TensorData::Int32(vec![2; rows * 16])
            );
        }
        let instance = model.instance();
        let prepared = &instance.prepared;
        assert_eq!(prepared.runs.len(), PREPARED_SHAPES);
        // The oldest shapes made way: 7 rows is the first one kept.
        assert_eq!(prepared.runs[0].inputs[0].1, [7, 16]);
        // Both outputs of `simple` are kept: 2 × rows × 16 × 4 bytes.
        let kept: usize = (7..=PREPARED_SHAPES + 6).map(|rows| rows * 128).sum();
        assert_eq!(prepared.bytes, kept);
        assert_eq!(
            prepared.runs.iter().map(|run| run.bytes).sum::<usize>(),
            kept
        );
    }

    #[test]
    fn outputs_larger_than_the_budget_are_not_kept() {
        let model = simple();
        let rows = PREPARED_BYTES / 128 + 1;
        assert_eq!(add(&model, rows)[0].shape, [rows, 16]);
        assert!(model.instance().prepared.runs.is_empty());
        // Small ones still are, and push nothing over the budget.
        add(&model, 2);
        add(&model, PREPARED_BYTES / 128);
        let instance = model.instance();
        assert_eq!(instance.prepared.runs.len(), 1);
        assert_eq!(instance.prepared.bytes, PREPARED_BYTES);
    }
}
