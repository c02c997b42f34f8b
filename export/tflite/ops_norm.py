"""Transformer-era element-wise and normalisation ops: Erf, Gelu (one TFLite GELU), LayerNormalization,
InstanceNormalization. Normalised axes are remapped through the tracked layout, so a LayerNorm over the last ONNX
axis of a token tensor and an InstanceNorm over H, W of an NHWC tensor need no transpose."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from .lowerings import Value, lowering, unsupported

_F = np.float32
# Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7): erf(|x|) = 1 - t (a1 + t (a2 + ...)) exp(-x^2), t = 1/(1 + p|x|)
_AS_P = 0.3275911
_AS_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


@lowering("Erf")
def erf(ctx, node, attrs):
    """TFLite has no ERF op; a GELU spelled with Erf is fused into one GELU first (fusions.py). A lone Erf is the
    A&S 7.1.26 polynomial (absolute error <= 1.5e-7) in ops XNNPACK runs: ABS, MUL, ADD, DIV, EXP, and the sign as
    x / max(|x|, tiny)."""
    x = ctx.act(node, 0)
    t_in = x.tensor
    ax = tf.math.abs(t_in)
    t = 1.0 / (1.0 + _F(_AS_P) * ax)
    poly = _F(_AS_A[4])
    for a in reversed(_AS_A[:4]):
        poly = poly * t + _F(a)
    y_abs = 1.0 - poly * t * tf.math.exp(ax * (ax * _F(-1.0)))  # not NEG: the INT8 quantizer leaves NEG float
    sign = t_in / tf.math.maximum(ax, _F(1e-30))
    return [Value(y_abs * sign, x.perm, x.shape)]


@lowering("Gelu")
def gelu(ctx, node, attrs):
    """ONNX Gelu (opset 20, and what fusions.py makes of the exporters' patterns), written in the forms TensorFlow's
    converter fuses into one GELU op (`approximate` set for the tanh form)."""
    x = ctx.act(node, 0)
    t = x.tensor
    mode = attrs.get("approximate", "none")
    if mode == "tanh":
        y = 0.5 * t * (1.0 + tf.math.tanh(_F(np.sqrt(2.0 / np.pi)) * (t + _F(0.044715) * tf.math.pow(t, 3.0))))
    elif mode == "none":
        y = 0.5 * t * (1.0 + tf.math.erf(t * _F(1.0 / np.sqrt(2.0))))
    else:
        raise unsupported(node, f"Gelu approximate={mode!r} is not lowered (none and tanh are)")
    return [Value(y, x.perm, x.shape)]


def normalize(x: Value, axes: list[int], eps: float) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(x - mean) / sqrt(var + eps) over the ONNX `axes` of x (MEAN, SUB, MUL, MEAN, ADD, RSQRT, MUL); also the mean
    and 1/sqrt(var + eps), reduced axes kept."""
    tf_axes = sorted(x.tf_axis(a) for a in axes)
    mean = tf.math.reduce_mean(x.tensor, axis=tf_axes, keepdims=True)
    d = x.tensor - mean
    var = tf.math.reduce_mean(d * d, axis=tf_axes, keepdims=True)
    rstd = tf.math.rsqrt(var + _F(eps))
    return d * rstd, mean, rstd


@lowering("LayerNormalization")
def layer_normalization(ctx, node, attrs):
    """Over ONNX axes [axis, rank): scale and bias broadcast over those axes (constants laid out like x)."""
    x = ctx.act(node, 0)
    axis = int(attrs.get("axis", -1)) % x.rank
    y, mean, rstd = normalize(x, list(range(axis, x.rank)), float(attrs.get("epsilon", 1e-5)))
    stat_shape = tuple(d if i < axis else 1 for i, d in enumerate(x.shape))
    for i, fn in ((1, tf.math.multiply), (2, tf.math.add)):
        p = ctx.get(node.input[i]) if len(node.input) > i else None
        if p is None:
            continue
        if isinstance(p, Value):
            raise unsupported(node, f"input {i} must be a constant")
        y = fn(y, ctx.const_in_layout(np.asarray(p, _F), x.rank, x.perm))
    return [Value(y, x.perm, x.shape), Value(mean, x.perm, stat_shape), Value(rstd, x.perm, stat_shape)]


@lowering("InstanceNormalization")
def instance_normalization(ctx, node, attrs):
    """Per sample and channel over the spatial axes; per-channel scale and bias (torch's GroupNorm export reshapes
    to (N, groups, -1) and runs this with unit scale)."""
    x = ctx.act(node, 0)
    y = normalize(x, list(range(2, x.rank)), float(attrs.get("epsilon", 1e-5)))[0]
    shape = (x.shape[1],) + (1,) * (x.rank - 2)
    scale = np.asarray(ctx.const(node, 1), _F).reshape(shape)
    bias = np.asarray(ctx.const(node, 2), _F).reshape(shape)
    if not np.all(scale == 1.0):
        y = y * ctx.const_in_layout(scale, x.rank, x.perm)
    if np.any(bias != 0.0):
        y = y + ctx.const_in_layout(bias, x.rank, x.perm)
    return [Value(y, x.perm, x.shape)]
