//! The vocabulary shared by protocols and backends: datatypes, tensors and signatures.

mod datatype;
mod signature;
mod tensor;

pub use datatype::DataType;
pub use signature::{Dim, Signature, TensorSpec, ValidationError};
pub use tensor::{Tensor, TensorData};
