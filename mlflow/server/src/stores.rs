//! Opening the registry's and tracking's stores on their shared database.

use std::sync::Arc;

use weir_coordination::Coordination;
use weir_registry::artifacts::{ArtifactLocation, ArtifactStore};
use weir_registry::{Registry, SourceResolver, StoreError};
use weir_tracking::{Tracking, TrackingError, TrackingStore};

use crate::{Config, ServerError};

/// The registry, tracking and the routers' shared state, opened on one database.
#[derive(Clone)]
pub struct Stores {
    pub registry: Arc<Registry>,
    pub tracking: Arc<Tracking>,
    /// Documents and leases that several router replicas agree through (`weir route --registry`).
    pub coordination: Arc<Coordination>,
    /// The database itself, for what it reports (its pool, on `/metrics`).
    pub database: Arc<weir_sql::Database>,
}

/// Opens (and on first start creates) the database, both schemas and the artifact store (a
/// folder, created if missing, or a bucket prefix, checked reachable).
pub async fn open(config: Config) -> Result<Stores, ServerError> {
    // The PostgreSQL driver blocks, and must not do so on an async worker.
    let url = config.database.clone();
    let options = weir_sql::Options {
        pool_size: config.pool_size.max(1),
    };
    let (database, store, tracking, coordination) = tokio::task::spawn_blocking(move || {
        let db =
            Arc::new(weir_sql::Database::open_with(&url, options).map_err(ServerError::Database)?);
        let store = weir_registry::Store::new(db.clone()).map_err(ServerError::RegistrySchema)?;
        let tracking = TrackingStore::new(db.clone()).map_err(ServerError::TrackingSchema)?;
        let coordination = Coordination::new(db.clone()).map_err(ServerError::Database)?;
        Ok::<_, ServerError>((
            db,
            store,
            Arc::new(Tracking { store: tracking }),
            Arc::new(coordination),
        ))
    })
    .await
    .map_err(ServerError::Interrupted)??;
    // A folder, or a bucket prefix that must answer now; an unknown scheme is refused here.
    let location = ArtifactLocation::parse(&config.artifacts).map_err(ServerError::Artifacts)?;
    let artifacts = ArtifactStore::connect(&location)
        .await
        .map_err(ServerError::Artifacts)?
        .with_max_file_bytes(config.max_artifact_bytes);
    let registry = Arc::new(Registry {
        store: store.with_protected_aliases(config.protected_aliases),
        artifacts,
        sources: Some(logged_model_locations(tracking.clone())),
    });
    Ok(Stores {
        registry,
        tracking,
        coordination,
        database,
    })
}

/// `mlflow.register_model("runs:/…")` registers MLflow 3 logged models as `models:/<model_id>`;
/// their files live where the tracking store put the logged model.
fn logged_model_locations(tracking: Arc<Tracking>) -> SourceResolver {
    Arc::new(move |source: &str| {
        let Some(model_id) = source
            .strip_prefix("models:/")
            .filter(|id| id.starts_with("m-"))
        else {
            return Ok(None);
        };
        match tracking.store.get_logged_model(model_id) {
            Ok(model) => Ok(Some(model.info.artifact_uri)),
            Err(TrackingError::NotFound(message)) => Err(StoreError::NotFound(message)),
            Err(err) => Err(StoreError::Internal(err.to_string())),
        }
    })
}
