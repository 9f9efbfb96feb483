//! Reads the autoscaler's `/metrics` (Prometheus / OpenMetrics text, autoscaler/src/controller.rs
//! writes it): per target, the replicas the policy asks for, whether it panics, the load it last
//! saw, and how many resizes it made. Everything else in the exposition is skipped.

use std::collections::BTreeMap;

/// Targets kept per autoscaler: a bound on what one answer can make the registry hold.
pub(crate) const MAX_TARGETS: usize = 64;

/// One target's numbers in one scrape; a metric the answer lacked stays `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetSample {
    pub desired: Option<f64>,
    pub panic: Option<bool>,
    pub observed: Option<f64>,
    pub scale_ups: f64,
    pub scale_downs: f64,
}

/// The samples of every `weir_autoscaler_*` series, by target name.
pub(crate) fn parse(text: &str) -> BTreeMap<String, TargetSample> {
    let mut targets: BTreeMap<String, TargetSample> = BTreeMap::new();
    for line in text.lines() {
        let Some((name, labels, value)) = sample_line(line) else {
            continue;
        };
        let Some(target) = label(&labels, "target") else {
            continue;
        };
        if !targets.contains_key(&target) && targets.len() >= MAX_TARGETS {
            continue;
        }
        let entry = targets.entry(target).or_default();
        match name {
            "weir_autoscaler_desired_replicas" => entry.desired = Some(value),
            "weir_autoscaler_panic" => entry.panic = Some(value != 0.0),
            "weir_autoscaler_observed" => entry.observed = Some(value),
            "weir_autoscaler_scale_events_total" | "weir_autoscaler_scale_events" => {
                match label(&labels, "direction").as_deref() {
                    Some("up") => entry.scale_ups += value,
                    Some("down") => entry.scale_downs += value,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    // A target seen only in series we do not read (a cold-start histogram) says nothing.
    targets.retain(|_, t| t.desired.is_some() || t.observed.is_some() || t.panic.is_some());
    targets
}

/// `name{labels} value [timestamp]` → (name, raw labels, value); comments, other metrics and
/// unparsable lines give `None`.
fn sample_line(line: &str) -> Option<(&str, String, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') || !line.starts_with("weir_autoscaler_") {
        return None;
    }
    let (name, rest) = match line.find('{') {
        Some(open) => (&line[..open], &line[open..]),
        None => {
            let space = line.find(' ')?;
            (&line[..space], &line[space..])
        }
    };
    let (labels, value_part) = if rest.starts_with('{') {
        let close = closing_brace(rest)?;
        (rest[1..close].to_owned(), &rest[close + 1..])
    } else {
        (String::new(), rest)
    };
    let value: f64 = value_part.split_whitespace().next()?.parse().ok()?;
    value.is_finite().then_some((name, labels, value))
}

/// The index of the `}` that closes the label set, skipping quoted values.
fn closing_brace(text: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (index, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(index),
            _ => {}
        }
    }
    None
}

/// The value of label `wanted` in `a="x",b="y"`, unescaped.
fn label(labels: &str, wanted: &str) -> Option<String> {
    let mut rest = labels;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if rest.is_empty() {
            return None;
        }
        let equals = rest.find('=')?;
        let name = rest[..equals].trim();
        let after = rest[equals + 1..].trim_start();
        let mut chars = after.char_indices();
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        let mut end = None;
        let mut escaped = false;
        for (index, c) in chars {
            if escaped {
                value.push(match c {
                    'n' => '\n',
                    other => other,
                });
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                end = Some(index);
                break;
            } else {
                value.push(c);
            }
        }
        let end = end?;
        if name == wanted {
            return Some(value);
        }
        rest = &after[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What prometheus_client writes for the autoscaler (controller.rs), with a label value
    /// that needs escaping.
    const EXPOSITION: &str = r#"# HELP weir_autoscaler_desired_replicas Replicas the policy asks for.
# TYPE weir_autoscaler_desired_replicas gauge
weir_autoscaler_desired_replicas{target="iris-stable"} 2
weir_autoscaler_desired_replicas{target="iris-canary"} 1
# HELP weir_autoscaler_panic 1 while the policy is in panic mode.
# TYPE weir_autoscaler_panic gauge
weir_autoscaler_panic{target="iris-stable"} 1
weir_autoscaler_panic{target="iris-canary"} 0
# TYPE weir_autoscaler_observed gauge
weir_autoscaler_observed{target="iris-stable"} 17.5
weir_autoscaler_observed{target="odd\"name,}x"} 3.0
# TYPE weir_autoscaler_scale_events counter
weir_autoscaler_scale_events_total{target="iris-stable",direction="up"} 3
weir_autoscaler_scale_events_total{target="iris-stable",direction="down"} 1
# TYPE weir_autoscaler_cold_start_seconds histogram
weir_autoscaler_cold_start_seconds_bucket{le="0.1",target="cold-only"} 0
weir_build_info{version="0.1.0"} 1
# EOF
"#;

    #[test]
    fn reads_each_targets_numbers() {
        let targets = parse(EXPOSITION);
        assert_eq!(
            targets["iris-stable"],
            TargetSample {
                desired: Some(2.0),
                panic: Some(true),
                observed: Some(17.5),
                scale_ups: 3.0,
                scale_downs: 1.0,
            }
        );
        assert_eq!(targets["iris-canary"].desired, Some(1.0));
        assert_eq!(targets["iris-canary"].panic, Some(false));
        assert_eq!(targets["odd\"name,}x"].observed, Some(3.0));
        assert!(!targets.contains_key("cold-only"), "{targets:?}");
        assert_eq!(targets.len(), 3);
    }

    #[test]
    fn garbage_and_other_metrics_give_nothing() {
        assert!(parse("").is_empty());
        assert!(parse("<html>not metrics</html>").is_empty());
        assert!(parse("weir_autoscaler_desired_replicas{target=\"x\"} NaN\n").is_empty());
        assert!(parse("weir_autoscaler_desired_replicas{target=\"x} 2\n").is_empty());
        assert!(
            parse("weir_autoscaler_desired_replicas 2\n").is_empty(),
            "no target label"
        );
    }

    #[test]
    fn targets_are_bounded() {
        let text: String = (0..1000)
            .map(|i| format!("weir_autoscaler_desired_replicas{{target=\"t{i}\"}} 1\n"))
            .collect();
        assert_eq!(parse(&text).len(), MAX_TARGETS);
    }
}
