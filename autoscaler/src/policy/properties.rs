//! The policy's promises over random configurations and random metric sequences (bursts,
//! silences, gaps), on a simulated clock: never below `min_replicas`, never above
//! `max_replicas`, never down while panicking, the scale-up and scale-down rates respected,
//! and a missing metric never a reason to move.

use std::time::Duration;

use proptest::prelude::*;

use super::*;

const HOLDING: &str = "no fresh metric: holding";

fn configs() -> impl Strategy<Value = PolicyConfig> {
    (
        (1.0f64..50.0, 0.1f64..=1.0, 0u32..5, 0u32..30, 6u64..=120),
        (5.0f64..=50.0, 100.0f64..=400.0, 1.0f64..10.0, 1.0f64..5.0),
        (0u64..=60, 0u64..=20, any::<bool>()),
    )
        .prop_map(
            |(
                (target, utilization, min, extra, window),
                (panic_window, panic_threshold, up, down),
                (grace, delay, hpa),
            )| PolicyConfig {
                metric: "concurrency".to_owned(),
                target,
                target_utilization: utilization,
                min_replicas: min,
                max_replicas: (min + extra).max(1),
                stable_window: Duration::from_secs(window),
                panic_window_percent: panic_window,
                panic_threshold_percent: panic_threshold,
                max_scale_up_rate: up,
                max_scale_down_rate: down,
                scale_to_zero_grace: Duration::from_secs(grace),
                scale_down_delay: Duration::from_secs(delay),
                mode: if hpa { Mode::Hpa } else { Mode::Kpa },
            },
        )
}

/// One step of the simulated clock: seconds to advance, and the sample read then (`None`: the
/// metric was missing).
fn ticks() -> impl Strategy<Value = Vec<(u32, Option<f64>)>> {
    let sample = prop_oneof![
        1 => Just(None),
        2 => Just(Some(0.0)),
        4 => (0.0f64..30.0).prop_map(Some),
        2 => (30.0f64..2_000.0).prop_map(Some),
    ];
    proptest::collection::vec((1u32..=4, sample), 1..150)
}

fn up_limit(config: &PolicyConfig, ready: u32) -> u32 {
    (f64::from(ready.max(1)) * config.max_scale_up_rate).ceil() as u32
}

fn down_limit(config: &PolicyConfig, ready: u32) -> u32 {
    (f64::from(ready) / config.max_scale_down_rate).floor() as u32
}

proptest! {
    /// Replicas become ready at once (as in the live loop's steady state).
    #[test]
    fn decisions_keep_the_bounds_and_the_rates_and_never_drop_in_panic(
        config in configs(), start in 0u32..40, ticks in ticks()
    ) {
        prop_assert!(config.validate().is_ok(), "{:?}", config.validate());
        let mut policy = Policy::new(config.clone());
        let (mut now, mut ready) = (0.0, start);
        for (advance, sample) in ticks {
            now += f64::from(advance);
            if let Some(value) = sample {
                policy.observe(now, value);
            }
            let decision = policy.decide(now, ready);
            let desired = decision.desired;
            prop_assert!(desired >= config.min_replicas, "below min: {:?}", decision);
            prop_assert!(desired <= config.max_replicas, "above max: {:?}", decision);
            prop_assert!(
                desired <= up_limit(&config, ready).max(config.min_replicas),
                "{} → {} is faster than max_scale_up_rate {}: {:?}",
                ready, desired, config.max_scale_up_rate, decision
            );
            prop_assert!(
                desired >= down_limit(&config, ready).min(config.max_replicas),
                "{} → {} is faster than max_scale_down_rate {}: {:?}",
                ready, desired, config.max_scale_down_rate, decision
            );
            if decision.panic {
                prop_assert!(desired >= ready, "down from {} while panicking: {:?}", ready, decision);
            }
            if decision.reason == HOLDING {
                prop_assert_eq!(
                    desired,
                    ready.clamp(config.min_replicas, config.max_replicas),
                    "a missing metric moved the count"
                );
            }
            ready = desired;
        }
    }

    /// Replicas that lag, fail or appear by themselves: the bounds always hold, and the rates
    /// hold for every decision taken on a fresh metric.
    #[test]
    fn whatever_is_ready_the_bounds_hold(
        config in configs(),
        ticks in ticks(),
        readies in proptest::collection::vec(0u32..60, 1..20),
    ) {
        let mut policy = Policy::new(config.clone());
        let mut now = 0.0;
        for ((advance, sample), ready) in ticks.into_iter().zip(readies.iter().cycle()) {
            now += f64::from(advance);
            if let Some(value) = sample {
                policy.observe(now, value);
            }
            let decision = policy.decide(now, *ready);
            let desired = decision.desired;
            prop_assert!((config.min_replicas..=config.max_replicas).contains(&desired), "{:?}", decision);
            if decision.reason != HOLDING {
                prop_assert!(desired <= up_limit(&config, *ready).max(config.min_replicas), "{:?}", decision);
                prop_assert!(desired >= down_limit(&config, *ready).min(config.max_replicas), "{:?}", decision);
            }
        }
    }
}
