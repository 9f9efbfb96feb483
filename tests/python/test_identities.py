"""`weir registry --tokens FILE` against the official mlflow client, unmodified: tokens as
MLFLOW_TRACKING_TOKEN and as the password of MLFLOW_TRACKING_USERNAME/PASSWORD, refusals without
credentials or roles, rotation by editing the file while the server runs."""
import json
import os
import pathlib
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from conftest import DATABASES, Registry, database_url, weir_binary

IDENTITIES = """
[[user]]
name = "alice"
token = "alice-token"
roles = ["reader", "submitter"]

[[user]]
name = "bob"
token = "bob-token"
roles = ["approver"]

[[user]]
name = "rita"
token = "rita-token"
roles = ["reader"]

[[user]]
name = "ada"
token = "ada-token"
roles = ["admin"]
"""


@pytest.fixture(scope="module", params=DATABASES)
def secured(request):
    folder = pathlib.Path(tempfile.mkdtemp(prefix="weir-identities-"))
    identities = folder / "identities.toml"
    identities.write_text(IDENTITIES)
    running = Registry(database_url(request.param, folder), folder, "--tokens", str(identities))
    yield running.url, identities
    running.stop()


def client_with(monkeypatch, url, token=None, user=None, password=None):
    for name in ["MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"]:
        monkeypatch.delenv(name, raising=False)
    if token:
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
    if user:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    return MlflowClient(tracking_uri=url, registry_uri=url)


def error_code(call):
    with pytest.raises(MlflowException) as caught:
        call()
    return caught.value.error_code


def weir(url, token, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}{path}", data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def test_the_mlflow_client_authenticates_with_a_token_or_user_and_password(secured, monkeypatch, tmp_path):
    url, _ = secured
    alice = client_with(monkeypatch, url, token="alice-token")
    alice.create_registered_model("churn")
    experiment = alice.create_experiment("churn-training")
    run = alice.create_run(experiment)
    alice.log_metric(run.info.run_id, "auc", 0.91)
    artifact = tmp_path / "notes.txt"
    artifact.write_text("trained on march data")
    alice.log_artifact(run.info.run_id, str(artifact))
    # Something weir can serve: approving a version without it is refused (400) for anyone.
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x01onnx")
    alice.log_artifact(run.info.run_id, str(onnx))
    alice.set_terminated(run.info.run_id)
    version = alice.create_model_version("churn", source=f"{run.info.artifact_uri}", run_id=run.info.run_id)
    assert version.version == "1"

    # alice may not approve (no approver role) nor move the protected alias.
    assert error_code(lambda: alice.set_registered_model_alias("churn", "production", "1")) == "PERMISSION_DENIED"
    status, body = weir(url, "alice-token", "POST", "/api/2.0/weir/approvals/approve", {"name": "churn", "version": "1"})
    assert status == 403 and body["error_code"] == "PERMISSION_DENIED" and "approver" in body["message"]

    # bob signs in the way MLFLOW_TRACKING_USERNAME/PASSWORD send it: Basic with the token.
    status, _ = weir(url, "bob-token", "POST", "/api/2.0/weir/approvals/approve", {"name": "churn", "version": "1"})
    assert status == 200
    bob = client_with(monkeypatch, url, user="bob", password="bob-token")
    bob.set_registered_model_alias("churn", "production", "1")
    assert bob.get_model_version_by_alias("churn", "production").version == "1"
    # bob's token under alice's name is refused: the audit log must name the right person.
    impostor = client_with(monkeypatch, url, user="alice", password="bob-token")
    assert error_code(lambda: impostor.get_registered_model("churn")) == "UNAUTHENTICATED"

    status, body = weir(url, "rita-token", "GET", "/api/2.0/weir/audit/list?name=churn")
    assert status == 200
    users = {e["user"] for e in body["events"] if e["action"] != "refused"}
    assert {"alice", "bob"} <= users, body["events"]


def test_without_credentials_or_roles_the_client_is_refused(secured, monkeypatch):
    url, _ = secured
    nobody = client_with(monkeypatch, url)
    assert error_code(lambda: nobody.search_registered_models()) == "UNAUTHENTICATED"
    assert error_code(lambda: nobody.create_experiment("x")) == "UNAUTHENTICATED"
    wrong = client_with(monkeypatch, url, token="guess")
    assert error_code(lambda: wrong.search_registered_models()) == "UNAUTHENTICATED"
    rita = client_with(monkeypatch, url, token="rita-token")
    rita.search_registered_models()
    assert error_code(lambda: rita.create_registered_model("nope")) == "PERMISSION_DENIED"
    assert error_code(lambda: rita.create_experiment("nope")) == "PERMISSION_DENIED"
    # Only an admin lowers a policy or deletes; alice (submitter) cannot.
    alice = client_with(monkeypatch, url, token="alice-token")
    alice.create_registered_model("policy-target")
    status, _ = weir(url, "alice-token", "POST", "/api/2.0/weir/approvals/policy", {"name": "policy-target", "required_approvals": 1})
    assert status == 403
    assert error_code(lambda: alice.delete_registered_model("policy-target")) == "PERMISSION_DENIED"
    ada = client_with(monkeypatch, url, token="ada-token")
    ada.delete_registered_model("policy-target")
    # Health stays open for probes.
    with urllib.request.urlopen(f"{url}/health", timeout=10) as answer:
        assert answer.status == 200
    # Every refusal is in the audit log with who asked.
    status, body = weir(url, "ada-token", "GET", "/api/2.0/weir/audit/list?action=refused&max_results=1000")
    refused_by = {e["user"] for e in body["events"]}
    assert {"anonymous", "rita", "alice"} <= refused_by, refused_by


def test_a_changed_identities_file_takes_effect_and_a_broken_one_changes_nothing(secured, monkeypatch):
    url, identities = secured
    original = identities.read_text()
    try:
        identities.write_text(original + '\n[[user]]\nname = "dan"\ntoken = "dan-token"\nroles = ["reader"]\n')
        deadline = time.monotonic() + 30
        while weir(url, "dan-token", "GET", "/api/2.0/mlflow/registered-models/search")[0] != 200:
            assert time.monotonic() < deadline, "the new identity was never accepted"
            time.sleep(0.2)
        # A half-written file keeps what was in force.
        identities.write_text('[[user]]\nname = "dan"\ntoken = ')
        time.sleep(5)
        assert weir(url, "dan-token", "GET", "/api/2.0/mlflow/registered-models/search")[0] == 200
        assert weir(url, "alice-token", "GET", "/api/2.0/mlflow/registered-models/search")[0] == 200
    finally:
        identities.write_text(original)
    deadline = time.monotonic() + 30
    while weir(url, "dan-token", "GET", "/api/2.0/mlflow/registered-models/search")[0] != 401:
        assert time.monotonic() < deadline, "the removed identity kept working"
        time.sleep(0.2)


def test_a_registry_without_identities_refuses_a_public_address(tmp_path):
    folder = tmp_path
    outcome = subprocess.run(
        [str(weir_binary()), "registry", "--db", f"sqlite://{folder}/r.db", "--artifacts", f"{folder}/a",
         "--host", "0.0.0.0", "--http-port", "0"],
        capture_output=True, text=True, timeout=60,
    )
    assert outcome.returncode != 0
    assert "--allow-anonymous" in outcome.stderr and "--tokens" in outcome.stderr


def test_secrets_in_the_environment_stay_out_of_help():
    environment = dict(os.environ, WEIR_DB="postgres://weir:hunter2@db/weir")
    shown = subprocess.run([str(weir_binary()), "registry", "--help"], capture_output=True, text=True, env=environment, timeout=60)
    assert shown.returncode == 0 and "hunter2" not in shown.stdout
