//! `grpc.health.v1.Health` for Kubernetes' gRPC probes and grpcio's health client.
//!
//! Service names: `""` (the whole server: what a probe without a service asks) and
//! `inference.GRPCInferenceService` answer readiness — the same [`App::is_ready`] as
//! `/v2/health/ready`; `"live"` is SERVING while the process answers, for a liveness probe that
//! must not fail while models load. Anything else is NOT_FOUND.
//!
//! Check computes readiness when asked, so it never lags the HTTP probe. Watch streams come
//! from tonic-health's reporter, which a background task keeps in step with readiness (it can
//! change without a request: loading ends, a registry refuses a version); when a drain starts
//! they get NOT_SERVING and then end, since the drain waits for every open call and a watch
//! never ends by itself.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService};
use tonic_health::ServingStatus;

use crate::app::App;

pub const READY_SERVICES: [&str; 2] = ["", "inference.GRPCInferenceService"];
pub const LIVE_SERVICE: &str = "live";

/// How often the watch streams' readiness is re-checked.
const INTERVAL: Duration = Duration::from_millis(200);

/// The health service over `app`, following its readiness until `stop` turns true.
pub async fn service(app: Arc<App>, stop: watch::Receiver<bool>) -> HealthServer<ServerHealth> {
    let reporter = HealthReporter::new();
    reporter
        .set_service_status(LIVE_SERVICE, ServingStatus::Serving)
        .await;
    let health = ServerHealth {
        app,
        watches: Arc::new(HealthService::from_health_reporter(reporter.clone())),
        reporter,
    };
    health.publish(health.readiness()).await;
    tokio::spawn(follow_readiness(health.clone(), stop));
    HealthServer::new(health)
}

#[derive(Clone)]
pub struct ServerHealth {
    app: Arc<App>,
    reporter: HealthReporter,
    watches: Arc<HealthService>,
}

impl ServerHealth {
    fn readiness(&self) -> ServingStatus {
        if self.app.is_ready() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        }
    }

    /// Sets the readiness services' status (watchers see a change only when it changes).
    async fn publish(&self, status: ServingStatus) {
        for service in READY_SERVICES {
            self.reporter.set_service_status(service, status).await;
        }
    }
}

#[tonic::async_trait]
impl Health for ServerHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = request.get_ref().service.as_str();
        let status = if service == LIVE_SERVICE {
            ServingStatus::Serving
        } else if READY_SERVICES.contains(&service) {
            self.readiness()
        } else {
            return Err(Status::not_found(format!(
                "unknown health service '{service}'; this server answers \"\", \"{}\" and \"{LIVE_SERVICE}\"",
                READY_SERVICES[1]
            )));
        };
        // The wire enum: SERVING = 1, NOT_SERVING = 2 (grpc/health/v1/health.proto).
        let wire = match status {
            ServingStatus::Serving => 1,
            _ => 2,
        };
        Ok(Response::new(HealthCheckResponse { status: wire }))
    }

    type WatchStream = <HealthService as Health>::WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        // The first message is current, not the last the background task saw.
        if READY_SERVICES.contains(&request.get_ref().service.as_str()) {
            self.publish(self.readiness()).await;
        }
        self.watches.watch(request).await
    }
}

/// Keeps the watched readiness in step until shutdown; then NOT_SERVING, and the watches end.
async fn follow_readiness(health: ServerHealth, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = stop.wait_for(|stop| *stop) => {}
        }
        if *stop.borrow() {
            health.publish(ServingStatus::NotServing).await;
            let mut reporter = health.reporter.clone();
            for service in READY_SERVICES.into_iter().chain([LIVE_SERVICE]) {
                reporter.clear_service_status(service).await;
            }
            return;
        }
        health.publish(health.readiness()).await;
    }
}
