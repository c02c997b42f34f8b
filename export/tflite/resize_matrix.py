"""Resize modes with no TFLite kernel (cubic, antialias, tf_crop_and_resize, keep_aspect_ratio_policy) as one
constant interpolation matrix per resized axis: ONNX Resize is separable (the reference interpolates one axis at a
time), each axis an affine map y = A x + b (b: tf_crop_and_resize's extrapolation value outside the crop).

The matrices come from the ONNX reference implementation itself, run on one-hot inputs, so every attribute
combination it defines is reproduced. Each axis is applied as FULLY_CONNECTED (innermost axis) or BATCH_MATMUL with
the constant matrix broadcast (other axes), in the tracked layout: no transpose."""
from __future__ import annotations

import numpy as np
import onnx
import tensorflow as tf
from onnx import helper, numpy_helper

_F = np.float32
MAX_WORK = 20_000_000  # reference-evaluator work (elements x one-hot runs) beyond which the converter refuses


def _reference(node: onnx.NodeProto, consts: dict, x: np.ndarray, opset: int) -> np.ndarray:
    from onnx.reference import ReferenceEvaluator

    feeds = {node.input[0]: x}
    inits = [numpy_helper.from_array(np.asarray(v), n) for n, v in consts.items()]
    g = helper.make_graph([node], "resize", [helper.make_tensor_value_info(node.input[0], onnx.TensorProto.FLOAT,
                                                                            x.shape)],
                          [helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", max(opset, 18))])
    return np.asarray(ReferenceEvaluator(m).run(None, feeds)[0])


def axis_maps(node: onnx.NodeProto, consts: dict, shape: tuple, opset: int) -> tuple[tuple, list] | None:
    """(output shape, [(axis, A (out, in), b (out,)), ...] for every axis that changes), or None when too large or
    when no sample lies inside the crop."""
    r = len(shape)
    base = _reference(node, consts, np.ones(shape, _F), opset)
    out_shape = base.shape
    zero = _reference(node, consts, np.zeros(shape, _F), opset)
    changed = [a for a in range(r) if out_shape[a] != shape[a]]
    if not changed:  # same sizes: the map may still move samples (e.g. a crop); treat every axis as changed
        changed = list(range(r))
    if int(np.prod(shape)) * sum(shape[a] for a in changed) > MAX_WORK:
        return None
    maps = []
    for a in changed:
        # read each axis' map where the other axes are inside the crop (ones in -> ones out, zeros in -> zeros out)
        ok = np.isclose(base, 1.0) & np.isclose(zero, 0.0)
        other = tuple(i for i in range(r) if i != a)
        good = np.argwhere(np.any(ok, axis=a))
        if good.size == 0:
            return None
        p = list(good[0])
        cols = []
        for i in range(shape[a]):
            e = np.zeros(shape[a], _F)
            e[i] = 1.0
            x = np.broadcast_to(e.reshape([-1 if k == a else 1 for k in range(r)]), shape).astype(_F)
            y = _reference(node, consts, x, opset)
            idx = [slice(None) if k == a else p[other.index(k)] for k in range(r)]
            cols.append(y[tuple(idx)])
        zidx = [slice(None) if k == a else p[other.index(k)] for k in range(r)]
        b = zero[tuple(zidx)]
        A = np.stack(cols, axis=1) - b[:, None]
        maps.append((a, A.astype(_F), b.astype(_F)))
    return out_shape, maps


def apply_on_axis(t: tf.Tensor, ax: int, A: np.ndarray, b: np.ndarray) -> tf.Tensor:
    """y = A x + b along tf axis `ax` of t (static shape)."""
    shape = [int(d) for d in t.shape]
    n_in, n_out = shape[ax], A.shape[0]
    before, after = int(np.prod(shape[:ax])), int(np.prod(shape[ax + 1:]))
    if ax == len(shape) - 1:
        y = tf.linalg.matmul(tf.reshape(t, (before, n_in)), np.ascontiguousarray(A.T))
    else:
        y = tf.linalg.matmul(np.ascontiguousarray(A), tf.reshape(t, (before, n_in, after)))
    new_shape = shape[:ax] + [n_out] + shape[ax + 1:]
    y = tf.reshape(y, new_shape)
    if np.any(b != 0.0):
        y = y + b.reshape([-1 if k == ax else 1 for k in range(len(shape))])
    return y
