//! `inference.GRPCInferenceService`: each method answers what its HTTP route answers, from the
//! same store, scheduler, statistics and model control rules, and fails with the same meaning
//! (`super::status`).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tonic::body::Body;
use tonic::{Request, Response, Status};

use super::proto::grpc_inference_service_server::GrpcInferenceService;
use super::proto::*;
use super::status::to_status;
use super::{framing, tensors};
use crate::app::App;
use crate::error::ApiError;
use crate::metrics::Protocol;
use crate::observe::{Accounting, Answered};
use crate::scheduler::Answer;
use crate::store::LoadedVersion;

/// The service over a running server's shared state.
#[derive(Clone)]
pub struct Inference {
    app: Arc<App>,
}

impl Inference {
    pub fn new(app: Arc<App>) -> Inference {
        Inference { app }
    }

    /// `ModelInfer` on a message already read whole (by the admission layer, under the body
    /// limit and memory budget): decoded, run and answered without tonic's streaming codec,
    /// which would copy the message into a buffer of its own, wrap it in a stream of one, and
    /// encode the answer through another. The hot call of the service, so it takes the short
    /// way; the answer on the wire is what tonic would send (one message, `grpc-status`
    /// trailers; a refusal as a trailers-only answer).
    pub async fn infer_framed(&self, arrived: Instant, framed: &[u8]) -> http::Response<Body> {
        let answered = match self.decode_infer(framed) {
            Ok((loaded, request)) => infer(&loaded, request, arrived).await,
            Err(status) => Err(status),
        };
        match answered {
            Ok(response) => framing::answer(&response),
            Err(status) => status.into_http(),
        }
    }

    /// A framed `ModelInferRequest` decoded, and the version it names.
    fn decode_infer(
        &self,
        framed: &[u8],
    ) -> Result<(Arc<LoadedVersion>, ModelInferRequest), Status> {
        let message = framing::unframe(framed)?;
        let request = <ModelInferRequest as prost::Message>::decode(message).map_err(|err| {
            Status::invalid_argument(format!(
                "the ModelInferRequest message cannot be decoded: {err}"
            ))
        })?;
        let loaded = self.resolve(&request.model_name, &request.model_version)?;
        Ok((loaded, request))
    }

    fn resolve(&self, model: &str, version: &str) -> Result<Arc<LoadedVersion>, Status> {
        self.app
            .store
            .resolve(model, version_of(version))
            .map_err(to_status)
    }
}

/// The version as the request names it: empty means the highest serving one.
fn version_of(version: &str) -> Option<&str> {
    (!version.is_empty()).then_some(version)
}

/// Decodes, runs and encodes one request on `loaded` (off the async threads when large: the
/// HTTP path's `protocol::off_thread` rule), accounted for from `arrived`.
///
/// Not an async fn: the message is decoded when this is called, so the returned future holds
/// the decoded tensors, not the message and its decoding (an async fn keeps its arguments for
/// its whole life, and a future it awaits twice over). The admission layer allocates the
/// call's future on its own; kept within glibc's per-thread cache (blocks up to 1,032 bytes),
/// that allocation skips the arena (benches/README.md).
fn infer(
    loaded: &LoadedVersion,
    request: ModelInferRequest,
    arrived: Instant,
) -> impl Future<Output = Result<ModelInferResponse, Status>> + '_ {
    let accounting = Accounting::start(loaded, Protocol::Grpc, arrived);
    // The message's size on the wire: typed contents count as much as raw ones.
    let size = prost::Message::encoded_len(&request);
    let backend = loaded.backend.clone();
    let decoded = crate::protocol::decode_off_thread(size, move || {
        tensors::decode_request(request, backend.signature())
    });
    async move {
        let answered = async {
            let (request, form) = decoded.await?;
            let names = request.outputs.into_iter().map(|(name, _)| name).collect();
            let Answer {
                outputs,
                queued,
                execution,
            } = loaded.scheduler.infer(request.inputs, names).await?;
            let answer_size = outputs.iter().map(|t| t.data.len()).sum::<usize>() * 4;
            let (model, label, id) = (loaded.model.clone(), loaded.label.clone(), request.id);
            let response = crate::protocol::off_thread(answer_size, move || {
                tensors::encode_response(&model, &label, id, &outputs, form)
            })
            .await?;
            Ok(Answered {
                response,
                queued,
                execution,
            })
        };
        accounting.finish(answered.await).map_err(to_status)
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for Inference {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse {
            ready: self.app.is_ready(),
        }))
    }

    /// Not ready (rather than an error) for a model or version that does not serve, as Triton
    /// answers and `tritonclient`'s `is_model_ready` expects.
    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let request = request.into_inner();
        let ready = self
            .app
            .store
            .resolve(&request.name, version_of(&request.version))
            .is_ok();
        Ok(Response::new(ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: "weir".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            extensions: crate::routes::EXTENSIONS
                .iter()
                .map(|e| (*e).to_owned())
                .collect(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let request = request.into_inner();
        let loaded = self.resolve(&request.name, &request.version)?;
        let versions = match version_of(&request.version) {
            Some(_) => vec![loaded.label.clone()],
            None => self
                .app
                .store
                .entry(&request.name)
                .map_err(to_status)?
                .versions
                .keys()
                .map(u64::to_string)
                .collect(),
        };
        let signature = loaded.backend.signature();
        let tensor = |spec: &weir_models::TensorSpec| model_metadata_response::TensorMetadata {
            name: spec.name.clone(),
            datatype: spec.datatype.as_str().to_owned(),
            shape: spec.shape.iter().map(|d| d.as_i64()).collect(),
        };
        Ok(Response::new(ModelMetadataResponse {
            name: loaded.model.clone(),
            versions,
            platform: loaded.backend.platform().to_owned(),
            inputs: signature.inputs.iter().map(tensor).collect(),
            outputs: signature.outputs.iter().map(tensor).collect(),
        }))
    }

    /// Reached only when the admission layer is not in front (it answers `ModelInfer` itself,
    /// through [`Inference::infer_framed`]).
    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let arrived = Instant::now();
        let request = request.into_inner();
        let loaded = self.resolve(&request.model_name, &request.model_version)?;
        infer(&loaded, request, arrived).await.map(Response::new)
    }

    async fn model_config(
        &self,
        request: Request<ModelConfigRequest>,
    ) -> Result<Response<ModelConfigResponse>, Status> {
        let request = request.into_inner();
        let loaded = self.resolve(&request.name, &request.version)?;
        Ok(Response::new(ModelConfigResponse {
            config: Some(super::config::model_config(&loaded)),
        }))
    }

    async fn model_statistics(
        &self,
        request: Request<ModelStatisticsRequest>,
    ) -> Result<Response<ModelStatisticsResponse>, Status> {
        let request = request.into_inner();
        let store = &self.app.store;
        let versions = match (request.name.as_str(), version_of(&request.version)) {
            ("", _) => store.all_versions(),
            (model, None) => store
                .entry(model)
                .map_err(to_status)?
                .versions
                .values()
                .cloned()
                .collect(),
            (model, Some(_)) => vec![self.resolve(model, &request.version)?],
        };
        Ok(Response::new(ModelStatisticsResponse {
            model_stats: versions
                .iter()
                .map(|v| super::config::statistics(&v.stats.report(&v.model, &v.label)))
                .collect(),
        }))
    }

    async fn repository_index(
        &self,
        request: Request<RepositoryIndexRequest>,
    ) -> Result<Response<RepositoryIndexResponse>, Status> {
        let ready = request.into_inner().ready;
        let models = self
            .app
            .store
            .index(ready)
            .into_iter()
            .map(|row| repository_index_response::ModelIndex {
                name: row.name,
                version: row.version.unwrap_or_default(),
                state: row.state.to_owned(),
                reason: row.reason,
            })
            .collect();
        Ok(Response::new(RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        request: Request<RepositoryModelLoadRequest>,
    ) -> Result<Response<RepositoryModelLoadResponse>, Status> {
        crate::routes::check_model_control(&self.app).map_err(to_status)?;
        let name = request.into_inner().model_name;
        let app = self.app.clone();
        tokio::task::spawn_blocking(move || app.store.load(&name))
            .await
            .map_err(|_| to_status(ApiError::internal("the model loader stopped unexpectedly")))?
            .map_err(to_status)?;
        Ok(Response::new(RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        request: Request<RepositoryModelUnloadRequest>,
    ) -> Result<Response<RepositoryModelUnloadResponse>, Status> {
        crate::routes::check_model_control(&self.app).map_err(to_status)?;
        let name = request.into_inner().model_name;
        self.app.store.unload(&name).map_err(to_status)?;
        Ok(Response::new(RepositoryModelUnloadResponse {}))
    }
}
