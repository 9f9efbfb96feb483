//! What a run logs: `runs/log-metric`, `log-parameter`, `set-tag`, `delete-tag`, `log-batch`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use serde::Deserialize;
use serde_json::Value;
use weir_mlflow_wire::request::{body, required, Answer};
use weir_mlflow_wire::MlflowError;

use super::fields::{double, key_values, optional_int, run_id, text_value, KeyValueBody};
use super::runs::RunBody;
use super::{done, Tracking};
use crate::store::{now_ms, KeyValue, Metric};

#[derive(Deserialize)]
struct MetricBody {
    key: Option<String>,
    value: Option<Value>,
    timestamp: Option<Value>,
    step: Option<Value>,
}

/// A metric as sent; no timestamp means now, no step means 0.
fn metric(
    key: Option<String>,
    value: Option<Value>,
    timestamp: Option<Value>,
    step: Option<Value>,
) -> Result<Metric, MlflowError> {
    let key = required(key, "key")?;
    let value = double(&required(value, "value")?, &key)?;
    Ok(Metric {
        key,
        value,
        timestamp: optional_int(&timestamp, "timestamp")?.unwrap_or_else(now_ms),
        step: optional_int(&step, "step")?.unwrap_or(0),
    })
}

pub(super) async fn log_metric(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: RunBody = body(&bytes)?;
    let id = run_id(request.run_id, request.run_uuid)?;
    let metric = metric(request.key, request.value, request.timestamp, request.step)?;
    done(&t, move |s| s.log_batch(&id, &[metric], &[], &[])).await
}

pub(super) async fn log_param(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: RunBody = body(&bytes)?;
    let id = run_id(request.run_id, request.run_uuid)?;
    let param = KeyValue::new(required(request.key, "key")?, text_value(request.value));
    done(&t, move |s| s.log_batch(&id, &[], &[param], &[])).await
}

pub(super) async fn set_tag(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: RunBody = body(&bytes)?;
    let id = run_id(request.run_id, request.run_uuid)?;
    let tag = KeyValue::new(required(request.key, "key")?, text_value(request.value));
    done(&t, move |s| s.log_batch(&id, &[], &[], &[tag])).await
}

pub(super) async fn delete_tag(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: RunBody = body(&bytes)?;
    let id = run_id(request.run_id, request.run_uuid)?;
    let key = required(request.key, "key")?;
    done(&t, move |s| s.delete_tag(&id, &key)).await
}

#[derive(Deserialize)]
struct LogBatch {
    run_id: Option<String>,
    #[serde(default)]
    metrics: Vec<MetricBody>,
    #[serde(default)]
    params: Vec<KeyValueBody>,
    #[serde(default)]
    tags: Vec<KeyValueBody>,
}

pub(super) async fn log_batch(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: LogBatch = body(&bytes)?;
    let id = required(request.run_id, "run_id")?;
    let metrics = request
        .metrics
        .into_iter()
        .map(|m| metric(m.key, m.value, m.timestamp, m.step))
        .collect::<Result<Vec<_>, _>>()?;
    let params = key_values(request.params, "params")?;
    let tags = key_values(request.tags, "tags")?;
    done(&t, move |s| s.log_batch(&id, &metrics, &params, &tags)).await
}
