//! What the tracking client sends and reads, as MLflow's REST API writes it in JSON. These are
//! the client's own types, not the store's: the server they talk to may be MLflow's.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// MLflow's limits on one `runs/log-batch` call; [`crate::TrackingClient::log_batch`] splits
/// larger logs to stay within them.
pub const MAX_BATCH_METRICS: usize = 1000;
pub const MAX_BATCH_PARAMS: usize = 100;
pub const MAX_BATCH_TAGS: usize = 100;

/// Milliseconds since the Unix epoch, MLflow's timestamps.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A param or tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

impl KeyValue {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// One measurement of a metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub key: String,
    #[serde(serialize_with = "write_double", deserialize_with = "read_double")]
    pub value: f64,
    #[serde(default, deserialize_with = "read_int64")]
    pub timestamp: i64,
    #[serde(default, deserialize_with = "read_int64")]
    pub step: i64,
}

/// A run as `runs/create` and `runs/get` answer it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Run {
    pub info: RunInfo,
    #[serde(default)]
    pub data: RunData,
}

/// A run's identity and state. Only `run_id` is required: servers of other MLflow versions
/// leave out fields they do not have.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RunInfo {
    pub run_id: String,
    #[serde(default)]
    pub experiment_id: String,
    #[serde(default)]
    pub run_name: String,
    #[serde(default)]
    pub user_id: String,
    /// RUNNING, SCHEDULED, FINISHED, FAILED or KILLED.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub artifact_uri: String,
    #[serde(default)]
    pub lifecycle_stage: String,
    #[serde(default, deserialize_with = "read_optional_int64")]
    pub start_time: Option<i64>,
    #[serde(default, deserialize_with = "read_optional_int64")]
    pub end_time: Option<i64>,
}

/// What a run logged: latest metric values, params and tags.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct RunData {
    pub metrics: Vec<Metric>,
    pub params: Vec<KeyValue>,
    pub tags: Vec<KeyValue>,
}

/// An MLflow 3 logged model as `logged-models` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LoggedModel {
    pub info: LoggedModelInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LoggedModelInfo {
    pub model_id: String,
    /// Where its files go (`mlflow-artifacts:/…` on a server that stores them).
    pub artifact_uri: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub experiment_id: String,
    #[serde(default)]
    pub source_run_id: String,
    /// LOGGED_MODEL_PENDING, LOGGED_MODEL_READY or LOGGED_MODEL_UPLOAD_FAILED.
    #[serde(default)]
    pub status: String,
}

/// Protobuf's JSON for doubles: non-finite values are the strings `NaN`, `Infinity`,
/// `-Infinity` (JSON numbers cannot hold them).
fn write_double<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.is_nan() {
        serializer.serialize_str("NaN")
    } else if value.is_infinite() {
        serializer.serialize_str(if *value > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        })
    } else {
        serializer.serialize_f64(*value)
    }
}

/// A number, or a string as protobuf's JSON writes non-finite doubles and (in some servers)
/// every 64-bit integer.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Integer(i64),
    Float(f64),
    Text(String),
}

fn read_double<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    match NumberOrText::deserialize(deserializer)? {
        NumberOrText::Integer(n) => Ok(n as f64),
        NumberOrText::Float(x) => Ok(x),
        NumberOrText::Text(text) => match text.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other
                .parse()
                .map_err(|_| serde::de::Error::custom(format!("{other:?} is not a number"))),
        },
    }
}

fn read_int64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    int64(NumberOrText::deserialize(deserializer)?)
}

fn int64<E: serde::de::Error>(value: NumberOrText) -> Result<i64, E> {
    match value {
        NumberOrText::Integer(n) => Ok(n),
        NumberOrText::Text(text) => text
            .parse()
            .map_err(|_| E::custom(format!("{text:?} is not an integer"))),
        NumberOrText::Float(x) => Err(E::custom(format!("{x} is not an integer"))),
    }
}

fn read_optional_int64<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    Option::<NumberOrText>::deserialize(deserializer)?
        .map(int64)
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metrics_write_and_read_non_finite_values_as_protobuf_json_does() {
        let metric = |value| Metric {
            key: "loss".into(),
            value,
            timestamp: 1,
            step: 2,
        };
        for (value, written) in [
            (0.5, json!(0.5)),
            (f64::NAN, json!("NaN")),
            (f64::INFINITY, json!("Infinity")),
            (f64::NEG_INFINITY, json!("-Infinity")),
        ] {
            let json = serde_json::to_value(metric(value)).unwrap();
            assert_eq!(json["value"], written);
            let back: Metric = serde_json::from_value(json).unwrap();
            assert!(back.value == value || (value.is_nan() && back.value.is_nan()));
        }
        let refused = serde_json::from_value::<Metric>(json!({"key": "k", "value": "lots"}));
        assert!(refused.unwrap_err().to_string().contains("\"lots\""));
    }

    #[test]
    fn runs_read_from_mlflow_json_with_int64_as_numbers_or_strings() {
        let run: Run = serde_json::from_value(json!({
            "info": {
                "run_id": "abc", "experiment_id": "1", "run_name": "r", "user_id": "alice",
                "status": "RUNNING", "artifact_uri": "mlflow-artifacts:/1/abc/artifacts",
                "lifecycle_stage": "active", "start_time": "1700000000000",
                "run_uuid": "abc"
            },
            "data": {
                "metrics": [{"key": "acc", "value": 1, "timestamp": 5, "step": "3"}],
                "params": [{"key": "lr", "value": "0.1"}]
            },
            "inputs": {}
        }))
        .unwrap();
        assert_eq!(run.info.run_id, "abc");
        assert_eq!(run.info.start_time, Some(1_700_000_000_000));
        assert_eq!(run.info.end_time, None);
        assert_eq!(run.data.metrics[0].step, 3);
        assert_eq!(run.data.metrics[0].value, 1.0);
        assert_eq!(run.data.params, [KeyValue::new("lr", "0.1")]);
        assert!(run.data.tags.is_empty());
        // Only the id is required; a null time is no time.
        let bare: Run =
            serde_json::from_value(json!({"info": {"run_id": "x", "end_time": null}})).unwrap();
        assert_eq!((bare.info.end_time, bare.info.status.as_str()), (None, ""));
        assert!(serde_json::from_value::<Run>(json!({"info": {}})).is_err());
        assert!(serde_json::from_value::<Run>(json!({"data": {}})).is_err());
        let fractional = json!({"run_id": "x", "start_time": 1.5});
        assert!(serde_json::from_value::<RunInfo>(fractional).is_err());
    }

    #[test]
    fn logged_models_need_their_id_and_location() {
        let model: LoggedModel = serde_json::from_value(json!({"info": {
            "model_id": "m-1", "artifact_uri": "mlflow-artifacts:/1/models/m-1/artifacts",
            "status": "LOGGED_MODEL_PENDING", "tags": []
        }}))
        .unwrap();
        assert_eq!(model.info.model_id, "m-1");
        assert_eq!(model.info.status, "LOGGED_MODEL_PENDING");
        assert!(
            serde_json::from_value::<LoggedModel>(json!({"info": {"model_id": "m-1"}})).is_err()
        );
    }
}
