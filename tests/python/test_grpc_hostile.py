"""HTTP/2 attacks on the gRPC ports of the real servers: "rapid reset" (CVE-2023-44487), streams
opened and cancelled at once in bursts, against `weir serve --grpc-port` and through `weir route`.
The attacking connection is ended with GOAWAY ENHANCE_YOUR_CALM and counted in
`weir_http_protocol_errors_total`; a tritonclient calling beside it the whole time loses no
call. (weir-http's unit tests cover the other attacks frame by frame, and the gRPC soak,
benches/soak/soak_grpc.sh, runs them all for minutes.)"""
import re
import sys
import threading
import time
import urllib.request

import pytest
import tritonclient.grpc as triton

from conftest import ROOT
from test_router_grpc import features_input, router  # noqa: F401 (router: the fixture, here too)
from test_triton_grpc import GrpcServer

# The raw HTTP/2 attacks are the gRPC soak's (benches/soak/hostile_grpc.py), so the two cannot
# drift.
sys.path.insert(0, str(ROOT / "benches" / "soak"))
import hostile_grpc  # noqa: E402

ENHANCE_YOUR_CALM = hostile_grpc.ENHANCE_YOUR_CALM


class Bystander(threading.Thread):
    """A well-behaved tritonclient calling `grpc_address` until told to stop."""

    def __init__(self, grpc_address):
        super().__init__(daemon=True)
        self.client = triton.InferenceServerClient(url=grpc_address)
        self.stop = threading.Event()
        self.answered, self.failed = 0, []

    def call(self):
        return self.client.infer("iris", [features_input()])

    def run(self):
        while not self.stop.is_set():
            try:
                self.call().as_numpy("label")
                self.answered += 1
            except Exception as error:  # noqa: BLE001 (any failure is the finding)
                self.failed.append(repr(error))

    def finish(self):
        self.stop.set()
        self.join(timeout=30)
        # One more after the attack, so the count cannot be made only of calls before it.
        self.call()
        self.answered += 1


def counter(url, name):
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"no {name} in {url}/metrics"
    return float(match.group(1))


def attack_while_a_bystander_calls(grpc_address, metrics_url, attacks=3):
    before = counter(metrics_url, "weir_http_protocol_errors_total")
    bystander = Bystander(grpc_address)
    bystander.start()
    while bystander.answered == 0 and not bystander.failed:
        time.sleep(0.01)
    codes = [hostile_grpc.rapid_reset(grpc_address) for _ in range(attacks)]
    bystander.finish()
    assert codes == [ENHANCE_YOUR_CALM] * attacks, codes
    assert bystander.failed == [], bystander.failed[:3]
    assert bystander.answered >= 2
    assert counter(metrics_url, "weir_http_protocol_errors_total") == before + attacks


@pytest.fixture(scope="module")
def grpc_server():
    running = GrpcServer()
    yield running
    running.stop()


def test_rapid_reset_on_serve_ends_the_attacker_and_no_call_beside_it_fails(grpc_server):
    attack_while_a_bystander_calls(grpc_server.grpc_address, grpc_server.url)


def test_rapid_reset_through_the_router_ends_the_attacker_and_no_call_beside_it_fails(router):  # noqa: F811
    attack_while_a_bystander_calls(router.grpc, router.url)
