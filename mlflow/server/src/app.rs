//! Registry and tracking on one router behind one access layer.

use axum::Router;
use weir_mlflow_wire::{AccessLayer, Authenticator, EndpointTable, Refusal};

use crate::Stores;

/// Refused requests waiting for the audit log; past this they are dropped and counted.
const REFUSALS_QUEUED: usize = 1024;

/// Registry and tracking on one router behind one access layer, with the table it enforces
/// (every route declares the role it needs there, so one without a decision cannot be
/// served); refusals go to the registry's audit log.
pub fn app(stores: &Stores, authenticator: Authenticator) -> (Router, EndpointTable) {
    let (tracking_routes, mut endpoints) = weir_tracking::routes(stores.tracking.clone());
    let (registry_routes, registry_endpoints) =
        weir_registry::mlflow::routes(stores.registry.clone());
    endpoints.extend(registry_endpoints);
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
        .layer(AccessLayer::new(table.clone(), authenticator).with_refusals(audit))
        .layer(weir_http::panic::PanicLayer::default().layer());
    (app, table)
}
