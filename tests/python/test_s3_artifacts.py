"""`weir registry --artifacts s3://…` against a real S3-compatible server (Garage, started by
`make test`), checked from the bucket's side with boto3: what the mlflow client logs lands under
the prefix byte for byte, registered versions are content-addressed blobs in the bucket that a
later write cannot change, the mlflow client's multipart uploads go through weir, `s3://` model
sources are registered, and a registry with a bad location refuses to start."""
import hashlib
import os
import subprocess
import tempfile

import boto3
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

import mlflow
from conftest import Registry, artifacts_location, database_url, s3_bucket, weir_binary


@pytest.fixture(scope="module")
def bucket():
    name = s3_bucket()
    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    return name, client


@pytest.fixture(scope="module")
def registry(bucket):
    folder = tempfile.mkdtemp(prefix="weir-s3-")
    location = artifacts_location("s3", folder)
    running = Registry(database_url("sqlite", folder), folder, artifacts=location)
    running.prefix = location.removeprefix(f"s3://{bucket[0]}/")
    yield running
    running.stop()


@pytest.fixture
def client(registry, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "unused")
    mlflow.set_tracking_uri(registry.url)
    mlflow.set_registry_uri(registry.url)
    # Other modules leave the fluent API's active experiment set to one of their servers'.
    mlflow.set_experiment("s3-artifacts")
    yield MlflowClient(tracking_uri=registry.url, registry_uri=registry.url)
    mlflow.end_run()


def objects(bucket, prefix):
    """{key: bytes} of every object under prefix."""
    name, s3 = bucket
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name, Prefix=prefix):
        for entry in page.get("Contents", []):
            found[entry["Key"]] = s3.get_object(Bucket=name, Key=entry["Key"])["Body"].read()
    return found


def test_logged_artifacts_land_in_the_bucket(client, registry, bucket, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"trained on iris\n")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(notes), artifact_path="reports")
    landed = objects(bucket, f"{registry.prefix}/")
    keys = [key for key in landed if key.endswith(f"{run.info.run_id}/artifacts/reports/notes.txt")]
    assert len(keys) == 1, sorted(landed)
    assert landed[keys[0]] == b"trained on iris\n"
    # ... and the mlflow client reads it back through weir.
    assert [f.path for f in client.list_artifacts(run.info.run_id, "reports")] == ["reports/notes.txt"]
    back = client.download_artifacts(run.info.run_id, "reports/notes.txt", str(tmp_path / "back"))
    assert open(back, "rb").read() == b"trained on iris\n"


def test_registered_versions_are_immutable_blobs_in_the_bucket(client, registry, bucket, tmp_path):
    weights = os.urandom(4096)
    model = tmp_path / "model.onnx"
    model.write_bytes(weights)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(model), artifact_path="model")
    client.create_registered_model("s3-iris")
    version = client.create_model_version("s3-iris", source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    blob = f"{registry.prefix}/.weir/blobs/sha256/{hashlib.sha256(weights).hexdigest()}"
    assert objects(bucket, blob) == {blob: weights}

    # The source changes afterwards; the version does not.
    with mlflow.start_run(run_id=run.info.run_id):
        model.write_bytes(b"changed")
        mlflow.log_artifact(str(model), artifact_path="model")
    out = tmp_path / "version"
    out.mkdir()
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=client.get_model_version_download_uri("s3-iris", version.version), dst_path=str(out)
    )
    assert open(os.path.join(local, "model.onnx"), "rb").read() == weights


def test_multipart_uploads_of_the_mlflow_client_go_through_weir(client, registry, bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "true")
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", str(1 << 20))
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE", str(5 << 20))
    big = tmp_path / "weights.bin"
    payload = os.urandom(11 << 20)  # three parts of at most 5 MiB
    big.write_bytes(payload)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(big))
    landed = {k: v for k, v in objects(bucket, f"{registry.prefix}/").items() if k.endswith(f"{run.info.run_id}/artifacts/weights.bin")}
    assert len(landed) == 1
    assert hashlib.sha256(next(iter(landed.values()))).digest() == hashlib.sha256(payload).digest()


def test_s3_sources_are_registered_by_copy(client, registry, bucket, tmp_path):
    name, s3 = bucket
    weights = os.urandom(2048)
    source_prefix = f"{registry.prefix}-outside/exported"
    s3.put_object(Bucket=name, Key=f"{source_prefix}/model.onnx", Body=weights)
    client.create_registered_model("s3-sourced")
    version = client.create_model_version("s3-sourced", source=f"s3://{name}/{source_prefix}")
    assert version.status == "READY"
    s3.delete_object(Bucket=name, Key=f"{source_prefix}/model.onnx")
    out = tmp_path / "fetched"
    out.mkdir()
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=client.get_model_version_download_uri("s3-sourced", version.version), dst_path=str(out)
    )
    assert open(os.path.join(local, "model.onnx"), "rb").read() == weights


def test_an_unreadable_s3_source_is_refused_with_a_reason(client, bucket):
    name, _ = bucket
    client.create_registered_model("s3-missing")
    with pytest.raises(MlflowException) as refused:
        client.create_model_version("s3-missing", source=f"s3://{name}/no/such/prefix")
    assert refused.value.error_code in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST")


@pytest.mark.parametrize("location", ["ftp://host/path", "gs://bucket/prefix", "s3://"])
def test_a_location_weir_cannot_use_is_refused_at_start(location, tmp_path):
    result = subprocess.run(
        [str(weir_binary()), "registry", "--db", f"sqlite://{tmp_path}/r.db", "--artifacts", location, "--http-port", "0"],
        capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "artifacts" in result.stderr.lower(), result.stderr
    assert not (tmp_path / "ftp:").exists() and not (tmp_path / "gs:").exists()
