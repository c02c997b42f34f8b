"""Element-wise ops: broadcasting binary arithmetic and activations. Constants are laid out to match the
activation's tracked layout, so broadcasting never needs a transpose."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from .lowerings import Value, identity, lowering, unsupported

_F = np.float32


def expand_rank(ctx, v: Value, rank: int) -> Value:
    """Prepend size-1 ONNX axes so v has `rank` (numpy broadcasting alignment); a RESHAPE when needed."""
    k = rank - v.rank
    if k == 0:
        return v
    perm = tuple(range(k)) + tuple(p + k for p in v.perm)
    tf_shape = [((1,) * k + v.shape)[p] for p in perm]
    return Value(tf.reshape(v.tensor, tf_shape), perm, (1,) * k + v.shape)


def operands(ctx, node, names, *, extra_shapes=()) -> tuple[list, tuple[int, ...], tuple[int, ...]]:
    """Inputs as tf tensors / numpy constants in one common layout; returns (operands, perm, onnx_out_shape).
    `extra_shapes`: further shapes the output broadcasts to (Where's condition)."""
    raw = [ctx.get(n) for n in names]
    shapes = [v.shape if isinstance(v, Value) else np.shape(v) for v in raw]
    out_shape = tuple(int(d) for d in np.broadcast_shapes(*shapes, *extra_shapes))
    r = len(out_shape)
    acts = [v for v in raw if isinstance(v, Value)]
    if not acts:
        raise unsupported(node, "all inputs are constants (should have been folded)")
    full = [v for v in acts if v.rank == r]
    ref = next((v for v in full if v.perm != identity(r)), full[0] if full else None)
    perm = ref.perm if ref is not None else identity(r)
    dtype = acts[0].tensor.dtype.as_numpy_dtype
    ops = []
    for v in raw:
        if isinstance(v, Value):
            ops.append(ctx.to_perm(expand_rank(ctx, v, r), perm))
        else:
            arr = np.asarray(v).astype(dtype)
            ops.append(arr if arr.size == 1 and arr.ndim == 0 else ctx.const_in_layout(arr, r, perm))
    return ops, perm, out_shape


def _binary(fn):
    def lower(ctx, node, attrs):
        (a, b), perm, shape = operands(ctx, node, node.input[:2])
        return [Value(fn(a, b), perm, shape)]
    return lower


lowering("Add")(_binary(lambda a, b: tf.math.add(a, b)))
lowering("Sub")(_binary(lambda a, b: tf.math.subtract(a, b)))
lowering("Mul")(_binary(lambda a, b: tf.math.multiply(a, b)))
lowering("Div")(_binary(lambda a, b: tf.math.divide(a, b)))


def _variadic(fn):
    def lower(ctx, node, attrs):
        ops, perm, shape = operands(ctx, node, [n for n in node.input if n])
        y = ops[0] if isinstance(ops[0], tf.Tensor) else tf.constant(ops[0])
        for o in ops[1:]:
            y = fn(y, o)
        if len(ops) == 1:
            y = tf.identity(y)
        return [Value(y, perm, shape)]
    return lower


lowering("Max")(_variadic(tf.math.maximum))
lowering("Min")(_variadic(tf.math.minimum))
lowering("Sum")(_variadic(tf.math.add))


def _unary(fn):
    def lower(ctx, node, attrs):
        x = ctx.act(node, 0)
        return [Value(fn(x.tensor, attrs), x.perm, x.shape)]
    return lower


lowering("Relu")(_unary(lambda x, a: tf.nn.relu(x)))
lowering("Sigmoid")(_unary(lambda x, a: tf.math.sigmoid(x)))
lowering("Tanh")(_unary(lambda x, a: tf.math.tanh(x)))
lowering("Neg")(_unary(lambda x, a: tf.math.negative(x)))
lowering("Abs")(_unary(lambda x, a: tf.math.abs(x)))
lowering("Exp")(_unary(lambda x, a: tf.math.exp(x)))
lowering("Sqrt")(_unary(lambda x, a: tf.math.sqrt(x)))
lowering("Identity")(_unary(lambda x, a: tf.identity(x)))
lowering("LeakyRelu")(_unary(lambda x, a: tf.nn.leaky_relu(x, alpha=float(a.get("alpha", 0.01)))))
lowering("Elu")(_unary(lambda x, a: tf.nn.elu(x) if float(a.get("alpha", 1.0)) == 1.0
                       else tf.where(x > 0, x, _F(a.get("alpha", 1.0)) * (tf.math.exp(x) - 1.0))))
@lowering("HardSwish")
def hard_swish(ctx, node, attrs):
    """x * relu6(x + 3) / 6. TensorFlow's converter fuses that form into one HARD_SWISH op, which XNNPACK runs in
    fp32 but not in INT8 (ai-edge-litert 2.3: the INT8 graph splits into two delegate partitions around every
    hard-swish, MobileNetV3-Large into 20). For INT8 the 1/6 is applied to x first, a form the fusion pattern does
    not match, giving ADD (fused RELU6) + MUL + MUL: all three run in XNNPACK's INT8 kernels."""
    x = ctx.act(node, 0)
    t = x.tensor
    if ctx.for_int8:
        y = tf.nn.relu6(t + 3.0) * (t * _F(1.0 / 6.0))
    else:
        y = t * tf.nn.relu6(t + 3.0) * _F(1.0 / 6.0)
    return [Value(y, x.perm, x.shape)]


@lowering("HardSigmoid")
def hard_sigmoid(ctx, node, attrs):
    x = ctx.act(node, 0)
    alpha, beta = float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))
    if abs(alpha - 1.0 / 6.0) < 1e-7 and beta == 0.5:
        y = tf.nn.relu6(x.tensor + 3.0) * _F(1.0 / 6.0)
    else:
        y = tf.math.minimum(tf.nn.relu(x.tensor * _F(alpha) + _F(beta)), _F(1.0))
    return [Value(y, x.perm, x.shape)]


@lowering("Clip")
def clip(ctx, node, attrs):
    x = ctx.act(node, 0)
    if "min" in attrs or "max" in attrs:  # opset < 11
        lo, hi = attrs.get("min"), attrs.get("max")
    else:
        lo, hi = ctx.const(node, 1), ctx.const(node, 2)
    lo = None if lo is None else float(np.asarray(lo))
    hi = None if hi is None else float(np.asarray(hi))
    t = x.tensor
    if lo == 0.0 and hi == 6.0:
        y = tf.nn.relu6(t)
    elif lo == 0.0 and hi is None:
        y = tf.nn.relu(t)
    else:
        y = t  # ONNX Clip = numpy.clip: max with `min` first, then min with `max` (all `max` when min > max)
        if lo is not None:
            y = tf.math.maximum(y, _F(lo))
        if hi is not None:
            y = tf.math.minimum(y, _F(hi))
        if lo is None and hi is None:
            y = tf.identity(y)
    return [Value(y, x.perm, x.shape)]


# the leaky ReLU slope the INT8 PReLU form is built on (any value in (0, 1) is exact; XNNPACK declines slope 0)
_PRELU_BASE_SLOPE = 0.5


@lowering("PRelu")
def prelu(ctx, node, attrs):
    """max(x, 0) + slope * min(x, 0). TensorFlow 2.21's converter fuses none of the usual spellings into a PRELU op,
    and the Keras one (relu(x) - a * relu(-x)) leaves a NEG that its INT8 quantizer does not quantize (a float
    DEQUANTIZE/NEG/QUANTIZE island per PReLU: 57 in ESPNetV2).

    fp32: constant slopes all <= 1 (the usual case) as MAXIMUM(x, slope * x), all >= 1 as MINIMUM(x, slope * x) (two
    ops, exact, XNNPACK runs both); otherwise relu(x) + slope * (x - relu(x)).
    INT8: XNNPACK (ai-edge-litert 2.3) runs neither INT8 MAXIMUM/MINIMUM nor a standalone INT8 RELU, but it runs
    LEAKY_RELU. One slope for every channel: LEAKY_RELU(slope). Per-channel or computed slopes:
    x + k * (L(x) - x) with L = LEAKY_RELU(b) and k = (1 - slope) / (1 - b), exact algebra (L(x) - x is 0 for
    x >= 0 and (b - 1) x below) in ops that all run in XNNPACK."""
    x = ctx.act(node, 0)
    t = x.tensor
    slope = ctx.get(node.input[1])
    b = _PRELU_BASE_SLOPE
    if isinstance(slope, Value):
        s = ctx.to_perm(expand_rank(ctx, slope, x.rank), x.perm)
        if ctx.for_int8:
            return [Value(t + (tf.nn.leaky_relu(t, alpha=b) - t) * ((1.0 - s) * _F(1.0 / (1.0 - b))), x.perm, x.shape)]
        r = tf.nn.relu(t)
        return [Value(r + s * (t - r), x.perm, x.shape)]
    s = np.asarray(slope, _F)
    a = ctx.const_in_layout(s, x.rank, x.perm)
    if a.size == 1:
        a = a.reshape(())
    if ctx.for_int8:
        if np.all(s == s.reshape(-1)[0]) and s.reshape(-1)[0] != 0.0:
            y = tf.nn.leaky_relu(t, alpha=float(s.reshape(-1)[0]))
        else:
            k = ((1.0 - a.astype(np.float64)) / (1.0 - b)).astype(_F)
            y = t + (tf.nn.leaky_relu(t, alpha=b) - t) * k
    elif np.all(s <= 1.0):
        y = tf.maximum(t, t * a)
    elif np.all(s >= 1.0):
        y = tf.minimum(t, t * a)
    else:
        r = tf.nn.relu(t)
        y = r + a * (t - r)
    return [Value(y, x.perm, x.shape)]


@lowering("Pow")
def pow_(ctx, node, attrs):
    """Exact forms for the exponents normalisation layers use: 2 -> MUL x*x, 0.5 -> SQRT, 1 -> the input, 3 -> two
    MULs, -1 -> 1/x, -0.5 -> RSQRT; any other constant or computed exponent -> POW."""
    x = ctx.act(node, 0)
    e = ctx.get(node.input[1])
    if not isinstance(e, Value) and np.size(e) == 1:
        k = float(np.asarray(e).reshape(-1)[0])
        t = x.tensor
        forms = {2.0: lambda: t * t, 0.5: lambda: tf.math.sqrt(t), 1.0: lambda: tf.identity(t),
                 3.0: lambda: t * t * t, -1.0: lambda: 1.0 / t, -0.5: lambda: tf.math.rsqrt(t)}
        if k in forms:
            return [Value(forms[k](), x.perm, x.shape)]
    (a, b), perm, shape = operands(ctx, node, node.input[:2])
    return [Value(tf.math.pow(a, b), perm, shape)]
