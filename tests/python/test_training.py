"""Train → track → register → approve → serve → predict, as an MLflow user works: `weir train`
against a running `weir registry` (SQLite and PostgreSQL), checked with the official mlflow
client, then served by `weir serve` from the registry and asked with tritonclient and KServe V1.
And `weir train` against MLflow's own server, which a team may already run."""
import hashlib
import http.server
import json
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request

import mlflow
import numpy as np
import pytest
import tritonclient.http as triton
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from conftest import MlflowServer, ROOT, Registry, STORES, Server, store_locations, weir_binary

EPOCHS = 40


@pytest.fixture(scope="module", params=STORES)
def registry(request):
    folder = tempfile.mkdtemp(prefix="weir-training-")
    db_url, artifacts = store_locations(request.param, folder)
    running = Registry(db_url, folder, artifacts=artifacts)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def iris(tmp_path_factory):
    """Fisher's iris as a CSV with the species as text, written by the demo's script."""
    path = tmp_path_factory.mktemp("iris") / "iris.csv"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "iris_csv.py"), str(path)], check=True, capture_output=True)
    rows = [line.split(",") for line in path.read_text().splitlines()[1:]]
    features = np.array([[float(v) for v in row[:4]] for row in rows], dtype=np.float32)
    return path, features, [row[4] for row in rows]


def weir(*args):
    result = subprocess.run([str(weir_binary()), *map(str, args)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def check_logged_model(client, url, model_id, run_id, out, tmp_path):
    """The run produced a READY logged model holding exactly the files `weir train` wrote."""
    model = client.get_logged_model(model_id)
    assert model.source_run_id == run_id and str(model.status) == "READY", model
    assert sorted(a.path for a in client.list_logged_model_artifacts(model_id)) == ["model.safetensors", "weir.toml"]
    downloaded = mlflow.artifacts.download_artifacts(
        artifact_uri=f"{model.artifact_location}/weir.toml", dst_path=str(tmp_path), tracking_uri=url
    )
    assert open(downloaded).read() == (out / "weir.toml").read_text()
    outputs = client.get_run(run_id).outputs.model_outputs
    assert [(o.model_id, o.step) for o in outputs] == [(model_id, int(client.get_run(run_id).data.params["epochs"]))]


def test_train_track_register_approve_serve(registry, iris, tmp_path):
    csv, features, species = iris
    out = tmp_path / "model"
    trained = weir(
        "train", "--data", csv, "--target", "species", "--epochs", EPOCHS, "--seed", 3,
        "--tracking-uri", registry.url, "--experiment", "iris", "--run-name", "mlp-seed-3",
        "--register", "iris", "--as", "alice", "--out", out, "--output", "json",
    )
    summary = json.loads(trained.stdout)
    assert summary["metrics"]["val_accuracy"] >= 0.9
    assert f"epoch {EPOCHS}/{EPOCHS}" in trained.stderr
    run_id = summary["run_id"]

    # The run, as the mlflow client sees it.
    client = MlflowClient(tracking_uri=registry.url, registry_uri=registry.url)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "mlp-seed-3"
    assert run.info.user_id == "alice"
    params = run.data.params
    assert params["model"] == "mlp" and params["hidden"] == "32,32" and params["seed"] == "3"
    assert params["epochs"] == str(EPOCHS) and params["optimizer"] == "AdamW"
    assert params["features"] == "sepal_length,sepal_width,petal_length,petal_width"
    assert params["data_sha256"] == hashlib.sha256(csv.read_bytes()).hexdigest()
    assert (params["train_rows"], params["val_rows"]) == ("120", "30")
    assert run.data.tags["mlflow.source.name"] == "weir train"
    assert run.data.metrics["val_accuracy"] == summary["metrics"]["val_accuracy"]
    for key in ["loss", "val_loss", "val_accuracy"]:
        history = client.get_metric_history(run_id, key)
        assert [m.step for m in history] == list(range(1, EPOCHS + 1)), key
    loss = [m.value for m in client.get_metric_history(run_id, "loss")]
    assert loss[-1] < loss[0] / 3, loss

    # The files are the run's MLflow 3 logged model, byte for byte, and the registered version
    # points at it and waits for approval.
    number = summary["model_version"]["version"]
    assert summary["approval"]["approved"] is False
    version = client.get_model_version("iris", number)
    # (mlflow 3.17's client does not read a version's model_id; its source names the model.)
    assert version.run_id == run_id and version.source.startswith("models:/m-")
    check_logged_model(client, registry.url, version.source.removeprefix("models:/"), run_id, out, tmp_path)
    with pytest.raises(MlflowException, match="approv"):
        client.set_registered_model_alias("iris", "champion", number)
    refused = subprocess.run(
        [str(weir_binary()), "models", "--registry", registry.url, "--as", "alice", "approve", "iris", number],
        capture_output=True, text=True,
    )
    assert refused.returncode != 0 and "cannot approve" in refused.stderr
    weir("models", "--registry", registry.url, "--as", "bob", "approve", "iris", number)
    client.set_registered_model_alias("iris", "champion", number)

    # Served from the registry: V1 answers labels, V2 probabilities and labels.
    repository = tmp_path / "repository"
    repository.mkdir()
    server = Server("--registry", registry.url, "--model", "iris=models:/iris@champion", repository=repository)
    try:
        answer = post(f"{server.url}/v1/models/iris:predict", {"instances": features.tolist()})
        predicted = answer["predictions"]
        right = sum(p == s for p, s in zip(predicted, species))
        assert right >= 0.9 * len(species), f"{right} of {len(species)}"

        v2 = triton.InferenceServerClient(url=server.address)
        rows = features[[0, 75, 149]]
        inputs = [triton.InferInput("features", list(rows.shape), "FP32")]
        inputs[0].set_data_from_numpy(rows)
        outputs = [triton.InferRequestedOutput("probabilities"), triton.InferRequestedOutput("label")]
        result = v2.infer("iris", inputs, outputs=outputs)
        probabilities = result.as_numpy("probabilities")
        assert probabilities.shape == (3, 3)
        assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
        labels = [label.decode() for label in result.as_numpy("label")]
        assert labels == [species[i] for i in [0, 75, 149]]
        assert labels == [["setosa", "versicolor", "virginica"][i] for i in probabilities.argmax(axis=1)]
        metadata = v2.get_model_metadata("iris")
        assert [o["name"] for o in metadata["outputs"]] == ["probabilities", "label"]
    finally:
        server.stop()


def test_train_against_mlflows_own_server(iris, tmp_path):
    csv, _, _ = iris
    mlflow_server = MlflowServer(tmp_path)
    try:
        trained = weir(
            "train", "--data", csv, "--target", "species", "--epochs", 5, "--model", "logistic",
            "--tracking-uri", mlflow_server.url, "--experiment", "iris", "--register", "iris",
            "--as", "alice", "--out", tmp_path / "model", "--output", "json",
        )
        summary = json.loads(trained.stdout)
        client = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
        run = client.get_run(summary["run_id"])
        assert run.info.status == "FINISHED"
        assert run.data.params["model"] == "logistic" and run.data.tags["mlflow.user"] == "alice"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [1, 2, 3, 4, 5]
        version = client.get_model_version("iris", summary["model_version"]["version"])
        assert version.run_id == run.info.run_id and version.source.startswith("models:/m-")
        model_id = version.source.removeprefix("models:/")
        check_logged_model(client, mlflow_server.url, model_id, run.info.run_id, tmp_path / "model", tmp_path)
        # MLflow has no approvals: the summary does not claim one is pending.
        assert "approval" not in summary
    finally:
        mlflow_server.stop()


class WithoutLoggedModels:
    """A proxy in front of a `weir registry` that answers MLflow 3's logged-model endpoints with
    a bare 404 page, as an MLflow 2 server (Flask) does for a route it does not have."""

    def __init__(self, upstream):
        class Handler(http.server.BaseHTTPRequestHandler):
            def forward(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if "/logged-models" in self.path:
                    return self.answer(404, b"<!doctype html><title>404 Not Found</title>", "text/html")
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization")}
                request = urllib.request.Request(upstream + self.path, data=body or None, headers=headers, method=self.command)
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        self.answer(answer.status, answer.read(), answer.headers.get("content-type", ""))
                except urllib.error.HTTPError as refused:
                    self.answer(refused.code, refused.read(), refused.headers.get("content-type", ""))

            def answer(self, status, payload, content_type):
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = forward

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


def test_a_server_without_logged_models_gets_run_artifacts(iris, tmp_path):
    csv, _, _ = iris
    folder = tmp_path / "registry"
    folder.mkdir()
    registry = Registry(f"sqlite://{folder}/registry.db", folder)
    proxy = WithoutLoggedModels(registry.url)
    try:
        trained = weir(
            "train", "--data", csv, "--target", "species", "--epochs", 3, "--tracking-uri", proxy.url,
            "--register", "iris", "--as", "alice", "--out", tmp_path / "model", "--output", "json",
        )
        summary = json.loads(trained.stdout)
        client = MlflowClient(tracking_uri=registry.url, registry_uri=registry.url)
        run_id = summary["run_id"]
        assert client.get_run(run_id).info.status == "FINISHED"
        listed = sorted(a.path for a in client.list_artifacts(run_id, "model"))
        assert listed == ["model/model.safetensors", "model/weir.toml"]
        version = client.get_model_version("iris", summary["model_version"]["version"])
        assert version.run_id == run_id and version.source.endswith(f"/{run_id}/artifacts/model")
    finally:
        proxy.stop()
        registry.stop()
