//! MLflow's error answer: `{"error_code": "…", "message": "…"}` with the status its code maps
//! to. The official client reads `error_code`; every weir server that speaks MLflow answers so.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

pub fn mlflow_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error_code": code, "message": message });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
