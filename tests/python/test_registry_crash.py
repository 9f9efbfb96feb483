"""Crash safety: kill -9 the registry during a burst of writes; after a restart every write it
acknowledged is there."""
import concurrent.futures
import json
import re
import signal
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request

from conftest import weir_binary


def start(folder):
    process = subprocess.Popen(
        [str(weir_binary()), "registry", "--db", f"sqlite://{folder}/registry.db", "--artifacts", f"{folder}/artifacts", "--http-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    match = re.search(r"listening on (http://[\d.]+:\d+)", process.stdout.readline())
    assert match
    return process, match.group(1)


def call(url, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}/api/2.0/mlflow/{path}", data=data, method=method)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def test_acknowledged_writes_survive_kill_9():
    folder = tempfile.mkdtemp(prefix="weir-crash-")
    process, url = start(folder)
    acknowledged, lock, enough = [], threading.Lock(), threading.Event()

    def write(index):
        name = f"model-{index}"
        try:
            call(url, "POST", "registered-models/create", {"name": name})
            version = call(url, "POST", "model-versions/create", {"name": name, "source": f"s3://b/{index}"})["model_version"]["version"]
        except (urllib.error.URLError, ConnectionError, OSError):
            return  # the server died mid-request: not acknowledged
        with lock:
            acknowledged.append((name, version))
            if len(acknowledged) >= 60:
                enough.set()

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(write, i) for i in range(400)]
        enough.wait(timeout=60)
        process.send_signal(signal.SIGKILL)  # no chance to flush anything
        process.wait(timeout=10)
        concurrent.futures.wait(futures, timeout=60)

    assert len(acknowledged) >= 60
    process, url = start(folder)
    try:
        for name, version in acknowledged:
            model = call(url, "GET", f"model-versions/get?name={name}&version={version}")["model_version"]
            assert model["source"].startswith("s3://b/")
    finally:
        process.terminate()
        process.wait(timeout=10)
