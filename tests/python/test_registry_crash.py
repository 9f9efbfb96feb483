"""Crash safety: kill -9 the registry during a burst of writes; after a restart every write it
acknowledged is there."""
import concurrent.futures
import json
import signal
import tempfile
import threading
import urllib.error
import urllib.request

import pytest

from conftest import DATABASES, Registry, database_url




def call(url, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}/api/2.0/mlflow/{path}", data=data, method=method)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


@pytest.mark.parametrize("kind", DATABASES)
def test_acknowledged_writes_survive_kill_9(kind):
    folder = tempfile.mkdtemp(prefix="weir-crash-")
    db_url = database_url(kind, folder)
    registry = Registry(db_url, folder)
    url = registry.url
    acknowledged, lock, enough = [], threading.Lock(), threading.Event()

    def write(index):
        name = f"model-{index}"
        try:
            call(url, "POST", "registered-models/create", {"name": name})
            version = call(url, "POST", "model-versions/create", {"name": name, "source": f"hdfs://b/{index}"})["model_version"]["version"]
        except (urllib.error.URLError, ConnectionError, OSError):
            return  # the server died mid-request: not acknowledged
        with lock:
            acknowledged.append((name, version))
            if len(acknowledged) >= 60:
                enough.set()

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(write, i) for i in range(400)]
        enough.wait(timeout=60)
        registry.process.send_signal(signal.SIGKILL)  # no chance to flush anything
        registry.process.wait(timeout=10)
        concurrent.futures.wait(futures, timeout=60)

    assert len(acknowledged) >= 60
    registry = Registry(db_url, folder)
    url = registry.url
    try:
        for name, version in acknowledged:
            model = call(url, "GET", f"model-versions/get?name={name}&version={version}")["model_version"]
            assert model["source"].startswith("hdfs://b/")
    finally:
        registry.stop()
