"""Convolutions and matrix products: Conv (plain, grouped, depthwise, dilated), ConvTranspose, BatchNormalization,
Gemm, MatMul. 2-D convolutions only (4-D NCHW tensors), lowered on NHWC tensors."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from .lowerings import NHWC, Value, identity, lowering, unsupported
from .padding import choose_padding, onnx_pads, out_sizes

_F = np.float32


def pad_for_conv(x: tf.Tensor, begin, end) -> tf.Tensor:
    """Zero spatial padding of an NHWC tensor that a convolution reads next (PyTorch's symmetric pads that SAME
    cannot express). Kept as a plain NHWC PAD: XNNPACK fuses a PAD into the following (depthwise) convolution."""
    if not any(begin) and not any(end):
        return x
    return tf.pad(x, [[0, 0], [begin[0], end[0]], [begin[1], end[1]], [0, 0]])


def _check_2d(node, shape):
    if len(shape) != 4:
        raise unsupported(node, f"only 2-D (4-D NCHW) inputs are lowered, got rank {len(shape)}")


@lowering("Conv")
def conv(ctx, node, attrs):
    xv = ctx.act(node, 0)
    _check_2d(node, xv.shape)
    w = ctx.const(node, 1).astype(_F)
    b = ctx.const(node, 2)
    n, cin, h, wd = xv.shape
    cout, cin_g, kh, kw = w.shape
    group = int(attrs.get("group", 1))
    strides = list(attrs.get("strides", [1, 1]))
    dil = list(attrs.get("dilations", [1, 1]))
    begin, end = onnx_pads(attrs, (h, wd), (kh, kw), strides, dil)
    mode = choose_padding((h, wd), begin, end, (kh, kw), strides, dil)
    x = ctx.to_perm(xv, NHWC)
    if mode == "EXPLICIT":
        x = pad_for_conv(x, begin, end)
        mode = "VALID"
    s4 = [1, strides[0], strides[1], 1]
    d4 = [1, dil[0], dil[1], 1]
    if group == 1:
        y = tf.nn.conv2d(x, np.ascontiguousarray(w.transpose(2, 3, 1, 0)), s4, mode, dilations=d4)
    elif group == cin and cin_g == 1:
        mult = cout // cin
        filt = w.reshape(cin, mult, kh, kw).transpose(2, 3, 0, 1)
        y = tf.raw_ops.DepthwiseConv2dNative(input=x, filter=np.ascontiguousarray(filt), strides=s4, padding=mode,
                                            dilations=d4)
    else:
        y = tf.nn.conv2d(x, np.ascontiguousarray(w.transpose(2, 3, 1, 0)), s4, mode, dilations=d4)
    if b is not None:
        y = tf.nn.bias_add(y, b.astype(_F))
    oh, ow = out_sizes((h, wd), begin, end, (kh, kw), strides, dil)
    return [Value(y, NHWC, (n, cout, oh, ow))]


@lowering("ConvTranspose")
def conv_transpose(ctx, node, attrs):
    xv = ctx.act(node, 0)
    _check_2d(node, xv.shape)
    w = ctx.const(node, 1).astype(_F)
    b = ctx.const(node, 2)
    n, cin, h, wd = xv.shape
    _, cout_g, kh, kw = w.shape
    group = int(attrs.get("group", 1))
    if group != 1:
        raise unsupported(node, "grouped ConvTranspose is not lowered (TFLite TRANSPOSE_CONV has no groups)")
    strides = list(attrs.get("strides", [1, 1]))
    dil = list(attrs.get("dilations", [1, 1]))
    if dil != [1, 1]:
        raise unsupported(node, "dilated ConvTranspose is not lowered (TFLite TRANSPOSE_CONV has no dilation)")
    outpad = list(attrs.get("output_padding", [0, 0]))
    full = [strides[0] * (h - 1) + kh, strides[1] * (wd - 1) + kw]
    auto = attrs.get("auto_pad", "NOTSET")
    if "output_shape" in attrs:
        target = list(attrs["output_shape"])[-2:]
        total = [strides[i] * ((h, wd)[i] - 1) + outpad[i] + (kh, kw)[i] - target[i] for i in range(2)]
        if auto == "SAME_UPPER":
            begin = [t // 2 for t in total]
        else:
            begin = [t - t // 2 for t in total]
    elif auto in ("SAME_UPPER", "SAME_LOWER"):
        target = [(h, wd)[i] * strides[i] for i in range(2)]
        total = [strides[i] * ((h, wd)[i] - 1) + outpad[i] + (kh, kw)[i] - target[i] for i in range(2)]
        begin = [t // 2 for t in total] if auto == "SAME_UPPER" else [t - t // 2 for t in total]
    else:
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        begin = pads[:2]
        target = [full[i] + outpad[i] - pads[i] - pads[i + 2] for i in range(2)]
    x = ctx.to_perm(xv, NHWC)
    filt = np.ascontiguousarray(w.transpose(2, 3, 1, 0))  # (kh, kw, cout, cin)
    cout = cout_g
    y = tf.nn.conv2d_transpose(x, filt, [n, full[0], full[1], cout], [1, strides[0], strides[1], 1], "VALID")
    # crop the begin pads, extend with zeros where output_padding reaches past the full output
    extra = [max(begin[i] + target[i] - full[i], 0) for i in range(2)]
    if any(extra):
        y = tf.pad(y, [[0, 0], [0, extra[0]], [0, extra[1]], [0, 0]])
    if any(begin) or target != full:
        y = y[:, begin[0]:begin[0] + target[0], begin[1]:begin[1] + target[1], :]
    if b is not None:
        y = tf.nn.bias_add(y, b.astype(_F))
    return [Value(y, NHWC, (n, cout, target[0], target[1]))]


@lowering("BatchNormalization")
def batch_norm(ctx, node, attrs):
    xv = ctx.act(node, 0)
    scale, bias, mean, var = (ctx.const(node, i).astype(np.float64) for i in range(1, 5))
    eps = float(attrs.get("epsilon", 1e-5))
    if int(attrs.get("training_mode", 0)):
        raise unsupported(node, "training_mode=1 is not an inference op")
    mul = scale / np.sqrt(var + eps)
    add = bias - mean * mul
    shape = [1] * xv.rank
    if xv.rank > 1:
        shape[1] = -1
    mul = ctx.const_in_layout(mul.reshape(shape).astype(_F), xv.rank, xv.perm)
    add = ctx.const_in_layout(add.reshape(shape).astype(_F), xv.rank, xv.perm)
    return [Value(xv.tensor * mul + add, xv.perm, xv.shape)]


@lowering("Gemm")
def gemm(ctx, node, attrs):
    alpha = float(attrs.get("alpha", 1.0))
    beta = float(attrs.get("beta", 1.0))
    ta, tb = int(attrs.get("transA", 0)), int(attrs.get("transB", 0))
    av = ctx.act(node, 0)
    a = ctx.to_perm(av, (1, 0) if ta else (0, 1))
    m, k = (av.shape[1], av.shape[0]) if ta else av.shape
    bsrc = ctx.get(node.input[1])
    if isinstance(bsrc, Value):
        bt = ctx.to_perm(bsrc, (1, 0) if tb else (0, 1))
        y = tf.linalg.matmul(a, bt)
        nout = bsrc.shape[0] if tb else bsrc.shape[1]
    else:
        bm = np.asarray(bsrc, _F)
        bm = bm.T if tb else bm
        y = tf.linalg.matmul(a, np.ascontiguousarray(bm * alpha if alpha != 1.0 else bm))
        alpha = 1.0
        nout = bm.shape[1]
    if alpha != 1.0:
        y = y * _F(alpha)
    c = ctx.get(node.input[2]) if len(node.input) > 2 else None
    if c is not None and beta != 0.0:
        if isinstance(c, Value):
            y = y + ctx.to_perm(c, identity(c.rank)) * _F(beta)
        else:
            c = np.asarray(c, _F) * _F(beta)
            if c.ndim <= 1 or c.shape[0] == 1:
                y = tf.nn.bias_add(y, np.broadcast_to(c.reshape(-1), (nout,)).copy())
            else:
                y = y + np.broadcast_to(c, (m, nout)).copy()
    return [Value(y, (0, 1), (m, nout))]


def _matmul_operand(ctx, v: Value) -> tuple[tf.Tensor, bool]:
    """v's tensor for a (batch) matmul and whether it is the transpose of the ONNX matrix: a layout that only swaps
    the two matrix axes (attention's K^T, a transposed token tensor) is read with adj_x / adj_y, no TRANSPOSE."""
    r = v.rank
    if r >= 2 and v.perm == tuple(range(r - 2)) + (r - 1, r - 2):
        return v.tensor, True
    return ctx.to_perm(v, identity(r)), False


@lowering("MatMul")
def matmul(ctx, node, attrs):
    """FULLY_CONNECTED / BATCH_MATMUL; operands stay in their tracked layout when that is a matrix transpose."""
    av = ctx.act(node, 0)
    bsrc = ctx.get(node.input[1])
    a, ta = _matmul_operand(ctx, av)
    if isinstance(bsrc, Value):
        b, tb = _matmul_operand(ctx, bsrc)
        bshape = bsrc.shape
    else:
        b, tb = np.asarray(bsrc, _F), False
        bshape = b.shape
    a_shape, bshape = tuple(av.shape), tuple(bshape)
    if len(a_shape) == 1:  # numpy: a vector is a (1, K) matrix whose row axis is dropped from the result
        a, a_shape = tf.reshape(a, (1, a_shape[0])), (1, a_shape[0])
    if len(bshape) == 1:  # ... and a (K, 1) matrix as second operand
        b = tf.reshape(b, (bshape[0], 1)) if isinstance(b, tf.Tensor) else b.reshape(bshape[0], 1)
        bshape = (bshape[0], 1)
    y = tf.linalg.matmul(a, b, transpose_a=ta, transpose_b=tb)
    batch = np.broadcast_shapes(a_shape[:-2], tuple(bshape[:-2]))
    shape = tuple(batch) + (a_shape[-2], bshape[-1])
    drop = [len(shape) - 2] if av.rank == 1 else []
    drop += [len(shape) - 1] if len(bsrc.shape if isinstance(bsrc, Value) else np.shape(bsrc)) == 1 else []
    if drop:
        shape = tuple(d for i, d in enumerate(shape) if i not in drop)
        y = tf.reshape(y, shape)
    return [Value(y, identity(len(shape)), shape)]
