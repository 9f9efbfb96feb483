"""Request bodies for scripts/bench_grpc.sh, and a check that a gRPC target answers them.

`write DIR` writes, for iris ([1, 4] FP32 `features`) and the MLP ([1, 256] FP32 `x`), the same
inputs as benches/load/iris.lua and mlp.lua in three encodings: MODEL.json (V2 JSON),
MODEL.bin and MODEL.bin.len (the binary tensor extension, binary outputs asked for, and its JSON
header's length) and MODEL.grpc (a length-prefixed `ModelInferRequest` with
`raw_input_contents`, as tritonclient.grpc sends it); and live.grpc, an empty framed message
(`ServerLiveRequest`, the cheapest call there is).

`check ADDRESS FILE [METHOD]` sends FILE's message once as a unary call of METHOD (default
ModelInfer) with grpcio (failing on any status but OK) and prints the size of the framed
answer, so the benchmark can tell from h2load's data byte count that every answer it counted
carried that message: a gRPC error is a trailers-only answer with HTTP 200 and no data.
"""

import json
import pathlib
import struct
import sys

import grpc
import numpy as np
from tritonclient.grpc import service_pb2

MODELS = {
    "iris": ("features", np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)),
    "mlp": ("x", np.array([[((i % 13) - 6) * 0.1 for i in range(1, 257)]], dtype=np.float32)),
}


def write(folder: pathlib.Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for model, (name, values) in MODELS.items():
        shape = list(values.shape)
        tensor = {"name": name, "shape": shape, "datatype": "FP32"}
        document = {"inputs": [dict(tensor, data=[round(float(v), 3) for v in values.flat])]}
        (folder / f"{model}.json").write_text(json.dumps(document))
        header = json.dumps({
            "inputs": [dict(tensor, parameters={"binary_data_size": values.nbytes})],
            "parameters": {"binary_data_output": True},
        }).encode()
        (folder / f"{model}.bin").write_bytes(header + values.tobytes())
        (folder / f"{model}.bin.len").write_text(str(len(header)))
        request = service_pb2.ModelInferRequest(model_name=model)
        request.inputs.add(name=name, datatype="FP32", shape=shape)
        request.raw_input_contents.append(values.tobytes())
        message = request.SerializeToString()
        (folder / f"{model}.grpc").write_bytes(b"\x00" + struct.pack(">I", len(message)) + message)
    (folder / "live.grpc").write_bytes(b"\x00" + struct.pack(">I", 0))


def check(address: str, path: pathlib.Path, method: str = "ModelInfer") -> None:
    framed = path.read_bytes()
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(f"/inference.GRPCInferenceService/{method}")
        answer = call(framed[5:], timeout=30)
    print(len(answer) + 5)


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(pathlib.Path(sys.argv[2]))
    else:
        check(sys.argv[2], pathlib.Path(sys.argv[3]), *sys.argv[4:])
