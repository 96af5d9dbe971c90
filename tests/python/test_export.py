"""Models exported by `mass models export`, read by other tools.

usage: python tests/python/test_export.py CASES.json

CASES.json (written by the e2e test `formats::exported_models_answer_in_numpy_and_onnxruntime_as_on_the_mesh`)
is a list of cases: {"model", "safetensors", "onnx", "rows", "expected",
"tolerance", "relative"}: rows of raw column values (the pipeline's columns, label
left out, in schema order; null where a value is missing) and the mesh's
answers for them (class probabilities, or values in the label's units). A
case without a safetensors path (boosted trees: ONNX only) checks ONNX alone.

Each safetensors file is loaded with the `safetensors` package (numpy) and
run through numpy alone: the pipeline's imputation and scaling from the
metadata, then x @ W + b per layer with the activation between, softmax for
classifiers, the members' weighted sum, and the target scale for
regressors. Each ONNX file is run by onnxruntime. Both must match the
mesh within the tolerance. Needs numpy, safetensors and onnxruntime
(scripts/python-env.sh makes a venv with them).
"""

import json
import re
import sys

import numpy as np
import onnxruntime
from safetensors.numpy import load_file
from safetensors import safe_open


def numpy_predict(path, rows):
    tensors = load_file(path)
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata()
    assert meta["format"] == "mass.mlp/1", meta["format"]
    pipeline = json.loads(meta["pipeline"])
    weights = json.loads(meta["member_weights"])
    activation = {"relu": lambda z: np.maximum(z, 0.0), "tanh": np.tanh}[meta["activation"]]

    # The pipeline: each kept numeric column filled where missing, then
    # (value - offset) * scale, in float64, as the mesh does; then float32.
    columns = [
        t["Numeric"]
        for i, t in enumerate(pipeline["transforms"])
        if i != pipeline["label"] and t != "Drop"
    ]
    assert all(c is not None for c in columns), "the test reads numeric pipelines only"
    x = np.asarray(rows, dtype=np.float64)
    fill = np.array([c["fill"] for c in columns])
    x = np.where(np.isnan(x), fill, x)
    x = ((x - np.array([c["offset"] for c in columns])) * np.array([c["scale"] for c in columns])).astype(np.float32)

    members = {}
    for name in tensors:
        m = re.fullmatch(r"(?:members\.(\d+)\.)?layers\.(\d+)\.(weight|bias)", name)
        assert m, f"unexpected tensor {name}"
        members.setdefault(int(m.group(1) or 0), {}).setdefault(int(m.group(2)), {})[m.group(3)] = name
    assert len(members) == len(weights)

    answer = None
    for k in sorted(members):
        h = x
        layers = members[k]
        for i in sorted(layers):
            w, b = tensors[layers[i]["weight"]], tensors[layers[i]["bias"]]
            assert w.dtype == np.float32 and w.shape[0] == h.shape[1], (w.dtype, w.shape, h.shape)
            h = h @ w + b
            if i < len(layers) - 1:
                h = activation(h)
        if pipeline["task"] == "classification":
            e = np.exp(h - h.max(axis=1, keepdims=True))
            h = e / e.sum(axis=1, keepdims=True)
        part = np.float32(weights[k]) * h
        answer = part if answer is None else answer + part
    if pipeline["task"] == "regression":
        target = pipeline["target"]
        answer = answer.astype(np.float64) * target["std"] + target["mean"]
    else:
        assert json.loads(meta["classes"]) == pipeline["classes"]
    return answer


def onnx_predict(path, rows, categories=None):
    """Numeric columns as `input`; categorical ones (strings, "" missing)
    as `categories` when the model reads any."""
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["format"] == "mass.onnx/1", meta
    feeds = {"input": np.asarray(rows, dtype=np.float64)}
    names = [i.name for i in session.get_inputs()]
    if categories is not None:
        assert names == ["input", "categories"], names
        assert len(json.loads(meta["categorical_columns"])) == len(categories[0])
        feeds["categories"] = np.asarray(categories, dtype=object)
    else:
        assert names == ["input"], names
    (output,) = session.run(None, feeds)
    return output


def check(name, got, expected, tolerance, relative):
    """Probabilities within `tolerance`; values in the label's units (a
    float32 network output times the label's spread) within `tolerance`
    relative to their size (absolute below 1)."""
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape, f"{name}: shape {got.shape}, mesh {expected.shape}"
    scale = np.maximum(np.abs(expected), 1.0) if relative else 1.0
    worst = float(np.max(np.abs(got - expected) / scale)) if got.size else 0.0
    kind = "relative" if relative else "absolute"
    print(f"{name}: {got.shape[0]} rows, largest {kind} difference from the mesh {worst:.2e}")
    assert worst <= tolerance, f"{name}: differs from the mesh by {worst} ({kind}) > {tolerance}"


def main():
    cases = json.load(open(sys.argv[1]))
    assert cases, "no cases"
    for case in cases:
        rows, expected, tolerance = case["rows"], case["expected"], case["tolerance"]
        relative = case.get("relative", False)
        if case.get("safetensors"):
            got = numpy_predict(case["safetensors"], rows)
            check(f"{case['model']} safetensors+numpy", got, expected, tolerance, relative)
        if case.get("onnx"):
            got = onnx_predict(case["onnx"], rows, case.get("categories"))
            check(f"{case['model']} onnxruntime", got, expected, tolerance, relative)
    print("ok")


if __name__ == "__main__":
    main()
