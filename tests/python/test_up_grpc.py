"""`weir up --demo --router-grpc-port 0`: the whole local stack answering the official
tritonclient gRPC client through the router. The autoscaler's replicas share 127.0.0.1, so each
serves gRPC on a port of its own and is announced to the router with it."""
import collections
import json
import re
import signal
import subprocess
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as triton

from conftest import weir_binary

FEATURES = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("up-grpc")
    process = subprocess.Popen(
        [str(weir_binary()), "up", "--demo", "--router-port", "0", "--router-admin-port", "0",
         "--registry-port", "0", "--router-grpc-port", "0"],
        cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    first = process.stdout.readline()
    ready = re.search(r"router admin API (http://[\d.:]+), router gRPC ([\d.]+:\d+)", first)
    assert ready, f"unexpected first line from weir up: {first!r}"
    yield {"admin": ready.group(1), "grpc": ready.group(2)}
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=90)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


def features_input():
    tensor = triton.InferInput("features", [1, 4], "FP32")
    tensor.set_data_from_numpy(FEATURES)
    return tensor


def test_grpc_calls_reach_both_versions_by_weight(stack):
    client = triton.InferenceServerClient(url=stack["grpc"])
    assert client.is_server_ready()
    served = collections.Counter(
        client.infer("iris", [features_input()]).get_response().model_version
        for _ in range(1000))
    assert set(served) == {"1", "2"}, served
    # The demo's 90/10 over 1,000 calls: three standard deviations (±2.9 points) of a fair draw.
    assert abs(served["2"] / 1000 - 0.10) <= 0.03, served
    pinned = client.infer("iris", [features_input()], headers={"x-weir-version": "canary"})
    assert pinned.get_response().model_version == "2"
    assert pinned.as_numpy("label").shape[0] == 1


def test_every_replica_was_announced_with_its_own_grpc_port(stack):
    with urllib.request.urlopen(f"{stack['admin']}/admin/v1/routes/iris", timeout=10) as answer:
        status = json.load(answer)
    endpoints = [e for backend in status["backends"] for e in backend["endpoints"]]
    assert len(endpoints) >= 2, status
    ports = [e["grpc_port"] for e in endpoints]
    assert all(isinstance(port, int) and port > 0 for port in ports), endpoints
    assert len(set(ports)) == len(ports), f"one host, so one gRPC port each: {endpoints}"
