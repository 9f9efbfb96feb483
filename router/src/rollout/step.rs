//! The rollout's decisions as a pure function: given where a rollout stands, what just
//! happened and the time, the next thing to do. The async driver (`super`) performs the
//! actions and feeds back what came of them; the rules live here, where a simulated clock can
//! test them without sleeping.
//!
//! The rules: step through the plan's percentages in order; after each weight change measure
//! the canary for one interval; a passed check moves to the next step (or promotes after the
//! last one); a failed check repeats the step's measurement; the `failure_threshold`th failed
//! check (counted over the whole rollout) rolls back. A verdict that arrives before its
//! interval has ended judges nothing.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::plan::RolloutPlan;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Running,
    Promoted,
    RolledBack,
    Failed,
    Cancelled,
}

/// Where a rollout stands; shown by `status` (phase, step, failures, last check), and shared
/// with the other router replicas so that a new driver continues from it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Progress {
    pub phase: Phase,
    /// The index of the plan's step being applied or measured.
    pub step: usize,
    /// Failed checks so far, over all steps.
    pub failures: u32,
    pub last_check: Option<String>,
    /// When the running check's interval ends (none while no check runs).
    #[serde(skip)]
    due: Option<Instant>,
    /// A promotion or rollback was decided: nothing follows it.
    #[serde(skip)]
    settled: bool,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            phase: Phase::Running,
            step: 0,
            failures: 0,
            last_check: None,
            due: None,
            settled: false,
        }
    }
}

impl Progress {
    /// Ends a running rollout in `phase`; a rollout that already ended keeps its phase.
    pub fn finish(&mut self, phase: Phase) {
        if self.phase == Phase::Running {
            self.phase = phase;
        }
    }
}

/// A check's outcome, as the plan's judge gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    Failed,
}

/// What the driver reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The rollout starts.
    Begin,
    /// This driver takes over a rollout another one drove (router replicas, `--registry`): the
    /// step it stood at is applied again and measured afresh, its failed checks still count.
    Resume,
    /// The weights asked for by [`Action::SetCanary`] are in place.
    Applied,
    /// The check asked for by [`Action::Check`] ended with this verdict.
    Checked(Verdict),
}

/// What the driver does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Give the canary `percent` (the plan's step `step`), then report [`Input::Applied`].
    SetCanary { step: usize, percent: u32 },
    /// Measure the canary until `until`, then report [`Input::Checked`].
    Check { until: Instant },
    /// Every step passed its check: make the canary the stable version.
    Promote,
    /// `failure_threshold` checks failed: take the canary's traffic away.
    RollBack,
    /// Nothing more to do: the rollout ended (or was cancelled).
    Stop,
}

/// The next action of a rollout following `plan`, after `input`, at `now`.
pub fn step(plan: &RolloutPlan, progress: &mut Progress, input: Input, now: Instant) -> Action {
    if progress.phase != Phase::Running || progress.settled {
        return Action::Stop;
    }
    match input {
        Input::Begin => {
            progress.due = None;
            set_step(plan, progress, 0)
        }
        Input::Resume => {
            progress.due = None;
            set_step(plan, progress, progress.step)
        }
        Input::Applied => check_from(plan, progress, now),
        Input::Checked(verdict) => match progress.due {
            None => check_from(plan, progress, now),
            Some(due) if now < due => Action::Check { until: due },
            Some(_) => {
                progress.due = None;
                match verdict {
                    Verdict::Passed => set_step(plan, progress, progress.step + 1),
                    Verdict::Failed => {
                        progress.failures += 1;
                        if progress.failures >= plan.failure_threshold {
                            progress.settled = true;
                            Action::RollBack
                        } else {
                            check_from(plan, progress, now)
                        }
                    }
                }
            }
        },
    }
}

/// Step `index` of the plan, or the promotion after the last one. A plan without steps (which
/// validation refuses) fails rather than promoting untested.
fn set_step(plan: &RolloutPlan, progress: &mut Progress, index: usize) -> Action {
    match plan.steps.get(index) {
        Some(percent) => {
            progress.step = index;
            Action::SetCanary {
                step: index,
                percent: *percent,
            }
        }
        None if plan.steps.is_empty() => {
            progress.finish(Phase::Failed);
            Action::Stop
        }
        None => {
            progress.settled = true;
            Action::Promote
        }
    }
}

fn check_from(plan: &RolloutPlan, progress: &mut Progress, now: Instant) -> Action {
    let until = now + plan.interval;
    progress.due = Some(until);
    Action::Check { until }
}

#[cfg(test)]
#[path = "step_tests.rs"]
mod tests;
