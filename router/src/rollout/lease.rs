//! Driving a rollout from one replica at a time (`--registry`): every replica that follows a
//! running rollout asks for its lease `<state key>/rollout/<model>` (the state key keeps two
//! releases sharing one registry apart); the one granted drives it from where
//! the shared document says it stands, renewing the lease a few times per time-to-live, and
//! stops driving the moment it cannot be sure it still holds it. The others ask again when the
//! lease would run out, so a driver that disappears is replaced within about one time-to-live.
//!
//! A holder judges its tenure on its own monotonic clock, from before each request, by the
//! `remaining_ms` the registry granted (the database's clock decides, see weir-coordination):
//! a slow answer shortens the tenure, never stretches it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::step::{Input, Phase};
use super::Rollout;
use crate::Router;

/// The shortest pause between two requests for a lease.
const MIN_PAUSE: Duration = Duration::from_millis(50);

impl Rollout {
    /// Competes for the rollout's lease on the current runtime, and drives it when granted.
    pub(crate) fn spawn_shared(self: &Arc<Self>, router: &Arc<Router>, model: &str) {
        let (rollout, router, model) = (self.clone(), router.clone(), model.to_owned());
        tokio::spawn(async move { rollout.lead_when_granted(&router, &model).await });
    }

    async fn lead_when_granted(self: Arc<Self>, router: &Arc<Router>, model: &str) {
        let Some(shared) = &router.shared else {
            return;
        };
        let (lease, ttl) = (format!("{}/rollout/{model}", shared.key), shared.lease_ttl);
        let mut failures: u64 = 0;
        loop {
            if self.cancelled.load(Ordering::SeqCst) {
                return;
            }
            let asked = Instant::now();
            let pause = match shared.client.acquire(&lease, &shared.holder, ttl).await {
                Ok(granted) if granted.granted => {
                    failures = 0;
                    let until = asked + Duration::from_millis(granted.remaining_ms);
                    self.drive_while_held(router, model, &lease, until).await;
                    if self.cancelled.load(Ordering::SeqCst)
                        || self.progress().phase != Phase::Running
                    {
                        router.share_rollouts().await;
                        if let Err(err) = shared.client.release(&lease, &shared.holder).await {
                            tracing::debug!(error = %err, "the rollout's lease will run out instead of being released");
                        }
                        return;
                    }
                    ttl / 2
                }
                Ok(held) => {
                    tracing::debug!(model, holder = %held.holder, "another replica drives the rollout");
                    Duration::from_millis(held.remaining_ms).min(ttl / 2)
                }
                Err(err) => {
                    failures += 1;
                    if failures.is_power_of_two() {
                        tracing::warn!(model, failures, error = %err, "cannot ask for the rollout's lease");
                    }
                    ttl / 2
                }
            };
            tokio::select! {
                () = tokio::time::sleep(pause.max(MIN_PAUSE)) => {}
                () = self.wake.notified() => {}
            }
        }
    }

    /// Drives the rollout while a keeper renews the lease; returns when the rollout ended or
    /// stopped, or the lease was lost.
    async fn drive_while_held(
        self: &Arc<Self>,
        router: &Arc<Router>,
        model: &str,
        lease: &str,
        until: Instant,
    ) {
        self.lost.store(false, Ordering::SeqCst);
        self.driving.store(true, Ordering::SeqCst);
        let keeper = tokio::spawn(keep(
            self.clone(),
            router.clone(),
            model.to_owned(),
            lease.to_owned(),
            until,
        ));
        self.run(router, model, Input::Resume).await;
        keeper.abort();
        self.driving.store(false, Ordering::SeqCst);
    }
}

/// Renews the lease every third of its time-to-live; declares it lost (and wakes the driver)
/// when it is denied, or when the registry stays silent until the tenure would end before the
/// next renewal.
async fn keep(
    rollout: Arc<Rollout>,
    router: Arc<Router>,
    model: String,
    lease: String,
    mut until: Instant,
) {
    let Some(shared) = &router.shared else {
        return;
    };
    let every = (shared.lease_ttl / 3).max(MIN_PAUSE);
    loop {
        tokio::time::sleep(every).await;
        let asked = Instant::now();
        let lost = match shared
            .client
            .acquire(&lease, &shared.holder, shared.lease_ttl)
            .await
        {
            Ok(renewed) if renewed.granted => {
                until = asked + Duration::from_millis(renewed.remaining_ms);
                None
            }
            Ok(taken) => Some(format!("replica {} holds it now", taken.holder)),
            Err(err) if Instant::now() + every >= until => Some(err.to_string()),
            Err(_) => None,
        };
        if let Some(why) = lost {
            rollout.lost.store(true, Ordering::SeqCst);
            rollout.wake.notify_one();
            router.event(
                &model,
                format!("this replica stops driving the rollout: its lease is lost ({why})"),
            );
            return;
        }
    }
}
