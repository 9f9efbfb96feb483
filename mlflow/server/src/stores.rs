//! Opening the registry's and tracking's stores on their shared database.

use std::sync::Arc;

use weir_registry::artifacts::ArtifactStore;
use weir_registry::{Registry, SourceResolver, StoreError};
use weir_tracking::{Tracking, TrackingError, TrackingStore};

use crate::{Config, ServerError};

/// The registry and tracking, opened on one database.
#[derive(Clone)]
pub struct Stores {
    pub registry: Arc<Registry>,
    pub tracking: Arc<Tracking>,
}

/// Opens (and on first start creates) the database, both schemas and the artifact folder.
pub async fn open(config: Config) -> Result<Stores, ServerError> {
    // The PostgreSQL driver blocks, and must not do so on an async worker.
    let url = config.database.clone();
    let (store, tracking) = tokio::task::spawn_blocking(move || {
        let db = Arc::new(weir_sql::Database::open(&url).map_err(ServerError::Database)?);
        let store = weir_registry::Store::new(db.clone()).map_err(ServerError::RegistrySchema)?;
        let tracking = TrackingStore::new(db).map_err(ServerError::TrackingSchema)?;
        Ok::<_, ServerError>((store, Arc::new(Tracking { store: tracking })))
    })
    .await
    .map_err(ServerError::Interrupted)??;
    let artifacts = ArtifactStore::open(&config.artifacts)
        .map_err(ServerError::Artifacts)?
        .with_max_file_bytes(config.max_artifact_bytes);
    let registry = Arc::new(Registry {
        store: store.with_protected_aliases(config.protected_aliases),
        artifacts,
        sources: Some(logged_model_locations(tracking.clone())),
    });
    Ok(Stores { registry, tracking })
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
