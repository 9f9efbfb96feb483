//! Kubernetes Deployments through their `scale` subresource, with `kube`.
//!
//! The scale is read with its `resourceVersion` and patched with it, so a concurrent change
//! (a person, another controller) makes the API server answer 409 and the change is retried on
//! fresh data rather than overwriting theirs. A Deployment annotated
//! `weir.dev/autoscaling-paused: "true"` is left alone. 403 and 404 become errors that say what
//! to fix.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};

/// The annotation that tells the autoscaler to keep its hands off a Deployment.
pub const PAUSED_ANNOTATION: &str = "weir.dev/autoscaling-paused";

/// Conflicting writes retried before giving up for this tick.
const CONFLICT_RETRIES: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    #[error("deployment {namespace}/{name} does not exist (404); check the target's namespace and deployment")]
    NotFound { namespace: String, name: String },
    #[error("not allowed to {action} deployment {namespace}/{name} (403): the autoscaler's ServiceAccount needs get and patch on deployments/scale, get on deployments, and (for the scrape signal) list on pods in {namespace}")]
    Forbidden {
        action: &'static str,
        namespace: String,
        name: String,
    },
    #[error("deployment {namespace}/{name} kept changing under us ({CONFLICT_RETRIES} conflicts in a row)")]
    Conflicts { namespace: String, name: String },
    #[error("cannot reach the Kubernetes API: {0}")]
    Api(String),
}

/// What the scaler saw of a Deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The replica count asked for (`spec.replicas`).
    pub replicas: u32,
    /// Pods ready to serve (`status.readyReplicas`).
    pub ready: u32,
    pub paused: bool,
}

pub struct KubernetesScaler {
    api: Api<Deployment>,
    pods: Api<Pod>,
    namespace: String,
    name: String,
    dry_run: bool,
}

impl KubernetesScaler {
    pub fn new(client: Client, namespace: &str, name: &str, dry_run: bool) -> KubernetesScaler {
        KubernetesScaler {
            api: Api::namespaced(client.clone(), namespace),
            pods: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            dry_run,
        }
    }

    /// A client from the pod's service account in a cluster, else from the kubeconfig.
    pub async fn client() -> Result<Client, KubernetesError> {
        Client::try_default()
            .await
            .map_err(|e| KubernetesError::Api(e.to_string()))
    }

    fn error(&self, action: &'static str, err: kube::Error) -> KubernetesError {
        let (namespace, name) = (self.namespace.clone(), self.name.clone());
        match &err {
            kube::Error::Api(status) if status.code == 404 => {
                KubernetesError::NotFound { namespace, name }
            }
            kube::Error::Api(status) if status.code == 403 => KubernetesError::Forbidden {
                action,
                namespace,
                name,
            },
            _ => KubernetesError::Api(err.to_string()),
        }
    }

    async fn deployment(&self) -> Result<Deployment, KubernetesError> {
        self.api
            .get(&self.name)
            .await
            .map_err(|e| self.error("get", e))
    }

    pub async fn observe(&self) -> Result<Observed, KubernetesError> {
        let deployment = self.deployment().await?;
        let paused = deployment
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PAUSED_ANNOTATION))
            .is_some_and(|v| v == "true");
        let count = |n: Option<i32>| n.map_or(0, |n| u32::try_from(n).unwrap_or(0));
        Ok(Observed {
            replicas: count(deployment.spec.as_ref().and_then(|s| s.replicas)),
            ready: count(deployment.status.as_ref().and_then(|s| s.ready_replicas)),
            paused,
        })
    }

    /// `http://POD_IP:port` of the Deployment's ready pods (found by its selector), for the
    /// scrape signal.
    pub async fn ready_pod_urls(&self, port: u16) -> Result<Vec<String>, KubernetesError> {
        let deployment = self.deployment().await?;
        let selector = deployment
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.as_ref())
            .map(|labels| {
                labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let pods = self
            .pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| self.error("list the pods of", e))?;
        Ok(pods
            .items
            .iter()
            .filter_map(|pod| {
                let status = pod.status.as_ref()?;
                let ready = status
                    .conditions
                    .as_ref()?
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                let ip = status.pod_ip.as_ref()?;
                ready.then(|| format!("http://{ip}:{port}"))
            })
            .collect())
    }

    /// Sets `spec.replicas` through the scale subresource; `Ok(false)` when nothing was
    /// changed (paused, dry run, or already there).
    pub async fn scale_to(&self, replicas: u32) -> Result<bool, KubernetesError> {
        if self.observe().await?.paused {
            tracing::info!(deployment = %self.name, "paused by annotation; not scaling");
            return Ok(false);
        }
        for _ in 0..CONFLICT_RETRIES {
            let current: Scale = self
                .api
                .get_scale(&self.name)
                .await
                .map_err(|e| self.error("get the scale of", e))?;
            let now = current.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            if now == i32::try_from(replicas).unwrap_or(i32::MAX) {
                return Ok(false);
            }
            if self.dry_run {
                tracing::info!(deployment = %self.name, from = now, to = replicas, "dry run: would scale");
                return Ok(false);
            }
            // The resourceVersion in a merge patch is a precondition: a stale one is a 409.
            let patch = serde_json::json!({
                "metadata": { "resourceVersion": current.metadata.resource_version },
                "spec": { "replicas": replicas },
            });
            match self
                .api
                .patch_scale(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    tracing::info!(deployment = %self.name, "scale changed under us; retrying on fresh data");
                }
                Err(err) => return Err(self.error("patch the scale of", err)),
            }
        }
        Err(KubernetesError::Conflicts {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        })
    }
}
