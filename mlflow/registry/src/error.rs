//! Why a registry operation failed: the stores' shared error classes (weir_sql::StoreError),
//! which weir-mlflow-wire answers with MLflow's codes. Its own module (not the store's) so that
//! the filter, the artifact store and the store can all name it without importing one another.
//! (Who the caller is, and so `UNAUTHENTICATED`, is the access layer's business: the store only
//! refuses what a known caller may not do.)

pub use weir_sql::StoreError;
