//! The scaling policy, on an explicit clock so the same code runs live and in `simulate`.
//!
//! The KPA's model (Knative's autoscaler): a per-replica target times a utilisation gives the
//! load one replica should carry; the desired count is the observed load over that, averaged
//! over a stable window (60 s) in normal mode. A short panic window (10% of it) watches for
//! bursts: when it asks for at least `panic_threshold` times the ready replicas, the policy
//! panics, scales on the panic window, and never scales down until a whole stable window has
//! passed without a burst. The panic window is an exponentially weighted average (Knative's
//! `weightedExponential`), so a 4× step shows within one tick rather than after the window
//! fills. Scale-up and scale-down are rate-limited; zero is reached only after a stable window
//! without traffic plus a grace period. An HPA-style mode is there for teams used to it.

mod config;

use std::collections::VecDeque;

use serde::Serialize;

pub(crate) use config::one_of;
pub use config::{Mode, PolicyConfig, PolicyError, PolicyKeys};

/// One decision and what it was based on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub desired: u32,
    pub panic: bool,
    pub stable_average: f64,
    pub panic_average: f64,
    /// Why the count is what it is, in a few words.
    pub reason: &'static str,
}

/// The policy's memory between decisions.
pub struct Policy {
    config: PolicyConfig,
    /// (time, observed) samples within the stable window.
    samples: VecDeque<(f64, f64)>,
    /// Exponentially weighted panic-window average and the time it was last fed.
    panic_average: Option<(f64, f64)>,
    /// Panic mode holds until this time.
    panic_until: Option<f64>,
    /// Since when the observed load has been zero (for scale to zero).
    idle_since: Option<f64>,
    /// Desired counts recently computed, for the scale-down delay.
    recent: VecDeque<(f64, u32)>,
    desired: Option<u32>,
}

impl Policy {
    pub fn new(config: PolicyConfig) -> Policy {
        Policy {
            config,
            samples: VecDeque::new(),
            panic_average: None,
            panic_until: None,
            idle_since: None,
            recent: VecDeque::new(),
            desired: None,
        }
    }

    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// Adds a sample of the observed load (total over the target's replicas) at `now` seconds.
    pub fn observe(&mut self, now: f64, value: f64) {
        let value = value.max(0.0);
        self.samples.push_back((now, value));
        let horizon = now - self.config.stable_window_secs();
        while self.samples.front().is_some_and(|(t, _)| *t <= horizon) {
            self.samples.pop_front();
        }
        // A weighted average over the panic window's samples: α = 2 / (n + 1) per second.
        let window = self.config.panic_window_secs().max(1.0);
        self.panic_average = Some(match self.panic_average {
            None => (now, value),
            Some((at, average)) => {
                let elapsed = (now - at).max(0.0);
                let alpha = 2.0 / (window + 1.0);
                let keep = (1.0 - alpha).powf(elapsed);
                (now, average * keep + value * (1.0 - keep))
            }
        });
        if value > 0.0 {
            self.idle_since = None;
        } else if self.idle_since.is_none() {
            self.idle_since = Some(now);
        }
    }

    /// The count to run at `now`, given `ready` replicas. With no fresh sample (the metric is
    /// missing or failing) the count stays where it is: a gap is never a reason to scale down.
    pub fn decide(&mut self, now: f64, ready: u32) -> Decision {
        let config = &self.config;
        let fresh = self
            .samples
            .back()
            .is_some_and(|(t, _)| now - t <= config.panic_window_secs().max(2.0));
        let current = self.desired.unwrap_or(ready);
        if !fresh {
            return Decision {
                desired: current.clamp(config.min_replicas, config.max_replicas),
                panic: self.panic_until.is_some_and(|until| now < until),
                stable_average: 0.0,
                panic_average: 0.0,
                reason: "no fresh metric: holding",
            };
        }
        let stable_average =
            self.samples.iter().map(|(_, v)| v).sum::<f64>() / self.samples.len() as f64;
        let panic_average = self.panic_average.map_or(0.0, |(_, a)| a);
        let per_replica = config.per_replica();
        let (mut desired, mut panic, mut reason) = match config.mode {
            Mode::Kpa => {
                let stable = (stable_average / per_replica).ceil() as u32;
                let burst = (panic_average / per_replica).ceil() as u32;
                let threshold = config.panic_threshold_percent / 100.0;
                if f64::from(burst) >= threshold * f64::from(ready.max(1)) && burst > ready {
                    self.panic_until = Some(now + config.stable_window_secs());
                }
                let panicking = self.panic_until.is_some_and(|until| now < until);
                if panicking {
                    // Never down while panicking.
                    (
                        burst.max(stable).max(current),
                        true,
                        "panic: scaling on the panic window",
                    )
                } else {
                    self.panic_until = None;
                    (stable, false, "stable window")
                }
            }
            Mode::Hpa => {
                let ratio = stable_average / (config.target * f64::from(ready.max(1)));
                let desired = if (ratio - 1.0).abs() <= 0.1 {
                    ready
                } else {
                    (stable_average / config.target).ceil() as u32
                };
                (desired, false, "hpa rule")
            }
        };
        // Scale-down delay: act on the highest count asked for during the delay.
        self.recent.push_back((now, desired));
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| *t < now - config.scale_down_delay.as_secs_f64())
        {
            self.recent.pop_front();
        }
        if !config.scale_down_delay.is_zero() {
            desired = self.recent.iter().map(|(_, d)| *d).max().unwrap_or(desired);
        }
        // Rate limits, relative to what is ready.
        let base = f64::from(ready.max(1));
        let up_limit = (base * config.max_scale_up_rate).ceil() as u32;
        let down_limit = (f64::from(ready) / config.max_scale_down_rate).floor() as u32;
        if desired > up_limit {
            desired = up_limit;
            reason = "limited by max_scale_up_rate";
        }
        if desired < down_limit {
            desired = down_limit;
            reason = "limited by max_scale_down_rate";
        }
        // Zero only after a stable window without traffic, plus the grace period.
        if desired == 0 {
            let idle_for = self.idle_since.map_or(0.0, |since| now - since);
            if idle_for < config.stable_window_secs() + config.scale_to_zero_grace.as_secs_f64() {
                desired = current.min(1).max(u32::from(ready > 0));
                reason = "idle, waiting out the stable window and grace period";
            } else {
                reason = "idle for the stable window and grace period";
            }
        }
        let clamped = desired.clamp(config.min_replicas, config.max_replicas);
        if clamped != desired {
            reason = if clamped > desired {
                "held at min_replicas"
            } else {
                "held at max_replicas"
            };
            panic = panic && clamped > desired;
        }
        self.desired = Some(clamped);
        Decision {
            desired: clamped,
            panic,
            stable_average,
            panic_average,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Runs a load function through the policy with one sample a second and a decision every
    /// two seconds, the replicas becoming ready at once; the decisions.
    fn run(
        config: PolicyConfig,
        start: u32,
        seconds: u32,
        load: impl Fn(u32) -> Option<f64>,
    ) -> Vec<(u32, Decision)> {
        let mut policy = Policy::new(config);
        let mut ready = start;
        let mut decisions = Vec::new();
        for second in 0..=seconds {
            if let Some(value) = load(second) {
                policy.observe(f64::from(second), value);
            }
            if second % 2 == 0 {
                let decision = policy.decide(f64::from(second), ready);
                ready = decision.desired;
                decisions.push((second, decision));
            }
        }
        decisions
    }

    fn config() -> PolicyConfig {
        PolicyConfig {
            min_replicas: 0,
            max_replicas: 50,
            ..PolicyConfig::default()
        }
    }

    #[test]
    fn a_four_times_step_is_answered_within_one_tick_in_panic_mode() {
        // 10 in flight with a per-replica load of 7: 2 replicas. Then 40 at second 120.
        let decisions = run(config(), 2, 140, |s| {
            Some(if s < 120 { 10.0 } else { 40.0 })
        });
        let before: Vec<u32> = decisions
            .iter()
            .filter(|(s, _)| (60..120).contains(s))
            .map(|(_, d)| d.desired)
            .collect();
        assert!(before.iter().all(|d| *d == 2), "{before:?}");
        let (_, first_after) = decisions.iter().find(|(s, _)| *s == 122).unwrap();
        assert!(first_after.panic, "{first_after:?}");
        assert!(first_after.desired >= 4, "{first_after:?}");
        let (_, settled) = decisions.iter().find(|(s, _)| *s == 140).unwrap();
        assert_eq!(settled.desired, 6, "ceil(40 / 7)");
    }

    #[test]
    fn steady_noisy_load_changes_nothing_for_ten_minutes() {
        // 10 ± 10%, deterministic noise.
        let noise = |s: u32| 10.0 + ((s * 7919 % 21) as f64 - 10.0) / 10.0;
        let decisions = run(config(), 2, 600, |s| Some(noise(s)));
        assert!(
            decisions.iter().all(|(_, d)| d.desired == 2 && !d.panic),
            "{:?}",
            decisions.iter().find(|(_, d)| d.desired != 2)
        );
    }

    #[test]
    fn idle_reaches_zero_only_after_the_stable_window_and_grace() {
        let decisions = run(config(), 2, 200, |s| Some(if s < 10 { 10.0 } else { 0.0 }));
        for (second, decision) in &decisions {
            if *second < 10 + 90 {
                assert!(decision.desired >= 1, "zero at {second}: {decision:?}");
            }
        }
        let (_, last) = decisions.last().unwrap();
        assert_eq!(last.desired, 0, "{last:?}");
        let zero_at = decisions.iter().find(|(_, d)| d.desired == 0).unwrap().0;
        assert!((100..=104).contains(&zero_at), "went to zero at {zero_at}");
    }

    #[test]
    fn scale_rates_are_honoured() {
        let limited = PolicyConfig {
            max_scale_up_rate: 2.0,
            min_replicas: 1,
            ..config()
        };
        // A huge burst from 1 replica: at most doubling per decision.
        let decisions = run(limited, 1, 12, |_| Some(1000.0));
        let counts: Vec<u32> = decisions.iter().map(|(_, d)| d.desired).collect();
        assert_eq!(&counts[..4], &[2, 4, 8, 16], "{counts:?}");
        // From 16 to idle: at most halving per decision.
        let mut policy = Policy::new(PolicyConfig {
            min_replicas: 1,
            ..config()
        });
        policy.observe(0.0, 0.0);
        assert_eq!(policy.decide(0.0, 16).desired, 8);
    }

    #[test]
    fn metric_gaps_never_scale_down() {
        // Load, then the metric disappears for two minutes.
        let decisions = run(config(), 2, 200, |s| if s < 60 { Some(30.0) } else { None });
        let at_60 = decisions.iter().find(|(s, _)| *s == 60).unwrap().1.desired;
        assert!(decisions
            .iter()
            .filter(|(s, _)| *s >= 60)
            .all(|(_, d)| d.desired == at_60));
        assert_eq!(at_60, 5);
    }

    #[test]
    fn the_hpa_rule_ignores_small_changes() {
        let hpa = PolicyConfig {
            mode: Mode::Hpa,
            min_replicas: 1,
            ..config()
        };
        let mut policy = Policy::new(hpa);
        policy.observe(0.0, 41.0);
        assert_eq!(policy.decide(0.0, 4).desired, 4, "within 10% of 4 × 10");
        let mut policy = Policy::new(PolicyConfig {
            mode: Mode::Hpa,
            min_replicas: 1,
            ..config()
        });
        policy.observe(0.0, 80.0);
        assert_eq!(policy.decide(0.0, 4).desired, 8);
    }
}

#[cfg(test)]
mod properties;
