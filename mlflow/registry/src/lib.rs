//! weir's model registry: registered models, versions, tags, aliases and their artifacts,
//! served through MLflow's REST API so the official `mlflow` client works against it.

pub mod artifacts;
pub mod error;
pub mod filter;
pub mod mlflow;
pub mod servable;
pub mod store;
pub mod versions;

pub use error::StoreError;
pub use mlflow::{router, Registry, SourceResolver};
pub use store::Store;

/// Bytes for tests, shared by the store's unit tests.
#[cfg(test)]
pub(crate) mod test_bytes {
    /// Deterministic bytes that are not one repeated pattern (a xorshift stream), so a store
    /// that dropped, reordered or deduplicated chunks would be caught.
    pub(crate) fn noise(len: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }
}
