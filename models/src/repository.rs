//! Reading a Triton-style model repository from disk.
//!
//! ```text
//! DIR/<model>/config.toml          optional
//! DIR/<model>/<version>/model.onnx
//! ```
//! Versions are positive integers; other entries in a model folder are ignored, as Triton does.
//! A problem with one model (a bad config, no versions) is reported for that model only, so one
//! broken model never keeps the others from serving.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::backend::{Backend, BackendError};
use crate::onnx::{OnnxModel, OnnxOptions};
use crate::safetensors::{NativeNetwork, SentenceEncoder};

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
    fn select(&self, available: &BTreeSet<u64>) -> BTreeSet<u64> {
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

/// A model folder as found on disk.
#[derive(Debug, Clone)]
pub struct ModelSource {
    pub name: String,
    pub config: ModelConfig,
    /// The versions the policy selects, each with its folder.
    pub versions: Vec<(u64, PathBuf)>,
}

/// Why a model folder (or the repository itself) could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepositoryError {
    #[error("cannot read model repository {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("invalid {path}: {reason}")]
    InvalidConfig { path: String, reason: String },
    #[error("model '{model}' has no version folders (expected {dir}/1/model.onnx)")]
    NoVersions { model: String, dir: String },
    #[error("model '{model}' has no version folder matching its version_policy")]
    NoSelectedVersions { model: String },
    #[error(
        "no model artifact in {dir} (expected model.onnx, model.safetensors with weir.toml, \
         or a Hugging Face folder with model.safetensors, config.json and tokenizer.json)"
    )]
    NoArtifact { dir: String },
    #[error("unknown platform \"{platform}\" in {path} (weir serves onnxruntime_onnx, candle_safetensors and candle_bert)")]
    UnknownPlatform { platform: String, path: String },
}

/// A model folder's name and what reading it gave.
pub type ScannedModel = (String, Result<ModelSource, RepositoryError>);

/// Lists the model folders of a repository, each read on its own so one failure stays local.
pub fn scan(root: &Path) -> Result<Vec<ScannedModel>, RepositoryError> {
    let unreadable = |reason: std::io::Error| RepositoryError::Unreadable {
        path: root.display().to_string(),
        reason: reason.to_string(),
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(root).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        // Follows symbolic links: a model folder may be linked in from elsewhere.
        let is_dir = entry.path().is_dir();
        if let (true, Some(name)) = (is_dir, entry.file_name().to_str()) {
            if !name.starts_with('.') {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    Ok(names
        .into_iter()
        .map(|name| {
            let source = read_model(root, &name);
            (name, source)
        })
        .collect())
}

/// Reads one model folder: its config and the versions its policy selects.
pub fn read_model(root: &Path, name: &str) -> Result<ModelSource, RepositoryError> {
    let dir = root.join(name);
    let config = read_config(&dir.join("config.toml"))?;
    let mut available = BTreeSet::new();
    let entries = std::fs::read_dir(&dir).map_err(|e| RepositoryError::Unreadable {
        path: dir.display().to_string(),
        reason: e.to_string(),
    })?;
    for entry in entries.flatten() {
        let version = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u64>().ok());
        if let (Some(version @ 1..), true) = (version, entry.path().is_dir()) {
            available.insert(version);
        }
    }
    if available.is_empty() {
        return Err(RepositoryError::NoVersions {
            model: name.to_owned(),
            dir: dir.display().to_string(),
        });
    }
    let selected = config.version_policy.select(&available);
    if selected.is_empty() {
        return Err(RepositoryError::NoSelectedVersions {
            model: name.to_owned(),
        });
    }
    Ok(ModelSource {
        name: name.to_owned(),
        versions: selected
            .into_iter()
            .map(|v| (v, dir.join(v.to_string())))
            .collect(),
        config,
    })
}

fn read_config(path: &Path) -> Result<ModelConfig, RepositoryError> {
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

/// Loads one version folder with the backend its files call for: `model.onnx` (ONNX Runtime),
/// `model.safetensors` + `weir.toml` (a native network), or `model.safetensors` +
/// `config.json` + `tokenizer.json` (a BERT-family sentence encoder).
pub fn load_version(dir: &Path, config: &ModelConfig) -> Result<Arc<dyn Backend>, BackendError> {
    let onnx = dir.join("model.onnx");
    if onnx.is_file() {
        return Ok(Arc::new(OnnxModel::load(
            &onnx,
            &config.onnx,
            config.instance_count,
        )?));
    }
    if dir.join("model.safetensors").is_file() && dir.join("weir.toml").is_file() {
        return Ok(Arc::new(NativeNetwork::load(dir)?));
    }
    if SentenceEncoder::is_encoder_dir(dir) {
        return Ok(Arc::new(SentenceEncoder::load(dir)?));
    }
    Err(BackendError::Load {
        path: dir.display().to_string(),
        reason: RepositoryError::NoArtifact {
            dir: dir.display().to_string(),
        }
        .to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_repository(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("weir-repo-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn versions_are_positive_integers_and_the_policy_selects_among_them() {
        let root = temp_repository("versions");
        for version in ["1", "2", "10", "0", "latest"] {
            std::fs::create_dir_all(root.join("m").join(version)).unwrap();
        }
        let source = read_model(&root, "m").unwrap();
        assert_eq!(
            source.versions.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
            [1, 2, 10]
        );

        std::fs::write(
            root.join("m/config.toml"),
            "version_policy = { latest = 2 }",
        )
        .unwrap();
        let source = read_model(&root, "m").unwrap();
        assert_eq!(
            source.versions.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
            [2, 10]
        );

        std::fs::write(
            root.join("m/config.toml"),
            "version_policy = { specific = [1, 7] }",
        )
        .unwrap();
        let source = read_model(&root, "m").unwrap();
        assert_eq!(
            source.versions.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
            [1]
        );

        std::fs::write(
            root.join("m/config.toml"),
            "version_policy = { specific = [7] }",
        )
        .unwrap();
        assert!(matches!(
            read_model(&root, "m"),
            Err(RepositoryError::NoSelectedVersions { .. })
        ));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn config_errors_stay_with_their_model() {
        let root = temp_repository("config");
        std::fs::create_dir_all(root.join("good/1")).unwrap();
        std::fs::create_dir_all(root.join("typo/1")).unwrap();
        std::fs::create_dir_all(root.join("empty")).unwrap();
        std::fs::write(root.join("typo/config.toml"), "max_batch_sise = 8").unwrap();
        let scanned = scan(&root).unwrap();
        let names: Vec<_> = scanned.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["empty", "good", "typo"]);
        assert!(matches!(
            scanned[0].1,
            Err(RepositoryError::NoVersions { .. })
        ));
        assert!(scanned[1].1.is_ok());
        let typo = scanned[2].1.as_ref().unwrap_err().to_string();
        assert!(typo.contains("max_batch_sise"), "{typo}");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn model_folders_linked_in_from_elsewhere_are_found() {
        let root = temp_repository("linked");
        let elsewhere = temp_repository("linked-target");
        std::fs::create_dir_all(elsewhere.join("1")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.join("embedder")).unwrap();
        let scanned = scan(&root).unwrap();
        assert_eq!(scanned.len(), 1);
        assert_eq!(scanned[0].0, "embedder");
        assert!(scanned[0].1.is_ok());
        std::fs::remove_dir_all(root).unwrap();
        std::fs::remove_dir_all(elsewhere).unwrap();
    }

    #[test]
    fn a_missing_repository_is_an_error_naming_it() {
        let err = scan(Path::new("/nonexistent/weir-models")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/weir-models"));
    }

    fn config_of(text: &str) -> Result<ModelConfig, String> {
        let root = temp_repository(&format!("durations-{:x}", {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            text.hash(&mut hasher);
            hasher.finish()
        }));
        std::fs::create_dir_all(root.join("m/1")).unwrap();
        std::fs::write(root.join("m/config.toml"), text).unwrap();
        let read = read_model(&root, "m")
            .map(|source| source.config)
            .map_err(|e| e.to_string());
        std::fs::remove_dir_all(root).unwrap();
        read
    }

    /// docs/serving.md's `config.toml` example once made its model UNAVAILABLE
    /// (`max_batch_size = 0` with `[dynamic_batching]`): the example must be a config weir loads.
    #[test]
    fn the_documented_config_example_is_valid() {
        let doc = include_str!("../../docs/serving.md");
        let start = doc
            .find("```toml\n")
            .expect("docs/serving.md has a config.toml example");
        let block = &doc[start + "```toml\n".len()..];
        let block = &block[..block.find("```").expect("the example is closed")];
        let text: String = block
            .lines()
            .map(|line| format!("{}\n", line.trim_start()))
            .collect();
        assert!(text.contains("[dynamic_batching]"), "{text}");
        let config = config_of(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(config.max_batch_size > 0 && config.dynamic_batching.is_some());
    }

    #[test]
    fn durations_take_the_one_syntax_and_the_older_unit_keys() {
        let batching = |text: &str| {
            config_of(&format!("max_batch_size = 8\n[dynamic_batching]\n{text}"))
                .map(|c| c.dynamic_batching.unwrap().max_queue_delay)
        };
        assert_eq!(
            batching("max_queue_delay = \"2ms\""),
            Ok(Duration::from_millis(2))
        );
        assert_eq!(batching("max_queue_delay = 1"), Ok(Duration::from_secs(1)));
        assert_eq!(
            batching("max_queue_delay_us = 300"),
            Ok(Duration::from_micros(300))
        );
        assert_eq!(batching(""), Ok(Duration::ZERO));
        let both = batching("max_queue_delay = \"2ms\"\nmax_queue_delay_us = 300").unwrap_err();
        assert!(
            both.contains("max_queue_delay") && both.contains("max_queue_delay_us"),
            "{both}"
        );
        let bad = batching("max_queue_delay = \"soon\"").unwrap_err();
        assert!(bad.contains("'soon' is not a duration"), "{bad}");

        let queue = |text: &str| config_of(&format!("[queue]\n{text}")).map(|c| c.queue);
        assert_eq!(
            queue("timeout = \"500ms\"\nmax_size = 4"),
            Ok(QueuePolicy {
                max_size: 4,
                timeout: Duration::from_millis(500)
            })
        );
        assert_eq!(
            queue("timeout_ms = 30").map(|q| q.timeout),
            Ok(Duration::from_millis(30))
        );
        assert_eq!(queue(""), Ok(QueuePolicy::default()));
        let both = queue("timeout = \"1s\"\ntimeout_ms = 30").unwrap_err();
        assert!(both.contains("timeout_ms"), "{both}");
        // Typos are still caught inside the tables.
        let typo = queue("timeuot = 1").unwrap_err();
        assert!(typo.contains("timeuot"), "{typo}");
        let typo = batching("max_queue_dealy = 1").unwrap_err();
        assert!(typo.contains("max_queue_dealy"), "{typo}");
    }

    #[test]
    fn bad_config_values_are_refused() {
        let root = temp_repository("values");
        std::fs::create_dir_all(root.join("m/1")).unwrap();
        std::fs::write(root.join("m/config.toml"), "instance_count = 0").unwrap();
        assert!(read_model(&root, "m")
            .unwrap_err()
            .to_string()
            .contains("instance_count"));
        std::fs::write(
            root.join("m/config.toml"),
            "platform = \"tensorflow_savedmodel\"",
        )
        .unwrap();
        assert!(matches!(
            read_model(&root, "m"),
            Err(RepositoryError::UnknownPlatform { .. })
        ));
        // The refusal says why and what to write instead, not just which key.
        std::fs::write(
            root.join("m/config.toml"),
            "max_batch_size = 0\n[dynamic_batching]\n",
        )
        .unwrap();
        let refused = read_model(&root, "m").unwrap_err().to_string();
        assert!(
            refused.contains("m/config.toml")
                && refused.contains("needs max_batch_size > 0")
                && refused.contains("max_batch_size = 32"),
            "{refused}"
        );
        let missing = load_version(&root.join("m/1"), &ModelConfig::default())
            .err()
            .unwrap();
        assert!(
            missing.to_string().contains("expected model.onnx"),
            "{missing}"
        );
        std::fs::remove_dir_all(root).unwrap();
    }
}
