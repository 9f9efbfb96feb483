"""The attack a registered version must survive: its source path rewritten after registration.
The official mlflow client uploads and registers; the source is then overwritten; the client's
`models:/` download and `weir serve --registry` both get the registered bytes, and the runtime's
digest check passes."""
import json
import pathlib
import shutil
import subprocess
import tempfile
import urllib.request

import pytest
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts

from conftest import MODELS, Registry, database_url, wait_until_ok, weir_binary


@pytest.fixture
def registry(tmp_path):
    running = Registry(database_url("sqlite", tmp_path), tmp_path)
    yield running.url
    running.stop()


def put(url, path, data):
    request = urllib.request.Request(f"{url}/api/2.0/mlflow-artifacts/artifacts/{path}", data=data, method="PUT")
    request.add_header("X-Weir-User", "mallory")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


def weir(url, user, method, path, body):
    request = urllib.request.Request(f"{url}{path}", data=json.dumps(body).encode(), method=method)
    request.add_header("X-Weir-User", user)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def test_a_source_rewritten_after_registration_changes_nothing(registry, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "x")
    client = MlflowClient(tracking_uri=registry, registry_uri=registry)
    original = (MODELS / "iris" / "1" / "model.onnx").read_bytes()
    put(registry, "uploads/iris/model.onnx", original)
    client.create_registered_model("iris")
    version = client.create_model_version("iris", source="mlflow-artifacts:/uploads/iris").version
    # The attacker (or a careless re-upload) rewrites the source after registration.
    put(registry, "uploads/iris/model.onnx", b"not the approved model")

    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", registry)
    downloaded = pathlib.Path(download_artifacts(f"models:/iris/{version}", dst_path=str(tmp_path / "dl")))
    assert (downloaded / "model.onnx").read_bytes() == original

    weir(registry, "bob", "POST", "/api/2.0/weir/approvals/approve", {"name": "iris", "version": version})
    repository = tmp_path / "cache"
    repository.mkdir()
    serve = subprocess.Popen(
        [str(weir_binary()), "serve", "--model-repository", str(repository), "--http-port", "0",
         "--registry", registry, "--model", f"iris=models:/iris/{version}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        line = serve.stdout.readline()
        url = line.split("listening on ")[1].strip()
        wait_until_ok(f"{url}/v2/models/iris/ready", serve, 60)
        assert (repository / "iris" / version / "model.onnx").read_bytes() == original
        request = urllib.request.Request(
            f"{url}/v2/models/iris/infer",
            data=json.dumps({"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32",
                                         "data": [5.1, 3.5, 1.4, 0.2]}]}).encode(),
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
    finally:
        serve.terminate()
        serve.wait(timeout=30)
