//! Progressive rollout: step the canary's weight, judge each interval on the canary's own
//! measurements at the router (or Prometheus'), promote at the end, roll back after too many
//! failed checks.
//!
//! The rules are the pure [`step::step`]; this module is the thin async driver that performs
//! its actions through the weight operations ([`crate::control`]) and feeds back their results.
//!
//! With replicas sharing their state (`--registry`, [`crate::shared`]), the rollout and its
//! progress live in the shared document and one replica drives it at a time: the one holding
//! the lease `rollout/<model>` ([`lease`]). The others follow the document; when the driver
//! disappears its lease runs out and another replica continues from the step it stood at.
//! Each driver judges on its own measurements (it sees its share of the traffic) or on
//! Prometheus', which sees every replica's.

mod lease;
pub mod plan;
pub mod step;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Value};

pub use plan::{human, PrometheusJudge, RolloutPlan};
use step::{Action, Input, Phase, Progress, Verdict};

use crate::control::ControlError;
use crate::state::SharedRollout;
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

    /// Puts `rollout` in place of the model's last one, which it returns.
    fn insert(&self, model: &str, rollout: Arc<Rollout>) -> Option<Arc<Rollout>> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(model.to_owned(), rollout)
    }

    fn remove(&self, model: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(model);
    }
}

pub struct Rollout {
    /// Which rollout this is among the model's (a new one for each start), as replicas share it.
    id: String,
    plan: RolloutPlan,
    progress: Mutex<Progress>,
    /// Stop: cancelled here, ended or replaced in the shared document.
    cancelled: AtomicBool,
    /// The lease was lost: another replica may drive now.
    lost: AtomicBool,
    /// This replica performs the rollout's actions (without `--registry`, always).
    driving: AtomicBool,
    wake: tokio::sync::Notify,
}

/// The driver's clock: tokio's, so a test runtime with paused time moves it too.
fn clock() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl Router {
    /// Starts `plan` on `model` (on the current runtime); the plan was validated. With replicas
    /// sharing their state, the rollout is written to the shared document first and driven by
    /// whichever replica takes its lease.
    pub async fn start_rollout(
        self: &Arc<Self>,
        model: &str,
        plan: RolloutPlan,
    ) -> Result<(), ControlError> {
        if self.shared.is_none() {
            Rollout::start(self, model, plan);
            return Ok(());
        }
        let id = format!("{:016x}", rand::random::<u64>());
        let (id_ref, plan_ref) = (&id, &plan);
        let started = self
            .retrying(|| async move {
                let _guard = self.control.lock().await;
                let rollout = Rollout::new(id_ref.clone(), plan_ref.clone(), Progress::default());
                let before = self.rollouts.insert(model, rollout.clone());
                let published = self.publish(&self.table.load_full()).await;
                if published.is_err() {
                    match before {
                        Some(before) => self.rollouts.insert(model, before),
                        None => {
                            self.rollouts.remove(model);
                            None
                        }
                    };
                }
                published
            })
            .await;
        started?;
        if let Some(rollout) = self.rollouts.get(model).filter(|r| r.id == id) {
            rollout.spawn_shared(self, model);
        }
        Ok(())
    }

    /// The model's rollout as the shared document records it.
    pub(crate) fn shared_rollout(&self, model: &str) -> Option<SharedRollout> {
        self.rollouts.get(model).map(|r| SharedRollout {
            id: r.id.clone(),
            plan: r.plan.clone(),
            progress: r.progress(),
        })
    }

    /// The shared document's rollout of `model`, followed here (under the control lock): a new
    /// one is taken in (and, running, competed for), the one this replica drives is stopped if
    /// the document ended it, and a copy it does not drive takes the document's progress.
    pub(crate) fn follow_rollout(&self, model: &str, shared: &SharedRollout) {
        match self.rollouts.get(model) {
            Some(local) if local.id == shared.id => {
                if shared.progress.phase == Phase::Running {
                    if !local.driving.load(Ordering::SeqCst) {
                        local.update(|p| {
                            if p.phase == Phase::Running {
                                *p = shared.progress.clone();
                            }
                        });
                    }
                } else if local.driving.load(Ordering::SeqCst) {
                    if local.cancel() {
                        self.event(model, "rollout ended by another replica".to_owned());
                    }
                } else {
                    local.update(|p| {
                        if p.phase == Phase::Running {
                            *p = shared.progress.clone();
                        }
                    });
                    local.stop();
                }
            }
            local => {
                if let Some(local) = local {
                    local.stop();
                }
                let rollout = Rollout::new(
                    shared.id.clone(),
                    shared.plan.clone(),
                    shared.progress.clone(),
                );
                self.rollouts.insert(model, rollout.clone());
                if shared.progress.phase == Phase::Running {
                    if let Some(router) = self.me.upgrade() {
                        rollout.spawn_shared(&router, model);
                    }
                } else {
                    rollout.stop();
                }
            }
        }
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
    fn new(id: String, plan: RolloutPlan, progress: Progress) -> Arc<Rollout> {
        Arc::new(Rollout {
            id,
            plan,
            progress: Mutex::new(progress),
            cancelled: AtomicBool::new(false),
            lost: AtomicBool::new(false),
            driving: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
        })
    }

    pub fn start(router: &Arc<Router>, model: &str, plan: RolloutPlan) {
        let rollout = Rollout::new(String::new(), plan, Progress::default());
        rollout.driving.store(true, Ordering::SeqCst);
        router.rollouts.insert(model, rollout.clone());
        let (router, model) = (router.clone(), model.to_owned());
        tokio::spawn(async move { rollout.run(&router, &model, Input::Begin).await });
    }

    fn progress(&self) -> Progress {
        self.progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops whatever this replica does for the rollout (driving or waiting for its lease),
    /// leaving its recorded phase alone: the shared document says how it ended.
    fn stop(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Whether the driver must stop acting: cancelled or ended, or its lease lost.
    fn halted(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst) || self.lost.load(Ordering::SeqCst)
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
        json!({
            "plan": self.plan,
            "progress": *progress,
            "driven_here": self.driving.load(Ordering::SeqCst),
        })
    }

    fn update<T>(&self, change: impl FnOnce(&mut Progress) -> T) -> T {
        change(&mut self.progress.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn finish(&self, phase: Phase) {
        self.update(|p| p.finish(phase));
    }

    /// Ends a running rollout in `phase`; false when it had ended already (cancelled meanwhile).
    fn settle(&self, phase: Phase) -> bool {
        self.update(|p| {
            let running = p.phase == Phase::Running;
            p.finish(phase);
            running
        })
    }

    /// The next action after `input`, by the rules.
    fn advance(&self, input: Input) -> Action {
        self.update(|progress| step::step(&self.plan, progress, input, clock()))
    }

    async fn run(&self, router: &Router, model: &str, first: Input) {
        let plan = &self.plan;
        if first == Input::Resume {
            let at = self.progress().step;
            router.event(
                model,
                format!(
                    "this replica drives the rollout from step {} of {}",
                    at + 1,
                    plan.steps.len()
                ),
            );
        } else {
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
        }
        let mut action = self.advance(first);
        let mut percent = 0;
        loop {
            let input = match action {
                Action::SetCanary {
                    step,
                    percent: next,
                } => {
                    if self.halted() {
                        return;
                    }
                    percent = next;
                    let why = format!("rollout step {} of {}", step + 1, plan.steps.len());
                    let applied = self
                        .guarded(router, || router.set_canary_once(model, percent, &why))
                        .await;
                    match applied {
                        Ok(()) => {}
                        Err(ControlError::Unavailable(err)) => {
                            // The registry is away: hand the rollout back rather than end it.
                            router.event(model, format!("rollout paused: {err}"));
                            self.lost.store(true, Ordering::SeqCst);
                            return;
                        }
                        Err(_) if self.halted() => return,
                        Err(err) => {
                            router.event(model, format!("rollout stopped: {err}"));
                            self.finish(Phase::Failed);
                            return;
                        }
                    }
                    Input::Applied
                }
                Action::Check { until } => match self.check(router, model, percent, until).await {
                    Some(verdict) => Input::Checked(verdict),
                    None => return,
                },
                Action::Promote => {
                    // The phase first, so the shared state written with the promotion says the
                    // rollout ended: a new driver must not apply the last step again on top.
                    if self.halted() || !self.settle(Phase::Promoted) {
                        return;
                    }
                    let promoted = self
                        .guarded(router, || {
                            router.promote_once(model, "rollout promoted the canary")
                        })
                        .await;
                    if let Err(err) = promoted {
                        router.event(model, format!("promotion failed: {err}"));
                        self.update(|p| p.phase = Phase::Failed);
                    }
                    return;
                }
                Action::RollBack => {
                    if self.halted() || !self.settle(Phase::RolledBack) {
                        return;
                    }
                    let rolled_back = self
                        .guarded(router, || {
                            router.set_canary_once(
                                model,
                                0,
                                "rollout rolled back after failed checks",
                            )
                        })
                        .await;
                    if let Err(err) = rolled_back {
                        router.event(model, format!("rollback failed: {err}"));
                    }
                    return;
                }
                Action::Stop => return,
            };
            action = self.advance(input);
            if matches!(input, Input::Checked(_)) {
                router.share_rollouts().await;
            }
        }
    }

    /// A weight change of the driver: retried on lost compare-and-set rounds (replicas), but
    /// never once the rollout was stopped meanwhile.
    async fn guarded<F, Fut>(&self, router: &Router, change: F) -> Result<(), ControlError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), ControlError>>,
    {
        let change = &change;
        router
            .retrying(|| async move {
                if self.halted() {
                    return Err(ControlError::Conflict("the rollout was stopped".to_owned()));
                }
                change().await
            })
            .await
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
        if self.halted() {
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
