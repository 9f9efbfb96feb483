"""KServe V1 over plain HTTP, checked against onnxruntime in-process."""
import json
import shutil
import urllib.error
import urllib.request

import numpy as np
import onnxruntime
import pytest

from conftest import MODELS, Server


def request(server, method, path, body=None, content_type=None):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(f"{server.url}{path}", data=data, method=method)
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_models_and_model_status(server):
    status, body = request(server, "GET", "/v1/models")
    assert status == 200 and "iris" in body["models"]
    assert request(server, "GET", "/v1/models/iris") == (200, {"name": "iris", "ready": True})
    assert request(server, "GET", "/v1/models/broken")[1]["ready"] is False
    assert request(server, "GET", "/v1/models/nope")[0] == 404


def test_predict_matches_onnxruntime(server):
    rows = np.random.default_rng(3).uniform(0, 8, size=(5, 4)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(MODELS / "iris" / "2" / "model.onnx"))
    labels, probabilities = session.run(["label", "probabilities"], {"features": rows})
    for key in ("instances", "inputs"):
        status, body = request(server, "POST", "/v1/models/iris:predict", {key: rows.tolist()}, "application/json")
        assert status == 200, body
        assert [p["label"] for p in body["predictions"]] == labels.tolist()
        np.testing.assert_allclose([p["probabilities"] for p in body["predictions"]], probabilities, rtol=1e-6)


def test_predict_without_content_type_and_with_errors(server):
    status, body = request(server, "POST", "/v1/models/string_upper:predict", {"instances": ["abc"]})
    assert (status, body) == (200, {"predictions": ["ABC"]})
    status, body = request(server, "POST", "/v1/models/iris:predict", b"{not json")
    assert status == 400 and body["error"].startswith("invalid predict request")
    status, body = request(server, "POST", "/v1/models/iris:predict", {"instances": [[1, 2, 3, 4], [1, 2]]})
    assert status == 400 and "ragged" in body["error"]
    status, body = request(server, "POST", "/v1/models/iris:predict", {"instances": [["x", 1, 2, 3]]})
    assert status == 400 and "element 0 is the string" in body["error"]


FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(scope="module")
def named_server(tmp_path_factory):
    """A server whose `tabular` network's manifest names its four columns, as `weir train`
    writes it."""
    repository = tmp_path_factory.mktemp("named-features")
    version = repository / "tabular" / "1"
    shutil.copytree(MODELS / "tabular" / "1", version)
    manifest = version / "weir.toml"
    manifest.write_text(f"features = {json.dumps(FEATURES)}\n" + manifest.read_text())
    running = Server(repository=repository)
    yield running
    running.stop()


def test_instances_keyed_by_feature_name_are_placed_in_the_declared_order(named_server):
    rows = np.random.default_rng(7).uniform(0, 8, size=(3, 4)).round(3).tolist()
    status, plain = request(named_server, "POST", "/v1/models/tabular:predict", {"instances": rows})
    assert status == 200, plain
    # Keys in a shuffled order: the server places them by name, not by position.
    keyed = [dict(reversed(list(zip(FEATURES, row)))) for row in rows]
    status, by_name = request(named_server, "POST", "/v1/models/tabular:predict", {"instances": keyed})
    assert status == 200, by_name
    np.testing.assert_allclose(by_name["predictions"], plain["predictions"], rtol=1e-6)
    # A swapped pair gives a different answer, so the order really comes from the names.
    swapped = [{**row, "sepal_length": row["petal_length"], "petal_length": row["sepal_length"]} for row in keyed]
    status, other = request(named_server, "POST", "/v1/models/tabular:predict", {"instances": swapped})
    assert status == 200 and other["predictions"] != by_name["predictions"]


def test_feature_rows_missing_unknown_or_mixed_are_refused_naming_the_key(named_server):
    full = dict(zip(FEATURES, [5.1, 3.5, 1.4, 0.2]))
    missing = {k: v for k, v in full.items() if k != "petal_width"}
    cases = [
        ([missing], "instance 0 lacks feature 'petal_width'; the model's features are: "
                    "sepal_length, sepal_width, petal_length, petal_width"),
        ([full, {**full, "colour": 1}], "instance 1 names unknown feature 'colour'"),
        ([full, [5.1, 3.5, 1.4, 0.2]], "\"instances\" mixes two forms: instance 0 is an object"),
        ([[5.1, 3.5, 1.4, 0.2], full], "\"instances\" mixes two forms: instance 0 is a plain row"),
    ]
    for instances, message in cases:
        status, body = request(named_server, "POST", "/v1/models/tabular:predict", {"instances": instances})
        assert status == 400 and body["error"].startswith(message), (instances, body)


def test_a_model_without_feature_names_still_refuses_named_rows(server):
    status, body = request(server, "POST", "/v1/models/iris:predict",
                           {"instances": [dict(zip(FEATURES, [5.1, 3.5, 1.4, 0.2]))]})
    assert status == 400 and "names unknown input '" in body["error"], body
