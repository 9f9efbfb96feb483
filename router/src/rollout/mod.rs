//! Progressive rollout: step the canary's weight, judge each interval on the canary's own
//! measurements at the router (or Prometheus'), promote at the end, roll back after too many
//! failed checks.
//!
//! The rules are the pure [`step::step`]; this module is the thin async driver that performs
//! its actions through the weight operations ([`crate::control`]) and feeds back their results.

pub mod plan;
pub mod step;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Value};

pub use plan::{human, PrometheusJudge, RolloutPlan};
use step::{Action, Input, Phase, Progress, Verdict};

use crate::stats::Window;
use crate::Router;

/// The rollouts started on this router, by model (the last one of each, running or ended).
#[derive(Default)]
pub struct Rollouts(Mutex<HashMap<String, Arc<Rollout>>>);

impl Rollouts {
    fn get(&self, model: &str) -> Option<Arc<Rollout>> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(model)
            .cloned()
    }

    fn insert(&self, model: &str, rollout: Arc<Rollout>) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(model.to_owned(), rollout);
    }
}

pub struct Rollout {
    plan: RolloutPlan,
    progress: Mutex<Progress>,
    cancelled: AtomicBool,
    wake: tokio::sync::Notify,
}

/// The driver's clock: tokio's, so a test runtime with paused time moves it too.
fn clock() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl Router {
    /// Starts `plan` on `model` (on the current runtime); the plan was validated.
    pub fn start_rollout(self: &Arc<Self>, model: &str, plan: RolloutPlan) {
        Rollout::start(self, model, plan);
    }

    /// Stops a running rollout of `model`, if any.
    pub fn cancel_rollout(&self, model: &str, why: &str) {
        if let Some(rollout) = self.rollouts.get(model) {
            if rollout.cancel() {
                self.event(model, format!("rollout cancelled: {why}"));
            }
        }
    }

    /// The last rollout of `model` (plan and progress), for `status`.
    pub fn rollout_status(&self, model: &str) -> Option<Value> {
        self.rollouts.get(model).map(|r| r.describe())
    }
}

impl Rollout {
    pub fn start(router: &Arc<Router>, model: &str, plan: RolloutPlan) {
        let rollout = Arc::new(Rollout {
            plan,
            progress: Mutex::new(Progress::default()),
            cancelled: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
        });
        router.rollouts.insert(model, rollout.clone());
        let (router, model) = (router.clone(), model.to_owned());
        tokio::spawn(async move { rollout.run(&router, &model).await });
    }

    /// True when it was running.
    pub fn cancel(&self) -> bool {
        let mut progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        if progress.phase != Phase::Running {
            return false;
        }
        progress.phase = Phase::Cancelled;
        self.cancelled.store(true, Ordering::SeqCst);
        self.wake.notify_one();
        true
    }

    pub fn describe(&self) -> Value {
        let progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        json!({ "plan": self.plan, "progress": *progress })
    }

    fn update<T>(&self, change: impl FnOnce(&mut Progress) -> T) -> T {
        change(&mut self.progress.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn finish(&self, phase: Phase) {
        self.update(|p| p.finish(phase));
    }

    /// The next action after `input`, by the rules.
    fn advance(&self, input: Input) -> Action {
        self.update(|progress| step::step(&self.plan, progress, input, clock()))
    }

    async fn run(&self, router: &Router, model: &str) {
        let plan = &self.plan;
        router.event(
            model,
            format!(
                "rollout started: steps {:?}, interval {}, max error rate {}, max p99 {}, {} failed checks roll back, {} requests per check",
                plan.steps,
                human(plan.interval),
                plan.max_error_rate,
                plan.max_p99.map_or("none".to_owned(), human),
                plan.failure_threshold,
                plan.min_requests
            ),
        );
        let mut action = self.advance(Input::Begin);
        let mut percent = 0;
        loop {
            let input = match action {
                Action::SetCanary {
                    step,
                    percent: next,
                } => {
                    if self.cancelled.load(Ordering::SeqCst) {
                        return;
                    }
                    percent = next;
                    let why = format!("rollout step {} of {}", step + 1, plan.steps.len());
                    if let Err(err) = router.set_canary(model, percent, &why).await {
                        router.event(model, format!("rollout stopped: {err}"));
                        self.finish(Phase::Failed);
                        return;
                    }
                    Input::Applied
                }
                Action::Check { until } => match self.check(router, model, percent, until).await {
                    Some(verdict) => Input::Checked(verdict),
                    None => return,
                },
                Action::Promote => {
                    match router.promote(model, "rollout promoted the canary").await {
                        Ok(()) => self.finish(Phase::Promoted),
                        Err(err) => {
                            router.event(model, format!("promotion failed: {err}"));
                            self.finish(Phase::Failed);
                        }
                    }
                    return;
                }
                Action::RollBack => {
                    let rolled_back = router
                        .set_canary(model, 0, "rollout rolled back after failed checks")
                        .await;
                    if let Err(err) = rolled_back {
                        router.event(model, format!("rollback failed: {err}"));
                    }
                    self.finish(Phase::RolledBack);
                    return;
                }
                Action::Stop => return,
            };
            action = self.advance(input);
        }
    }

    /// Measures the canary until `until` and judges the window; `None` when the rollout must
    /// stop (cancelled, or the canary is gone from the routes).
    async fn check(
        &self,
        router: &Router,
        model: &str,
        percent: u32,
        until: Instant,
    ) -> Option<Verdict> {
        let plan = &self.plan;
        let Ok((_, canary)) = router.stable_and_canary(model) else {
            self.finish(Phase::Failed);
            return None;
        };
        let Some(stats) = router
            .table
            .load()
            .routes
            .get(model)
            .and_then(|r| r.backend(&canary))
            .map(|b| b.stats.clone())
        else {
            self.finish(Phase::Failed);
            return None;
        };
        let before = stats.snapshot();
        tokio::select! {
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(until)) => {}
            () = self.wake.notified() => {}
        }
        if self.cancelled.load(Ordering::SeqCst) {
            return None;
        }
        let (window, source) = match &plan.prometheus {
            None => (Ok(stats.snapshot().since(&before)), "router"),
            Some(prometheus) => (
                prometheus
                    .window(model, &canary, plan.interval)
                    .await
                    .map_err(|e| e.to_string()),
                "prometheus",
            ),
        };
        let (window, failure) = match window {
            Ok(window) => {
                let failure = plan.judge(&window);
                (window, failure)
            }
            Err(reason) => (Window::default(), Some(reason)),
        };
        let summary = format!(
            "check at {percent}% ({source}): {} canary requests, error rate {:.2}%, p99 {:.1} ms: {}",
            window.requests,
            window.error_rate * 100.0,
            window.p99_ms,
            failure.as_deref().unwrap_or("passed")
        );
        router.event(model, summary.clone());
        self.update(|p| p.last_check = Some(summary));
        Some(match failure {
            None => Verdict::Passed,
            Some(_) => Verdict::Failed,
        })
    }
}
