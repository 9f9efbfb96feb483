//! gRPC through the router: the split, pins, sticky keys and shadow copies by HTTP's rules,
//! retries only when the call cannot have reached a replica, statuses counted in the stats and
//! metrics, answers (trailers included) passed through unchanged, large messages, refusals.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod grpc_support;

use grpc_support::{
    admin_post, call, client, message, replica, router, shared_port, Behaviour, INFER,
    IRIS_V1_ROUTE, METADATA, STREAM,
};

/// Two versions at 90/10, one replica each, on one gRPC port at two loopback hosts.
fn split_routes(port: u16, extra_settings: &str, sticky: &str) -> String {
    format!(
        "[settings]\ngrpc_port = {port}\n{extra_settings}\n\
         [[route]]\nmodel = \"iris\"\n{sticky}\n\
         [[route.backend]]\nversion = \"1\"\nendpoints = [\"http://127.0.0.1:9\"]\nweight = 90\n\
         [[route.backend]]\nversion = \"2\"\nendpoints = [\"http://127.0.0.2:9\"]\nweight = 10\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_split_90_10_within_a_point_and_a_half() {
    let (port, mut listeners) = shared_port(&["127.0.0.2"]);
    let v2 = replica(listeners.pop().unwrap(), "v2", Behaviour::Answer);
    let v1 = replica(listeners.pop().unwrap(), "v1", Behaviour::Answer);
    let (_router, address, _stop) = router("split", &split_routes(port, "", "")).await;
    let client = client();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let client = client.clone();
        tasks.spawn(async move {
            let mut versions = Vec::new();
            for _ in 0..500 {
                let reply = call(&client, address, INFER, message("iris", None, b""), &[]).await;
                assert_eq!(reply.grpc_status(), Some(0), "worker {worker}");
                let version = reply.header("x-weir-version");
                assert_eq!(reply.header("x-replica"), format!("v{version}"));
                versions.push(version);
            }
            versions
        });
    }
    let mut to_v1 = 0;
    let mut total = 0;
    while let Some(versions) = tasks.join_next().await {
        for version in versions.unwrap() {
            total += 1;
            to_v1 += usize::from(version == "1");
        }
    }
    assert_eq!(total, 4_000);
    // 90 % ± 1.5 points of 4,000 calls.
    assert!(
        (3_540..=3_660).contains(&to_v1),
        "{to_v1} of 4000 to version 1"
    );
    assert_eq!(
        v1.count() + v2.count(),
        4_000,
        "every call reached exactly one replica"
    );
    assert_eq!(v1.count(), to_v1);
}

#[tokio::test]
async fn metadata_and_the_message_pin_a_version() {
    let (port, mut listeners) = shared_port(&["127.0.0.2"]);
    let v2 = replica(listeners.pop().unwrap(), "v2", Behaviour::Answer);
    let _v1 = replica(listeners.pop().unwrap(), "v1", Behaviour::Answer);
    let (_router, address, _stop) = router("pin", &split_routes(port, "", "")).await;
    let client = client();
    for _ in 0..40 {
        let reply = call(
            &client,
            address,
            INFER,
            message("iris", None, b""),
            &[("x-weir-version", "2")],
        )
        .await;
        assert_eq!(reply.grpc_status(), Some(0));
        assert_eq!(reply.header("x-weir-version"), "2");
        assert_eq!(reply.header("x-replica"), "v2");
        // Metadata is forwarded as it came.
        assert_eq!(reply.header("x-sent-version"), "2");
    }
    assert_eq!(v2.count(), 40);
    // The message's model_version is the most specific: it wins over the metadata.
    let reply = call(
        &client,
        address,
        INFER,
        message("iris", Some("1"), b""),
        &[("x-weir-version", "2")],
    )
    .await;
    assert_eq!(reply.header("x-replica"), "v1");
    // Metadata queries go to the stable version unless pinned.
    for _ in 0..10 {
        let reply = call(&client, address, METADATA, message("iris", None, b""), &[]).await;
        assert_eq!(reply.header("x-replica"), "v1");
    }
    // A pin naming no version is refused, never sent by weight.
    let reply = call(
        &client,
        address,
        INFER,
        message("iris", None, b""),
        &[("x-weir-version", "7")],
    )
    .await;
    assert_eq!(reply.grpc_status(), Some(5), "NOT_FOUND");
    assert!(
        reply.grpc_message().contains("no version '7'"),
        "{}",
        reply.grpc_message()
    );
    let reply = call(
        &client,
        address,
        INFER,
        message("iris", Some("7"), b""),
        &[],
    )
    .await;
    assert_eq!(reply.grpc_status(), Some(5));
    assert_eq!(v2.count(), 40);
}

#[tokio::test]
async fn sticky_keys_keep_their_version_as_over_http() {
    let (port, mut listeners) = shared_port(&["127.0.0.2"]);
    let _v2 = replica(listeners.pop().unwrap(), "v2", Behaviour::Answer);
    let _v1 = replica(listeners.pop().unwrap(), "v1", Behaviour::Answer);
    let (router, address, _stop) = router(
        "sticky",
        &split_routes(port, "", "sticky_header = \"x-user-id\""),
    )
    .await;
    let client = client();
    let route = router.table.load().routes["iris"].clone();
    let mut rng = rand::rng();
    let mut seen = std::collections::HashSet::new();
    for user in 0..60 {
        let key = format!("user-{user}");
        // The version HTTP's choice gives this key (the same function, the same hash).
        let expected = route
            .choose(Some(key.as_bytes()), &mut rng)
            .unwrap()
            .version
            .clone();
        for _ in 0..3 {
            let reply = call(
                &client,
                address,
                INFER,
                message("iris", None, b""),
                &[("x-user-id", &key)],
            )
            .await;
            assert_eq!(reply.header("x-weir-version"), expected, "{key}");
        }
        seen.insert(expected);
    }
    assert_eq!(
        seen.len(),
        2,
        "60 keys at 90/10 reach both versions: {seen:?}"
    );
}

/// A replica that refuses connections: the call goes to the other replica. A replica that
/// received the call and then failed: the call is not sent again.
#[tokio::test]
async fn retries_only_calls_that_reached_no_replica() {
    // 127.0.0.3 listens nowhere on the port: connections are refused.
    let (port, mut listeners) = shared_port(&["127.0.0.4"]);
    let resetting = replica(listeners.pop().unwrap(), "resetting", Behaviour::Reset);
    let healthy = replica(listeners.pop().unwrap(), "healthy", Behaviour::Answer);
    let routes = format!(
        "[settings]\ngrpc_port = {port}\nejection_failures = 1000\n\
         [[route]]\nmodel = \"iris\"\n\
         [[route.backend]]\nversion = \"1\"\nendpoints = [\"http://127.0.0.3:9\", \"http://127.0.0.1:9\"]\nweight = 100\n\
         [[route]]\nmodel = \"resnet\"\n\
         [[route.backend]]\nversion = \"1\"\nendpoints = [\"http://127.0.0.4:9\", \"http://127.0.0.1:9\"]\nweight = 100\n"
    );
    let (_router, address, _stop) = router("retry", &routes).await;
    let client = client();
    for _ in 0..20 {
        let reply = call(&client, address, INFER, message("iris", None, b""), &[]).await;
        assert_eq!(reply.grpc_status(), Some(0), "{}", reply.grpc_message());
        assert_eq!(reply.header("x-replica"), "healthy");
    }
    assert_eq!(healthy.count(), 20);
    let (mut answered, mut failed) = (0, 0);
    for _ in 0..40 {
        let reply = call(&client, address, INFER, message("resnet", None, b""), &[]).await;
        match reply.grpc_status() {
            Some(0) => answered += 1,
            Some(14) => failed += 1,
            other => panic!("unexpected status {other:?}: {}", reply.grpc_message()),
        }
    }
    assert_eq!(answered + failed, 40);
    assert!(
        failed > 0,
        "two choices sent some calls to the resetting replica"
    );
    assert_eq!(
        resetting.count(),
        failed,
        "a call that reached a replica is never retried"
    );
    assert_eq!(healthy.count(), 20 + answered);
}

#[tokio::test]
async fn statuses_are_counted_in_the_stats_and_metrics() {
    let (port, mut listeners) = shared_port(&["127.0.0.2"]);
    let _v2 = replica(listeners.pop().unwrap(), "v2", Behaviour::Answer);
    let _v1 = replica(listeners.pop().unwrap(), "v1", Behaviour::Answer);
    let (router, address, _stop) = router(
        "status",
        &split_routes(port, "ejection_failures = 1000", ""),
    )
    .await;
    let client = client();
    let pin = ("x-weir-version", "2");
    for (status, count) in [("0", 5), ("13", 3), ("3", 2), ("14", 4)] {
        for _ in 0..count {
            let reply = call(
                &client,
                address,
                INFER,
                message("iris", None, b""),
                &[pin, ("x-test-status", status)],
            )
            .await;
            assert_eq!(reply.grpc_status(), Some(status.parse().unwrap()));
        }
    }
    let snapshot = router.table.load().routes["iris"]
        .backend("2")
        .unwrap()
        .stats
        .snapshot();
    // INTERNAL is the version's error; INVALID_ARGUMENT the client's; UNAVAILABLE is load.
    assert_eq!(
        (snapshot.requests, snapshot.errors, snapshot.overloaded),
        (14, 3, 4)
    );
    let text = grpc_support::metrics(&router).await;
    for line in [
        "weir_router_grpc_requests_total{model=\"iris\",version=\"2\",grpc_code=\"OK\"} 5",
        "weir_router_grpc_requests_total{model=\"iris\",version=\"2\",grpc_code=\"INTERNAL\"} 3",
        "weir_router_grpc_requests_total{model=\"iris\",version=\"2\",grpc_code=\"INVALID_ARGUMENT\"} 2",
        "weir_router_grpc_requests_total{model=\"iris\",version=\"2\",grpc_code=\"UNAVAILABLE\"} 4",
        // The same calls under the HTTP code of their status, which rollouts judge.
        "weir_router_requests_total{model=\"iris\",version=\"2\",code=\"500\"} 3",
        "weir_router_requests_total{model=\"iris\",version=\"2\",code=\"503\"} 4",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
}

#[tokio::test]
async fn answers_and_trailers_pass_through_unchanged() {
    let (port, mut listeners) = shared_port(&[]);
    let _v1 = replica(listeners.pop().unwrap(), "v1", Behaviour::Answer);
    let routes = format!("[settings]\ngrpc_port = {port}\n{IRIS_V1_ROUTE}");
    let (_router, address, _stop) = router("trailers", &routes).await;
    let client = client();
    let reply = call(
        &client,
        address,
        INFER,
        message("iris", None, b"abc"),
        &[("x-test-status", "13")],
    )
    .await;
    assert_eq!(reply.http, 200);
    let trailers = reply.trailers.clone().unwrap();
    let mut expected = axum::http::HeaderMap::new();
    expected.insert("grpc-status", "13".parse().unwrap());
    expected.insert("grpc-message", "failed%20on%20purpose".parse().unwrap());
    expected.insert("x-test-trailer", "v1".parse().unwrap());
    expected.insert("x-trace-bin", "AAEC/w".parse().unwrap());
    assert_eq!(trailers, expected);
    assert_eq!(
        reply.data,
        message("iris", None, b"abc"),
        "the message as the replica sent it"
    );
    assert_eq!(reply.header("x-replica"), "v1");
    assert_eq!(reply.header("content-type"), "application/grpc");

    // 12 MiB each way (above HTTP/2's default windows many times over).
    let large: Vec<u8> = (0..12 << 20).map(|i: u32| (i % 251) as u8).collect();
    let body = message("iris", None, &large);
    let reply = call(&client, address, INFER, body.clone(), &[]).await;
    assert_eq!(reply.grpc_status(), Some(0), "{}", reply.grpc_message());
    assert_eq!(reply.data, body);
}

#[tokio::test]
async fn refusals_are_grpc_statuses_naming_the_problem() {
    let (port, mut listeners) = shared_port(&[]);
    let v1 = replica(listeners.pop().unwrap(), "v1", Behaviour::Answer);
    let routes =
        format!("[settings]\ngrpc_port = {port}\nmax_body_bytes = 1048576\n{IRIS_V1_ROUTE}");
    let (_router, address, _stop) = router("refusals", &routes).await;
    let client = client();
    let cases: Vec<(&str, axum::body::Bytes, u16, &str)> = vec![
        (
            INFER,
            message("resnet", None, b""),
            5,
            "unknown model 'resnet'",
        ),
        (
            INFER,
            message("iris", None, &vec![0; 2 << 20]),
            8,
            "larger than the limit of 1048576 bytes",
        ),
        (
            INFER,
            axum::body::Bytes::from_static(&[0, 0, 0]),
            3,
            "no complete gRPC message",
        ),
        (
            INFER,
            axum::body::Bytes::from_static(&[1, 0, 0, 0, 0]),
            3,
            "compressed",
        ),
        (
            "/inference.GRPCInferenceService/SystemSharedMemoryRegister",
            message("iris", None, b""),
            12,
            "does not forward",
        ),
        (
            STREAM,
            message("resnet", None, b""),
            5,
            "unknown model 'resnet'",
        ),
        (
            STREAM,
            axum::body::Bytes::from_static(&[0, 0, 0, 0, 9, 1]),
            3,
            "no complete gRPC message",
        ),
        (
            STREAM,
            message("iris", None, &vec![0; 2 << 20]),
            8,
            "larger than the limit of 1048576 bytes",
        ),
        (
            "/inference.GRPCInferenceService/RepositoryModelLoad",
            message("iris", None, b""),
            12,
            "does not forward",
        ),
    ];
    for (path, body, status, text) in cases {
        let reply = call(&client, address, path, body, &[]).await;
        assert_eq!(
            reply.grpc_status(),
            Some(status),
            "{path}: {}",
            reply.grpc_message()
        );
        // Printable ASCII stays as it is in grpc-message's percent-encoding.
        assert!(
            reply.grpc_message().contains(text),
            "{path}: {}",
            reply.grpc_message()
        );
    }
    assert_eq!(v1.count(), 0, "no refused call reached a replica");

    // An answer past the same limit: RESOURCE_EXHAUSTED, and the replica stays in service.
    let large = message("iris", None, &vec![0; 600_000]);
    let reply = call(&client, address, INFER, large, &[("x-test-repeat", "2")]).await;
    assert_eq!(reply.grpc_status(), Some(8), "{}", reply.grpc_message());
    assert!(
        reply
            .grpc_message()
            .contains("answer is larger than the router's limit of 1048576 bytes"),
        "{}",
        reply.grpc_message()
    );
    let reply = call(&client, address, INFER, message("iris", None, b"ok"), &[]).await;
    assert_eq!(reply.grpc_status(), Some(0), "{}", reply.grpc_message());

    // The router answers liveness, readiness, health and the model list itself.
    let live = call(
        &client,
        address,
        "/inference.GRPCInferenceService/ServerLive",
        message("", None, b""),
        &[],
    )
    .await;
    assert_eq!(
        (live.grpc_status(), live.data.as_ref()),
        (Some(0), &[0, 0, 0, 0, 2, 8, 1][..])
    );
    let health = call(
        &client,
        address,
        "/grpc.health.v1.Health/Check",
        message("", None, b""),
        &[],
    )
    .await;
    assert_eq!(health.data.as_ref(), &[0, 0, 0, 0, 2, 8, 1][..], "SERVING");
    let index = call(
        &client,
        address,
        "/inference.GRPCInferenceService/RepositoryIndex",
        message("", None, b""),
        &[],
    )
    .await;
    assert!(
        index.data.windows(4).any(|w| w == b"iris"),
        "{:?}",
        index.data
    );

    // Not gRPC: the gRPC port says so.
    let response = client
        .request(
            axum::http::Request::post(format!("http://{address}{INFER}"))
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(axum::body::Bytes::from_static(
                    b"{}",
                )))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
}

#[tokio::test]
async fn without_a_grpc_port_calls_are_refused_and_http_is_unchanged() {
    let (router, address, _stop) = router("no-port", IRIS_V1_ROUTE).await;
    let reply = call(&client(), address, INFER, message("iris", None, b""), &[]).await;
    assert_eq!(reply.grpc_status(), Some(12), "UNIMPLEMENTED");
    assert!(
        reply.grpc_message().contains("grpc_port"),
        "{}",
        reply.grpc_message()
    );
    use tower::ServiceExt;
    let live = router
        .data_app()
        .oneshot(
            axum::http::Request::get("/v2/health/live")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
}

/// What `weir up`'s local replicas need: on one host, so each with its own gRPC port, named in
/// the routes file or announced through the admin API with the replica.
#[tokio::test]
async fn replicas_sharing_a_host_each_name_their_own_grpc_port() {
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (first, second) = (bind(), bind());
    let (port_1, port_2) = (
        first.local_addr().unwrap().port(),
        second.local_addr().unwrap().port(),
    );
    let v1 = replica(first, "v1", Behaviour::Answer);
    let v2 = replica(second, "v2", Behaviour::Answer);
    // Version 1: a replica without a gRPC port beside one with its own; version 2: none yet.
    let routes = format!(
        "[[route]]\nmodel = \"iris\"\n\
         [[route.backend]]\nversion = \"1\"\nweight = 100\nendpoints = [\"http://127.0.0.1:9\", \
         {{ url = \"http://127.0.0.1:10\", grpc_port = {port_1} }}]\n\
         [[route.backend]]\nversion = \"2\"\nweight = 0\nendpoints = []\n"
    );
    let (router, address, _stop) = router("own-ports", &routes).await;
    let client = client();
    for _ in 0..40 {
        let reply = call(&client, address, INFER, message("iris", None, b""), &[]).await;
        assert_eq!(reply.grpc_status(), Some(0), "{}", reply.grpc_message());
        assert_eq!(reply.header("x-replica"), "v1");
    }
    assert_eq!(v1.count(), 40, "the replica without a port was passed over");
    let portless = router.table.load().routes["iris"].backends[0]
        .pool
        .endpoints()[0]
        .clone();
    assert!(
        portless.available(std::time::Instant::now()),
        "passing over a replica without a gRPC port does not eject it (its HTTP traffic goes on)"
    );

    // Announced as the autoscaler does.
    let (status, answer) = admin_post(
        &router,
        "routes/iris/versions/2/endpoints",
        serde_json::json!({"add": [{"url": "http://127.0.0.1:11", "grpc_port": port_2}]}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["backends"][1]["endpoints"][0]["grpc_port"], port_2);
    assert_eq!(
        answer["backends"][0]["endpoints"][0]["grpc_port"],
        serde_json::Value::Null
    );
    for _ in 0..10 {
        let reply = call(
            &client,
            address,
            INFER,
            message("iris", None, b""),
            &[("x-weir-version", "2")],
        )
        .await;
        assert_eq!(reply.header("x-replica"), "v2");
    }
    assert_eq!(v2.count(), 10);
    for (added, expected) in [
        (
            serde_json::json!({"url": "http://127.0.0.1:12", "grpc_port": 0}),
            "grpc_port 0 is not a port",
        ),
        (
            serde_json::json!({"url": "http://127.0.0.1:12", "grpc": 1}),
            "unknown field `grpc`",
        ),
        (
            serde_json::json!({"url": "127.0.0.1:12", "grpc_port": 1}),
            "must be http://HOST:PORT",
        ),
    ] {
        let (status, answer) = admin_post(
            &router,
            "routes/iris/versions/2/endpoints",
            serde_json::json!({ "add": [added] }),
        )
        .await;
        assert_eq!(status, 400, "{added}: {answer}");
        assert!(answer.to_string().contains(expected), "{added}: {answer}");
    }
}

/// A burst of calls at a router that has no connection to the replica yet opens one, the
/// calls waiting for it, instead of one connection per call (which a burst past a replica's
/// per-peer connection cap would turn into refused calls).
#[tokio::test]
async fn a_burst_at_a_cold_router_shares_one_new_connection() {
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = replica(listener, "v1", Behaviour::Hold(gate.clone()));
    let routes = format!("[settings]\ngrpc_port = {port}\n{IRIS_V1_ROUTE}");
    let (_router, address, _stop) = router("burst", &routes).await;
    let client = client();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let client = client.clone();
        calls.spawn(
            async move { call(&client, address, INFER, message("iris", None, b""), &[]).await },
        );
    }
    while held.count() < 12 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(
        held.connections(),
        1,
        "12 calls in flight on one connection"
    );
    gate.add_permits(12);
    while let Some(reply) = calls.join_next().await {
        assert_eq!(reply.unwrap().grpc_status(), Some(0));
    }
    assert_eq!(held.connections(), 1);
}

#[tokio::test]
async fn shadow_copies_are_sent_and_their_answers_discarded() {
    let (port, mut listeners) = shared_port(&["127.0.0.5"]);
    let shadow = replica(listeners.pop().unwrap(), "shadow", Behaviour::Answer);
    let primary = replica(listeners.pop().unwrap(), "v1", Behaviour::Answer);
    let routes = format!(
        "[settings]\ngrpc_port = {port}\n{IRIS_V1_ROUTE}\
         [route.shadow]\nendpoints = [\"http://127.0.0.5:9\"]\npercent = 100\n"
    );
    let (_router, address, _stop) = router("shadow", &routes).await;
    let client = client();
    for _ in 0..10 {
        let reply = call(&client, address, INFER, message("iris", None, b""), &[]).await;
        assert_eq!(reply.header("x-replica"), "v1");
    }
    assert_eq!(primary.count(), 10);
    // Copies are fire-and-forget: wait (boundedly) for them to land.
    for _ in 0..500 {
        if shadow.count() == 10 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(shadow.count(), 10);
}

/// Backends named by role (`weir up`'s): a message naming the role reaches the replica naming
/// the version number it serves; one naming the number goes as it came.
#[tokio::test]
async fn a_role_in_the_message_reaches_the_replica_as_its_number() {
    let (port, mut listeners) = shared_port(&["127.0.0.2"]);
    let canary = replica(listeners.pop().unwrap(), "canary", Behaviour::Answer);
    let _stable = replica(listeners.pop().unwrap(), "stable", Behaviour::Answer);
    let routes = format!(
        "[settings]\ngrpc_port = {port}\n\
         [[route]]\nmodel = \"iris\"\n\
         [[route.backend]]\nversion = \"stable\"\nregistry_version = 1\nendpoints = [\"http://127.0.0.1:9\"]\nweight = 100\n\
         [[route.backend]]\nversion = \"canary\"\nregistry_version = 2\nendpoints = [\"http://127.0.0.2:9\"]\nweight = 0\n"
    );
    let (_router, address, _stop) = router("roles", &routes).await;
    let client = client();
    let reply = call(
        &client,
        address,
        INFER,
        message("iris", Some("canary"), b"x"),
        &[],
    )
    .await;
    assert_eq!(reply.header("x-replica"), "canary");
    assert_eq!(reply.header("x-weir-version"), "canary");
    assert_eq!(
        reply.data,
        message("iris", Some("2"), b"x"),
        "the replica saw version 2"
    );
    let reply = call(
        &client,
        address,
        INFER,
        message("iris", Some("2"), b"x"),
        &[],
    )
    .await;
    assert_eq!(reply.header("x-replica"), "canary");
    assert_eq!(reply.data, message("iris", Some("2"), b"x"));
    let reply = call(
        &client,
        address,
        INFER,
        message("iris", None, b"x"),
        &[("x-weir-version", "canary")],
    )
    .await;
    assert_eq!(reply.header("x-replica"), "canary");
    assert_eq!(
        reply.data,
        message("iris", None, b"x"),
        "a metadata pin leaves the message alone"
    );
    assert_eq!(canary.count(), 3);
}

/// A `ModelStreamInfer` stream goes whole to one replica of the version its first message (or
/// metadata) picks, both directions passed through, trailers included, and is counted once.
#[tokio::test]
async fn streams_pass_through_to_one_replica_and_are_counted() {
    let (port, mut listeners) = shared_port(&["127.0.0.2"]);
    let v2 = replica(listeners.pop().unwrap(), "v2", Behaviour::Answer);
    let _v1 = replica(listeners.pop().unwrap(), "v1", Behaviour::Answer);
    let (router, address, _stop) = router("stream", &split_routes(port, "", "")).await;
    let client = client();
    // Three messages in one stream, the first naming the model.
    let mut body = message("iris", None, b"first").to_vec();
    body.extend_from_slice(&message("iris", None, b"second"));
    body.extend_from_slice(&message("iris", None, b"third"));
    let reply = call(
        &client,
        address,
        STREAM,
        body.clone().into(),
        &[("x-weir-version", "2")],
    )
    .await;
    assert_eq!(reply.grpc_status(), Some(0), "{}", reply.grpc_message());
    assert_eq!(reply.header("x-weir-version"), "2");
    assert_eq!(reply.header("x-replica"), "v2");
    assert_eq!(reply.data.as_ref(), &body[..], "every message, as sent");
    let trailers = reply.trailers.clone().unwrap();
    assert_eq!(trailers["x-test-trailer"], "v2");
    assert_eq!(trailers["x-trace-bin"], "AAEC/w");
    assert_eq!(v2.count(), 1, "one stream, one call at the replica");
    // A failing stream is the version's error, counted when its trailers pass.
    let reply = call(
        &client,
        address,
        STREAM,
        body.into(),
        &[("x-weir-version", "2"), ("x-test-status", "13")],
    )
    .await;
    assert_eq!(reply.grpc_status(), Some(13));
    let snapshot = router.table.load().routes["iris"]
        .backend("2")
        .unwrap()
        .stats
        .snapshot();
    assert_eq!((snapshot.requests, snapshot.errors), (2, 1));
    let text = grpc_support::metrics(&router).await;
    for line in [
        "weir_router_grpc_requests_total{model=\"iris\",version=\"2\",grpc_code=\"OK\"} 1",
        "weir_router_grpc_requests_total{model=\"iris\",version=\"2\",grpc_code=\"INTERNAL\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
}
