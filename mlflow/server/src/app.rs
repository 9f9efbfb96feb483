//! Registry, tracking, the routers' coordination API and the dashboard on one router behind one
//! access layer, recorded in the registry's metrics (served on the same router as `GET /metrics`).

mod metrics;

use std::sync::Arc;

use axum::Router;
use weir_dashboard::serving::Serving;
use weir_dashboard::Dashboard;
use weir_mlflow_wire::{AccessLayer, Authenticator, EndpointTable, Refusal};

pub use metrics::RegistryMetrics;

use crate::Stores;

/// Refused requests waiting for the audit log; past this they are dropped and counted.
const REFUSALS_QUEUED: usize = 1024;

/// Registry and tracking on one router behind one access layer, with the table it enforces
/// (every route declares the role it needs there, so one without a decision cannot be
/// served); refusals go to the registry's audit log. `/metrics` has the request, store and
/// artifact series; [`app_with_metrics`] adds the listener's and the pool's.
pub fn app(stores: &Stores, authenticator: Authenticator) -> (Router, EndpointTable) {
    app_with_metrics(stores, authenticator, RegistryMetrics::new())
}

/// [`app`], recording into and serving `metrics` (built with the listener and the database
/// pool: `RegistryMetrics::new().with_listener(&server).with_pool(…)`).
pub fn app_with_metrics(
    stores: &Stores,
    authenticator: Authenticator,
    metrics: RegistryMetrics,
) -> (Router, EndpointTable) {
    app_with_dashboard(stores, authenticator, metrics, Arc::default())
}

/// [`app_with_metrics`], with a dashboard that shows the routers and autoscalers `serving`
/// watches (`weir registry --router URL --autoscaler URL`).
pub fn app_with_dashboard(
    stores: &Stores,
    authenticator: Authenticator,
    metrics: RegistryMetrics,
    serving: Arc<Serving>,
) -> (Router, EndpointTable) {
    let metrics = Arc::new(metrics);
    let (dashboard_routes, dashboard_endpoints) = weir_dashboard::routes(Dashboard {
        registry: stores.registry.clone(),
        tracking: stores.tracking.clone(),
        serving,
        anonymous: !authenticator.requires_credentials(),
        authenticator: authenticator.clone(),
    });
    let (tracking_routes, mut endpoints) = weir_tracking::routes(stores.tracking.clone());
    let (registry_routes, registry_endpoints) =
        weir_registry::mlflow::routes(stores.registry.clone());
    endpoints.extend(registry_endpoints);
    let (coordination_routes, coordination_endpoints) =
        weir_coordination::routes(stores.coordination.clone());
    endpoints.extend(coordination_endpoints);
    let (metrics_routes, metrics_endpoints) = metrics::routes(metrics.clone());
    endpoints.extend(metrics_endpoints);
    endpoints.extend(dashboard_endpoints);
    let registry = stores.registry.clone();
    let audit = weir_mlflow_wire::queued_sink(REFUSALS_QUEUED, move |refusal: Refusal| {
        let needed = refusal.needed.map_or_else(
            || "a valid credential".to_owned(),
            |r| format!("the {r} role"),
        );
        let what = format!(
            "{} {} refused ({}): needs {needed}",
            refusal.method, refusal.path, refusal.status
        );
        if let Err(err) = registry
            .store
            .record_event(&refusal.who, "refused", "", "", "", &what)
        {
            tracing::error!(error = %err, "cannot audit a refused request");
        }
    });
    let table = EndpointTable::new(endpoints);
    let app = tracking_routes
        .merge(registry_routes)
        .merge(coordination_routes)
        .merge(metrics_routes)
        .merge(dashboard_routes)
        .layer(
            AccessLayer::new(table.clone(), authenticator)
                .with_refusals(audit)
                .with_browser_pages(weir_dashboard::browser_pages()),
        );
    // Outside the access layer, so refusals are counted; inside the panic layer, which stays
    // outermost (a request that panics is answered 500 and counted in weir_panics_total
    // rather than in the request counts).
    let app = metrics::layer(app, metrics.clone(), table.endpoints())
        .layer(weir_http::panic::PanicLayer::new(metrics.panics().clone()).layer());
    (app, table)
}
