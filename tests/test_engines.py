"""The engine layer (edgeport.runtime.engines) as validation, per-layer attribution and the tests use it: several
inputs and outputs through one call, samples in batches with a per-invoke hook, the one quantize arithmetic, and
clear errors for options that do not fit an engine. (Timing and device use: tests/test_runtime.py.)"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgeport.errors import TargetError
from edgeport.runtime.engines import default_engine, dequantize, open_engine, quantize, run, run_batches

# its module-scoped fixtures build once: pytest-xdist (--dist loadgroup) keeps the module on one worker
pytestmark = pytest.mark.xdist_group("test_engines")


@pytest.fixture(scope="module")
def two_in_two_out(tmp_path_factory):
    """y0 = a + b, y1 = a * b over (N, 3): an ONNX model with two inputs and two outputs, dynamic batch."""
    g = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y0"]), helper.make_node("Mul", ["a", "b"], ["y1"])], "t",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 3]) for n in ("a", "b")],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 3]) for n in ("y0", "y1")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    path = tmp_path_factory.mktemp("eng") / "m.onnx"
    onnx.save(m, str(path))
    return path


def test_several_inputs_and_outputs_in_one_call(two_in_two_out):
    eng = open_engine(default_engine(two_in_two_out), two_in_two_out)
    assert [name for name, _, _ in eng.input_specs()] == ["a", "b"]
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 3), dtype=np.float32), rng.standard_normal((5, 3), dtype=np.float32)
    y0, y1 = run(eng, [a, b])
    np.testing.assert_array_equal(y0, a + b)
    np.testing.assert_array_equal(y1, a * b)
    for batch in (1, 2, 5):
        seen = []
        outs = run_batches(eng, [a, b], batch=batch, on_sample=lambda i, e: seen.append((i, e is eng)))
        assert len(outs) == 2 and all(o.shape == (5, 3) and o.dtype == np.float32 for o in outs)
        np.testing.assert_array_equal(outs[0], a + b)
        np.testing.assert_array_equal(outs[1], a * b)
        assert seen == [(i, True) for i in range(0, 5, batch)]
    with pytest.raises(ValueError, match="different sample counts"):
        run_batches(eng, [a, b[:4]])


def test_quantize_arithmetic_is_float64_round_half_even():
    scale, zp = 0.1, -3
    # float32(0.15) / 0.1 - 3 is -1.49999994 in float64 (-> -1) but exactly -1.5 in float32 arithmetic (half to
    # even -> -2); likewise 0.45 -> 1 (float64) vs 2 (float32). The engine layer computes in float64.
    x = np.array([0.15, 0.45, -100.0, 100.0, 0.0], np.float32)
    q = quantize(x, np.dtype(np.int8), scale, zp)
    assert q.dtype == np.int8 and q.tolist() == [-1, 1, -128, 127, -3]
    expect = np.clip(np.round(x.astype(np.float64) / scale + zp), -128, 127).astype(np.int8)
    np.testing.assert_array_equal(q, expect)
    y = dequantize(q, scale, zp)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, ((q.astype(np.float64) - zp) * scale).astype(np.float32))


def test_engine_choice_and_option_errors(two_in_two_out, tmp_path):
    assert default_engine("m.onnx") == "onnxruntime" and default_engine("d/m_int8.tflite") == "tflite"
    with pytest.raises(TargetError, match="no engine runs .pt files"):
        default_engine("m.pt")
    with pytest.raises(TargetError, match="preserve_all_tensors"):
        open_engine("onnxruntime", two_in_two_out, preserve_all_tensors=True)
    with pytest.raises(TargetError, match="builtin kernels"):  # a delegate hides intermediate tensors
        open_engine("tflite", tmp_path / "m.tflite", preserve_all_tensors=True)
    with pytest.raises(TypeError, match="thread count"):
        open_engine("onnxruntime", two_in_two_out, threads=None)
