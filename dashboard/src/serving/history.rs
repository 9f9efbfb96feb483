//! What the sampler remembers between polls, each kept to a bound: the last ten minutes of each
//! route's per-version numbers and each autoscaler target's, and the target's recent decisions.
//! The bounds are counts as well as ages, so a clock that jumps cannot make a history grow.

use std::collections::VecDeque;

use serde::Serialize;

use super::metrics_text::TargetSample;
use super::status::{RouteStatus, MAX_VERSIONS};

/// How far back the charts reach.
pub(crate) const KEEP_MS: u64 = 10 * 60 * 1000;
/// Points kept per history: ten minutes at one sample every two seconds, with room for jitter.
pub(crate) const MAX_POINTS: usize = 320;
/// Decisions kept per autoscaler target.
pub(crate) const MAX_DECISIONS: usize = 50;

/// One version's numbers at one sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionPoint {
    pub version: String,
    pub weight: f64,
    pub requests_per_second: f64,
    pub error_rate: f64,
    pub p99_ms: f64,
}

/// A route at one sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoutePoint {
    pub at_ms: u64,
    pub versions: Vec<VersionPoint>,
}

impl RoutePoint {
    pub(crate) fn of(status: &RouteStatus, at_ms: u64) -> RoutePoint {
        RoutePoint {
            at_ms,
            versions: status
                .backends
                .iter()
                .take(MAX_VERSIONS)
                .map(|b| VersionPoint {
                    version: b.version.clone(),
                    weight: b.weight,
                    requests_per_second: b.last_minute.requests_per_second,
                    error_rate: b.last_minute.error_rate,
                    p99_ms: b.last_minute.p99_ms,
                })
                .collect(),
        }
    }
}

/// An autoscaler target at one sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetPoint {
    pub at_ms: u64,
    pub desired: Option<f64>,
    pub observed: Option<f64>,
    pub panic: bool,
}

/// A change of the replicas a target's policy asks for, as seen between two samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub at_ms: u64,
    pub from: f64,
    pub to: f64,
    pub panic: bool,
}

/// Appends `point` to a time-ordered history, dropping what is older than [`KEEP_MS`] before
/// it or beyond [`MAX_POINTS`].
pub(crate) fn push_point<T>(
    history: &mut VecDeque<T>,
    point: T,
    at_ms: u64,
    at: impl Fn(&T) -> u64,
) {
    history.push_back(point);
    let oldest = at_ms.saturating_sub(KEEP_MS);
    while history.front().is_some_and(|p| at(p) < oldest) || history.len() > MAX_POINTS {
        history.pop_front();
    }
}

/// One autoscaler target's history and decisions.
#[derive(Debug, Clone, Default)]
pub struct TargetHistory {
    pub points: VecDeque<TargetPoint>,
    pub decisions: VecDeque<Decision>,
    /// The latest sample.
    pub last: Option<TargetSample>,
}

impl TargetHistory {
    /// Records a sample; a changed desired count is a decision.
    pub(crate) fn record(&mut self, sample: TargetSample, at_ms: u64) {
        let panic = sample.panic.unwrap_or(false);
        let before = self.last.as_ref().and_then(|s| s.desired);
        if let (Some(from), Some(to)) = (before, sample.desired) {
            if from != to {
                self.decisions.push_back(Decision {
                    at_ms,
                    from,
                    to,
                    panic,
                });
                while self.decisions.len() > MAX_DECISIONS {
                    self.decisions.pop_front();
                }
            }
        }
        push_point(
            &mut self.points,
            TargetPoint {
                at_ms,
                desired: sample.desired,
                observed: sample.observed,
                panic,
            },
            at_ms,
            |p| p.at_ms,
        );
        self.last = Some(sample);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(desired: f64, panic: bool) -> TargetSample {
        TargetSample {
            desired: Some(desired),
            panic: Some(panic),
            observed: Some(desired * 10.0),
            ..TargetSample::default()
        }
    }

    #[test]
    fn a_changed_desired_count_is_a_decision_and_an_unchanged_one_is_not() {
        let mut target = TargetHistory::default();
        target.record(sample(1.0, false), 1_000);
        target.record(sample(1.0, false), 3_000);
        target.record(sample(3.0, true), 5_000);
        target.record(sample(2.0, false), 7_000);
        assert_eq!(
            target.decisions.iter().cloned().collect::<Vec<_>>(),
            vec![
                Decision {
                    at_ms: 5_000,
                    from: 1.0,
                    to: 3.0,
                    panic: true
                },
                Decision {
                    at_ms: 7_000,
                    from: 3.0,
                    to: 2.0,
                    panic: false
                },
            ]
        );
        assert_eq!(target.points.len(), 4);
    }

    #[test]
    fn histories_keep_ten_minutes_and_a_bounded_count() {
        let mut target = TargetHistory::default();
        for i in 0..2_000u64 {
            target.record(sample((i % 7) as f64, false), i * 2_000);
        }
        assert!(target.points.len() <= MAX_POINTS);
        let newest = 1_999 * 2_000;
        assert!(target.points.iter().all(|p| p.at_ms + KEEP_MS >= newest));
        assert_eq!(target.decisions.len(), MAX_DECISIONS);
        // A clock that stands still still keeps the count bounded.
        let mut still = VecDeque::new();
        for i in 0..1_000u32 {
            push_point(&mut still, i, 5, |_| 5);
        }
        assert_eq!(still.len(), MAX_POINTS);
    }
}
