//! The rollout's rules on a simulated clock: each test drives [`step`] as the async driver
//! would, advancing an `Instant` by hand; nothing sleeps.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

fn plan(steps: &[u32], failure_threshold: u32) -> RolloutPlan {
    RolloutPlan {
        steps: steps.to_vec(),
        interval: Duration::from_secs(30),
        max_error_rate: 0.01,
        max_p99: None,
        failure_threshold,
        min_requests: 50,
        prometheus: None,
    }
}

#[test]
fn a_resumed_rollout_reapplies_its_step_and_keeps_its_failures() {
    let plan = plan(&[5, 25, 50, 100], 3);
    // Where the shared document left it: step 2, one failed check, a check running.
    let shared: Progress = serde_json::from_value(serde_json::json!({
        "phase": "running", "step": 2, "failures": 1, "last_check": "check at 50%: failed"
    }))
    .unwrap();
    let mut progress = shared.clone();
    let now = Instant::now();
    let action = step(&plan, &mut progress, Input::Resume, now);
    assert_eq!(
        action,
        Action::SetCanary {
            step: 2,
            percent: 50
        }
    );
    assert_eq!(
        step(&plan, &mut progress, Input::Applied, now),
        Action::Check {
            until: now + plan.interval
        }
    );
    let later = now + plan.interval;
    let next = step(&plan, &mut progress, Input::Checked(Verdict::Failed), later);
    assert_eq!(
        progress.failures, 2,
        "the failure before the hand-over still counts"
    );
    assert_eq!(
        next,
        Action::Check {
            until: later + plan.interval
        }
    );
    let last = later + plan.interval;
    assert_eq!(
        step(&plan, &mut progress, Input::Checked(Verdict::Failed), last),
        Action::RollBack
    );
    // An ended rollout does not resume.
    let mut ended = shared;
    ended.phase = Phase::Promoted;
    assert_eq!(step(&plan, &mut ended, Input::Resume, now), Action::Stop);
}

/// What the simulated driver saw, in order.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Set {
        step: usize,
        percent: u32,
    },
    /// A verdict counted at `step`.
    Counted {
        step: usize,
        verdict: Verdict,
    },
    /// A verdict given before its interval ended (ignored by the rules).
    Early,
    Promote,
    RollBack,
}

/// Drives `step` through `verdicts`: the weights are in place at once, and each verdict comes
/// after the waits in `waits` (cycled; a verdict before the interval's end is given as a failure,
/// which must count for nothing). Stops at the end (promotion or rollback), when the verdicts
/// run out, or after a bounded number of actions.
fn simulate(plan: &RolloutPlan, verdicts: &[Verdict], waits: &[Duration]) -> (Vec<Seen>, Progress) {
    let mut progress = Progress::default();
    let mut now = Instant::now();
    let mut seen = Vec::new();
    let mut verdicts = verdicts.iter();
    let mut waits = waits.iter().cycle();
    let mut action = step(plan, &mut progress, Input::Begin, now);
    for _ in 0..10_000 {
        action = match action {
            Action::SetCanary {
                step: index,
                percent,
            } => {
                assert_eq!(progress.step, index);
                seen.push(Seen::Set {
                    step: index,
                    percent,
                });
                now += Duration::from_millis(3);
                step(plan, &mut progress, Input::Applied, now)
            }
            Action::Check { until } => {
                assert!(until >= now, "a check never ends in the past");
                now += *waits.next().unwrap();
                if now < until {
                    let before = (progress.step, progress.failures);
                    let next = step(plan, &mut progress, Input::Checked(Verdict::Failed), now);
                    assert_eq!(
                        next,
                        Action::Check { until },
                        "an early verdict changes nothing"
                    );
                    assert_eq!((progress.step, progress.failures), before);
                    seen.push(Seen::Early);
                    next
                } else {
                    let Some(verdict) = verdicts.next() else {
                        break;
                    };
                    seen.push(Seen::Counted {
                        step: progress.step,
                        verdict: *verdict,
                    });
                    step(plan, &mut progress, Input::Checked(*verdict), now)
                }
            }
            end @ (Action::Promote | Action::RollBack) => {
                seen.push(if end == Action::Promote {
                    Seen::Promote
                } else {
                    Seen::RollBack
                });
                for input in [
                    Input::Applied,
                    Input::Checked(Verdict::Passed),
                    Input::Begin,
                ] {
                    assert_eq!(step(plan, &mut progress, input, now), Action::Stop);
                }
                break;
            }
            Action::Stop => break,
        };
    }
    (seen, progress)
}

/// The outcome the rules promise, from the counted verdicts alone.
fn expected(plan: &RolloutPlan, verdicts: &[Verdict]) -> Option<Seen> {
    let (mut step, mut failures) = (0, 0);
    for verdict in verdicts {
        match verdict {
            Verdict::Passed => {
                step += 1;
                if step == plan.steps.len() {
                    return Some(Seen::Promote);
                }
            }
            Verdict::Failed => {
                failures += 1;
                if failures == plan.failure_threshold {
                    return Some(Seen::RollBack);
                }
            }
        }
    }
    None
}

const ON_TIME: [Duration; 1] = [Duration::from_secs(30)];
use Verdict::{Failed, Passed};

#[test]
fn every_step_passes_then_the_canary_is_promoted() {
    let plan = plan(&[10, 50, 100], 2);
    let (seen, progress) = simulate(&plan, &[Passed, Passed, Passed], &ON_TIME);
    assert_eq!(
        seen,
        vec![
            Seen::Set {
                step: 0,
                percent: 10
            },
            Seen::Counted {
                step: 0,
                verdict: Passed
            },
            Seen::Set {
                step: 1,
                percent: 50
            },
            Seen::Counted {
                step: 1,
                verdict: Passed
            },
            Seen::Set {
                step: 2,
                percent: 100
            },
            Seen::Counted {
                step: 2,
                verdict: Passed
            },
            Seen::Promote,
        ]
    );
    assert_eq!((progress.step, progress.failures), (2, 0));
}

#[test]
fn a_failed_check_repeats_the_step_and_the_threshold_rolls_back() {
    let plan = plan(&[10, 50, 100], 2);
    let (seen, progress) = simulate(&plan, &[Failed, Passed, Failed], &ON_TIME);
    assert_eq!(
        seen,
        vec![
            Seen::Set {
                step: 0,
                percent: 10
            },
            Seen::Counted {
                step: 0,
                verdict: Failed
            },
            // Measured again at 10 %: no weight change between.
            Seen::Counted {
                step: 0,
                verdict: Passed
            },
            Seen::Set {
                step: 1,
                percent: 50
            },
            // Failures count over the whole rollout: the second one rolls back.
            Seen::Counted {
                step: 1,
                verdict: Failed
            },
            Seen::RollBack,
        ]
    );
    assert_eq!(progress.failures, 2);
}

#[test]
fn a_verdict_before_the_interval_ends_is_not_counted() {
    let plan = plan(&[50], 1);
    let waits = [
        Duration::from_secs(10),
        Duration::from_secs(10),
        Duration::from_secs(10),
    ];
    let (seen, _) = simulate(&plan, &[Passed], &waits);
    assert_eq!(
        seen,
        vec![
            Seen::Set {
                step: 0,
                percent: 50
            },
            Seen::Early,
            Seen::Early,
            Seen::Counted {
                step: 0,
                verdict: Passed
            },
            Seen::Promote,
        ]
    );
}

#[test]
fn a_check_lasts_one_interval_from_when_the_weights_are_in_place() {
    let plan = plan(&[10, 100], 1);
    let mut progress = Progress::default();
    let start = Instant::now();
    step(&plan, &mut progress, Input::Begin, start);
    let applied = start + Duration::from_secs(2);
    assert_eq!(
        step(&plan, &mut progress, Input::Applied, applied),
        Action::Check {
            until: applied + plan.interval
        }
    );
}

#[test]
fn a_cancelled_or_ended_rollout_does_nothing_more() {
    let plan = plan(&[10, 100], 1);
    let mut progress = Progress::default();
    let now = Instant::now();
    assert!(matches!(
        step(&plan, &mut progress, Input::Begin, now),
        Action::SetCanary { .. }
    ));
    progress.finish(Phase::Cancelled);
    assert_eq!(
        step(&plan, &mut progress, Input::Applied, now),
        Action::Stop
    );
    progress.finish(Phase::Promoted);
    assert_eq!(
        progress.phase,
        Phase::Cancelled,
        "an ended rollout keeps its phase"
    );
}

#[test]
fn a_plan_without_steps_fails_instead_of_promoting() {
    let plan = plan(&[], 1);
    let mut progress = Progress::default();
    assert_eq!(
        step(&plan, &mut progress, Input::Begin, Instant::now()),
        Action::Stop
    );
    assert_eq!(progress.phase, Phase::Failed);
}

#[test]
fn progress_shows_as_before() {
    let progress = Progress {
        phase: Phase::RolledBack,
        ..Progress::default()
    };
    assert_eq!(
        serde_json::to_value(&progress).unwrap(),
        serde_json::json!({"phase": "rolled_back", "step": 0, "failures": 0, "last_check": null})
    );
}

fn plans() -> impl Strategy<Value = RolloutPlan> {
    (proptest::collection::btree_set(1u32..=100, 1..6), 1u32..5)
        .prop_map(|(steps, threshold)| plan(&steps.into_iter().collect::<Vec<_>>(), threshold))
}

fn verdicts() -> impl Strategy<Value = Vec<Verdict>> {
    proptest::collection::vec(prop_oneof![Just(Passed), Just(Failed)], 0..20)
}

/// Waits between a check's start and its verdict: some early, the last always on time.
fn waits() -> impl Strategy<Value = Vec<Duration>> {
    proptest::collection::vec(0u64..40_000, 0..4).prop_map(|mut ms| {
        ms.push(30_000);
        ms.into_iter().map(Duration::from_millis).collect()
    })
}

proptest! {
    #[test]
    fn the_outcome_follows_the_counted_verdicts(
        plan in plans(), verdicts in verdicts(), waits in waits()
    ) {
        let (seen, progress) = simulate(&plan, &verdicts, &waits);
        let end = seen.last().filter(|s| matches!(s, Seen::Promote | Seen::RollBack));
        prop_assert_eq!(end.cloned(), expected(&plan, &verdicts));
        prop_assert!(progress.failures <= plan.failure_threshold);
        prop_assert!(progress.step < plan.steps.len());
    }

    #[test]
    fn steps_go_in_order_and_a_step_moves_on_only_after_a_pass(
        plan in plans(), verdicts in verdicts(), waits in waits()
    ) {
        let (seen, _) = simulate(&plan, &verdicts, &waits);
        let mut next_step = 0;
        let mut last_counted: Option<(usize, Verdict)> = None;
        for event in &seen {
            match event {
                Seen::Set { step, percent } => {
                    prop_assert_eq!(*step, next_step, "steps are applied in order, once each");
                    prop_assert_eq!(*percent, plan.steps[*step]);
                    if *step > 0 {
                        prop_assert_eq!(last_counted, Some((step - 1, Passed)));
                    }
                    next_step += 1;
                }
                Seen::Counted { step, verdict } => {
                    prop_assert_eq!(*step + 1, next_step, "a check measures the step last applied");
                    last_counted = Some((*step, *verdict));
                }
                Seen::Promote => {
                    prop_assert_eq!(next_step, plan.steps.len(), "never before the last step");
                    prop_assert_eq!(last_counted, Some((plan.steps.len() - 1, Passed)));
                }
                Seen::RollBack => {
                    let failed = seen
                        .iter()
                        .filter(|s| matches!(s, Seen::Counted { verdict: Failed, .. }))
                        .count();
                    prop_assert_eq!(failed as u32, plan.failure_threshold);
                    prop_assert!(matches!(last_counted, Some((_, Failed))));
                }
                Seen::Early => {}
            }
        }
    }

    #[test]
    fn a_failed_check_below_the_threshold_repeats_the_step(
        plan in plans(), verdicts in verdicts(), waits in waits()
    ) {
        let (seen, _) = simulate(&plan, &verdicts, &waits);
        let counted: Vec<&Seen> = seen.iter().filter(|s| !matches!(s, Seen::Early)).collect();
        let mut failures = 0;
        for pair in counted.windows(2) {
            if let Seen::Counted { step, verdict: Failed } = pair[0] {
                failures += 1;
                if failures < plan.failure_threshold {
                    prop_assert!(
                        matches!(pair[1], Seen::Counted { step: again, .. } if again == step),
                        "{:?}", pair
                    );
                }
            }
        }
    }
}
