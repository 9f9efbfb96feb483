//! A model's `config.toml`: what each key means, its defaults, and the checks that refuse a
//! config weir would serve wrongly.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::RepositoryError;
use crate::onnx::OnnxOptions;

/// A model's `config.toml`. Every key is optional; unknown keys are refused so a typo is
/// reported instead of silently ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// `onnxruntime_onnx`; inferred from the version folder's files when absent.
    pub platform: Option<String>,
    /// Largest batch the model accepts along its first dimension; 0 turns batching off.
    #[serde(default)]
    pub max_batch_size: u32,
    /// Which numeric versions to load.
    #[serde(default)]
    pub version_policy: VersionPolicy,
    /// How many copies of each version run side by side, each on its own thread.
    #[serde(default = "default_instance_count")]
    pub instance_count: usize,
    /// Present (with `max_batch_size > 0`) to stack concurrent requests into one model call.
    pub dynamic_batching: Option<DynamicBatching>,
    #[serde(default)]
    pub queue: QueuePolicy,
    #[serde(default)]
    pub onnx: OnnxOptions,
}

fn default_instance_count() -> usize {
    1
}

/// `[dynamic_batching]`: how long a batch may wait to fill, as Triton's dynamic batcher.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawDynamicBatching")]
pub struct DynamicBatching {
    /// How long the first request of a batch may wait for others (`max_queue_delay = "2ms"`).
    /// Zero batches only what is already queued.
    pub max_queue_delay: Duration,
    /// Batch sizes worth sending at once, without waiting out the delay.
    pub preferred_batch_sizes: Vec<usize>,
    /// For text models: the most padded tokens (rows × longest sequence) one batch may hold,
    /// as text-embeddings-inference's `max_batch_tokens`. A request over it runs alone.
    pub max_batch_tokens: Option<usize>,
}

/// `[dynamic_batching]` as written: the delay may come in weir's one duration syntax or, as
/// configs written before it did, in microseconds under `max_queue_delay_us`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDynamicBatching {
    #[serde(default, deserialize_with = "weir_http::duration::deserialize_option")]
    max_queue_delay: Option<Duration>,
    max_queue_delay_us: Option<u64>,
    #[serde(default)]
    preferred_batch_sizes: Vec<usize>,
    max_batch_tokens: Option<usize>,
}

impl TryFrom<RawDynamicBatching> for DynamicBatching {
    type Error = String;

    fn try_from(raw: RawDynamicBatching) -> Result<Self, String> {
        let max_queue_delay = one_spelling(
            ("max_queue_delay", raw.max_queue_delay),
            (
                "max_queue_delay_us",
                raw.max_queue_delay_us.map(Duration::from_micros),
            ),
        )?;
        Ok(DynamicBatching {
            max_queue_delay: max_queue_delay.unwrap_or_default(),
            preferred_batch_sizes: raw.preferred_batch_sizes,
            max_batch_tokens: raw.max_batch_tokens,
        })
    }
}

/// `[queue]`: what happens when requests arrive faster than the model answers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawQueuePolicy")]
pub struct QueuePolicy {
    /// Requests that may wait per version; more are refused at once with 503.
    pub max_size: usize,
    /// Longest a request may wait before its model starts on it (`timeout = "500ms"`); zero
    /// waits as long as it takes.
    pub timeout: Duration,
}

/// `[queue]` as written: `timeout` in the duration syntax, or the older `timeout_ms`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueuePolicy {
    #[serde(default = "default_queue_size")]
    max_size: usize,
    #[serde(default, deserialize_with = "weir_http::duration::deserialize_option")]
    timeout: Option<Duration>,
    timeout_ms: Option<u64>,
}

impl TryFrom<RawQueuePolicy> for QueuePolicy {
    type Error = String;

    fn try_from(raw: RawQueuePolicy) -> Result<Self, String> {
        let timeout = one_spelling(
            ("timeout", raw.timeout),
            ("timeout_ms", raw.timeout_ms.map(Duration::from_millis)),
        )?;
        Ok(QueuePolicy {
            max_size: raw.max_size,
            timeout: timeout.unwrap_or_default(),
        })
    }
}

/// A duration key and its legacy spelling with the unit in its name: they mean the same, so
/// a config giving both is ambiguous (which one did its author last edit?) and is refused.
fn one_spelling(
    current: (&str, Option<Duration>),
    legacy: (&str, Option<Duration>),
) -> Result<Option<Duration>, String> {
    match (current, legacy) {
        ((name, Some(_)), (old, Some(_))) => {
            Err(format!("give {name} or its older spelling {old}, not both"))
        }
        ((_, value), (_, None)) | ((_, None), (_, value)) => Ok(value),
    }
}

fn default_queue_size() -> usize {
    1024
}

impl Default for QueuePolicy {
    fn default() -> Self {
        QueuePolicy {
            max_size: default_queue_size(),
            timeout: Duration::ZERO,
        }
    }
}

/// Which versions of a model are loaded; `all` by default, so any version can be addressed and
/// the highest answers requests that name none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionPolicy {
    #[default]
    All,
    /// The N highest versions.
    Latest(usize),
    /// Exactly these versions.
    Specific(Vec<u64>),
}

impl VersionPolicy {
    pub(super) fn select(&self, available: &BTreeSet<u64>) -> BTreeSet<u64> {
        match self {
            VersionPolicy::All => available.clone(),
            VersionPolicy::Latest(count) => available.iter().rev().take(*count).copied().collect(),
            VersionPolicy::Specific(wanted) => wanted
                .iter()
                .filter(|v| available.contains(v))
                .copied()
                .collect(),
        }
    }
}

pub(super) fn read_config(path: &Path) -> Result<ModelConfig, RepositoryError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ModelConfig::default()),
        Err(e) => {
            return Err(RepositoryError::Unreadable {
                path: path.display().to_string(),
                reason: e.to_string(),
            })
        }
    };
    let config: ModelConfig =
        toml::from_str(&text).map_err(|e| RepositoryError::InvalidConfig {
            path: path.display().to_string(),
            reason: e.message().to_owned(),
        })?;
    if config.dynamic_batching.is_some() && config.max_batch_size == 0 {
        return Err(RepositoryError::InvalidConfig {
            path: path.display().to_string(),
            reason: "[dynamic_batching] needs max_batch_size > 0: max_batch_size = 0 (the \
                     default) means the model has no batch dimension, so there is nothing to \
                     batch along; set max_batch_size to the most rows one model call may take \
                     (e.g. max_batch_size = 32), or remove [dynamic_batching] (Triton refuses \
                     this combination too)"
                .to_owned(),
        });
    }
    if let Some(batching) = &config.dynamic_batching {
        if let Some(size) = batching
            .preferred_batch_sizes
            .iter()
            .find(|&&s| s == 0 || s > config.max_batch_size as usize)
        {
            return Err(RepositoryError::InvalidConfig {
                path: path.display().to_string(),
                reason: format!(
                    "preferred batch size {size} must be between 1 and max_batch_size ({})",
                    config.max_batch_size
                ),
            });
        }
    }
    if config.instance_count == 0 {
        return Err(RepositoryError::InvalidConfig {
            path: path.display().to_string(),
            reason: "instance_count must be at least 1".to_owned(),
        });
    }
    if let Some(platform) = &config.platform {
        if !["onnxruntime_onnx", "candle_safetensors", "candle_bert"].contains(&platform.as_str()) {
            return Err(RepositoryError::UnknownPlatform {
                platform: platform.clone(),
                path: path.display().to_string(),
            });
        }
    }
    Ok(config)
}

/// The configuration of a model folder with no `config.toml`.
impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            platform: None,
            max_batch_size: 0,
            version_policy: VersionPolicy::All,
            instance_count: default_instance_count(),
            dynamic_batching: None,
            queue: QueuePolicy::default(),
            onnx: OnnxOptions::default(),
        }
    }
}
