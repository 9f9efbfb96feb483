//! Why a tracking operation failed: the stores' shared error classes (weir_sql::StoreError),
//! which weir-mlflow-wire answers with MLflow's codes.

pub use weir_sql::StoreError as TrackingError;
