"""Pooling: MaxPool (pads, ceil_mode), AveragePool (pads, ceil_mode, count_include_pad both ways, exact at the
borders), GlobalAveragePool, GlobalMaxPool. 2-D only, on NHWC tensors."""
from __future__ import annotations


import numpy as np
import tensorflow as tf

from .lowerings import NHWC, Value, lowering, unsupported
from .padding import choose_padding, onnx_pads, out_sizes
from .ops_conv import pad_for_conv

_F = np.float32


def _params(node, attrs, x: Value):
    if x.rank != 4:
        raise unsupported(node, f"only 2-D pooling (4-D NCHW input) is lowered, got rank {x.rank}")
    k = list(attrs["kernel_shape"])
    s = list(attrs.get("strides", [1, 1]))
    d = list(attrs.get("dilations", [1, 1]))
    if d != [1, 1]:
        raise unsupported(node, "dilated pooling is not lowered (TFLite pools have no dilation)")
    ceil = bool(int(attrs.get("ceil_mode", 0)))
    begin, end = onnx_pads(attrs, x.shape[2:], k, s, d, ceil_mode=ceil)
    return k, s, begin, end


def _pad(x, begin, end, value):
    """Spatial constant padding of an NHWC tensor, written on its (N, H, W*C) view. XNNPACK copies a PAD row by row
    along the innermost dimension: on NHWC that is one row of C values per pixel (a 3x3/2 stem max-pool's PAD of
    112x112x16 floats took 140 us, 5x the pool), on the row view one row of W*C values per image row (23 us). A PAD
    right before a convolution is not written this way: XNNPACK fuses that one into the convolution."""
    if not any(begin) and not any(end):
        return x
    n, h, w, c = (int(d) for d in x.shape)
    rows = tf.reshape(x, [n, h, w * c])
    rows = tf.pad(rows, [[0, 0], [begin[0], end[0]], [begin[1] * c, end[1] * c]], constant_values=value)
    return tf.reshape(rows, [n, h + begin[0] + end[0], w + begin[1] + end[1], c])


# Why not PADV2 with the lowest float: TensorFlow's INT8 quantizer gives a PADV2's padding constant the scale of its
# input, so -3.4e38 became part of the producer's range (scale 1.3e36: every activation rounded to one value) and
# XNNPACK refused the model. The two exact forms below carry no out-of-range constant.
_NONNEG_OPS = {"Relu", "Sigmoid", "HardSigmoid", "Softmax", "Abs"}


def _nonnegative(ctx, name: str) -> bool:
    """True when the ONNX tensor `name` is provably >= 0 (produced by ReLU, Sigmoid, ..., or Clip with min >= 0)."""
    prod = next((n for n in ctx.graph.nodes if name in n.output), None)
    if prod is None:
        return False
    if prod.op_type in _NONNEG_OPS:
        return True
    if prod.op_type == "Clip":
        lo = ctx.const(prod, 1) if len(prod.input) > 1 and prod.input[1] else None
        if lo is None:
            lo = next((a.f for a in prod.attribute if a.name == "min"), None)
        return lo is not None and float(np.asarray(lo)) >= 0.0
    return False


def _edge_pad(x, begin, end):
    """Replicate the border rows/columns (exact for max pooling when every window holds a real element: the
    replicated value is already in any window that reaches the padding). SLICE + CONCATENATION on the (N, H, W*C)
    row view (see `_pad`): XNNPACK runs both, and INT8 keeps one scale."""
    n, h, w, c = (int(d) for d in x.shape)
    rows = tf.reshape(x, [n, h, w * c])
    if begin[0] or end[0]:
        rows = tf.concat([rows[:, :1]] * begin[0] + [rows] + [rows[:, h - 1:]] * end[0], axis=1)
        h += begin[0] + end[0]
    if begin[1] or end[1]:
        rows = tf.concat([rows[:, :, :c]] * begin[1] + [rows] + [rows[:, :, (w - 1) * c:]] * end[1], axis=2)
        w += begin[1] + end[1]
    return tf.reshape(rows, [n, h, w, c])


@lowering("MaxPool")
def max_pool(ctx, node, attrs):
    xv = ctx.act(node, 0)
    if len(node.output) > 1 and node.output[1]:
        raise unsupported(node, "the Indices output of MaxPool is not lowered")
    k, s, begin, end = _params(node, attrs, xv)
    mode = choose_padding(xv.shape[2:], begin, end, k, s, [1, 1])
    x = ctx.to_perm(xv, NHWC)
    if mode == "EXPLICIT":
        if any(p >= kk for p, kk in zip(list(begin) + list(end), list(k) + list(k))):
            raise unsupported(node, f"MaxPool pads {begin + end} reach a whole kernel {k} (windows of pure padding)")
        if _nonnegative(ctx, node.input[0]):
            x = _pad(x, begin, end, 0.0)  # inputs >= 0 and every window holds a real element: 0 never wins
        else:
            x = _edge_pad(x, begin, end)
        mode = "VALID"
    y = tf.nn.max_pool2d(x, k, s, mode)
    oh, ow = out_sizes(xv.shape[2:], begin, end, k, s, [1, 1])
    return [Value(y, NHWC, (xv.shape[0], xv.shape[1], oh, ow))]


def _divisor(n_out, stride, k, lo, hi, begin):
    """Per output index: how many window elements fall inside [lo, hi) (input coordinates)."""
    out = []
    for o in range(n_out):
        a = o * stride - begin
        out.append(max(min(a + k, hi) - max(a, lo), 0))
    return np.asarray(out, np.float64)


@lowering("AveragePool")
def average_pool(ctx, node, attrs):
    """fp32: AVERAGE_POOL_2D. INT8: XNNPACK (ai-edge-litert 2.3) has no signed-INT8 average pooling, so the op would
    run on the builtin kernels between two delegate partitions; the INT8 trace writes it as a depthwise convolution
    with every weight 1/(kh*kw) instead (exact in INT8: the per-channel weight scale makes each weight 127), its
    zero padding fused into the convolution by XNNPACK."""
    xv = ctx.act(node, 0)
    k, s, begin, end = _params(node, attrs, xv)
    include = bool(int(attrs.get("count_include_pad", 0)))
    h, w = xv.shape[2:]
    oh, ow = out_sizes((h, w), begin, end, k, s, [1, 1])
    mode = choose_padding((h, w), begin, end, k, s, [1, 1])
    x = ctx.to_perm(xv, NHWC)
    shape = (xv.shape[0], xv.shape[1], oh, ow)
    if not ctx.for_int8 and (mode == "VALID" or (mode == "SAME" and not include)):
        return [Value(tf.nn.avg_pool2d(x, k, s, mode), NHWC, shape)]
    # general: zero-pad, average over full windows, rescale by (window size / true divisor) where they differ
    if include:
        n = len(k)
        pads = list(attrs.get("pads", [0] * (2 * n))) if attrs.get("auto_pad", "NOTSET") == "NOTSET" else \
            begin + end
        bounds = [(-begin[0], h + pads[n + 0]), (-begin[1], w + pads[n + 1])]
    else:
        bounds = [(0, h), (0, w)]
    dh = _divisor(oh, s[0], k[0], *bounds[0], begin[0])
    dw = _divisor(ow, s[1], k[1], *bounds[1], begin[1])
    if ctx.for_int8:
        filt = np.full((k[0], k[1], xv.shape[1], 1), 1.0 / (k[0] * k[1]), _F)
        y = tf.raw_ops.DepthwiseConv2dNative(input=pad_for_conv(x, begin, end), filter=filt,
                                            strides=[1, s[0], s[1], 1], padding="VALID")
    else:
        y = tf.nn.avg_pool2d(_pad(x, begin, end, 0.0), k, s, "VALID")
    scale = (k[0] * k[1]) / np.outer(dh, dw)
    if not np.allclose(scale, 1.0):
        y = y * scale.astype(_F)[None, :, :, None]
    return [Value(y, NHWC, shape)]


@lowering("GlobalAveragePool")
def global_average_pool(ctx, node, attrs):
    xv = ctx.act(node, 0)
    if xv.rank != 4:
        raise unsupported(node, "only 4-D inputs are lowered")
    y = tf.math.reduce_mean(ctx.to_perm(xv, NHWC), axis=[1, 2], keepdims=True)
    return [Value(y, NHWC, xv.shape[:2] + (1, 1))]


@lowering("GlobalMaxPool")
def global_max_pool(ctx, node, attrs):
    xv = ctx.act(node, 0)
    if xv.rank != 4:
        raise unsupported(node, "only 4-D inputs are lowered")
    y = tf.math.reduce_max(ctx.to_perm(xv, NHWC), axis=[1, 2], keepdims=True)
    return [Value(y, NHWC, xv.shape[:2] + (1, 1))]
