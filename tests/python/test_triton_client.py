"""weir against the official tritonclient HTTP client, unmodified, checked against onnxruntime
running the same model files in-process."""
import numpy as np
import onnxruntime
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from conftest import MODELS


@pytest.fixture(scope="module")
def client(server):
    return triton.InferenceServerClient(url=server.address)


def reference(model, feeds, version=1):
    session = onnxruntime.InferenceSession(str(MODELS / model / str(version) / "model.onnx"))
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def make_input(name, array, datatype, binary):
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def test_health_and_metadata(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.get_server_metadata()["name"] == "weir"
    assert client.is_model_ready("iris")
    assert client.is_model_ready("iris", "1")
    assert not client.is_model_ready("broken")
    assert not client.is_model_ready("nope")
    metadata = client.get_model_metadata("simple")
    assert metadata["versions"] == ["1"]
    assert [i["name"] for i in metadata["inputs"]] == ["INPUT0", "INPUT1"]
    assert metadata["inputs"][0]["shape"] == [-1, 16]


def test_repository_index_reports_broken_models(client):
    index = {(row["name"], row.get("version")): row for row in client.get_model_repository_index()}
    assert index[("iris", "2")]["state"] == "READY"
    assert index[("broken", "1")]["state"] == "UNAVAILABLE"
    assert "Protobuf parsing failed" in index[("broken", "1")]["reason"]
    assert "not a tensor" in index[("zipmap", "1")]["reason"]


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("version", ["", "1", "2"])
def test_iris_matches_onnxruntime(client, binary, version):
    features = np.random.default_rng(7).uniform(0, 8, size=(16, 4)).astype(np.float32)
    result = client.infer(
        "iris",
        [make_input("features", features, "FP32", binary)],
        model_version=version,
        request_id="req-7",
    )
    expected = reference("iris", {"features": features}, version=int(version or 2))
    np.testing.assert_array_equal(result.as_numpy("label"), expected["label"])
    np.testing.assert_array_equal(result.as_numpy("probabilities"), expected["probabilities"])
    response = result.get_response()
    assert response["model_version"] == (version or "2")
    assert response["id"] == "req-7"


@pytest.mark.parametrize("binary_in", [False, True])
@pytest.mark.parametrize("binary_out", [False, True])
def test_two_inputs_and_chosen_outputs(client, binary_in, binary_out):
    a = np.arange(32, dtype=np.int32).reshape(2, 16)
    b = np.full((2, 16), 3, dtype=np.int32)
    outputs = [triton.InferRequestedOutput("OUTPUT1", binary_data=binary_out)]
    result = client.infer(
        "simple",
        [make_input("INPUT0", a, "INT32", binary_in), make_input("INPUT1", b, "INT32", binary_in)],
        outputs=outputs,
    )
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    assert result.as_numpy("OUTPUT0") is None


@pytest.mark.parametrize("binary", [False, True])
def test_string_model(client, binary):
    text = np.array(["hello", "wörld", ""], dtype=np.object_)
    result = client.infer("string_upper", [make_input("text", text, "BYTES", binary)])
    expected = reference("string_upper", {"text": text})["upper"]
    got = [value.decode() if isinstance(value, bytes) else value for value in result.as_numpy("upper")]
    assert got == list(expected)


TYPES = {
    "bool": ("BOOL", np.bool_),
    "uint8": ("UINT8", np.uint8),
    "uint16": ("UINT16", np.uint16),
    "uint32": ("UINT32", np.uint32),
    "uint64": ("UINT64", np.uint64),
    "int8": ("INT8", np.int8),
    "int16": ("INT16", np.int16),
    "int32": ("INT32", np.int32),
    "int64": ("INT64", np.int64),
    "fp16": ("FP16", np.float16),
    "fp32": ("FP32", np.float32),
    "fp64": ("FP64", np.float64),
    "bytes": ("BYTES", np.object_),
}


def sample(name, dtype):
    if dtype is np.bool_:
        return np.array([[True, False], [False, True]])
    if dtype is np.object_:
        return np.array([[b"a", b"bc"], [b"", b"xyz"]], dtype=np.object_)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.array([[info.min, info.max], [0, 1]], dtype=dtype)
    return np.array([[0.5, -1.25], [1e3, 0.0]], dtype=dtype)


@pytest.mark.parametrize("binary", [False, True])
def test_every_datatype_round_trips(client, binary):
    inputs, expected = [], {}
    for name, (datatype, dtype) in TYPES.items():
        array = sample(name, dtype)
        # FP16 has no JSON form in tritonclient; it always travels as binary.
        inputs.append(make_input(f"in_{name}", array, datatype, binary or datatype == "FP16"))
        expected[f"out_{name}"] = array
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in expected]
    result = client.infer("identity_all", inputs, outputs=outputs)
    for name, array in expected.items():
        got = result.as_numpy(name)
        if array.dtype == np.object_:
            got = np.array([v if isinstance(v, bytes) else str(v).encode() for v in got.flatten()], dtype=np.object_).reshape(got.shape)
        np.testing.assert_array_equal(got, array, err_msg=name)


def test_errors_reach_the_client_with_their_message(client):
    bad_shape = make_input("features", np.zeros((1, 3), dtype=np.float32), "FP32", False)
    with pytest.raises(InferenceServerException, match=r"input 'features' has shape \[1, 3\], but dimension 1 must be 4"):
        client.infer("iris", [bad_shape])
    wrong_type = make_input("features", np.zeros((1, 4), dtype=np.float64), "FP64", True)
    with pytest.raises(InferenceServerException, match="has datatype FP64, but the model expects FP32"):
        client.infer("iris", [wrong_type])
    with pytest.raises(InferenceServerException, match="unknown model 'nope'"):
        client.infer("nope", [bad_shape])
    with pytest.raises(InferenceServerException, match="unknown version '7'"):
        client.infer("iris", [bad_shape], model_version="7")
    with pytest.raises(InferenceServerException, match="not available"):
        client.infer("broken", [bad_shape])


def test_oversized_bodies_get_413(client):
    big = np.zeros((70_000, 4), dtype=np.float32)  # 1.1 MB binary, over the fixture's 1 MiB limit
    with pytest.raises(InferenceServerException) as caught:
        client.infer("iris", [make_input("features", big, "FP32", True)])
    assert "larger than the limit" in str(caught.value)
    assert client.is_server_live()
