"""Reductions and Softmax, axes remapped through the tracked layout (no transposes)."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from .lowerings import Value, lowering


def _reduce(fn):
    def lower(ctx, node, attrs):
        x = ctx.act(node, 0)
        if "axes" in attrs:
            axes = list(attrs["axes"])
        else:
            a = ctx.const(node, 1)
            axes = [] if a is None else [int(i) for i in np.asarray(a).reshape(-1)]
        keep = bool(int(attrs.get("keepdims", 1)))
        if not axes:
            if int(attrs.get("noop_with_empty_axes", 0)):
                return [Value(tf.identity(x.tensor), x.perm, x.shape)]
            axes = list(range(x.rank))
        axes = sorted({a % x.rank for a in axes})
        if x.tensor.dtype == tf.bool:  # ReduceMax / ReduceMin of bool (any / all): on 0/1 integers
            y = tf.cast(fn(tf.cast(x.tensor, tf.int32), axis=[x.tf_axis(a) for a in axes], keepdims=keep), tf.bool)
        else:
            y = fn(x.tensor, axis=[x.tf_axis(a) for a in axes], keepdims=keep)
        if keep:
            shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
            return [Value(y, x.perm, shape)]
        kept = [i for i in range(x.rank) if i not in axes]
        renum = {a: j for j, a in enumerate(kept)}
        perm = tuple(renum[a] for a in x.perm if a in renum)
        return [Value(y, perm, tuple(x.shape[i] for i in kept))]
    return lower


lowering("ReduceMean")(_reduce(tf.math.reduce_mean))
lowering("ReduceMax")(_reduce(tf.math.reduce_max))
lowering("ReduceMin")(_reduce(tf.math.reduce_min))
lowering("ReduceSum")(_reduce(tf.math.reduce_sum))
lowering("ReduceL2")(_reduce(lambda t, axis, keepdims: tf.math.sqrt(tf.math.reduce_sum(t * t, axis=axis,
                                                                                     keepdims=keepdims))))


def _softmax_on_axis(fn, t: tf.Tensor, axis: int) -> tf.Tensor:
    """fn on the tf `axis`: TFLite's SOFTMAX works on the innermost axis (tf.nn.softmax elsewhere transposes there
    and back), so another axis is written out: MAX, SUB, EXP, SUM, DIV (log-softmax: SUB of LOG of the SUM)."""
    if axis == len(t.shape) - 1:
        return fn(t, axis=axis)
    d = t - tf.math.reduce_max(t, axis=axis, keepdims=True)
    s = tf.math.reduce_sum(tf.math.exp(d), axis=axis, keepdims=True)
    return d - tf.math.log(s) if fn is tf.nn.log_softmax else tf.math.exp(d) / s


def _softmax(fn):
    def lower(ctx, node, attrs):
        from .ops_shape import reshape_value

        x = ctx.act(node, 0)
        opset = ctx.graph.opset
        axis = int(attrs.get("axis", -1 if opset >= 13 else 1)) % max(x.rank, 1)
        if opset >= 13 or axis == x.rank - 1:
            return [Value(_softmax_on_axis(fn, x.tensor, x.tf_axis(axis)), x.perm, x.shape)]
        # opset < 13: softmax over the flattened trailing axes [axis:]
        flat = reshape_value(ctx, x, (int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:]))))
        y = Value(fn(flat.tensor, axis=flat.tf_axis(1)), flat.perm, flat.shape)
        return [reshape_value(ctx, y, x.shape)]
    return lower


lowering("Softmax")(_softmax(tf.nn.softmax))
lowering("LogSoftmax")(_softmax(tf.nn.log_softmax))
