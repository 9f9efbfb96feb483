"""`weir registry` against the official mlflow client (3.x), unmodified, on SQLite and on
PostgreSQL (reached over verified TLS)."""
import os
import subprocess
import tempfile
import warnings

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from conftest import Registry, STORES, database_url, store_locations


@pytest.fixture(scope="module", params=STORES)
def registry(request):
    folder = tempfile.mkdtemp(prefix="weir-registry-")
    db_url, artifacts = store_locations(request.param, folder)
    running = Registry(db_url, folder, artifacts=artifacts)
    yield running.url
    running.stop()


@pytest.fixture(scope="module")
def client(registry):
    return MlflowClient(tracking_uri=registry, registry_uri=registry)


def error_code(call):
    with pytest.raises(MlflowException) as caught:
        call()
    return caught.value.error_code


def upload(registry, path, data=b"\x08\x01onnx"):
    """Puts one artifact file into the registry's store (as `mlflow.log_artifact` would)."""
    import urllib.request

    request = urllib.request.Request(f"{registry}/api/2.0/mlflow-artifacts/artifacts/{path}", data=data, method="PUT")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


def test_registered_models_versions_tags_and_aliases(registry, client):
    upload(registry, "models/iris/1/model.onnx")
    upload(registry, "models/iris/2/model.onnx")
    model = client.create_registered_model("iris", tags={"team": "ml"}, description="flowers")
    assert model.name == "iris" and model.tags == {"team": "ml"} and model.description == "flowers"
    assert error_code(lambda: client.create_registered_model("iris")) == "RESOURCE_ALREADY_EXISTS"

    v1 = client.create_model_version("iris", source="mlflow-artifacts:/models/iris/1", tags={"stage": "test"})
    v2 = client.create_model_version("iris", source="mlflow-artifacts:/models/iris/2", description="second")
    assert (v1.version, v2.version) == ("1", "2")
    assert v1.status == "READY" and v1.tags == {"stage": "test"}
    assert client.get_model_version("iris", "2").description == "second"
    # Registered files are copied into the versions' immutable storage and read from there.
    assert client.get_model_version_download_uri("iris", "1") == "mlflow-artifacts:/.weir/versions/iris/1"

    client.set_registered_model_alias("iris", "candidate", "1")
    assert client.get_model_version_by_alias("iris", "candidate").version == "1"
    client.set_registered_model_alias("iris", "candidate", "2")
    assert client.get_registered_model("iris").aliases == {"candidate": "2"}
    assert error_code(lambda: client.get_model_version_by_alias("iris", "nope")) == "INVALID_PARAMETER_VALUE"
    client.delete_registered_model_alias("iris", "candidate")
    assert client.get_registered_model("iris").aliases == {}

    client.set_model_version_tag("iris", "2", "validated", "yes")
    client.delete_model_version_tag("iris", "1", "stage")
    assert client.get_model_version("iris", "2").tags == {"validated": "yes"}
    assert client.get_model_version("iris", "1").tags == {}
    client.set_registered_model_tag("iris", "owner", "alice")
    client.delete_registered_model_tag("iris", "team")
    assert client.get_registered_model("iris").tags == {"owner": "alice"}
    assert client.update_model_version("iris", "1", description="first").description == "first"
    assert client.update_registered_model("iris", description="renamed soon").description == "renamed soon"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        moved = client.transition_model_version_stage("iris", "2", "Production", archive_existing_versions=True)
        assert moved.current_stage == "Production"
        latest = {v.current_stage: v.version for v in client.get_latest_versions("iris")}
        assert latest["Production"] == "2"


def test_search_rename_delete_and_errors(client):
    for name in ("search_a", "search_b", "other"):
        client.create_registered_model(name)
    client.create_model_version("search_a", source="hdfs://bucket/a")
    found = client.search_registered_models(filter_string="name LIKE 'search_%'")
    assert sorted(m.name for m in found) == ["search_a", "search_b"]
    assert [m.name for m in client.search_registered_models(filter_string="name = 'other'")] == ["other"]
    assert [v.version for v in client.search_model_versions("name='search_a'")] == ["1"]
    paged = client.search_registered_models(max_results=1)
    assert len(paged) == 1 and paged.token

    client.rename_registered_model("search_a", "search_renamed")
    assert client.get_registered_model("search_renamed").name == "search_renamed"
    assert error_code(lambda: client.get_registered_model("search_a")) == "RESOURCE_DOES_NOT_EXIST"
    assert client.get_model_version("search_renamed", "1").source == "hdfs://bucket/a"
    client.delete_model_version("search_renamed", "1")
    assert error_code(lambda: client.get_model_version("search_renamed", "1")) == "RESOURCE_DOES_NOT_EXIST"
    client.delete_registered_model("search_renamed")
    assert error_code(lambda: client.get_registered_model("search_renamed")) == "RESOURCE_DOES_NOT_EXIST"
    assert error_code(lambda: client.search_registered_models(filter_string="name = 'a' OR name = 'b'")) == "INVALID_PARAMETER_VALUE"
    assert error_code(lambda: client.create_registered_model("a/b")) == "INVALID_PARAMETER_VALUE"


def test_artifacts_upload_list_download(registry, tmp_path):
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    (tmp_path / "model.onnx").write_bytes(b"\x08\x01weights")
    (tmp_path / "MLmodel").write_text("flavors: {}\n")
    with _use_tracking_uri(registry):
        repository = get_artifact_repository("mlflow-artifacts:/models/iris/1")
        repository.log_artifact(str(tmp_path / "model.onnx"))
        repository.log_artifact(str(tmp_path / "MLmodel"), artifact_path="meta")
        listed = {f.path: f for f in repository.list_artifacts()}
        assert set(listed) == {"model.onnx", "meta"}
        assert listed["meta"].is_dir and listed["model.onnx"].file_size == 9
        out = tmp_path / "out"
        out.mkdir()
        local = repository.download_artifacts("model.onnx", dst_path=str(out))
        assert open(local, "rb").read() == b"\x08\x01weights"


def weir_call(registry, user, method, path, body=None):
    """weir's own API (/api/2.0/weir/…) as `user` (HTTP Basic, as the mlflow client sends it)."""
    import base64
    import json
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{registry}/api/2.0/weir/{path}", data=data, method=method)
    request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:x".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_protected_aliases_need_approval_from_someone_else(registry, monkeypatch):
    upload(registry, "fraud/1/model.onnx")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "x")
    alice = MlflowClient(tracking_uri=registry, registry_uri=registry)
    alice.create_registered_model("fraud")
    version = alice.create_model_version("fraud", source="mlflow-artifacts:/fraud/1").version
    assert version == "1"
    with pytest.raises(MlflowException) as refused:
        alice.set_registered_model_alias("fraud", "production", version)
    assert refused.value.error_code == "PERMISSION_DENIED"
    assert "0 of 1 required approvals" in refused.value.message

    assert weir_call(registry, "alice", "POST", "approvals/request", {"name": "fraud", "version": "1", "comment": "ready"})[0] == 200
    status, body = weir_call(registry, "alice", "POST", "approvals/approve", {"name": "fraud", "version": "1"})
    assert status == 403 and body["error_code"] == "PERMISSION_DENIED" and "cannot approve" in body["message"]
    assert weir_call(registry, "alice", "POST", "approvals/policy", {"name": "fraud", "required_approvals": 2})[0] == 200
    status, body = weir_call(registry, "bob", "POST", "approvals/approve", {"name": "fraud", "version": "1", "comment": "metrics ok"})
    assert status == 200 and body["approval"]["approved"] is False and body["approval"]["approved_by"] == ["bob"]
    status, body = weir_call(registry, "carol", "POST", "approvals/reject", {"name": "fraud", "version": "1", "comment": "drift"})
    assert body["approval"]["rejected_by"] == ["carol"]
    status, body = weir_call(registry, "carol", "POST", "approvals/approve", {"name": "fraud", "version": "1", "comment": "fixed"})
    assert body["approval"]["approved"] is True

    alice.set_registered_model_alias("fraud", "production", version)
    assert alice.get_model_version_by_alias("fraud", "production").version == "1"
    status, body = weir_call(registry, "alice", "GET", "audit/list?name=fraud")
    actions = [(e["user"], e["action"]) for e in reversed(body["events"])]
    assert [a for a in actions if a[1] != "artifact.put"] == [
        ("alice", "create_registered_model"), ("alice", "create_model_version"), ("alice", "request"),
        ("alice", "set_approval_policy"), ("bob", "approve"), ("carol", "reject"), ("carol", "approve"),
        ("alice", "set_alias"),
    ]


def test_a_version_weir_cannot_serve_is_marked_and_refused(registry, client):
    """Issue 17: what `mlflow.sklearn.log_model` logs (MLmodel + model.pkl) registers, as with
    MLflow, but is tagged weir.servable=false with the reason, and approving it or moving a
    protected alias to it is refused naming the fix; the same model as ONNX goes through."""
    upload(registry, "sk/1/MLmodel", b"flavors:\n  sklearn: {}\n")
    upload(registry, "sk/1/model.pkl", b"\x80\x04pickle")
    upload(registry, "sk/2/model.onnx")
    client.create_registered_model("sk")
    pickled = client.create_model_version("sk", source="mlflow-artifacts:/sk/1")
    assert pickled.status == "READY" and pickled.tags["weir.servable"] == "false"
    assert "model.pkl" in pickled.tags["weir.servable_reason"] and "skl2onnx" in pickled.tags["weir.servable_reason"]

    status, body = weir_call(registry, "bob", "POST", "approvals/approve", {"name": "sk", "version": "1"})
    assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE", body
    assert body["message"].startswith("cannot approve version 1 of 'sk'") and "skl2onnx" in body["message"]
    with pytest.raises(MlflowException) as refused:
        client.set_registered_model_alias("sk", "champion", "1")
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "protected alias 'champion'" in refused.value.message and "model.onnx" in refused.value.message
    client.set_registered_model_alias("sk", "candidate", "1")  # unprotected: the user's business

    exported = client.create_model_version("sk", source="mlflow-artifacts:/sk/2")
    assert "weir.servable" not in exported.tags
    status, body = weir_call(registry, "bob", "POST", "approvals/approve", {"name": "sk", "version": "2"})
    assert status == 200 and body["approval"]["approved"] is True
    client.set_registered_model_alias("sk", "champion", "2")
    assert client.get_model_version_by_alias("sk", "champion").version == "2"


def test_the_registry_reaches_postgresql_over_verified_tls(tmp_path):
    url = database_url("postgres", tmp_path)
    assert "sslmode=verify-full&sslrootcert=" in url
    running = Registry(url, tmp_path)
    try:
        database = url.split("?")[0].rsplit("/", 1)[1]
        sessions = subprocess.run(
            ["psql", os.environ["WEIR_TEST_POSTGRES_URL"], "-Atc",
             "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) "
             f"WHERE a.datname = '{database}' AND a.application_name = 'weir'"],
            check=True, capture_output=True, text=True,
        ).stdout.split()
        assert sessions == ["t"], sessions
    finally:
        running.stop()
