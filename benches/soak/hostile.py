"""Hostile clients for the soak (benches/soak/soak.sh), all against one loopback address, for a
bounded time: stalled bodies, stalled headers, garbage bodies, huge declared lengths, half-closed
sockets and a stream of new connections. Prints what it did as one JSON line when time is up."""
import json
import random
import socket
import sys
import threading
import time

host, port = sys.argv[1].removeprefix("http://").split(":")
port = int(port)
# Hostile clients come from another loopback address than the legitimate load (127.0.0.1), as
# they would from another machine: a per-peer connection share can then tell them apart.
SOURCE = ("127.0.0.2", 0)
seconds = float(sys.argv[2])
deadline = time.monotonic() + seconds
counts = {name: 0 for name in ["stalled_body", "stalled_header", "garbage", "huge_length", "half_closed", "new_connections", "refused"]}
lock = threading.Lock()

INFER = "POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


def count(name):
    with lock:
        counts[name] += 1


def connect():
    s = socket.create_connection((host, port), timeout=5, source_address=SOURCE)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def stall(kind, hold):
    """Opens a connection that never finishes its request and keeps it until the server closes
    it or `hold` seconds pass, then opens the next."""
    while time.monotonic() < deadline:
        try:
            s = connect()
            if kind == "stalled_body":
                s.sendall((INFER + "Content-Length: 100\r\n\r\n{\"inp").encode())
            else:
                s.sendall(b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\n")
            count(kind)
            s.settimeout(1)
            held = time.monotonic()
            while time.monotonic() < min(deadline, held + hold):
                try:
                    if s.recv(4096) == b"":
                        break
                except socket.timeout:
                    continue
            s.close()
        except OSError:
            count("refused")
            time.sleep(0.1)


def one_shot(kind):
    try:
        s = connect()
        if kind == "garbage":
            body = bytes(random.getrandbits(8) for _ in range(random.randint(1, 2048)))
            s.sendall((INFER + f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
        elif kind == "huge_length":
            s.sendall((INFER + "Content-Length: 99999999999\r\n\r\n{}").encode())
        elif kind == "half_closed":
            s.sendall((INFER + "Content-Length: 50\r\n\r\n{").encode())
            s.shutdown(socket.SHUT_WR)
        s.settimeout(5)
        try:
            s.recv(4096)
        except OSError:
            pass
        s.close()
        count(kind)
    except OSError:
        count("refused")


def churn(per_second):
    """Opens and closes `per_second` new connections a second (some sending nothing at all)."""
    while time.monotonic() < deadline:
        started = time.monotonic()
        for i in range(per_second):
            try:
                s = socket.create_connection((host, port), timeout=2, source_address=SOURCE)
                if i % 10 == 0:
                    s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                s.close()
                count("new_connections")
            except OSError:
                count("refused")
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))


def garbage_loop():
    while time.monotonic() < deadline:
        one_shot(random.choice(["garbage", "huge_length", "half_closed"]))
        time.sleep(0.01)


threads = [threading.Thread(target=stall, args=("stalled_body", 120)) for _ in range(150)]
threads += [threading.Thread(target=stall, args=("stalled_header", 120)) for _ in range(50)]
threads += [threading.Thread(target=garbage_loop) for _ in range(4)]
threads += [threading.Thread(target=churn, args=(1000,))]
for t in threads:
    t.daemon = True
    t.start()
while time.monotonic() < deadline:
    time.sleep(0.5)
time.sleep(1)
with lock:
    print(json.dumps(counts))
