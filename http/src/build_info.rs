//! `weir_build_info`: a gauge of 1 whose labels say which build of weir answers, exported by
//! every weir server so that a dashboard (or a person in the middle of an incident) can tell
//! which version each replica runs, and spot a rollout that left replicas on two builds.
//!
//! Registered as a collector, the way the listener's counts are
//! ([`crate::server::Server::register_metrics`]): it has no state to keep.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// The workspace's version (every weir crate shares it), as `weir --version` prints it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit the binary was built from, when the build said so (`WEIR_GIT_SHA=$(git rev-parse
/// HEAD) cargo build`, as the image build can); read at compile time, so it costs nothing and
/// needs no build script or git at build time.
const GIT_SHA: Option<&str> = option_env!("WEIR_GIT_SHA");

/// `release` for an optimised build without debug assertions, else `debug`: a debug binary in
/// production is slow for a reason worth seeing on a dashboard.
const PROFILE: &str = if cfg!(debug_assertions) {
    "debug"
} else {
    "release"
};

/// The labels of `weir_build_info`, in order.
pub fn labels() -> Vec<(&'static str, &'static str)> {
    let mut labels = vec![("version", VERSION), ("profile", PROFILE)];
    if let Some(sha) = GIT_SHA.map(str::trim).filter(|sha| !sha.is_empty()) {
        labels.push(("git_sha", sha));
    }
    labels
}

struct BuildInfo;

impl std::fmt::Debug for BuildInfo {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("BuildInfo")
    }
}

impl Collector for BuildInfo {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let info = ConstGauge::new(1i64);
        let mut family = encoder.encode_descriptor(
            "weir_build_info",
            "Always 1; the labels name the weir build serving (version, profile, git_sha when known)",
            None,
            info.metric_type(),
        )?;
        let labels = labels();
        info.encode(family.encode_family(&labels)?)
    }
}

/// Exports `weir_build_info{version, profile[, git_sha]} 1` in `registry`.
pub fn register_build_info(registry: &mut Registry) {
    registry.register_collector(Box::new(BuildInfo));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_info_is_one_gauge_labelled_with_the_version() {
        let mut registry = Registry::default();
        register_build_info(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        assert!(text.contains("# TYPE weir_build_info gauge"), "{text}");
        let line = text
            .lines()
            .find(|line| line.starts_with("weir_build_info{"))
            .unwrap_or_else(|| panic!("no sample in {text}"));
        assert!(
            line.starts_with(&format!(
                "weir_build_info{{version=\"{VERSION}\",profile=\"{PROFILE}\""
            )),
            "{line}"
        );
        assert!(line.ends_with("} 1"), "{line}");
        assert_eq!(
            text.matches("weir_build_info{").count(),
            1,
            "one sample: {text}"
        );
    }
}
