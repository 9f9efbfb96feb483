//! The Triton extensions' answers in their protobuf form: a version's model configuration and
//! its statistics (the same numbers `GET /v2/models/{m}/stats` reports).

use serde_json::Value;
use weir_models::{DataType, TensorSpec};

use super::proto::{self, model_config::SchedulingChoice};
use crate::store::LoadedVersion;

fn data_type(datatype: DataType) -> proto::DataType {
    match datatype {
        DataType::Bool => proto::DataType::TypeBool,
        DataType::Uint8 => proto::DataType::TypeUint8,
        DataType::Uint16 => proto::DataType::TypeUint16,
        DataType::Uint32 => proto::DataType::TypeUint32,
        DataType::Uint64 => proto::DataType::TypeUint64,
        DataType::Int8 => proto::DataType::TypeInt8,
        DataType::Int16 => proto::DataType::TypeInt16,
        DataType::Int32 => proto::DataType::TypeInt32,
        DataType::Int64 => proto::DataType::TypeInt64,
        DataType::Fp16 => proto::DataType::TypeFp16,
        DataType::Fp32 => proto::DataType::TypeFp32,
        DataType::Fp64 => proto::DataType::TypeFp64,
        DataType::Bytes => proto::DataType::TypeString,
    }
}

/// A tensor's dims as Triton's config writes them: without the batch dimension when the model
/// batches (Triton's `max_batch_size > 0` convention), `-1` for a variable size.
fn dims(spec: &TensorSpec, batching: bool) -> Vec<i64> {
    let skip = usize::from(batching && !spec.shape.is_empty());
    spec.shape.iter().skip(skip).map(|d| d.as_i64()).collect()
}

/// The configuration a version serves with: its tensors, batching, queue and instances.
pub fn model_config(loaded: &LoadedVersion) -> proto::ModelConfig {
    let signature = loaded.backend.signature();
    let policy = loaded.scheduler.policy();
    let batching = policy.max_batch_size > 0;
    let micros = |d: std::time::Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    proto::ModelConfig {
        name: loaded.model.clone(),
        platform: loaded.backend.platform().to_owned(),
        backend: String::new(),
        max_batch_size: i32::try_from(policy.max_batch_size).unwrap_or(i32::MAX),
        input: signature
            .inputs
            .iter()
            .map(|spec| proto::ModelInput {
                name: spec.name.clone(),
                data_type: data_type(spec.datatype).into(),
                dims: dims(spec, batching),
            })
            .collect(),
        output: signature
            .outputs
            .iter()
            .map(|spec| proto::ModelOutput {
                name: spec.name.clone(),
                data_type: data_type(spec.datatype).into(),
                dims: dims(spec, batching),
            })
            .collect(),
        instance_group: vec![proto::ModelInstanceGroup {
            name: loaded.model.clone(),
            count: i32::try_from(policy.instances).unwrap_or(i32::MAX),
            kind: proto::model_instance_group::Kind::Cpu.into(),
        }],
        scheduling_choice: policy.batching.as_ref().map(|b| {
            SchedulingChoice::DynamicBatching(proto::ModelDynamicBatching {
                preferred_batch_size: b
                    .preferred_batch_sizes
                    .iter()
                    .map(|&s| i32::try_from(s).unwrap_or(i32::MAX))
                    .collect(),
                max_queue_delay_microseconds: micros(b.max_queue_delay),
                default_queue_policy: Some(proto::ModelQueuePolicy {
                    default_timeout_microseconds: policy.queue_timeout.map_or(0, micros),
                    max_queue_size: u32::try_from(policy.queue_max_size).unwrap_or(u32::MAX),
                }),
            })
        }),
    }
}

fn duration(value: &Value) -> Option<proto::StatisticDuration> {
    Some(proto::StatisticDuration {
        count: value["count"].as_u64().unwrap_or(0),
        ns: value["ns"].as_u64().unwrap_or(0),
    })
}

/// One version's statistics from the report the HTTP route serves (`stats::VersionStats`), so
/// the two protocols cannot report different numbers.
pub fn statistics(report: &Value) -> proto::ModelStatistics {
    let phase = |name: &str| duration(&report["inference_stats"][name]);
    proto::ModelStatistics {
        name: report["name"].as_str().unwrap_or_default().to_owned(),
        version: report["version"].as_str().unwrap_or_default().to_owned(),
        last_inference: report["last_inference"].as_u64().unwrap_or(0),
        inference_count: report["inference_count"].as_u64().unwrap_or(0),
        execution_count: report["execution_count"].as_u64().unwrap_or(0),
        inference_stats: Some(proto::InferStatistics {
            success: phase("success"),
            fail: phase("fail"),
            queue: phase("queue"),
            compute_input: phase("compute_input"),
            compute_infer: phase("compute_infer"),
            compute_output: phase("compute_output"),
            cache_hit: None,
            cache_miss: None,
        }),
        batch_stats: report["batch_stats"]
            .as_array()
            .map(|batches| {
                batches
                    .iter()
                    .map(|b| proto::InferBatchStatistics {
                        batch_size: b["batch_size"].as_u64().unwrap_or(0),
                        compute_input: duration(&b["compute_input"]),
                        compute_infer: duration(&b["compute_infer"]),
                        compute_output: duration(&b["compute_output"]),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}
