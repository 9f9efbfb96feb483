"""KServe V1 over plain HTTP, checked against onnxruntime in-process."""
import json
import urllib.error
import urllib.request

import numpy as np
import onnxruntime

from conftest import MODELS


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
