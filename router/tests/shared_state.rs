//! Router replicas sharing their state through the registry's coordination API (served here
//! in-process on loopback, behind the registry's access layer): a change through one replica
//! reaches the other, concurrent changes converge, one replica drives a rollout and another
//! takes over when it disappears, and with the registry gone both keep serving what they had.
//!
//! Each replica and the registry run on a runtime of their own, so dropping a runtime is a
//! process dying: its tasks stop, its lease is never released. Waits are bounded loops
//! ("eventually, within a bound"), never a timing assertion.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::runtime::Runtime;
use weir_coordination::Coordination;
use weir_mlflow_wire::{AccessLayer, Authenticator, EndpointTable, Identities};
use weir_router::control::ControlError;
use weir_router::rollout::RolloutPlan;
use weir_router::shared::SharedConfig;
use weir_router::{Router, Serving};

const ADMIN_TOKEN: &str = "router-admin-token";
const READER_TOKEN: &str = "viewer-token";

const IDENTITIES: &str = r#"
[[user]]
name = "routers"
token = "router-admin-token"
roles = ["admin"]

[[user]]
name = "viewer"
token = "viewer-token"
roles = ["reader"]
"#;

const ROUTES: &str = r#"[[route]]
model = "iris"
[[route.backend]]
version = "v1"
endpoints = ["http://127.0.0.1:9"]
weight = 100
[[route.backend]]
version = "v2"
endpoints = ["http://127.0.0.1:9"]
weight = 0
"#;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-shared-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("routes.toml"), ROUTES).unwrap();
    dir
}

/// The registry's coordination API on its own runtime (drop it to take the registry down).
struct Registry {
    runtime: Option<Runtime>,
    address: SocketAddr,
    coordination: Arc<Coordination>,
    _db: weir_sql::testing::TestDatabase,
}

impl Registry {
    fn start() -> Registry {
        let db = weir_sql::testing::sqlite("router_shared_state");
        let coordination = Arc::new(Coordination::open(&db.url).unwrap());
        let mut registry = Registry {
            runtime: None,
            address: "127.0.0.1:0".parse().unwrap(),
            coordination,
            _db: db,
        };
        registry.serve();
        registry
    }

    /// Serves on `self.address` (a fresh port the first time, the same one again after
    /// [`Registry::stop`]).
    fn serve(&mut self) {
        let runtime = runtime();
        let (router, endpoints) = weir_coordination::routes(self.coordination.clone());
        let authenticator = Authenticator::with_identities(Identities::parse(IDENTITIES).unwrap());
        let app = router.layer(AccessLayer::new(
            EndpointTable::new(endpoints),
            authenticator,
        ));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(self.address))
            .unwrap();
        self.address = listener.local_addr().unwrap();
        runtime.spawn(async move { axum::serve(listener, app).await });
        self.runtime = Some(runtime);
    }

    fn stop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    fn document(&self) -> Value {
        self.coordination
            .get("routes/routes")
            .unwrap()
            .unwrap()
            .value
    }
}

/// One router replica on its own runtime.
struct Replica {
    runtime: Option<Runtime>,
    router: Arc<Router>,
}

impl Replica {
    fn start(dir: &Path, name: &str, registry: &Registry, token: &str) -> Replica {
        let runtime = runtime();
        let mut shared = SharedConfig::new(
            &registry.url(),
            Some(token.to_owned()),
            weir_router::shared::default_key(&dir.join("routes.toml")),
        );
        shared.poll_interval = Duration::from_millis(100);
        shared.lease_ttl = Duration::from_secs(1);
        let serving = Serving {
            shared: Some(shared),
            ..Serving::default()
        };
        let router = runtime.block_on(async {
            let router = Router::serving(
                &dir.join("routes.toml"),
                Some(dir.join(format!("{name}.state.json"))),
                None,
                serving,
            )
            .unwrap();
            router.spawn_background();
            router
        });
        Replica {
            runtime: Some(runtime),
            router,
        }
    }

    fn run<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        self.runtime.as_ref().unwrap().block_on(work)
    }

    fn set_canary(&self, percent: u32) -> Result<(), ControlError> {
        self.run(self.router.set_canary("iris", percent, "canary set"))
    }

    fn weights(&self) -> Vec<(String, u32)> {
        self.router.table.load().routes["iris"].weights()
    }

    fn status(&self) -> Value {
        self.router.status("iris").unwrap()
    }

    /// The process dies: its tasks stop where they are, nothing is released.
    fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

fn split(stable: &str, canary: &str, percent: u32) -> Vec<(String, u32)> {
    vec![
        (stable.to_owned(), 100 - percent),
        (canary.to_owned(), percent),
    ]
}

/// Waits (a bounded loop) until `done` holds; fails naming `what` after `limit`.
fn eventually(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let step = Duration::from_millis(20);
    for _ in 0..(limit.as_millis() / step.as_millis()) {
        if done() {
            return;
        }
        std::thread::sleep(step);
    }
    assert!(done(), "not within {limit:?}: {what}");
}

/// How long a change may take to show: it normally shows within a poll or two (500 ms each);
/// the bound is generous so that a loaded machine (CI, parallel test binaries) cannot fail a
/// test that only checks the change arrives.
const SOON: Duration = Duration::from_secs(30);

#[test]
fn a_change_through_either_replica_reaches_the_other() {
    let dir = folder("reaches");
    let registry = Registry::start();
    let a = Replica::start(&dir, "a", &registry, ADMIN_TOKEN);
    let b = Replica::start(&dir, "b", &registry, ADMIN_TOKEN);

    a.set_canary(30).unwrap();
    eventually("b serves a's canary at 30%", SOON, || {
        b.weights() == split("v1", "v2", 30)
    });
    assert_eq!(
        registry.document()["routes"]["iris"]["weights"],
        json!([["v1", 70], ["v2", 30]])
    );

    b.run(b.router.promote("iris", "promoted")).unwrap();
    eventually("a sees b's promotion", SOON, || {
        a.weights() == split("v2", "v1", 0)
    });
    assert_eq!(
        a.status()["backends"][1]["role"],
        "previous",
        "{}",
        a.status()
    );

    // The rollback through a returns to the stable version b promoted away from.
    a.run(a.router.rollback("iris")).unwrap();
    eventually("b sees a's rollback", SOON, || {
        b.weights() == split("v1", "v2", 0)
    });
    let revision = |r: &Replica| r.status()["shared"]["revision"].clone();
    eventually("both applied the same revision", SOON, || {
        revision(&a) == revision(&b)
    });
    assert_eq!(revision(&a), json!(3));
    // Each replica keeps a local copy for a start while the registry is away.
    let copy: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("b.state.json")).unwrap()).unwrap();
    assert_eq!(
        copy["routes"]["iris"]["weights"],
        json!([["v1", 100], ["v2", 0]])
    );
}

#[test]
fn concurrent_changes_through_both_replicas_converge_on_one_answer() {
    let dir = folder("converge");
    let registry = Registry::start();
    let a = Arc::new(Replica::start(&dir, "a", &registry, ADMIN_TOKEN));
    let b = Arc::new(Replica::start(&dir, "b", &registry, ADMIN_TOKEN));
    for round in 0..5u32 {
        let (pa, pb) = (10 + round, 60 + round);
        std::thread::scope(|scope| {
            let one = scope.spawn(|| a.set_canary(pa));
            let two = scope.spawn(|| b.set_canary(pb));
            one.join().unwrap().unwrap();
            two.join().unwrap().unwrap();
        });
        let shared = registry.document()["routes"]["iris"]["weights"].clone();
        let canary = shared[1][1].as_u64().unwrap() as u32;
        assert!(canary == pa || canary == pb, "round {round}: {shared}");
        eventually("both replicas serve the shared answer", SOON, || {
            a.weights() == split("v1", "v2", canary) && b.weights() == split("v1", "v2", canary)
        });
    }
    // Ten writes, each against the revision before it: none was lost or applied twice.
    assert_eq!(
        registry
            .coordination
            .get("routes/routes")
            .unwrap()
            .unwrap()
            .revision,
        10
    );
}

#[test]
fn with_the_registry_down_both_keep_their_last_state_and_refuse_changes() {
    let dir = folder("down");
    let mut registry = Registry::start();
    let a = Replica::start(&dir, "a", &registry, ADMIN_TOKEN);
    let b = Replica::start(&dir, "b", &registry, ADMIN_TOKEN);
    a.set_canary(25).unwrap();
    eventually("b sees 25%", SOON, || b.weights() == split("v1", "v2", 25));

    registry.stop();
    // Through the admin API, as `weir canary set` calls it: a 503 that says nothing changed.
    let (status, body) = a.run(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = a.router.admin_app();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let answer = weir_http::HttpClient::default()
            .send(
                "POST",
                &format!("http://{address}/admin/v1/routes/iris/canary"),
                &[("content-type", "application/json")],
                axum::body::Bytes::from_static(br#"{"percent": 50}"#),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        (answer.0, String::from_utf8_lossy(&answer.1).into_owned())
    });
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("nothing was changed"), "{body}");
    let refused = a.set_canary(50).unwrap_err();
    assert!(
        matches!(refused, ControlError::Unavailable(_)),
        "{refused:?}"
    );
    assert!(
        refused.to_string().contains("nothing was changed"),
        "{refused}"
    );
    assert_eq!(
        a.weights(),
        split("v1", "v2", 25),
        "a change the others cannot see is not made"
    );
    // Several poll periods pass with the registry away; both still serve their last state.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(a.weights(), split("v1", "v2", 25));
    assert_eq!(b.weights(), split("v1", "v2", 25));
    assert_eq!(b.status()["backends"][1]["weight"], 25);

    registry.serve();
    a.set_canary(50).unwrap();
    eventually("b follows again once the registry is back", SOON, || {
        b.weights() == split("v1", "v2", 50)
    });
}

#[test]
fn a_token_without_the_admin_role_changes_nothing() {
    let dir = folder("reader");
    let registry = Registry::start();
    let a = Replica::start(&dir, "a", &registry, READER_TOKEN);
    let refused = a.set_canary(40).unwrap_err();
    assert!(
        matches!(refused, ControlError::Unavailable(_)),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("403"), "{refused}");
    assert_eq!(a.weights(), split("v1", "v2", 0));
    assert!(registry
        .coordination
        .get("routes/routes")
        .unwrap()
        .is_none());
}

fn plan(steps: &[u32]) -> RolloutPlan {
    serde_json::from_value(json!({
        "steps": steps,
        "interval": "1h",
        "min_requests": 1,
        "failure_threshold": 3,
    }))
    .unwrap()
}

fn driving(replica: &Replica) -> bool {
    replica.status()["rollout"]["driven_here"] == json!(true)
}

#[test]
fn one_replica_drives_a_rollout_and_the_other_takes_over_when_it_dies() {
    let dir = folder("lease");
    let registry = Registry::start();
    let mut a = Replica::start(&dir, "a", &registry, ADMIN_TOKEN);
    let mut b = Replica::start(&dir, "b", &registry, ADMIN_TOKEN);
    let router = a.router.clone();
    a.run(router.start_rollout("iris", plan(&[10, 50, 100])))
        .unwrap();
    eventually("the first step is served by both", SOON, || {
        a.weights() == split("v1", "v2", 10) && b.weights() == split("v1", "v2", 10)
    });
    eventually("b follows the rollout", SOON, || {
        b.status()["rollout"]["progress"]["phase"] == "running"
    });
    eventually("one replica drives it", SOON, || driving(&a) || driving(&b));
    // Never both: sample a while.
    for _ in 0..20 {
        assert!(!(driving(&a) && driving(&b)), "two drivers");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (driver, follower) = if driving(&a) {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    let holder = driver.status()["shared"]["replica"]
        .as_str()
        .unwrap()
        .to_owned();
    let probe = registry
        .coordination
        // The lease is named after the state key (routes/<routes file stem>) and the model.
        .acquire(
            "routes/routes/rollout/iris",
            "probe",
            Duration::from_secs(1),
        )
        .unwrap();
    assert!(!probe.granted);
    assert_eq!(probe.holder, holder, "the lease names the driver");

    driver.kill();
    eventually("the other replica takes the rollout over", SOON, || {
        driving(follower)
    });
    let status = follower.status();
    let events: Vec<String> = status["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e.contains("drives the rollout from step 1 of 3")),
        "{events:?}"
    );
    assert_eq!(follower.weights(), split("v1", "v2", 10));
    assert_eq!(status["rollout"]["progress"]["phase"], "running");
}

#[test]
fn a_new_driver_continues_from_the_step_the_shared_state_records() {
    let dir = folder("resume");
    let registry = Registry::start();
    // A replica drove this rollout to its second step, one check failed, then it vanished.
    let left = json!({"routes": {"iris": {
        "base": [["v1", 100], ["v2", 0]],
        "weights": [["v1", 80], ["v2", 20]],
        "rollout": {
            "id": "abandoned",
            "plan": {"steps": [10, 20, 50], "interval": "1h", "max_error_rate": 0.01, "max_p99": null,
                     "failure_threshold": 3, "min_requests": 1, "prometheus": null},
            "progress": {"phase": "running", "step": 1, "failures": 1, "last_check": "check at 20%: failed"}
        }
    }}});
    registry
        .coordination
        .put("routes/routes", &left, None)
        .unwrap();
    let b = Replica::start(&dir, "b", &registry, ADMIN_TOKEN);
    eventually("b drives the abandoned rollout", SOON, || driving(&b));
    let progress = b.status()["rollout"]["progress"].clone();
    assert_eq!(
        (progress["step"].clone(), progress["failures"].clone()),
        (json!(1), json!(1)),
        "{progress}"
    );
    assert_eq!(
        b.weights(),
        split("v1", "v2", 20),
        "step 2 of 3, not a restart at 10%"
    );
}

#[test]
fn stopping_a_rollout_through_the_follower_stops_the_driver() {
    let dir = folder("stop");
    let registry = Registry::start();
    let a = Replica::start(&dir, "a", &registry, ADMIN_TOKEN);
    let b = Replica::start(&dir, "b", &registry, ADMIN_TOKEN);
    let router = a.router.clone();
    a.run(router.start_rollout("iris", plan(&[10, 50])))
        .unwrap();
    // Whichever replica takes the lease drives, not necessarily the one the rollout was
    // started through (the test once assumed `a` and failed when `b` won the race).
    eventually("one replica drives it", SOON, || driving(&a) || driving(&b));
    let (driver, follower) = if driving(&a) { (&a, &b) } else { (&b, &a) };
    eventually("the other follows", SOON, || {
        follower.status()["rollout"]["progress"]["phase"] == "running"
    });

    follower
        .router
        .cancel_rollout("iris", "the canary was set by hand");
    follower.set_canary(5).unwrap();
    eventually(
        "the driver stops driving and records the cancellation",
        SOON,
        || {
            let status = driver.status();
            status["rollout"]["progress"]["phase"] == "cancelled" && !driving(driver)
        },
    );
    eventually(
        "the driver serves the follower's hand-set canary",
        SOON,
        || driver.weights() == split("v1", "v2", 5),
    );
    assert_eq!(
        registry.document()["routes"]["iris"]["rollout"]["progress"]["phase"],
        "cancelled"
    );
}
