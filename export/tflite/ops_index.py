"""Indexing, selection and logic ops: Gather, TopK, Where, comparisons, Not, Cast, Expand, Tile. With constant
inputs these are folded before lowering (build.lower_graph); the lowerings here handle computed tensors, axes
remapped through the tracked layout."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from .lowerings import Value, identity, lowering, unsupported
from .ops_elementwise import expand_rank, operands


def _drop_axis(v: Value, axis: int) -> tuple[int, ...]:
    """The layout of v with ONNX `axis` removed (a squeezed axis keeps the others in place)."""
    return tuple(p - (p > axis) for p in v.perm if p != axis)


@lowering("Gather")
def gather(ctx, node, attrs):
    """Constant scalar index: one SLICE (+ a free RESHAPE); constant contiguous indices: one SLICE; other constant
    1-D indices or computed indices: GATHER on the tracked axis."""
    x = ctx.act(node, 0)
    axis = int(attrs.get("axis", 0)) % x.rank
    ax = x.tf_axis(axis)
    idx = ctx.get(node.input[1])
    dim = x.shape[axis]
    if not isinstance(idx, Value):
        idx = np.asarray(idx).astype(np.int64)
        idx = np.where(idx < 0, idx + dim, idx)
        flat = idx.reshape(-1)
        if flat.size and np.array_equal(flat, np.arange(flat[0], flat[0] + flat.size)) and idx.ndim <= 1:
            begin = [0] * x.rank
            begin[ax] = int(flat[0])
            size = [-1] * x.rank
            size[ax] = int(flat.size)
            y = tf.slice(x.tensor, begin, size)
            if idx.ndim == 0:
                tf_shape = [d for i, d in enumerate(y.shape) if i != ax]
                perm = _drop_axis(x, axis)
                shape = tuple(d for i, d in enumerate(x.shape) if i != axis)
                return [Value(tf.reshape(y, tf_shape), perm, shape)]
            shape = tuple(flat.size if i == axis else d for i, d in enumerate(x.shape))
            return [Value(y, x.perm, shape)]
        ind_t, ind_shape = tf.constant(idx.astype(np.int32)), idx.shape
    else:
        ind_t = ctx.to_perm(idx, identity(idx.rank))
        ind_t = tf.where(ind_t < 0, ind_t + dim, ind_t)
        ind_t = tf.cast(ind_t, tf.int32)
        ind_shape = idx.shape
    shape = x.shape[:axis] + tuple(ind_shape) + x.shape[axis + 1:]
    if len(ind_shape) == 1:
        return [Value(tf.gather(x.tensor, ind_t, axis=ax), x.perm, shape)]
    # indices of rank != 1: gather in ONNX layout
    t = ctx.to_perm(x, identity(x.rank))
    return [Value(tf.gather(t, ind_t, axis=axis), identity(len(shape)), shape)]


@lowering("TopK")
def top_k(ctx, node, attrs):
    """TOPK_V2 works on the innermost axis: an axis that is innermost in the tracked layout needs no transpose.
    largest=0: the top k of -x (NEG before and after)."""
    x = ctx.act(node, 0)
    axis = int(attrs.get("axis", -1)) % x.rank
    k = int(np.asarray(ctx.const(node, 1)).reshape(-1)[0])
    largest = bool(int(attrs.get("largest", 1)))
    perm = x.perm if x.tf_axis(axis) == x.rank - 1 else tuple(a for a in range(x.rank) if a != axis) + (axis,)
    t = ctx.to_perm(x, perm)
    vals, ind = tf.math.top_k(t if largest else -t, k=k, sorted=True)
    if not largest:
        vals = -vals
    shape = tuple(k if i == axis else d for i, d in enumerate(x.shape))
    return [Value(vals, perm, shape), Value(tf.cast(ind, tf.int64), perm, shape)]


def _compare(fn):
    def lower(ctx, node, attrs):
        (a, b), perm, shape = operands(ctx, node, node.input[:2])
        return [Value(fn(a, b), perm, shape)]
    return lower


lowering("Equal")(_compare(tf.math.equal))
lowering("Less")(_compare(tf.math.less))
lowering("Greater")(_compare(tf.math.greater))
lowering("LessOrEqual")(_compare(tf.math.less_equal))
lowering("GreaterOrEqual")(_compare(tf.math.greater_equal))


@lowering("Not")
def logical_not(ctx, node, attrs):
    x = ctx.act(node, 0)
    return [Value(tf.math.logical_not(x.tensor), x.perm, x.shape)]


@lowering("Where")
def where(ctx, node, attrs):
    """SELECT_V2 with the three operands in one layout (constants laid out like the activations)."""
    cond = ctx.get(node.input[0])
    vals = [ctx.get(n) for n in node.input[1:3]]
    shapes = [v.shape if isinstance(v, Value) else np.shape(v) for v in [cond, *vals]]
    if any(isinstance(v, Value) for v in vals):
        (a, b), perm, shape = operands(ctx, node, node.input[1:3], extra_shapes=shapes)
    else:  # only the condition is computed: the values take its layout
        shape = tuple(int(d) for d in np.broadcast_shapes(*shapes))
        perm = expand_rank(ctx, cond, len(shape)).perm
        a, b = (np.broadcast_to(ctx.const_in_layout(np.asarray(v, np.float32), len(shape), perm),
                                [shape[p] for p in perm]).copy() for v in vals)
    r = len(shape)
    if isinstance(cond, Value):
        c = ctx.to_perm(expand_rank(ctx, cond, r), perm)
    else:
        c = ctx.const_in_layout(np.asarray(cond, bool), r, perm)
    return [Value(tf.where(c, a, b), perm, shape)]


_CAST = {1: tf.float32, 6: tf.int32, 7: tf.int64, 9: tf.bool, 10: tf.float16, 11: tf.float32, 3: tf.int8, 2: tf.uint8}


@lowering("Cast")
def cast(ctx, node, attrs):
    """float64 is kept as float32 (TFLite has no float64 kernels)."""
    x = ctx.act(node, 0)
    to = int(attrs["to"])
    if to not in _CAST:
        raise unsupported(node, f"Cast to ONNX type {to} is not lowered")
    return [Value(tf.cast(x.tensor, _CAST[to]), x.perm, x.shape)]


@lowering("Expand")
def expand(ctx, node, attrs):
    """BROADCAST_TO in the tracked layout (a computed tensor expanded to a constant shape)."""
    x = ctx.act(node, 0)
    target = [int(d) for d in np.asarray(ctx.const(node, 1)).reshape(-1)]
    shape = tuple(int(d) for d in np.broadcast_shapes(x.shape, tuple(target)))
    v = expand_rank(ctx, x, len(shape))
    return [Value(tf.broadcast_to(v.tensor, [shape[p] for p in v.perm]), v.perm, shape)]


@lowering("Tile")
def tile(ctx, node, attrs):
    x = ctx.act(node, 0)
    reps = [int(d) for d in np.asarray(ctx.const(node, 1)).reshape(-1)]
    shape = tuple(d * r for d, r in zip(x.shape, reps))
    return [Value(tf.tile(x.tensor, [reps[p] for p in x.perm]), x.perm, shape)]
