"""weir over gRPC against the official tritonclient gRPC client, unmodified, checked against
onnxruntime running the same model files in-process: the checks test_triton_client.py makes over
HTTP, so the two protocols cannot drift. Typed `contents` (which tritonclient's InferInput never
sends) go through the stub tritonclient ships (`service_pb2_grpc`), generated from Triton's own
.proto files."""
import re
import shutil
import signal
import threading
import urllib.request

import grpc
import numpy as np
import onnxruntime
import pytest
import tritonclient.grpc as triton
import tritonclient.http as triton_http
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException, serialize_byte_tensor

from conftest import MODELS, Server


class GrpcServer(Server):
    """`weir serve` with `--grpc-port 0`: the gRPC address is its second line of output."""

    def __init__(self, *extra_args, repository=MODELS):
        super().__init__("--grpc-port", "0", *extra_args, repository=repository)
        line = self.process.stdout.readline()
        match = re.search(r"gRPC listening on ([\d.]+:\d+)", line)
        assert match, f"unexpected second line from weir serve: {line!r}"
        self.grpc_address = match.group(1)


@pytest.fixture(scope="module")
def server():
    running = GrpcServer("--max-body-bytes", str(1 << 20))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server):
    return triton.InferenceServerClient(url=server.grpc_address)


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.grpc_address) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def reference(model, feeds, version=1):
    session = onnxruntime.InferenceSession(str(MODELS / model / str(version) / "model.onnx"))
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def make_input(name, array, datatype):
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


# The typed list each datatype travels in (InferTensorContents); FP16 has none.
CONTENTS = {
    "BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
    "UINT32": "uint_contents", "UINT64": "uint64_contents", "INT8": "int_contents",
    "INT16": "int_contents", "INT32": "int_contents", "INT64": "int64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}


def typed_request(model, inputs, outputs=(), typed_outputs=False, version=""):
    """A ModelInferRequest with each input in its typed list (FP16, which has none, raw in its
    place: the rest then hold empty raw entries)."""
    request = service_pb2.ModelInferRequest(model_name=model, model_version=version, id="typed")
    raw = []
    for name, (array, datatype) in inputs.items():
        tensor = request.inputs.add(name=name, datatype=datatype, shape=list(array.shape))
        if datatype == "FP16":
            raw.append(array.astype("<f2").tobytes())
            continue
        raw.append(b"")
        values = array.flatten().tolist()
        getattr(tensor.contents, CONTENTS[datatype]).extend(values)
    if any(raw):
        request.raw_input_contents.extend(raw)
    for name in outputs:
        output = request.outputs.add(name=name)
        if typed_outputs:
            output.parameters["binary_data"].bool_param = False
    return request


def test_health_and_metadata(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.get_server_metadata().name == "weir"
    assert "statistics" in client.get_server_metadata().extensions
    assert client.is_model_ready("iris")
    assert client.is_model_ready("iris", "1")
    assert not client.is_model_ready("broken")
    assert not client.is_model_ready("nope")
    metadata = client.get_model_metadata("simple")
    assert list(metadata.versions) == ["1"]
    assert [i.name for i in metadata.inputs] == ["INPUT0", "INPUT1"]
    assert list(metadata.inputs[0].shape) == [-1, 16]
    config = client.get_model_config("iris").config
    assert config.name == "iris"
    assert [i.name for i in config.input] == ["features"]


def test_repository_index_reports_broken_models(client):
    index = {(row.name, row.version): row for row in client.get_model_repository_index().models}
    assert index[("iris", "2")].state == "READY"
    assert index[("broken", "1")].state == "UNAVAILABLE"
    assert "Protobuf parsing failed" in index[("broken", "1")].reason
    assert "not a tensor" in index[("zipmap", "1")].reason


def test_model_control_is_refused_without_a_control_mode(client):
    with pytest.raises(InferenceServerException, match="model control is disabled") as caught:
        client.unload_model("iris")
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert client.is_model_ready("iris")


@pytest.mark.parametrize("version", ["", "1", "2"])
def test_iris_matches_onnxruntime_with_raw_contents(client, version):
    features = np.random.default_rng(7).uniform(0, 8, size=(16, 4)).astype(np.float32)
    result = client.infer("iris", [make_input("features", features, "FP32")], model_version=version, request_id="req-7")
    expected = reference("iris", {"features": features}, version=int(version or 2))
    np.testing.assert_array_equal(result.as_numpy("label"), expected["label"])
    np.testing.assert_array_equal(result.as_numpy("probabilities"), expected["probabilities"])
    response = result.get_response()
    assert response.model_version == (version or "2")
    assert response.id == "req-7"


@pytest.mark.parametrize("typed_outputs", [False, True])
def test_iris_matches_onnxruntime_with_typed_contents(stub, typed_outputs):
    features = np.random.default_rng(8).uniform(0, 8, size=(5, 4)).astype(np.float32)
    request = typed_request("iris", {"features": (features, "FP32")}, outputs=["probabilities", "label"], typed_outputs=typed_outputs)
    response = stub.ModelInfer(request)
    expected = reference("iris", {"features": features}, version=2)
    assert [o.name for o in response.outputs] == ["probabilities", "label"]
    if typed_outputs:
        assert len(response.raw_output_contents) == 0
        probabilities = np.array(response.outputs[0].contents.fp32_contents, dtype=np.float32)
        labels = np.array(response.outputs[1].contents.int64_contents)
    else:
        probabilities = np.frombuffer(response.raw_output_contents[0], dtype="<f4")
        labels = np.frombuffer(response.raw_output_contents[1], dtype="<i8")
    np.testing.assert_array_equal(probabilities.reshape(expected["probabilities"].shape), expected["probabilities"])
    np.testing.assert_array_equal(labels, expected["label"])
    assert response.id == "typed"


def test_two_inputs_and_chosen_outputs(client):
    a = np.arange(32, dtype=np.int32).reshape(2, 16)
    b = np.full((2, 16), 3, dtype=np.int32)
    result = client.infer(
        "simple",
        [make_input("INPUT0", a, "INT32"), make_input("INPUT1", b, "INT32")],
        outputs=[triton.InferRequestedOutput("OUTPUT1")],
    )
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    assert result.as_numpy("OUTPUT0") is None


def test_string_model(client, stub):
    text = np.array(["hello", "wörld", ""], dtype=np.object_)
    expected = list(reference("string_upper", {"text": text})["upper"])
    result = client.infer("string_upper", [make_input("text", text, "BYTES")])
    got = [value.decode() for value in result.as_numpy("upper")]
    assert got == expected
    encoded = np.array([t.encode() for t in text], dtype=np.object_)
    typed = stub.ModelInfer(typed_request("string_upper", {"text": (encoded, "BYTES")}, outputs=["upper"], typed_outputs=True))
    assert [v.decode() for v in typed.outputs[0].contents.bytes_contents] == expected


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


def sample(dtype):
    if dtype is np.bool_:
        return np.array([[True, False], [False, True]])
    if dtype is np.object_:
        return np.array([[b"a", b"bc"], [b"", b"xyz"]], dtype=np.object_)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.array([[info.min, info.max], [0, 1]], dtype=dtype)
    return np.array([[0.5, -1.25], [1e3, 0.0]], dtype=dtype)


def test_every_datatype_round_trips_as_raw_contents(client):
    inputs, expected = [], {}
    for name, (datatype, dtype) in TYPES.items():
        array = sample(dtype)
        inputs.append(make_input(f"in_{name}", array, datatype))
        expected[f"out_{name}"] = array
    outputs = [triton.InferRequestedOutput(name) for name in expected]
    result = client.infer("identity_all", inputs, outputs=outputs)
    for name, array in expected.items():
        np.testing.assert_array_equal(result.as_numpy(name), array, err_msg=name)


def test_every_datatype_round_trips_as_typed_contents(stub):
    inputs = {f"in_{name}": (sample(dtype), datatype) for name, (datatype, dtype) in TYPES.items()}
    names = [f"out_{name}" for name in TYPES]
    response = stub.ModelInfer(typed_request("identity_all", inputs, outputs=names))
    # An FP16 output has no typed list, so this answer is raw: read it as tritonclient does.
    result = triton.InferResult(response)
    for name, (datatype, dtype) in TYPES.items():
        np.testing.assert_array_equal(result.as_numpy(f"out_{name}"), sample(dtype), err_msg=name)


def test_typed_outputs_of_every_typed_datatype(stub):
    typed = {name: spec for name, spec in TYPES.items() if spec[0] != "FP16"}
    inputs = {f"in_{name}": (sample(dtype), datatype) for name, (datatype, dtype) in TYPES.items()}
    response = stub.ModelInfer(typed_request("identity_all", inputs, outputs=[f"out_{n}" for n in typed], typed_outputs=True))
    assert len(response.raw_output_contents) == 0
    for output, (name, (datatype, dtype)) in zip(response.outputs, typed.items()):
        assert output.name == f"out_{name}" and output.datatype == datatype
        values = list(getattr(output.contents, CONTENTS[datatype]))
        assert values == sample(dtype).flatten().tolist(), name


def test_errors_reach_the_client_with_their_message_and_code(client, stub):
    bad_shape = make_input("features", np.zeros((1, 3), dtype=np.float32), "FP32")
    with pytest.raises(InferenceServerException, match=r"input 'features' has shape \[1, 3\], but dimension 1 must be 4") as caught:
        client.infer("iris", [bad_shape])
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    wrong_type = make_input("features", np.zeros((1, 4), dtype=np.float64), "FP64")
    with pytest.raises(InferenceServerException, match="has datatype FP64, but the model expects FP32") as caught:
        client.infer("iris", [wrong_type])
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(InferenceServerException, match="unknown model 'nope'") as caught:
        client.infer("nope", [bad_shape])
    assert caught.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException, match="unknown version '7'") as caught:
        client.infer("iris", [bad_shape], model_version="7")
    assert caught.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException, match="not available") as caught:
        client.infer("broken", [bad_shape])
    assert caught.value.status() == "StatusCode.UNAVAILABLE"
    short = typed_request("iris", {"features": (np.zeros((2, 4), dtype=np.float32), "FP32")})
    del short.inputs[0].contents.fp32_contents[-1]
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(short)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "has 7 elements in fp32_contents, but its shape holds 8" in caught.value.details()


def test_oversized_messages_get_resource_exhausted(client):
    big = np.zeros((70_000, 4), dtype=np.float32)  # 1.1 MB, over the fixture's 1 MiB limit
    with pytest.raises(InferenceServerException) as caught:
        client.infer("iris", [make_input("features", big, "FP32")])
    assert caught.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert "larger than the limit" in caught.value.message()
    assert client.is_server_live()


def test_statistics_count_grpc_requests(client):
    before = client.get_inference_statistics("iris", "1").model_stats[0]
    features = np.zeros((3, 4), dtype=np.float32)
    client.infer("iris", [make_input("features", features, "FP32")], model_version="1")
    after = client.get_inference_statistics("iris", "1").model_stats[0]
    assert (after.name, after.version) == ("iris", "1")
    assert after.inference_stats.success.count == before.inference_stats.success.count + 1
    assert after.inference_count == before.inference_count + 3
    assert after.last_inference >= before.last_inference > 0
    everything = client.get_inference_statistics().model_stats
    assert {(s.name, s.version) for s in everything} >= {("iris", "1"), ("iris", "2"), ("simple", "1")}
    with pytest.raises(InferenceServerException, match="unknown model 'nope'"):
        client.get_inference_statistics("nope")


def test_metrics_tell_the_protocols_apart(server, client):
    client.infer("simple", [make_input("INPUT0", np.ones((1, 16), np.int32), "INT32"),
                            make_input("INPUT1", np.ones((1, 16), np.int32), "INT32")])
    with urllib.request.urlopen(f"{server.url}/metrics") as answer:
        text = answer.read().decode()
    assert re.search(r'weir_inference_requests_total\{model="simple",version="1",code="200",protocol="grpc"\} [1-9]', text), text


def batching_repository(tmp_path, delay):
    """`simple` alone, batching four rows: a batch goes when full, or after `delay`."""
    shutil.copytree(MODELS / "simple", tmp_path / "simple")
    (tmp_path / "simple" / "config.toml").write_text(
        f'max_batch_size = 4\n[dynamic_batching]\nmax_queue_delay = "{delay}"\n'
    )
    return tmp_path


def rows(client_id):
    a = np.arange(16, dtype=np.int32).reshape(1, 16) + client_id * 1000
    b = np.full((1, 16), client_id, dtype=np.int32)
    return a, b


def test_http_and_grpc_requests_share_a_batch_and_each_gets_its_own_rows(tmp_path):
    # The batch goes only when four rows are there (the delay is a bound, not a wait), so two
    # HTTP and two gRPC requests make exactly one model execution.
    running = GrpcServer(repository=batching_repository(tmp_path, "60s"))
    try:
        results = {}

        def call(client_id):
            a, b = rows(client_id)
            if client_id % 2:
                client = triton.InferenceServerClient(url=running.grpc_address)
                inputs = [make_input("INPUT0", a, "INT32"), make_input("INPUT1", b, "INT32")]
                results[client_id] = client.infer("simple", inputs, client_timeout=120)
            else:
                client = triton_http.InferenceServerClient(url=running.address, network_timeout=120.0)
                inputs = [triton_http.InferInput("INPUT0", [1, 16], "INT32"), triton_http.InferInput("INPUT1", [1, 16], "INT32")]
                inputs[0].set_data_from_numpy(a)
                inputs[1].set_data_from_numpy(b)
                results[client_id] = client.infer("simple", inputs)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        for client_id in range(4):
            a, b = rows(client_id)
            np.testing.assert_array_equal(results[client_id].as_numpy("OUTPUT0"), a + b)
            np.testing.assert_array_equal(results[client_id].as_numpy("OUTPUT1"), a - b)
        stats = triton.InferenceServerClient(url=running.grpc_address).get_inference_statistics("simple").model_stats[0]
        assert stats.execution_count == 1
        assert [b.batch_size for b in stats.batch_stats] == [4]
        assert stats.inference_stats.success.count == 4
    finally:
        running.stop()


def test_a_drain_finishes_in_flight_grpc_calls(tmp_path):
    # Three rows wait for a fourth that never comes, until the 3 s delay sends them: the
    # SIGTERM arrives while they wait, and each must still be answered before the exit.
    running = GrpcServer("--drain-timeout", "60s", repository=batching_repository(tmp_path, "3s"))
    try:
        results, errors = {}, {}

        def call(client_id):
            a, b = rows(client_id)
            client = triton.InferenceServerClient(url=running.grpc_address)
            try:
                results[client_id] = client.infer("simple", [make_input("INPUT0", a, "INT32"), make_input("INPUT1", b, "INT32")], client_timeout=60)
            except InferenceServerException as error:
                errors[client_id] = error

        threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        in_flight = 0
        for _ in range(400):
            with urllib.request.urlopen(f"{running.url}/metrics") as answer:
                text = answer.read().decode()
            match = re.search(r'weir_inflight_requests\{model="simple",version="1"\} (\d+)', text)
            in_flight = int(match.group(1)) if match else 0
            if in_flight == 3:
                break
            threading.Event().wait(0.01)
        assert in_flight == 3, "the three calls never were in flight together"
        running.process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=60)
        assert errors == {}
        for client_id in range(3):
            a, b = rows(client_id)
            np.testing.assert_array_equal(results[client_id].as_numpy("OUTPUT0"), a + b)
        assert running.process.wait(timeout=60) == 0
        with pytest.raises(InferenceServerException):
            triton.InferenceServerClient(url=running.grpc_address).is_server_live()
    finally:
        running.stop()


def test_every_proto_field_has_tritons_number_and_type():
    """runtime/proto/*.proto against the descriptors tritonclient ships (compiled from Triton's
    own grpc_service.proto and model_config.proto): every message weir declares exists there,
    and every field has Triton's number, type and cardinality — the wire contract."""
    from google.protobuf import descriptor_pb2
    from tritonclient.grpc import model_config_pb2

    from conftest import ROOT

    official = {}

    def walk(message, prefix):
        name = prefix + message.name
        official[name] = {f.name: f for f in message.field}
        for nested in message.nested_type:
            walk(nested, name + ".")

    for module in (service_pb2, model_config_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        for message in proto.message_type:
            walk(message, "")
    scalar = {1: "double", 2: "float", 3: "int64", 4: "uint64", 5: "int32", 8: "bool", 9: "string", 12: "bytes", 13: "uint32"}
    checked = 0
    for path in ["runtime/proto/grpc_service.proto", "runtime/proto/model_config.proto"]:
        stack = []
        for line in (ROOT / path).read_text().splitlines():
            line = line.split("//")[0].strip()
            opened = re.match(r"message (\w+) \{(\})?", line)
            if opened:
                stack.append(opened.group(1))
                assert ".".join(stack) in official, f"{path}: no message {'.'.join(stack)} in Triton's protocol"
                if opened.group(2):
                    stack.pop()
                continue
            if re.match(r"(enum|oneof) \w+ \{", line):
                stack.append(None)
                continue
            if line == "}" and stack:
                stack.pop()
                continue
            field = re.match(r"(repeated )?(map<[^>]+>|[\w.]+) (\w+) = (\d+);", line)
            if not field or not stack or stack[-1] is None:
                continue
            repeated, kind, name, number = field.groups()
            message = ".".join(s for s in stack if s)
            theirs = official[message].get(name)
            assert theirs is not None, f"{message}.{name} is not in Triton's protocol"
            assert theirs.number == int(number), f"{message}.{name} = {number}, Triton's is {theirs.number}"
            if kind.startswith("map<"):
                assert theirs.label == 3 and theirs.type == 11, f"{message}.{name} is a map in Triton's protocol"
            else:
                assert (theirs.label == 3) == bool(repeated), f"{message}.{name}: repeated or not as Triton's"
                if theirs.type in scalar:
                    assert scalar[theirs.type] == kind, f"{message}.{name} is {scalar[theirs.type]} in Triton's protocol"
                else:
                    assert theirs.type_name.split(".")[-1] == kind.split(".")[-1], f"{message}.{name} type"
            checked += 1
    assert checked > 100
