"""Artifact benchmark: one large file uploaded to and downloaded from `weir registry` through
MLflow's artifact API, with the registry's artifacts in a local folder and then in an S3 bucket
(the Garage server of scripts/s3.sh), one after the other on this machine. Reports throughput
each way and the registry's peak resident memory (VmHWM), which must not grow with the file.

The file is generated as it is sent and hashed as it comes back, so the client holds no copy
either. Everything talks to 127.0.0.1 only and stops by itself.

    eval "$(scripts/s3.sh)"; .venv/bin/python scripts/bench_artifacts.py --weir target/release/weir
"""
import argparse
import hashlib
import http.client
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

CHUNK = 1 << 20


def peak_rss_kib(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def start(binary, folder, artifacts, max_bytes):
    process = subprocess.Popen(
        [binary, "registry", "--db", f"sqlite://{folder}/r.db", "--artifacts", artifacts, "--http-port", "0",
         "--max-artifact-bytes", str(max_bytes)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    address = re.search(r"listening on http://([\d.]+:\d+)", process.stdout.readline()).group(1)
    return process, address


def chunks(size, seed):
    """Deterministic pseudo-random bytes, CHUNK at a time (not compressible, not all zeros)."""
    block = hashlib.sha256(seed).digest() * (CHUNK // 32)
    sent = 0
    counter = 0
    while sent < size:
        piece = block[: min(CHUNK, size - sent)]
        # Vary every chunk so no store can deduplicate them.
        piece = counter.to_bytes(8, "little") + piece[8:] if len(piece) >= 8 else piece
        counter += 1
        sent += len(piece)
        yield piece


def upload(address, path, size):
    host, port = address.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=600)
    digest = hashlib.sha256()
    connection.putrequest("PUT", f"/api/2.0/mlflow-artifacts/artifacts/{path}")
    connection.putheader("Content-Length", str(size))
    connection.putheader("X-Weir-User", "bench")
    connection.endheaders()
    started = time.perf_counter()
    for piece in chunks(size, path.encode()):
        digest.update(piece)
        connection.send(piece)
    answer = connection.getresponse()
    body = answer.read()
    elapsed = time.perf_counter() - started
    if answer.status != 200:
        raise RuntimeError(f"upload: {answer.status} {body[:200]!r}")
    return elapsed, digest.hexdigest()


def download(address, path):
    host, port = address.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=600)
    started = time.perf_counter()
    connection.request("GET", f"/api/2.0/mlflow-artifacts/artifacts/{path}")
    answer = connection.getresponse()
    if answer.status != 200:
        raise RuntimeError(f"download: {answer.status}")
    digest = hashlib.sha256()
    received = 0
    while piece := answer.read(CHUNK):
        digest.update(piece)
        received += len(piece)
    return time.perf_counter() - started, digest.hexdigest(), received


def measure(name, binary, artifacts, size):
    folder = tempfile.mkdtemp(prefix="bench-artifacts-")
    process, address = start(binary, folder, artifacts, size)
    try:
        time.sleep(0.2)
        idle = peak_rss_kib(process.pid)
        up_seconds, sent_digest = upload(address, "bench/big.bin", size)
        after_upload = peak_rss_kib(process.pid)
        down_seconds, got_digest, received = download(address, "bench/big.bin")
        if (got_digest, received) != (sent_digest, size):
            raise RuntimeError(f"{name}: the download differs from the upload")
        peak = peak_rss_kib(process.pid)
        return {
            "store": name, "bytes": size,
            "upload_mib_s": size / up_seconds / (1 << 20), "download_mib_s": size / down_seconds / (1 << 20),
            "rss_idle_kib": idle, "rss_peak_after_upload_kib": after_upload, "rss_peak_kib": peak,
        }
    finally:
        process.terminate()
        process.wait(timeout=30)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weir", required=True, help="the weir binary (release build)")
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--json", default="target/bench-artifacts.json")
    args = parser.parse_args()
    size = args.size_mib << 20
    stores = [("folder", tempfile.mkdtemp(prefix="bench-artifacts-folder-"))]
    bucket = os.environ.get("WEIR_TEST_S3_BUCKET")
    if bucket and os.environ.get("AWS_ENDPOINT_URL"):
        stores.append(("s3 (Garage)", f"s3://{bucket}/bench-{os.getpid()}-{time.time_ns()}"))
    else:
        print("no S3 server in the environment (eval \"$(scripts/s3.sh)\"): folder only", file=sys.stderr)
    results = [measure(name, args.weir, location, size) for name, location in stores]
    print(f"\n{args.size_mib} MiB through the registry's artifact API (PUT, then GET), one client")
    print(f"{'store':14}{'upload MiB/s':>14}{'download MiB/s':>16}{'RSS idle KiB':>14}{'RSS peak KiB':>14}")
    for r in results:
        print(f"{r['store']:14}{r['upload_mib_s']:>14,.1f}{r['download_mib_s']:>16,.1f}{r['rss_idle_kib']:>14,}{r['rss_peak_kib']:>14,}")
    pathlib.Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
