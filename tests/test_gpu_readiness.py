"""GPU delegate readiness (export/tflite/gpu_readiness.py): the rules of TensorFlow's offline GPU checker applied to
the ops of a .tflite file, on small TensorFlow-converted models with known verdicts, and on edgeport's own output."""
from __future__ import annotations

import pytest

from edgeport.export.tflite.gpu_readiness import GPU_OPS, Operand, OpSignature, check_op, gpu_readiness

tf = pytest.importorskip("tensorflow")


def _convert(fn, shape, path):
    f = tf.function(fn, input_signature=[tf.TensorSpec(shape, tf.float32)])
    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()])
    path.write_bytes(conv.convert())
    return path


def test_supported_graph_is_whole(tmp_path):
    p = _convert(lambda x: tf.nn.relu(tf.nn.avg_pool2d(x, 2, 2, "VALID") * 2.0 + 1.0), [1, 8, 8, 4],
                 tmp_path / "a.tflite")
    r = gpu_readiness(p)
    assert r.whole_graph and r.ops_total >= 2 and r.fallback == () and r.summary() == f"{r.ops_total}/{r.ops_total} ops"
    assert r.to_json()["whole_graph"] is True


def test_unsupported_ops_fall_back_with_their_reason(tmp_path):
    def fn(x):
        v, _ = tf.math.top_k(tf.reshape(x, [1, -1]), k=3)  # TOPK_V2: no GPU kernel
        c = tf.cast(tf.cast(x, tf.int64) * 2, tf.float32)  # CAST to/from INT64: not supported
        return v, c

    r = gpu_readiness(_convert(fn, [1, 4, 4, 2], tmp_path / "b.tflite"))
    ops = {(f["op"], f["reason"]) for f in r.fallback}
    assert ("TOPK_V2", "not supported op TOPK_V2") in ops
    assert ("CAST", "CAST FLOAT32 -> INT64 not supported") in ops
    assert ("CAST", "CAST INT64 -> FLOAT32 not supported") in ops
    assert not r.whole_graph and r.ops_gpu == r.ops_total - len(r.fallback)
    assert "TOPK_V2 x1 (not supported op TOPK_V2)" in r.summary() and r.summary().startswith(f"{r.ops_gpu}/")


def test_per_op_conditions():
    t = lambda *s, dtype="FLOAT32", const=False: Operand(tuple(s), dtype, const)  # noqa: E731
    assert check_op(OpSignature(0, "SLICE", (t(4, 8), t(2, dtype="INT32", const=True),
                                              t(2, dtype="INT32", const=True)), (t(2, 4),))) == \
        "supports 3-D or 4-D input only, has 2-D"
    assert check_op(OpSignature(0, "MEAN", (t(1, 4, 4, 8), t(2, dtype="INT32")), (t(1, 8),))) == \
        "axes must be a constant"
    gather = OpSignature(0, "GATHER", (t(1, 4, 4, 8), t(3, dtype="INT32", const=True)), (t(1, 4, 4, 3),))
    assert check_op(gather) is None
    assert check_op(OpSignature(0, "GATHER", (t(1, 4, 4, 8), t(1, 3, dtype="INT32", const=True)), (t(1, 3),))) == \
        "supports 1-D indices only"
    assert check_op(OpSignature(0, "MUL", (t(1, 1, 8, 1), t(1, 8, 1, 8)), (t(1, 8, 8, 8),))) is not None
    assert check_op(OpSignature(0, "FlexCosh", (t(4, 10),), (t(4, 10),))) == "not supported op FlexCosh"
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "CONCATENATION", "HARD_SWISH", "MEAN"} <= GPU_OPS
