"""`weir serve --grpc-port` answers gRPC's standard health protocol (grpc.health.v1.Health), as
Kubernetes' gRPC probes and grpcio's health client ask it."""
import signal

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import MODELS
from test_triton_grpc import GrpcServer


@pytest.fixture(scope="module")
def health():
    running = GrpcServer()
    with grpc.insecure_channel(running.grpc_address) as channel:
        yield running, health_pb2_grpc.HealthStub(channel)
    running.stop()


def check(stub, service):
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status


def test_check_answers_for_the_server_the_service_and_liveness(health):
    _, stub = health
    serving = health_pb2.HealthCheckResponse.SERVING
    assert check(stub, "") == serving
    assert check(stub, "inference.GRPCInferenceService") == serving
    assert check(stub, "live") == serving


def test_an_unknown_service_is_not_found(health):
    _, stub = health
    with pytest.raises(grpc.RpcError) as caught:
        check(stub, "no.such.Service")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_strict_readiness_keeps_the_server_not_serving_while_a_model_is_broken(tmp_path):
    # Without --strict-readiness false, the repository's broken model keeps the server unready:
    # readiness says NOT_SERVING, liveness SERVING (a liveness probe must not restart it).
    from conftest import weir_binary, wait_until_ok
    import re
    import subprocess

    process = subprocess.Popen(
        [str(weir_binary()), "serve", "--model-repository", str(MODELS), "--http-port", "0", "--grpc-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        http = re.search(r"listening on http://([\d.]+:\d+)", process.stdout.readline()).group(1)
        address = re.search(r"gRPC listening on ([\d.]+:\d+)", process.stdout.readline()).group(1)
        wait_until_ok(f"http://{http}/v2/health/live", process, 30)
        with grpc.insecure_channel(address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            assert check(stub, "live") == health_pb2.HealthCheckResponse.SERVING
            assert check(stub, "") == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_watch_sees_serving_then_not_serving_when_the_drain_starts_and_ends():
    running = GrpcServer()
    try:
        with grpc.insecure_channel(running.grpc_address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            updates = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)
            assert next(updates).status == health_pb2.HealthCheckResponse.SERVING
            running.process.send_signal(signal.SIGTERM)
            statuses = [update.status for update in updates]
            assert statuses[-1:] == [health_pb2.HealthCheckResponse.NOT_SERVING]
        # The open watch did not hold the drain: the process exits well before its timeout.
        assert running.process.wait(timeout=20) == 0
    finally:
        running.stop()
