//! The wire formats weir speaks: Open Inference Protocol V2 (with Triton's binary tensor
//! extension) and KServe V1. Pure functions from bytes to tensors and back; no I/O.

pub mod json_data;
pub mod v1;
pub mod v2;
