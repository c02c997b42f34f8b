"""Data-movement ops on tracked layouts: Reshape/Flatten/Squeeze/Unsqueeze (as RESHAPE in the current layout
whenever the merged axes are contiguous there), Transpose (a layout update, no op), Concat/Split/Slice/Pad
(axes remapped), Constant and Shape (static values)."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from .lowerings import NHWC, Value, identity, inverse, lowering, unsupported


# ---------------------------------------------------------------------------------------------------------------
# reshape on a tracked layout
def _groups(in_shape, out_shape):
    """Pair runs of non-1 ONNX axes with equal products: [(in_axes, out_axes), ...] or None."""
    ia = [i for i, d in enumerate(in_shape) if d != 1]
    oa = [i for i, d in enumerate(out_shape) if d != 1]
    groups, i, j = [], 0, 0
    while i < len(ia) or j < len(oa):
        gi, gj = [ia[i]], [oa[j]] if j < len(oa) else []
        if not gj:
            return None
        pi, pj = in_shape[ia[i]], out_shape[oa[j]]
        i += 1
        j += 1
        while pi != pj:
            if pi < pj:
                if i >= len(ia):
                    return None
                gi.append(ia[i]); pi *= in_shape[ia[i]]; i += 1
            else:
                if j >= len(oa):
                    return None
                gj.append(oa[j]); pj *= out_shape[oa[j]]; j += 1
        groups.append((gi, gj))
    return groups


def reshape_value(ctx, v: Value, out_shape) -> Value:
    """v reshaped to the ONNX shape `out_shape` (row-major over ONNX axes), keeping data in place when possible."""
    out_shape = tuple(int(d) for d in out_shape)
    r = len(out_shape)
    groups = _groups(v.shape, out_shape)
    if groups is None:
        raise ValueError(f"cannot reshape {v.shape} to {out_shape}")
    tf_order = [a for a in v.perm if v.shape[a] != 1]  # non-1 ONNX input axes in tf memory order
    pos = {a: k for k, a in enumerate(tf_order)}
    ordered = sorted(groups, key=lambda g: pos[g[0][0]] if g[0] else -1)
    want = [a for g in ordered for a in g[0]]
    t = v.tensor
    if want != tf_order:
        # data must move: squeeze size-1 axes (free), then one transpose to make every group contiguous
        t = tf.reshape(t, [v.shape[a] for a in tf_order])
        ctx.transposes += 1
        t = tf.transpose(t, [pos[a] for a in want])
    seq = [a for g in ordered for a in g[1]]  # required tf order of non-1 output axes
    out_perm = None
    candidates = ([NHWC] if r == 4 else []) + [identity(r)]
    for c in candidates:
        if [a for a in c if out_shape[a] != 1] == seq:
            out_perm = c
            break
    if out_perm is None:
        out_perm = tuple([a for a in range(r) if out_shape[a] == 1] + seq)
    y = tf.reshape(t, [out_shape[a] for a in out_perm])
    return Value(y, tuple(out_perm), out_shape)


@lowering("Reshape")
def reshape(ctx, node, attrs):
    x = ctx.act(node, 0)
    spec = [int(d) for d in ctx.const(node, 1)]
    allowzero = int(attrs.get("allowzero", 0))
    out = [x.shape[i] if (d == 0 and not allowzero) else d for i, d in enumerate(spec)]
    if -1 in out:
        known = int(np.prod([d for d in out if d != -1]))
        out[out.index(-1)] = int(np.prod(x.shape)) // max(known, 1)
    return [reshape_value(ctx, x, out)]


@lowering("Flatten")
def flatten(ctx, node, attrs):
    x = ctx.act(node, 0)
    axis = int(attrs.get("axis", 1))
    axis = axis + x.rank if axis < 0 else axis  # ONNX: a negative axis counts from the back, in [-r, r]
    return [reshape_value(ctx, x, (int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:]))))]


def _axes(ctx, node, attrs, rank):
    if "axes" in attrs:
        axes = list(attrs["axes"])
    else:
        a = ctx.const(node, 1)
        axes = [] if a is None else [int(i) for i in np.asarray(a).reshape(-1)]
    return [a % rank for a in axes] if rank else axes


@lowering("Squeeze")
def squeeze(ctx, node, attrs):
    x = ctx.act(node, 0)
    axes = _axes(ctx, node, attrs, x.rank) or [i for i, d in enumerate(x.shape) if d == 1]
    return [reshape_value(ctx, x, [d for i, d in enumerate(x.shape) if i not in axes])]


@lowering("Unsqueeze")
def unsqueeze(ctx, node, attrs):
    x = ctx.act(node, 0)
    r = x.rank + len(_axes(ctx, node, attrs, 1) or [])
    axes = sorted(_axes(ctx, node, attrs, r))
    shape, it = [], iter(x.shape)
    for i in range(r):
        shape.append(1 if i in axes else next(it))
    return [reshape_value(ctx, x, shape)]


@lowering("Transpose")
def transpose(ctx, node, attrs):
    x = ctx.act(node, 0)
    p = list(attrs.get("perm", list(reversed(range(x.rank)))))
    pinv = inverse(p)
    out_perm = tuple(pinv[a] for a in x.perm)
    shape = tuple(x.shape[a] for a in p)
    # no data moves: the tracked layout absorbs the transpose; an identity op keeps the ONNX name in the graph
    return [Value(tf.identity(x.tensor), out_perm, shape)]


# ---------------------------------------------------------------------------------------------------------------
@lowering("Concat")
def concat(ctx, node, attrs):
    raw = [ctx.get(n) for n in node.input if n]
    acts = [v for v in raw if isinstance(v, Value)]
    r = acts[0].rank
    axis = int(attrs["axis"]) % r
    ref = next((v for v in acts if v.perm != identity(r)), acts[0])
    perm = ref.perm
    parts = []
    for v in raw:
        if isinstance(v, Value):
            parts.append(ctx.to_perm(v, perm))
        else:
            arr = np.asarray(v)
            if arr.size == 0:
                continue
            parts.append(tf.constant(np.ascontiguousarray(np.transpose(arr, perm)).astype(
                acts[0].tensor.dtype.as_numpy_dtype)))
    shape = list(acts[0].shape)
    shape[axis] = sum((v.shape if isinstance(v, Value) else np.shape(v))[axis] for v in raw)
    y = tf.concat(parts, axis=perm.index(axis)) if len(parts) > 1 else tf.identity(parts[0])
    return [Value(y, perm, tuple(shape))]


@lowering("Split")
def split(ctx, node, attrs):
    x = ctx.act(node, 0)
    axis = int(attrs.get("axis", 0)) % x.rank
    n_out = len(node.output)
    sizes = attrs.get("split")
    if sizes is None and len(node.input) > 1 and node.input[1]:
        sizes = [int(s) for s in ctx.const(node, 1)]
    dim = x.shape[axis]
    if sizes is None:
        n = int(attrs.get("num_outputs", n_out))
        chunk = -(-dim // n)
        sizes = [chunk] * (n - 1) + [dim - chunk * (n - 1)]
    sizes = [int(s) for s in sizes]
    if len(sizes) == 1:
        parts = [tf.identity(x.tensor)]
    elif len(set(sizes)) == 1:
        # equal parts: SPLIT, which XNNPACK runs (SPLIT_V, what tf.split with a size list gives, it does not)
        parts = tf.split(x.tensor, len(sizes), axis=x.tf_axis(axis))
    else:  # unequal parts: one SLICE each, which XNNPACK runs
        ax, begin, parts = x.tf_axis(axis), 0, []
        for sz in sizes:
            b = [0] * x.rank
            b[ax] = begin
            sh = [-1] * x.rank
            sh[ax] = sz
            parts.append(tf.slice(x.tensor, b, sh))
            begin += sz
    outs = []
    for p, s in zip(parts, sizes):
        shape = list(x.shape)
        shape[axis] = s
        outs.append(Value(p, x.perm, tuple(shape)))
    return outs


@lowering("Slice")
def slice_(ctx, node, attrs):
    x = ctx.act(node, 0)
    if "starts" in attrs:  # opset < 10
        starts, ends = list(attrs["starts"]), list(attrs["ends"])
        axes = list(attrs.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts = [int(s) for s in ctx.const(node, 1)]
        ends = [int(s) for s in ctx.const(node, 2)]
        a = ctx.const(node, 3)
        axes = list(range(len(starts))) if a is None else [int(i) for i in a]
        s = ctx.const(node, 4)
        steps = [1] * len(starts) if s is None else [int(i) for i in s]
    r = x.rank
    begin, end, stride = [0] * r, list(x.shape), [1] * r
    begin_mask = end_mask = 0
    shape = list(x.shape)
    for st, en, ax, sp in zip(starts, ends, axes, steps):
        ax = ax % r
        dim = x.shape[ax]
        st = max(min(st, 2**62), -(2**62))
        en = max(min(en, 2**62), -(2**62))
        b, e, k = slice(st, en, sp).indices(dim)
        n = len(range(b, e, k))
        shape[ax] = n
        begin[ax], end[ax], stride[ax] = b, e, k
        if k < 0 and e < 0:
            end_mask |= 1 << x.tf_axis(ax)
    if 0 in shape:
        raise unsupported(node, f"the slice is empty (output shape {tuple(shape)}); TFLite has no empty tensors")
    tb = [begin[a] for a in x.perm]
    te = [end[a] for a in x.perm]
    ts = [stride[a] for a in x.perm]
    if all(s == 1 for s in ts):
        y = tf.slice(x.tensor, tb, [shape[a] for a in x.perm])
    else:
        y = tf.strided_slice(x.tensor, tb, te, ts, begin_mask=begin_mask, end_mask=end_mask)
    return [Value(y, x.perm, tuple(shape))]


@lowering("Pad")
def pad(ctx, node, attrs):
    x = ctx.act(node, 0)
    mode = attrs.get("mode", "constant")
    r = x.rank
    if "pads" in attrs:  # opset < 11
        pads = list(attrs["pads"])
        value = float(attrs.get("value", 0.0))
        axes = list(range(r))
    else:
        pads = [int(p) for p in ctx.const(node, 1)]
        cv = ctx.const(node, 2)
        value = 0.0 if cv is None or np.size(cv) == 0 else float(np.asarray(cv).reshape(-1)[0])
        a = ctx.const(node, 3)
        axes = list(range(r)) if a is None else [int(i) % r for i in a]
    n = len(axes)
    onnx_pads = [[0, 0] for _ in range(r)]
    for i, ax in enumerate(axes):
        onnx_pads[ax] = [pads[i], pads[i + n]]
    if any(p < 0 for pr in onnx_pads for p in pr):
        raise unsupported(node, "negative pads are not lowered")
    tf_pads = [onnx_pads[a] for a in x.perm]
    modes = {"constant": "CONSTANT", "reflect": "REFLECT"}
    if mode not in modes:
        raise unsupported(node, f"pad mode {mode!r} is not lowered (constant and reflect are)")
    y = tf.pad(x.tensor, tf_pads, mode=modes[mode], constant_values=value if mode == "constant" else 0)
    shape = tuple(x.shape[a] + sum(onnx_pads[a]) for a in range(r))
    return [Value(y, x.perm, shape)]


@lowering("Constant")
def constant(ctx, node, attrs):
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in attrs:
            v = np.asarray(attrs[key])
            if key in ("value_float", "value_floats"):
                v = v.astype(np.float32)
            elif key in ("value_int", "value_ints"):
                v = v.astype(np.int64)
            return [v]
    raise unsupported(node, "only numeric Constant values are lowered")


@lowering("Shape")
def shape(ctx, node, attrs):
    s = np.asarray(ctx.shape_of(node.input[0]), dtype=np.int64)
    start = int(attrs.get("start", 0))
    end = attrs.get("end")
    return [s[start:None if end is None else int(end)]]
