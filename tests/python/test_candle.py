"""safetensors models served through candle, checked with the official clients against
references computed here in numpy (weights read with the `safetensors` package) and against the
stored MiniLM reference embeddings (scripts/reference_embeddings.py)."""
import json
import pathlib
import struct
import urllib.request

import numpy as np
import pytest
import tritonclient.http as triton
from safetensors.numpy import load_file

from conftest import MODELS, ROOT

REFERENCE = json.loads((ROOT / "models" / "tests" / "fixtures" / "minilm_reference.json").read_text())["sentences"]


def read_bf16(path):
    """safetensors.numpy cannot read BF16; decode the file by hand."""
    raw = pathlib.Path(path).read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    data = raw[8 + length :]
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        bits = np.frombuffer(data[begin:end], dtype=np.uint16).astype(np.uint32) << 16
        tensors[name] = bits.view(np.float32).reshape(info["shape"])
    return tensors


def numpy_forward(weights, names, x, activation, output):
    act = {"relu": lambda v: np.maximum(v, 0), "tanh": np.tanh}[activation]
    for index, name in enumerate(names):
        x = x @ weights[f"{name}.weight"].astype(np.float32).T + weights[f"{name}.bias"].astype(np.float32)
        if index < len(names) - 1:
            x = act(x)
    if output == "softmax":
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if output == "sigmoid":
        return 1 / (1 + np.exp(-x))
    return x


CASES = {
    "tabular": (lambda p: load_file(p), ["0", "2", "4"], "relu", "softmax", "features", "FP32", np.float32, "probabilities"),
    "tabular_fp16": (lambda p: load_file(p), ["layers.0", "layers.1"], "tanh", "sigmoid", "x", "FP64", np.float64, "score"),
    "tabular_bf16": (read_bf16, ["0"], "relu", "softmax", "features", "FP32", np.float32, "output"),
}


@pytest.fixture(scope="module")
def client(server):
    return triton.InferenceServerClient(url=server.address)


@pytest.mark.parametrize("model", sorted(CASES))
@pytest.mark.parametrize("binary", [False, True])
def test_native_networks_match_numpy(client, model, binary):
    load, names, activation, output, input_name, datatype, dtype, output_name = CASES[model]
    weights = load(str(MODELS / model / "1" / "model.safetensors"))
    width = weights[f"{names[0]}.weight"].shape[1]
    x = np.random.default_rng(5).normal(size=(7, width)).astype(dtype)
    tensor = triton.InferInput(input_name, list(x.shape), datatype)
    tensor.set_data_from_numpy(x, binary_data=binary)
    result = client.infer(model, [tensor])
    expected = numpy_forward(weights, names, x.astype(np.float32), activation, output)
    np.testing.assert_allclose(result.as_numpy(output_name), expected, atol=1e-5, rtol=1e-5)
    assert client.get_model_metadata(model)["platform"] == "candle_safetensors"


def cosine(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("binary", [False, True])
def test_minilm_over_tritonclient_matches_the_reference(text_server, binary):
    client = triton.InferenceServerClient(url=text_server.address)
    metadata = client.get_model_metadata("minilm")
    assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert metadata["outputs"] == [{"name": "embedding", "datatype": "FP32", "shape": [-1, 384]}]
    texts = np.array([row["text"].encode() for row in REFERENCE], dtype=np.object_)
    tensor = triton.InferInput("text", [len(texts)], "BYTES")
    tensor.set_data_from_numpy(texts, binary_data=binary)
    embeddings = client.infer("minilm", [tensor]).as_numpy("embedding")
    assert embeddings.shape == (len(REFERENCE), 384)
    for row, got in zip(REFERENCE, embeddings):
        assert cosine(got, row["embedding"]) >= 0.9999, row["text"]


def test_minilm_over_kserve_v1(text_server):
    body = json.dumps({"instances": [REFERENCE[0]["text"], REFERENCE[1]["text"]]}).encode()
    request = urllib.request.Request(f"{text_server.url}/v1/models/minilm:predict", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        predictions = json.loads(answer.read())["predictions"]
    assert len(predictions) == 2 and len(predictions[0]) == 384
    assert cosine(predictions[0], REFERENCE[0]["embedding"]) >= 0.9999
    assert abs(cosine(predictions[0], predictions[1]) - 0.6788) < 5e-4
