//! `weir up`: the whole stack on this machine from one `weir.toml`: a registry on SQLite, a
//! router, and an autoscaler that runs local replicas of each model's stable and canary
//! versions, fetched from the registry. `--demo` first registers and approves two versions of
//! the iris model (built into the binary, so it runs from any folder) and serves them with a 10%
//! canary.
//!
//! Every part is a `weir` child process, so each behaves exactly as when run alone; Ctrl-C stops
//! them in reverse order (the autoscaler takes its replicas out of the router and drains them).
//!
//! What can be checked before anything starts is checked first (the config, ONNX Runtime for the
//! demo, free ports), so a refusal leaves no half-made folder; a failure after that stops the
//! parts already started and removes what this run created.

mod configs;
mod demo;
mod folder;
mod ports;
mod resolve;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use weir_mlflow_client::{Identity, RegistryClient};

use configs::Resolved;
use resolve::resolve_all;

#[derive(clap::Args)]
pub struct UpArgs {
    /// The stack's description (`[[model]]` tables); `--demo` writes one.
    #[arg(long, env = "WEIR_CONFIG", default_value = "weir.toml")]
    config: PathBuf,
    /// Register and approve two versions of a demo model (built into weir) and serve them with
    /// a 10% canary. Each run starts afresh unless --resume is given.
    #[arg(long)]
    demo: bool,
    /// With --demo: keep the previous run's registry and canary weights (nothing is registered
    /// again) instead of starting afresh.
    #[arg(long, requires = "demo")]
    resume: bool,
    /// Register the demo's versions from this folder (`iris/1/model.onnx`, `iris/2/model.onnx`)
    /// instead of the ones built into weir.
    #[arg(long, env = "WEIR_DEMO_MODELS")]
    demo_models: Option<PathBuf>,
    /// Folder for the registry's database and artifacts, and the replicas' files.
    #[arg(long, env = "WEIR_DIR", default_value = "weir-up")]
    dir: PathBuf,
    /// The router's data port (inference traffic); 0 picks a free one.
    #[arg(long, env = "WEIR_ROUTER_PORT", default_value_t = 8000)]
    router_port: u16,
    /// The router's admin API port (on loopback, where `weir canary` and the autoscaler reach
    /// it without a token); 0 picks a free one.
    #[arg(long, env = "WEIR_ROUTER_ADMIN_PORT", default_value_t = 8001)]
    router_admin_port: u16,
    /// Serve gRPC through the router on this port (0 picks a free one): each replica then
    /// serves gRPC on a port of its own and is announced to the router with it. Off unless
    /// given.
    #[arg(long, env = "WEIR_ROUTER_GRPC_PORT")]
    router_grpc_port: Option<u16>,
    /// The registry's port (where `weir models` reaches it); 0 picks a free one.
    #[arg(long, env = "WEIR_REGISTRY_PORT", default_value_t = 5000)]
    registry_port: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StackFile {
    #[serde(default)]
    model: Vec<ModelEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelEntry {
    name: String,
    /// The stable version: `models:/NAME@ALIAS` or `models:/NAME/VERSION`.
    stable: String,
    #[serde(default)]
    canary: Option<String>,
    #[serde(default)]
    canary_percent: u32,
    #[serde(default = "one")]
    min_replicas: u32,
    #[serde(default = "four")]
    max_replicas: u32,
    #[serde(default = "ten")]
    target_concurrency: u32,
}

fn one() -> u32 {
    1
}

fn four() -> u32 {
    4
}

fn ten() -> u32 {
    10
}

const DEMO_STACK: &str = r#"# Written by `weir up --demo`: iris v1 stable, v2 as a 10% canary.
[[model]]
name = "iris"
stable = "models:/iris@production"
canary = "models:/iris@canary"
canary_percent = 10
min_replicas = 1
max_replicas = 4
target_concurrency = 10
"#;

/// A child `weir` process and the URLs it announced (the router announces its data address,
/// then its admin API's).
struct Part {
    name: &'static str,
    child: Child,
    urls: Vec<String>,
}

impl Part {
    fn url(&self) -> &str {
        self.urls.first().map_or("", String::as_str)
    }
}

/// Starts `weir ARGS` and reads the address on each of its first `announced` lines: the
/// `http://…` URL, or for a gRPC port the `HOST:PORT` after "listening on".
async fn start(
    weir: &Path,
    name: &'static str,
    args: &[String],
    announced: usize,
) -> anyhow::Result<Part> {
    let mut child = Command::new(weir)
        .args(args)
        // The stack's router keeps its admin API on loopback without a token, which its
        // autoscaler and the printed `weir canary` hints rely on; a token meant for another
        // router in the caller's environment must not close it. Likewise an identities file
        // (the demo registers anonymously on loopback), another address, or a router state
        // file elsewhere (a fresh run would then inherit old weights) are not this stack's.
        .env_remove("WEIR_ADMIN_TOKEN")
        .env_remove("WEIR_ADMIN_TOKEN_FILE")
        .env_remove("WEIR_TOKENS")
        .env_remove("WEIR_HOST")
        .env_remove("WEIR_STATE")
        // The registry's dashboard watches this stack's router and autoscaler, which take no
        // token; another router's token from the caller's environment must not be sent here.
        .env_remove("WEIR_ROUTERS")
        .env_remove("WEIR_AUTOSCALERS")
        .env_remove("WEIR_ROUTER_TOKEN_FILE")
        // Every replica would try to bind the one gRPC port a caller's environment names.
        .env_remove("WEIR_GRPC_PORT")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start the {name}"))?;
    let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
    let mut urls = Vec::new();
    for _ in 0..announced.max(1) {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .with_context(|| format!("the {name} did not start within 60 s"))??
            .with_context(|| format!("the {name} exited at start (see its messages above)"))?;
        let url = line
            .find("http://")
            .map(|at| &line[at..])
            .or_else(|| line.split_once("gRPC listening on ").map(|(_, at)| at))
            .map(|at| at.trim().to_owned())
            .with_context(|| format!("unexpected line from the {name}: {line}"))?;
        urls.push(url);
    }
    Ok(Part { name, child, urls })
}

/// SIGTERM, then wait (the parts drain); SIGKILL after 40 s.
async fn stop(part: &mut Part) {
    if let Some(pid) = part.child.id() {
        let _ = Command::new("kill").arg(pid.to_string()).status().await;
    }
    if tokio::time::timeout(Duration::from_secs(40), part.child.wait())
        .await
        .is_err()
    {
        let _ = part.child.kill().await;
    }
    tracing::info!(part = part.name, "stopped");
}

/// Registers iris v1 and v2 as alice, approves both as bob, points `production` at v1 and
/// `canary` at v2.
async fn register_demo(registry: &str, models: &Path) -> anyhow::Result<()> {
    let alice = RegistryClient::new(registry, Identity::User("alice".to_owned()));
    let bob = RegistryClient::new(registry, Identity::User("bob".to_owned()));
    for version in ["1", "2"] {
        let folder = models.join("iris").join(version);
        let registered = alice
            .register("iris", &folder, &format!("iris demo version {version}"))
            .await
            .context("registering the demo model failed")?;
        let number = registered["version"]
            .as_str()
            .context("the registry did not say which version it created")?
            .to_owned();
        bob.decide("approve", "iris", &number, "demo: approved by bob")
            .await
            .context("approving the demo model failed")?;
        let alias = if version == "1" {
            "production"
        } else {
            "canary"
        };
        alice
            .set_alias("iris", alias, &number)
            .await
            .context("setting the demo aliases failed")?;
    }
    Ok(())
}

/// What `weir up` checks before it creates or starts anything: the stack description, the demo
/// models, ONNX Runtime (the demo serves ONNX), and that the fixed ports are free.
fn check_prerequisites(args: &UpArgs) -> anyhow::Result<StackFile> {
    let (text, origin) = if args.demo {
        (DEMO_STACK.to_owned(), "the demo stack".to_owned())
    } else {
        let text = std::fs::read_to_string(&args.config).with_context(|| {
            format!(
                "cannot read {} (describe the stack there, or try `weir up --demo`)",
                args.config.display()
            )
        })?;
        (text, args.config.display().to_string())
    };
    let stack: StackFile = toml::from_str(&text).with_context(|| format!("invalid {origin}"))?;
    anyhow::ensure!(!stack.model.is_empty(), "{origin} names no [[model]]");
    if let Some(models) = &args.demo_models {
        demo::check_folder(models)?;
    }
    if args.demo {
        weir_models::onnx::find_library().map_err(|message| {
            anyhow::anyhow!("weir up --demo serves ONNX models and needs ONNX Runtime: {message}")
        })?;
    }
    let ports = [
        (args.registry_port, "--registry-port"),
        (args.router_port, "--router-port"),
        (args.router_admin_port, "--router-admin-port"),
        (args.router_grpc_port.unwrap_or(0), "--router-grpc-port"),
    ];
    for (index, (port, flag)) in ports.iter().enumerate() {
        if *port == 0 {
            continue;
        }
        if let Some((_, other)) = ports[..index].iter().find(|(p, _)| p == port) {
            anyhow::bail!("{flag} and {other} are both {port}: give each part its own port");
        }
        std::net::TcpListener::bind(("127.0.0.1", *port)).map_err(|err| {
            anyhow::anyhow!(
                "port {port} ({flag}) is not free on 127.0.0.1: {err}; stop what uses it (another `weir up`?) or choose another with {flag}"
            )
        })?;
    }
    Ok(stack)
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let weir = std::env::current_exe().context("cannot find the weir binary")?;
    let stack = check_prerequisites(&args)?;
    let fresh = args.demo && !args.resume;
    let folder = folder::Folder::prepare(&args.dir, fresh, args.demo)?;
    let mut parts = Vec::new();
    let outcome = start_stack(&weir, &args, &stack, &folder, &mut parts).await;
    if outcome.is_ok() {
        crate::shutdown_signal().await;
    }
    for part in parts.iter_mut().rev() {
        stop(part).await;
    }
    if outcome.is_err() {
        folder.remove_what_this_run_made();
    }
    outcome
}

/// Starts the registry (registering the demo), the router and the autoscaler, and waits until
/// every model answers; each part started is pushed on `parts` so the caller stops it whatever
/// happens.
async fn start_stack(
    weir: &Path,
    args: &UpArgs,
    stack: &StackFile,
    folder: &folder::Folder,
    parts: &mut Vec<Part>,
) -> anyhow::Result<()> {
    let dir = folder.path();
    let config = if args.demo {
        let path = dir.join("weir.toml");
        std::fs::write(&path, DEMO_STACK)
            .with_context(|| format!("cannot write {}", path.display()))?;
        path
    } else {
        args.config.clone()
    };
    // The registry's dashboard shows the router and the autoscaler, which start after it.
    let admin_port = ports::pick(args.router_admin_port)?;
    let autoscaler_port = ports::pick(0)?;
    let registry = start(
        weir,
        "registry",
        &[
            "registry".into(),
            "--http-port".into(),
            args.registry_port.to_string(),
            "--db".into(),
            format!("sqlite://{}", dir.join("registry.db").display()),
            "--artifacts".into(),
            dir.join("artifacts").display().to_string(),
            "--router".into(),
            format!("http://127.0.0.1:{admin_port}"),
            "--autoscaler".into(),
            format!("http://127.0.0.1:{autoscaler_port}"),
        ],
        1,
    )
    .await?;
    let registry_url = registry.url().to_owned();
    parts.push(registry);
    if args.demo && !folder.resumed() {
        match &args.demo_models {
            Some(models) => register_demo(&registry_url, models).await?,
            None => {
                let models = dir.join("demo-models");
                demo::write_models(&models)?;
                let registered = register_demo(&registry_url, &models).await;
                // The registry keeps its own copy of every registered file.
                let _ = std::fs::remove_dir_all(&models);
                registered?;
            }
        }
    }
    let resolved = resolve_all(&registry_url, stack).await;
    configs::write(&dir.join("routes.toml"), &configs::routes(stack, &resolved))?;
    let mut router_args: Vec<String> = vec![
        "route".into(),
        "--config".into(),
        dir.join("routes.toml").display().to_string(),
        "--http-port".into(),
        args.router_port.to_string(),
        "--admin-host".into(),
        "127.0.0.1".into(),
        "--admin-port".into(),
        admin_port.to_string(),
    ];
    if let Some(port) = args.router_grpc_port {
        router_args.extend(["--grpc-port".into(), port.to_string()]);
    }
    let grpc = args.router_grpc_port.is_some();
    let router = start(weir, "router", &router_args, if grpc { 3 } else { 2 }).await?;
    let router_url = router.url().to_owned();
    let admin_url = router
        .urls
        .get(1)
        .cloned()
        .context("the router did not announce its admin API")?;
    let grpc_address = router.urls.get(2).cloned();
    parts.push(router);
    configs::write(
        &dir.join("autoscaler.toml"),
        &configs::autoscaler(stack, dir, &registry_url, &admin_url, grpc),
    )?;
    let autoscaler = start(
        weir,
        "autoscaler",
        &[
            "autoscale".into(),
            "--config".into(),
            dir.join("autoscaler.toml").display().to_string(),
            "--http-port".into(),
            autoscaler_port.to_string(),
        ],
        1,
    )
    .await?;
    let autoscaler_url = autoscaler.url().to_owned();
    parts.push(autoscaler);
    wait_until_ready(&router_url, stack).await?;
    let urls = Urls {
        registry: registry_url,
        router: router_url,
        admin: admin_url,
        autoscaler: autoscaler_url,
        grpc: grpc_address,
    };
    print_welcome(stack, &urls, &resolved, &config, folder.resumed());
    Ok(())
}

async fn wait_until_ready(router: &str, stack: &StackFile) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let address = router.trim_start_matches("http://").to_owned();
    for model in &stack.model {
        loop {
            let address = address.clone();
            let path = format!("/v2/models/{}/ready", model.name);
            let ready = tokio::task::spawn_blocking(move || {
                std::net::TcpStream::connect(&address)
                    .and_then(|mut stream| {
                        use std::io::{Read, Write};
                        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                        write!(
                            stream,
                            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                        )?;
                        let mut answer = String::new();
                        stream.read_to_string(&mut answer)?;
                        Ok(answer.starts_with("HTTP/1.1 200"))
                    })
                    .unwrap_or(false)
            })
            .await
            .unwrap_or(false);
            if ready {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "model '{}' had no ready replica within 120 s",
                model.name
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// Where the parts of the stack answer.
struct Urls {
    registry: String,
    router: String,
    /// The router's admin API: `weir canary` and the autoscaler talk to it.
    admin: String,
    autoscaler: String,
    /// The router's gRPC address (`HOST:PORT`), when it serves gRPC.
    grpc: Option<String>,
}

fn print_welcome(
    stack: &StackFile,
    urls: &Urls,
    resolved: &Resolved,
    config: &Path,
    resumed: bool,
) {
    let model = &stack.model[0].name;
    let Urls {
        registry,
        router,
        admin,
        autoscaler,
        grpc,
    } = urls;
    let grpc = grpc
        .as_ref()
        .map_or(String::new(), |address| format!(", router gRPC {address}"));
    crate::announce(format_args!(
        "weir up ready: router {router}, registry {registry}, autoscaler metrics {autoscaler}/metrics, router admin API {admin}{grpc}"
    ));
    let state = if resumed {
        "resumed the previous run's registry and canary weights"
    } else {
        "started afresh (--resume keeps a demo's state next time)"
    };
    let request = r#"'{"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}'"#;
    // A version pin by registry number, when the stable and canary numbers are known.
    let pin = resolved
        .get(model, "canary")
        .or_else(|| resolved.get(model, "stable"))
        .map_or(String::new(), |number| {
            format!(
                "\n  curl -s -X POST {router}/v2/models/{model}/versions/{number}/infer -d {request}\n  curl -s -X POST {router}/v2/models/{model}/infer -H 'x-weir-version: {number}' -d {request}"
            )
        });
    // Through announce, not println!: a reader that stopped after the first line (a script, a
    // test) must not make the whole stack panic on a closed pipe.
    crate::announce(format_args!(
        r#"Stack {config} ({state}).

dashboard: {registry}/

Try:
  curl -s -X POST {router}/v2/models/{model}/infer -d {request} -D -{pin}
  weir canary status {model} --router {admin}
  weir canary set {model} 50 --router {admin}
  weir canary rollout {model} --steps 25,50,100 --interval 10s --min-requests 20 --router {admin}
  weir models list --registry {registry}
Ctrl-C stops everything."#,
        config = config.display()
    ));
}
