//! Local replicas: `weir serve` processes on free loopback ports.
//!
//! Scaling never fails a request: a new replica is added to the router only once it answers
//! ready, and a replica going away is removed from the router first, then asked to stop
//! (SIGTERM), which makes `weir serve` finish what it accepted before exiting.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use weir_http::router_client::AdminClient;

pub struct Replica {
    pub url: String,
    /// The port it serves gRPC on, when started with one.
    pub grpc_port: Option<u16>,
    child: Child,
}

impl Replica {
    /// How the router's admin API takes it: the URL, or the URL with its gRPC port.
    fn announced(&self) -> serde_json::Value {
        match self.grpc_port {
            None => json!(self.url),
            Some(port) => json!({ "url": self.url, "grpc_port": port }),
        }
    }
}

pub struct LocalScaler {
    pub model: String,
    pub version: String,
    weir: PathBuf,
    repository: PathBuf,
    args: Vec<String>,
    /// Each replica in its own folder under `repository`.
    fresh_repository: bool,
    /// Each replica serves gRPC on a port of its own.
    grpc: bool,
    started: usize,
    router: AdminClient,
    pub replicas: Vec<Replica>,
}

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot start weir serve ({weir}): {reason}")]
    Start { weir: String, reason: String },
    #[error("the new replica did not become ready within {0:?}")]
    NotReady(Duration),
    #[error("the router refused a replica change: {0}")]
    Router(String),
}

impl LocalScaler {
    pub fn new(
        model: &str,
        version: &str,
        weir: PathBuf,
        repository: PathBuf,
        args: Vec<String>,
        router: (&str, Option<String>),
    ) -> LocalScaler {
        LocalScaler {
            model: model.to_owned(),
            version: version.to_owned(),
            weir,
            repository,
            args,
            fresh_repository: false,
            grpc: false,
            started: 0,
            router: AdminClient::new(router.0, router.1),
            replicas: Vec::new(),
        }
    }

    fn endpoints_path(&self) -> String {
        format!("routes/{}/versions/{}/endpoints", self.model, self.version)
    }

    /// Tells the router about the replicas running now (after a router restart or a routes
    /// file reload they would otherwise be forgotten).
    pub async fn announce(&self) -> Result<(), LocalError> {
        let added: Vec<serde_json::Value> = self.replicas.iter().map(Replica::announced).collect();
        self.router
            .call(
                "POST",
                &self.endpoints_path(),
                Some(json!({ "add": added })),
            )
            .await
            .map(|_| ())
            .map_err(|e| LocalError::Router(e.to_string()))
    }

    /// Starts or stops replicas until `count` run.
    pub async fn scale_to(&mut self, count: usize) -> Result<(), LocalError> {
        while self.replicas.len() < count {
            let replica = self.start_replica().await?;
            self.router
                .call(
                    "POST",
                    &self.endpoints_path(),
                    Some(json!({ "add": [replica.announced()] })),
                )
                .await
                .map_err(|e| LocalError::Router(e.to_string()))?;
            self.replicas.push(replica);
        }
        while self.replicas.len() > count {
            let Some(mut replica) = self.replicas.pop() else {
                break;
            };
            let removed = self
                .router
                .call(
                    "POST",
                    &self.endpoints_path(),
                    Some(json!({ "remove": [replica.url] })),
                )
                .await;
            if let Err(err) = removed {
                // Keep it serving rather than stop a replica the router still sends to.
                self.replicas.push(replica);
                return Err(LocalError::Router(err.to_string()));
            }
            stop(&mut replica.child).await;
        }
        Ok(())
    }

    /// Gives each replica its own empty folder under the repository.
    pub fn with_fresh_repositories(mut self, fresh: bool) -> LocalScaler {
        self.fresh_repository = fresh;
        self
    }

    /// Starts each replica with a gRPC port of its own and announces it with that port.
    pub fn with_grpc(mut self, grpc: bool) -> LocalScaler {
        self.grpc = grpc;
        self
    }

    async fn start_replica(&mut self) -> Result<Replica, LocalError> {
        self.started += 1;
        let repository = if self.fresh_repository {
            let folder = self.repository.join(format!("replica-{}", self.started));
            let _ = std::fs::remove_dir_all(&folder);
            std::fs::create_dir_all(&folder).map_err(|e| LocalError::Start {
                weir: self.weir.display().to_string(),
                reason: format!("cannot create {}: {e}", folder.display()),
            })?;
            folder
        } else {
            self.repository.clone()
        };
        let start_error = |reason: String| LocalError::Start {
            weir: self.weir.display().to_string(),
            reason,
        };
        let mut child = Command::new(&self.weir)
            .args([
                "serve",
                "--http-port",
                "0",
                "--log",
                "warn",
                "--model-repository",
            ])
            .arg(&repository)
            .args(if self.grpc {
                &["--grpc-port", "0"][..]
            } else {
                &[]
            })
            .args(&self.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| start_error(e.to_string()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| start_error("no stdout".to_owned()))?;
        let mut lines = BufReader::new(stdout).lines();
        let wait = Duration::from_secs(60);
        let mut next_line = async |before: &str| {
            tokio::time::timeout(wait, lines.next_line())
                .await
                .map_err(|_| LocalError::NotReady(wait))?
                .map_err(|e| start_error(e.to_string()))?
                .ok_or_else(|| start_error(format!("it exited before {before}")))
        };
        let first = next_line("listening").await?;
        let url = first
            .rsplit("listening on ")
            .next()
            .filter(|u| u.starts_with("http://"))
            .ok_or_else(|| start_error(format!("unexpected first line: {first}")))?
            .trim()
            .to_owned();
        // `weir serve` prints its gRPC address on the second line.
        let grpc_port = if self.grpc {
            let second = next_line("listening for gRPC").await?;
            let port = second
                .rsplit_once("gRPC listening on ")
                .and_then(|(_, address)| address.trim().parse::<std::net::SocketAddr>().ok())
                .map(|address| address.port())
                .ok_or_else(|| start_error(format!("unexpected second line: {second}")))?;
            Some(port)
        } else {
            None
        };
        let deadline = Instant::now() + wait;
        loop {
            if ready(&url).await {
                return Ok(Replica {
                    url,
                    grpc_port,
                    child,
                });
            }
            if Instant::now() > deadline {
                stop(&mut child).await;
                return Err(LocalError::NotReady(wait));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops every replica (after taking it out of the router).
    pub async fn shutdown(&mut self) {
        if let Err(err) = self.scale_to(0).await {
            tracing::warn!(error = %err, "stopping replicas without the router's agreement");
            for replica in &mut self.replicas {
                stop(&mut replica.child).await;
            }
            self.replicas.clear();
        }
    }
}

async fn ready(url: &str) -> bool {
    crate::signal::get(&format!("{url}/v2/health/ready"))
        .await
        .is_ok_and(|(status, _)| status == 200)
}

/// SIGTERM (the replica drains what it accepted), then SIGKILL if it takes over 30 s.
async fn stop(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    if tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}
