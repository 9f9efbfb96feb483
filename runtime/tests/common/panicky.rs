//! A model that panics on demand, for the tests that no panic reaches a client (HTTP and gRPC).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use weir_models::repository::ModelConfig;
use weir_models::{Backend, BackendError, DataType, Dim, Signature, Tensor, TensorSpec};
use weir_runtime::RunningServer;

/// Echoes FP32 `x` as `y`; panics in the model when the first element is negative, and in its
/// signature (read while a request is decoded, on the async side) while `panic_on_read`.
pub struct Panicky {
    signature: Signature,
    pub panic_on_read: AtomicBool,
}

impl Panicky {
    /// Serves a fresh one as model `boom`, version 1, on `server`.
    pub fn install(server: &RunningServer) -> Arc<Panicky> {
        let backend = Arc::new(Panicky {
            signature: Signature {
                inputs: vec![spec("x")],
                outputs: vec![spec("y")],
            },
            panic_on_read: AtomicBool::new(false),
        });
        server
            .app
            .store
            .insert_backend("boom", 1, backend.clone(), &ModelConfig::default());
        backend
    }
}

impl Backend for Panicky {
    fn signature(&self) -> &Signature {
        if self.panic_on_read.load(Ordering::Relaxed) {
            panic!("injected panic while a request was decoded");
        }
        &self.signature
    }

    fn platform(&self) -> &'static str {
        "test"
    }

    fn infer(&self, inputs: Vec<Tensor>, _outputs: &[String]) -> Result<Vec<Tensor>, BackendError> {
        let x = inputs.into_iter().next().unwrap();
        if let weir_models::TensorData::Fp32(values) = &x.data {
            if values.first().is_some_and(|v| *v < 0.0) {
                panic!("injected panic in the model");
            }
        }
        Ok(vec![Tensor::new("y", x.shape, x.data)])
    }
}

fn spec(name: &str) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        datatype: DataType::Fp32,
        shape: vec![Dim::Variable, Dim::Fixed(2)],
    }
}
