"""gRPC through `weir route` with the official tritonclient gRPC client, unmodified: two real
`weir serve --grpc-port` replicas (one per version of iris, as a rollout deploys them: each
serves only its version; on 127.0.0.1 and 127.0.0.2 with the one
gRPC port `[settings] grpc_port` names) behind a router splitting iris 90/10; pins by metadata,
errors with their gRPC codes, the router's own health and its per-code counter."""
import collections
import re
import shutil
import socket
import subprocess
import urllib.request

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from conftest import MODELS, Server, weir_binary

FEATURES = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)


def free_port_on_both():
    """A port free on 127.0.0.1 and 127.0.0.2 alike (the replicas share it)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        try:
            with socket.socket() as other:
                other.bind(("127.0.0.2", port))
            return port
        except OSError:
            continue
    raise AssertionError("no port free on both 127.0.0.1 and 127.0.0.2")


class Router:
    def __init__(self, config):
        self.process = subprocess.Popen(
            [str(weir_binary()), "route", "--config", str(config), "--http-port", "0",
             "--admin-port", "0", "--grpc-port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        lines = [self.process.stdout.readline() for _ in range(3)]
        self.url = re.search(r"listening on (http://[\d.]+:\d+)", lines[0]).group(1)
        self.admin = re.search(r"admin API on (http://[\d.]+:\d+)", lines[1]).group(1)
        match = re.search(r"gRPC listening on ([\d.]+:\d+)", lines[2])
        assert match, f"unexpected third line from weir route: {lines[2]!r}"
        self.grpc = match.group(1)

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    port = free_port_on_both()
    folder = tmp_path_factory.mktemp("grpc-route")
    replicas = []
    for version, host in (("1", "127.0.0.1"), ("2", "127.0.0.2")):
        repository = folder / f"v{version}"
        shutil.copytree(MODELS / "iris" / version, repository / "iris" / version)
        replicas.append(Server("--host", host, "--grpc-port", str(port), repository=repository))
    config = folder / "routes.toml"
    config.write_text(
        f"[settings]\ngrpc_port = {port}\n\n[[route]]\nmodel = \"iris\"\n"
        f"[[route.backend]]\nversion = \"1\"\nendpoints = [\"{replicas[0].url}\"]\nweight = 90\n"
        f"[[route.backend]]\nversion = \"2\"\nendpoints = [\"{replicas[1].url}\"]\nweight = 10\n")
    running = Router(config)
    yield running
    running.stop()
    for replica in replicas:
        replica.stop()


@pytest.fixture(scope="module")
def client(router):
    return triton.InferenceServerClient(url=router.grpc)


def features_input():
    tensor = triton.InferInput("features", [1, 4], "FP32")
    tensor.set_data_from_numpy(FEATURES)
    return tensor


def test_the_router_splits_grpc_calls_by_weight(client):
    served = collections.Counter(
        client.infer("iris", [features_input()]).get_response().model_version for _ in range(1000))
    assert set(served) <= {"1", "2"}, served
    # 90/10 over 1,000 calls: three standard deviations (±2.9 points) of a fair draw.
    assert abs(served["2"] / 1000 - 0.10) <= 0.03, served


def test_metadata_pins_a_version_and_the_answer_says_which(client):
    for _ in range(20):
        answer = client.infer("iris", [features_input()], headers={"x-weir-version": "2"})
        assert answer.get_response().model_version == "2"
        assert answer.as_numpy("label").shape[0] == 1
    pinned = client.infer("iris", [features_input()], model_version="1")
    assert pinned.get_response().model_version == "1"


def test_errors_keep_their_grpc_codes_through_the_router(client):
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("nope", [features_input()])
    assert unknown.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException) as version:
        client.infer("iris", [features_input()], model_version="7")
    assert version.value.status() == "StatusCode.NOT_FOUND"
    short = triton.InferInput("features", [1, 3], "FP32")
    short.set_data_from_numpy(FEATURES[:, :3])
    with pytest.raises(InferenceServerException) as shape:
        client.infer("iris", [short], headers={"x-weir-version": "1"})
    assert shape.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "shape" in shape.value.message()


def test_metadata_and_health_answer_through_the_router(client, router):
    assert client.is_server_live() and client.is_server_ready()
    metadata = client.get_model_metadata("iris")
    assert metadata.name == "iris" and [i.name for i in metadata.inputs] == ["features"]
    with grpc.insecure_channel(router.grpc) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answer = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_the_router_counts_grpc_calls_by_code(client, router):
    with pytest.raises(InferenceServerException):
        client.infer("iris", [features_input()], model_version="7")
    client.infer("iris", [features_input()], headers={"x-weir-version": "1"})
    with urllib.request.urlopen(f"{router.url}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    counted = [line for line in text.splitlines()
               if line.startswith("weir_router_grpc_requests_total{") and 'model="iris"' in line]
    assert any('grpc_code="0"' in line or 'grpc_code="OK"' in line for line in counted), counted
