"""Ops the full-INT8 TFLite model keeps float (export/tflite/float_ops.py): a division by a computed tensor.

The model is EfficientViT's linear attention (timm `LiteMLA._attn`) at toy size, built with the project's torch:
ReLU kernels, `v` padded with ones, `out[..., :-1] / (out[..., -1:] + eps)`. With 2-wide heads a quarter of the
tokens have an all-zero `q`, so their divisor is eps: in int8 it sits on its zero point and TFLite's int8 DIV stops
(`div.cc data[i] != zero_point`, what EfficientViT-B0 did in the coverage corpus). Kept float, the Div and its
`+ eps` run in XNNPACK between DEQUANTIZE and QUANTIZE, and report.json + the CLI say which ops and why.
"""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from edgeport.export.tflite import convert, xnnpack_coverage
from edgeport.export.tflite.float_ops import FloatReason, int8_float_ops
from edgeport.metrics import cosine_per_sample
from edgeport.validation import run_artifact

FACTORY = textwrap.dedent("""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F


    class LinearAttention(nn.Module):
        def __init__(self, dim=16, head_dim=2):
            super().__init__()
            self.hd = head_dim
            self.stem = nn.Sequential(nn.Conv2d(3, dim, 3, 2, 1), nn.BatchNorm2d(dim), nn.ReLU())
            self.qkv = nn.Conv2d(dim, 3 * dim, 1)
            self.proj = nn.Conv2d(dim, dim, 1)
            self.head = nn.Linear(dim, 10)

        def forward(self, x):
            x = self.stem(x)
            b, _, h, w = x.shape
            qkv = self.qkv(x).reshape(b, -1, 3 * self.hd, h * w).transpose(-1, -2)
            q, k, v = qkv.chunk(3, dim=-1)
            q, k = F.relu(q), F.relu(k)
            v = F.pad(v, (0, 1), mode="constant", value=1.0)
            out = q @ (k.transpose(-1, -2) @ v)
            out = out[..., :-1] / (out[..., -1:] + 1e-5)
            out = out.transpose(-1, -2).reshape(b, -1, h, w)
            x = x + self.proj(out)
            return self.head(x.mean((2, 3)))


    def build():
        torch.manual_seed(0)
        return LinearAttention().eval()
""")
SHAPE = (1, 3, 16, 16)
# one worker builds the module fixture (pyproject's --dist loadgroup on main)
pytestmark = pytest.mark.xdist_group("test_int8_float_ops")


def _build():
    ns: dict = {}
    exec(FACTORY, ns)
    return ns["build"]()


def test_computed_divisors_and_their_guards_are_found():
    """Div by a constant stays INT8; Div by a computed tensor is kept float, with the `+ eps` that feeds only such
    Divs; a guard another op also reads stays INT8."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    nodes = [helper.make_node("Div", ["x", "two"], ["half"], name="by_const"),
             helper.make_node("Relu", ["half"], ["r"]),
             helper.make_node("Add", ["r", "eps"], ["den"], name="guard"),
             helper.make_node("Div", ["x", "den"], ["q1"], name="by_guarded"),
             helper.make_node("Abs", ["x"], ["a"]),
             helper.make_node("Add", ["a", "eps"], ["den2"], name="shared_guard"),
             helper.make_node("Div", ["q1", "den2"], ["q2"], name="by_shared"),
             helper.make_node("Add", ["q2", "den2"], ["s"]),
             # F.normalize: x / max(||x||, eps).expand_as(x)
             helper.make_node("ReduceL2", ["s"], ["n"], axes=[1], keepdims=1),
             helper.make_node("Clip", ["n", "eps"], ["nc"], name="clamp_min"),
             helper.make_node("Expand", ["nc", "shape"], ["ne"], name="expand_as"),
             helper.make_node("Div", ["s", "ne"], ["y"], name="normalize")]
    consts = [numpy_helper.from_array(np.array(2.0, np.float32), "two"),
              numpy_helper.from_array(np.array(1e-5, np.float32), "eps"),
              numpy_helper.from_array(np.array([1, 4], np.int64), "shape")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], consts),
                              opset_imports=[helper.make_opsetid("", 17)])
    found = {(f.onnx_node, f.reason, f.guards) for f in int8_float_ops(model)}
    guard, div = FloatReason.DIVISOR_GUARD, FloatReason.COMPUTED_DIVISOR
    assert found == {("guard", guard, ("q1",)), ("by_guarded", div, ()), ("by_shared", div, ()),
                     ("clamp_min", guard, ("y",)), ("expand_as", guard, ("y",)), ("normalize", div, ())}


@pytest.fixture(scope="module")
def linear_attention(tmp_path_factory):
    """(torch model, its ONNX file, 8 calibration samples, 16 held-out inputs with torch's outputs)."""
    d = tmp_path_factory.mktemp("linear_attention")
    model = _build()
    torch.onnx.export(model, (torch.randn(*SHAPE),), str(d / "la.onnx"), input_names=["input"], opset_version=17,
                      dynamo=False)
    rng = np.random.default_rng(0)
    calib = [{"input": rng.standard_normal(SHAPE, dtype=np.float32)} for _ in range(8)]
    xs = rng.standard_normal((16, *SHAPE[1:]), dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(xs)).numpy()
    return d, calib, xs, ref


@pytest.mark.parametrize("io_dtype", ["int8", "float"])
def test_linear_attention_int8_keeps_the_division_float(linear_attention, tmp_path, io_dtype):
    d, calib, xs, ref = linear_attention
    res = convert(d / "la.onnx", out_dir=tmp_path, precisions=("int8",), calibration=calib, io_dtype=io_dtype)
    kept = [(f.onnx_op, f.reason, f.tflite_ops) for f in res.int8_float_ops]
    assert kept == [("Add", FloatReason.DIVISOR_GUARD, ("ADD",)), ("Div", FloatReason.COMPUTED_DIVISOR, ("DIV",))]
    assert "XNNPACK has no int8 DIV" in res.int8_float_ops[1].why
    assert res.ops["int8"]["DIV"] == 1 and res.ops["int8"]["DEQUANTIZE"] >= 2

    got = run_artifact(res.artifacts["int8"], xs)  # before: RuntimeError from div.cc on these inputs
    cos = cosine_per_sample(ref, got)
    assert cos.min() > 0.98, cos  # measured 0.9928 (int8 I/O, bias correction on, 16 random inputs)
    cov = xnnpack_coverage(res.artifacts["int8"])
    # the float island runs in XNNPACK; what stays on builtin kernels is the int8 attention itself
    assert not {"DIV", "ADD", "QUANTIZE", "DEQUANTIZE"} & set(cov.builtin_ops), cov


@pytest.mark.slow  # ~20 s: a whole `edgeport export` (ONNX, TFLite INT8, ORT INT8)
def test_export_cli_and_report_say_which_ops_stay_float(tmp_path, capsys):
    from edgeport.cli import main

    (tmp_path / "la.py").write_text(FACTORY)
    code = main(["export", str(tmp_path / "la.py") + ":build", "--input-shape", "3,16,16", "--precision", "int8",
                 "--num-calibration", "8", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0, out
    info = json.loads((tmp_path / "out" / "report.json").read_text())["artifact_info"]["tflite_int8"]
    floats = info["float_ops"]
    assert [(f["onnx_op"], f["reason"], f["tflite_ops"]) for f in floats] == [
        ("Add", "divisor-guard", ["ADD"]), ("Div", "computed-divisor", ["DIV"])]
    assert all(f["why"] and f["onnx_node"] for f in floats)
    text = " ".join(out.split())
    assert "tflite_int8: 2 ONNX ops stay float inside the INT8 model" in text
    assert "Div x1 (TFLite DIV): divides by a tensor computed at run time" in text


def test_division_by_a_square_root_stays_int8(tmp_path):
    """A decomposed LayerNorm's (x - mean) / sqrt(var + eps): TensorFlow writes it as x * RSQRT(v), which has an
    int8 kernel, so nothing is kept float and the INT8 model is what it was before float ops existed."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 10])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 10])
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[-1]), helper.make_node("Sub", ["x", "m"], ["d"]),
             helper.make_node("Mul", ["d", "d"], ["p"]), helper.make_node("ReduceMean", ["p"], ["v"], axes=[-1]),
             helper.make_node("Add", ["v", "eps"], ["ve"]), helper.make_node("Sqrt", ["ve"], ["sd"]),
             helper.make_node("Div", ["d", "sd"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "ln", [x], [y],
                                                [numpy_helper.from_array(np.array(1e-5, np.float32), "eps")]),
                              opset_imports=[helper.make_opsetid("", 13)])
    assert [f.onnx_op for f in int8_float_ops(model)] == ["Div"]  # a candidate ...
    rng = np.random.default_rng(0)
    calib = [{"x": rng.standard_normal((1, 6, 10), dtype=np.float32)} for _ in range(4)]
    res = convert(model, out_dir=tmp_path, precisions=("int8",), calibration=calib, bias_correction_samples=0)
    assert res.int8_float_ops == [] and "DIV" not in res.ops["int8"], res.ops["int8"]  # ... that stays int8
    assert "DEQUANTIZE" not in res.ops["int8"]
