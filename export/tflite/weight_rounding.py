"""Adaptive weight rounding for full-integer TFLite models: every conv / depthwise conv / fully-connected layer's int8
weights rounded up or down, whichever keeps the layer's *output* closest to the float layer's on calibration inputs.

TensorFlow's quantizer rounds each weight to the nearest point of its channel's grid: the smallest weight error, not
the smallest output error. AdaRound (Nagel et al., "Up or Down? Adaptive Rounding for Post-Training Quantization",
ICML 2020) showed the output error is what counts and that choosing floor or ceil per weight recovers most of the
8-bit loss. For an output channel with float weights w, step s and the input patches x it reads, with u = w / s and
q the chosen integers, the output error is E[((s q - w)^T x)^2] = s^2 (q - u)^T H (q - u), H = E[x x^T]. AdaRound
relaxes the binary choice and optimises it by gradient descent; here the same objective is minimised by coordinate
descent from TensorFlow's nearest rounding: flip one weight to its other grid point where that lowers the objective,
sweep until no flip helps. So on the calibration inputs a layer's output error is never worse than nearest rounding.

- H is built from the float model's activations at the layer input rounded to the layer's input grid (what the INT8
  layer reads, without the error of the layers before it), on a subsample of output positions per sample, plus 1 %
  of its mean diagonal (damping: the objective must not exploit directions the samples do not cover). When bias
  correction follows, H is the covariance: the mean part of the output error is the bias correction's to remove.
- Depthwise layers get one H per channel (each channel reads its own input channel), grouped convs one per group.
- A layer is left as it is when fewer input rows than weights per channel were seen (a fully-connected layer on a
  few samples), or when its weight buffer is shared with another tensor; the report says which and why.
- Only int8 weight bytes change, in place: scales, zero points, biases and the graph stay as TensorFlow made them.

Sequential rounding (sequential_rounding) visits the layers in execution order and fits each one to the input the
INT8 model, with the layers before it already rounded, feeds it (xq, one INT8 inference per layer and sample)
against the float layer on the float input xf: the objective becomes q^T H q - 2 q^T C u with H = Cov(xq),
C = Cov(xq, xf), so a layer also absorbs the part of the upstream error that is correlated with its input, and its
bias is refitted to the mean error left (the only case where a bias changes here). docs/calibration.md has the
derivation and the measurements.

    >>> int8, rep = adaptive_rounding(int8_bytes, float_model=fp32_bytes, inputs=[x0, x1, ...])  # NHWC float32
    >>> rep.as_dict()["changed_weights"]
    >>> int8, rep = sequential_rounding(int8_bytes, float_model=fp32_bytes, inputs=[x0, x1, ...], fit_bias=True)
"""
from __future__ import annotations

import enum
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from edgeport.calibration.conv_stats import fake_quantize, tap_patches

from .flatbuffer import unpack
from .int8_layers import (Geometry, buffer_offsets, correctable_layers, feed, float_interpreter, layer_geometries,
                          unshare_biases)

DAMPING = 0.01
POSITIONS_PER_SAMPLE = 256
MAX_WEIGHTS_PER_CHANNEL = 4608  # 3x3x512: larger layers would need an H of over 170 MB
INT8_WEIGHT_RANGE = (-127, 127)  # TFLite's symmetric int8 weights
MIN_ROWS_PER_WEIGHT = 8  # fewer input rows than this per weight of a channel: the objective would fit the samples


class WeightRounding(str, enum.Enum):
    """How INT8 weights are rounded to their grid: NEAREST (TensorFlow's quantizer), ADAPTIVE (up or down per weight,
    by the layer-output error on calibration inputs: this module), SEQUENTIAL (the same, layer by layer on the
    inputs the already rounded INT8 model feeds each layer, biases refitted with the weights)."""

    NEAREST = "nearest"
    ADAPTIVE = "adaptive"
    SEQUENTIAL = "sequential"

    def __str__(self) -> str:
        return self.value


@dataclass
class RoundingReport:
    method: WeightRounding = WeightRounding.ADAPTIVE
    layers: int = 0
    rounded: int = 0
    samples: int = 0
    weights: int = 0
    changed_weights: int = 0
    seconds: float = 0.0
    skipped: dict[str, str] = field(default_factory=dict)
    per_layer: list[dict] = field(default_factory=list)
    biases_refitted: int = 0

    def as_dict(self) -> dict:
        gains = sorted(self.per_layer, key=lambda r: r["error_ratio"])[:5]
        return {"method": self.method.value, "layers": self.layers, "rounded": self.rounded,
                "samples": self.samples, "weights": self.weights, "changed_weights": self.changed_weights,
                "seconds": round(self.seconds, 2), "skipped": self.skipped, "largest_gains": gains,
                **({"biases_refitted": self.biases_refitted} if self.method is WeightRounding.SEQUENTIAL else {})}


class _Moments:
    """Running sums of x x^T and x over input rows, one (n x n) block per independent input group."""

    def __init__(self, groups: int, n: int):
        self.xx = np.zeros((groups, n, n))
        self.x = np.zeros((groups, n))
        self.rows = 0

    def add(self, rows: np.ndarray) -> None:  # rows: (P, groups, n)
        r = np.ascontiguousarray(rows.transpose(1, 0, 2), dtype=np.float32)  # (groups, P, n): batched BLAS
        self.xx += r.transpose(0, 2, 1) @ r  # one sample's rows in float32, the running sums in float64
        self.x += r.sum(axis=1, dtype=np.float64)
        self.rows += r.shape[1]

    def hessian(self, *, centred: bool) -> np.ndarray:
        h = self.xx / self.rows
        if centred:
            m = self.x / self.rows
            h = h - np.einsum("gi,gj->gij", m, m)
        n = h.shape[1]
        damp = DAMPING * np.einsum("gii->g", h) / n
        return h + damp[:, None, None] * np.eye(n)[None]


def _layout(g: Geometry, in_channels: int) -> tuple[int, int, np.ndarray] | str:
    """(input groups, weights per output channel, owner group of each output channel), or why the layer is left."""
    w = g.w_float
    if g.kind == "FULLY_CONNECTED":
        return 1, w.shape[1], np.zeros(w.shape[0], dtype=int)
    if g.kind == "DEPTHWISE_CONV_2D":  # (1, KH, KW, C * multiplier): channel c reads input channel c // multiplier
        mult = w.shape[3] // in_channels
        return in_channels, w.shape[1] * w.shape[2], np.arange(w.shape[3]) // mult
    o, kh, kw, ig = w.shape  # CONV_2D (O, KH, KW, I / groups)
    groups = in_channels // ig
    if groups * ig != in_channels or o % groups:
        return f"input channels {in_channels} do not split into groups of {ig}"
    return groups, kh * kw * ig, np.arange(o) // (o // groups)


def _rows(g: Geometry, x: np.ndarray, groups: int, seed: int) -> np.ndarray:
    """(P, groups, n) input rows of one sample in the weights' own order (KH, KW, I) per group."""
    if g.kind == "FULLY_CONNECTED":
        return x.reshape(-1, 1, x.shape[-1])
    p = tap_patches(x, kernel=g.kernel, stride=g.stride, dilation=g.dilation, same=g.same,
                    max_positions=POSITIONS_PER_SAMPLE, seed=seed)
    pn, kh, kw, c = p.shape
    if g.kind == "DEPTHWISE_CONV_2D":
        return p.reshape(pn, kh * kw, c).transpose(0, 2, 1)
    return p.reshape(pn, kh, kw, groups, c // groups).transpose(0, 3, 1, 2, 4).reshape(pn, groups, -1)


def _channels_last(g: Geometry, a: np.ndarray) -> np.ndarray:
    """Weights as (output channels, n) in the rows' order: depthwise (1, KH, KW, C) -> (C, KH * KW)."""
    if g.kind == "DEPTHWISE_CONV_2D":
        return a[0].reshape(-1, a.shape[3]).T
    return a.reshape(a.shape[0], -1)


def coordinate_descent(q: np.ndarray, u: np.ndarray, h: np.ndarray, owner: np.ndarray, *,
                       target: np.ndarray | None = None, bounds: tuple[int, int] = INT8_WEIGHT_RANGE,
                       max_sweeps: int = 8) -> np.ndarray:
    """Minimise q_o^T h[owner[o]] q_o - 2 q_o^T target_o for every row o over q_oi in {floor(u_oi), floor(u_oi) + 1}
    (within `bounds`), starting from `q` (integers, (O, n)); returns the new integers. `target` (O, n) defaults to
    h[owner[o]] u_o, which makes the objective (q_o - u_o)^T h (q_o - u_o) up to a constant. Each accepted flip lowers
    its row's objective, so the result is never worse than the start."""
    q = q.astype(np.float64).copy()
    lo = np.floor(u)
    small = h.shape[1] <= 64  # per-row H fits: (O, n, n)
    hs = h[owner] if small else None
    diag = np.einsum("gii->gi", h)[owner]
    d = q - u if target is None else q
    if small:
        grad = np.einsum("oij,oj->oi", hs, d)
    else:
        grad = np.empty_like(d)
        for k in range(h.shape[0]):
            rows = owner == k
            grad[rows] = d[rows] @ h[k]
    if target is not None:
        grad -= target
    for _ in range(max_sweeps):
        flips = 0
        for i in range(q.shape[1]):
            alt = np.clip(np.where(q[:, i] == lo[:, i], lo[:, i] + 1, lo[:, i]), *bounds)
            step = alt - q[:, i]
            gain = 2 * step * grad[:, i] + step * step * diag[:, i]
            take = np.nonzero((gain < -1e-12) & (step != 0))[0]
            if take.size == 0:
                continue
            flips += take.size
            q[take, i] += step[take]
            if small:
                grad[take] += step[take, None] * hs[take, i, :]
            else:
                grad[take] += step[take, None] * h[owner[take], i, :]
        if flips == 0:
            break
    return q


def _objective(q: np.ndarray, u: np.ndarray, h: np.ndarray, owner: np.ndarray,
               target: np.ndarray | None = None, const: np.ndarray | None = None) -> float:
    """Sum over rows of (q - u)^T h (q - u), or with `target` / `const`: q^T h q - 2 q^T target + const."""
    d = q - u if target is None else q
    total = 0.0
    for k in np.unique(owner):
        rows = owner == k
        total += float(np.einsum("oi,ij,oj->", d[rows], h[k], d[rows]))
    if target is not None:
        total += float(const.sum() - 2 * np.einsum("oi,oi->", q, target))
    return total


def _collect(float_model: bytes, layouts: dict[str, tuple[Geometry, int, int, np.ndarray]],
             inputs: Sequence[np.ndarray]) -> dict[str, _Moments]:
    """One float pass over `inputs`: the input moments of every layer, its input rounded to its INT8 grid."""
    fref = float_interpreter(float_model)
    fidx = {d["name"]: d["index"] for d in fref.get_tensor_details()}
    moments = {name: _Moments(groups, n) for name, (g, groups, n, _) in layouts.items()}
    for s, x in enumerate(inputs):
        feed(fref, x)
        for name, (g, groups, _, _) in layouts.items():
            a = fake_quantize(fref.get_tensor(fidx[g.input_name]), scale=g.in_scale, zero_point=g.in_zp)
            moments[name].add(_rows(g, a, groups, seed=s))
    return moments


def _plan(model, fmodel, geoms: list[Geometry], fidx_names: set[str], rep: RoundingReport):
    """{layer name: (geometry, input groups, n, owner)} of the layers to round; the others go to rep.skipped."""
    sg, fsg = model.subgraphs[0], fmodel.subgraphs[0]
    users = Counter(t.buffer for t in sg.tensors)
    fshape = {t.name.decode(): t.shape for t in fsg.tensors}
    plan = {}
    for g in geoms:
        name = g.layer.name.split(";")[0]
        if g.input_name not in fidx_names:
            rep.skipped[name] = "its input is not a tensor of the float model"
            continue
        if users[sg.tensors[g.weight_tensor].buffer] > 1:
            rep.skipped[name] = "weight buffer shared with another tensor"
            continue
        lay = _layout(g, int(fshape[g.input_name][-1]))
        if isinstance(lay, str):
            rep.skipped[name] = lay
        elif lay[1] > MAX_WEIGHTS_PER_CHANNEL:
            rep.skipped[name] = f"{lay[1]} weights per channel (limit {MAX_WEIGHTS_PER_CHANNEL})"
        else:
            plan[g.layer.name] = (g, *lay)
    return plan


def _units(g: Geometry, owner: np.ndarray) -> np.ndarray:
    """The float weights in units of their channel's int8 step, (O, n) in the rows' order."""
    scale = np.broadcast_to(np.asarray(g.w_scale, dtype=np.float64).reshape(-1), owner.shape)
    return _channels_last(g, g.w_float) / scale[:, None]


def _round_layer(current: bytearray, where: dict[int, tuple[int, int]], sg, g: Geometry, owner: np.ndarray,
                 u: np.ndarray, h: np.ndarray, *, target: np.ndarray | None = None,
                 const: np.ndarray | None = None) -> dict:
    """Round one layer's int8 weights (in place in `current`) by coordinate descent from the stored ones; returns
    its report row (weights changed, objective after / before)."""
    wq_t = sg.tensors[g.weight_tensor]
    start, length = where[wq_t.buffer]
    stored = np.frombuffer(current, dtype=np.int8, count=length, offset=start).reshape(wq_t.shape)
    q0 = _channels_last(g, stored.astype(np.float64))
    q = coordinate_descent(q0, u, h, owner, target=target)
    before, after = _objective(q0, u, h, owner, target, const), _objective(q, u, h, owner, target, const)
    changed = int((q != q0).sum())
    if changed:
        new = q.T.reshape(stored.shape) if g.kind == "DEPTHWISE_CONV_2D" else q.reshape(stored.shape)
        current[start:start + length] = new.astype(np.int8).tobytes()
    return {"layer": g.layer.name.split(";")[0], "changed": changed, "weights": int(q.size),
            "error_ratio": round(after / before, 4) if before > 0 else 1.0}


def _count(rep: RoundingReport, row: dict) -> None:
    rep.weights += row.pop("weights")
    rep.changed_weights += row["changed"]
    rep.rounded += 1
    rep.per_layer.append(row)


def adaptive_rounding(
    int8_model: bytes,
    *,
    float_model: bytes,
    inputs: Sequence[np.ndarray],
    centred: bool = True,
) -> tuple[bytes, RoundingReport]:
    """Return (the INT8 flatbuffer with adaptively rounded weights, report). `float_model`: a float TFLite model from
    the same lowering (op output names match the INT8 model's); `inputs`: float32 arrays in the TFLite input layout
    (batch 1). `centred`: minimise the output error's variance (bias correction runs after) instead of its mean
    square."""
    t0 = time.perf_counter()
    model, fmodel = unpack(int8_model), unpack(float_model)
    sg = model.subgraphs[0]
    geoms = layer_geometries(model, fmodel, correctable_layers(model))
    rep = RoundingReport(layers=len(geoms), samples=len(inputs))
    if not geoms or not inputs:
        return int8_model, rep
    fnames = {t.name.decode() for t in fmodel.subgraphs[0].tensors}
    plan = _plan(model, fmodel, geoms, fnames, rep)
    moments = _collect(float_model, plan, inputs)
    current = bytearray(int8_model)
    where = buffer_offsets(current, [sg.tensors[g.weight_tensor].buffer for g, *_ in plan.values()])
    for name, (g, groups, n, owner) in plan.items():
        mom = moments[name]
        if mom.rows < MIN_ROWS_PER_WEIGHT * n:
            rep.skipped[name.split(";")[0]] = (f"{mom.rows} input rows for {n} weights per channel (needs "
                                               f"{MIN_ROWS_PER_WEIGHT * n})")
            continue
        _count(rep, _round_layer(current, where, sg, g, owner, _units(g, owner), mom.hessian(centred=centred)))
    rep.seconds = time.perf_counter() - t0
    return bytes(current), rep


# --- sequential rounding: each layer fitted to what the already rounded INT8 model feeds it ----------------------


class CrossMoments:
    """Running sums over input rows of a layer's INT8 input xq (the partly rounded INT8 model's, dequantized) and
    its float input xf at the same positions: xq, per output channel u . xf, and with `second`: xq xq^T, xq xf^T, xf
    per input group and (u . xf)^2 per channel. Output channels own contiguous, equal blocks of rows per group (every
    layout of _layout), so u is kept as (groups, channels per group, n)."""

    def __init__(self, groups: int, n: int, u: np.ndarray, *, second: bool = True):
        self.u = u.reshape(groups, -1, n)
        self.second = second
        self.q = np.zeros((groups, n))
        self.y = np.zeros(u.shape[0])
        self.rows = 0
        if second:
            self.qq = np.zeros((groups, n, n))
            self.qf = np.zeros((groups, n, n))
            self.f = np.zeros((groups, n))
            self.yy = np.zeros(u.shape[0])

    def add(self, quant: np.ndarray, flt: np.ndarray) -> None:  # (P, groups, n) each, the same positions
        q = np.ascontiguousarray(quant.transpose(1, 0, 2), dtype=np.float32)
        f = np.ascontiguousarray(flt.transpose(1, 0, 2), dtype=np.float32)
        y = (f @ self.u.transpose(0, 2, 1).astype(np.float32)).astype(np.float64)  # (groups, P, per group)
        self.q += q.sum(axis=1, dtype=np.float64)
        self.y += y.sum(axis=1).reshape(-1)
        self.rows += q.shape[1]
        if self.second:
            self.qq += q.transpose(0, 2, 1) @ q
            self.qf += q.transpose(0, 2, 1) @ f
            self.f += f.sum(axis=1, dtype=np.float64)
            self.yy += (y * y).sum(axis=1).reshape(-1)

    def objective(self, *, centred: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(h, target, const) of the per-channel objective q^T h q - 2 q^T target + const = E[(u . xf - q . xq)^2]
        (centred: its variance) + damping * |q - u|^2, in squared weight steps."""
        r = self.rows
        h, c, yy = self.qq / r, self.qf / r, self.yy / r
        if centred:
            mq, mf, my = self.q / r, self.f / r, self.y / r
            h = h - np.einsum("gi,gj->gij", mq, mq)
            c = c - np.einsum("gi,gj->gij", mq, mf)
            yy = yy - my * my
        n = h.shape[1]
        damp = DAMPING * np.einsum("gii->g", h) / n
        eye = damp[:, None, None] * np.eye(n)[None]
        target = np.einsum("gij,gmj->gmi", c + eye, self.u).reshape(-1, n)
        const = yy + np.repeat(damp, self.u.shape[1]) * np.einsum("gmi,gmi->gm", self.u, self.u).reshape(-1)
        return h + eye, target, const

    def mean_error(self, q: np.ndarray) -> np.ndarray:
        """Per output channel E[u . xf - q . xq] (weight steps x input units): the mean error the bias can take."""
        qm = np.einsum("gmi,gi->gm", q.reshape(self.u.shape), self.q / self.rows).reshape(-1)
        return self.y / self.rows - qm


def _float_inputs(float_model: bytes, names: set[str], inputs: Sequence[np.ndarray]) -> dict[str, list[np.ndarray]]:
    """The float model's value of each named tensor on each input (one float pass)."""
    fref = float_interpreter(float_model)
    fidx = {d["name"]: d["index"] for d in fref.get_tensor_details()}
    out: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for x in inputs:
        feed(fref, x)
        for name in names:
            out[name].append(fref.get_tensor(fidx[name]).astype(np.float32))
    return out


def _layer_moments(int8_model: bytes, sg, g: Geometry, groups: int, u: np.ndarray, inputs: Sequence[np.ndarray],
                   flt: list[np.ndarray], *, second: bool) -> CrossMoments:
    """One INT8 inference per input: the layer's INT8 input next to its float input `flt`, as cross moments."""
    it = float_interpreter(int8_model)
    x_index = sg.operators[g.layer.op_index].inputs[0]
    mom = CrossMoments(groups, u.shape[1], u, second=second)
    for s, x in enumerate(inputs):
        feed(it, x)
        xq = (it.get_tensor(x_index).astype(np.float32) - np.float32(g.in_zp)) * np.float32(g.in_scale)
        mom.add(_rows(g, xq, groups, seed=s), _rows(g, flt[s], groups, seed=s))
    return mom


def _refit_bias(current: bytearray, where: dict[int, tuple[int, int]], sg, g: Geometry, owner: np.ndarray,
                mom: CrossMoments) -> float:
    """Add the layer's mean output error (from `mom` and its weights as they now are in `current`) to its int32
    bias, in place; returns the mean |change| in steps of the layer's output."""
    wq_t, bias_t = sg.tensors[g.weight_tensor], sg.tensors[g.layer.bias_tensor]
    start, length = where[wq_t.buffer]
    stored = np.frombuffer(current, dtype=np.int8, count=length, offset=start).reshape(wq_t.shape)
    e = mom.mean_error(_channels_last(g, stored.astype(np.float64)))
    step = np.round(e / g.in_scale).astype(np.int64)  # int32 bias units: input scale x weight scale
    start, length = where[bias_t.buffer]
    bias = np.frombuffer(current, dtype="<i4", count=length // 4, offset=start).astype(np.int64)
    bias = np.clip(bias + step, np.iinfo(np.int32).min, np.iinfo(np.int32).max)
    current[start:start + length] = bias.astype("<i4").tobytes()
    out_scale = float(np.asarray(sg.tensors[g.layer.out_tensor].quantization.scale).reshape(-1)[0])
    w_scale = np.broadcast_to(np.asarray(g.w_scale, dtype=np.float64).reshape(-1), owner.shape)
    return float(np.abs(step * g.in_scale * w_scale).mean() / out_scale)


def sequential_rounding(
    int8_model: bytes,
    *,
    float_model: bytes,
    inputs: Sequence[np.ndarray],
    fit_bias: bool = True,
) -> tuple[bytes, RoundingReport]:
    """Like adaptive_rounding, but layer by layer in execution order, each layer fitted to the input the INT8 model,
    with every earlier layer already rounded (and its bias refitted), feeds it: per output channel with float
    weights w, bias b, step s, u = w / s, INT8 input xq and float input xf, minimise E[(w . xf + b - s q . xq - b')^2]
    over the integers q (floor or ceil of u) and the new bias b'. The optimal b' - b is the mean error
    E[w . xf - s q . xq], and q then minimises the variance: s^2 (q^T H q - 2 q^T C u) + const with H = Cov(xq),
    C = Cov(xq, xf). With xq = xf it is adaptive_rounding's objective; otherwise the linear term lets a layer absorb
    the part of the upstream error that is correlated with its input.

    `fit_bias=False` (no bias correction asked): biases stay as TensorFlow made them and q minimises the mean square
    E[(w . xf - s q . xq)^2] (H, C second moments). With `fit_bias`, layers too small to round (fewer input rows than
    MIN_ROWS_PER_WEIGHT per weight) still get their bias refitted when a rounded layer follows them, so that layer
    sees corrected inputs; the layers after the last rounded one are left to the bias correction that runs next.
    Cost: one INT8 inference per visited layer and input."""
    t0 = time.perf_counter()
    model, fmodel = unpack(int8_model), unpack(float_model)
    sg = model.subgraphs[0]
    geoms = layer_geometries(model, fmodel, correctable_layers(model))
    rep = RoundingReport(method=WeightRounding.SEQUENTIAL, layers=len(geoms), samples=len(inputs))
    if not geoms or not inputs:
        return int8_model, rep
    plan = _plan(model, fmodel, geoms, {t.name.decode() for t in fmodel.subgraphs[0].tensors}, rep)
    if fit_bias:
        int8_model = unshare_biases(model, int8_model, [g.layer for g, *_ in plan.values()])
    flt = _float_inputs(float_model, {g.input_name for g, *_ in plan.values()}, inputs)
    visits = []
    for name, (g, groups, n, owner) in plan.items():
        rows = len(inputs) * _rows(g, flt[g.input_name][0], groups, seed=0).shape[0]
        visits.append((g, groups, owner, rows >= MIN_ROWS_PER_WEIGHT * n))
        if not visits[-1][3]:
            rep.skipped[name.split(";")[0]] = (f"{rows} input rows for {n} weights per channel (needs "
                                               f"{MIN_ROWS_PER_WEIGHT * n})")
    last = max((k for k, v in enumerate(visits) if v[3]), default=-1)
    current = bytearray(int8_model)
    where = buffer_offsets(current, [sg.tensors[g.weight_tensor].buffer for g, *_ in visits]
                           + [sg.tensors[g.layer.bias_tensor].buffer for g, *_ in visits])
    for g, groups, owner, rounds in visits[:last + 1]:
        if not (rounds or fit_bias):
            continue
        u = _units(g, owner)
        mom = _layer_moments(bytes(current), sg, g, groups, u, inputs, flt[g.input_name], second=rounds)
        row = {"layer": g.layer.name.split(";")[0], "changed": 0}
        if rounds:
            h, target, const = mom.objective(centred=fit_bias)
            row = _round_layer(current, where, sg, g, owner, u, h, target=target, const=const)
        if fit_bias:
            row["bias_shift_steps"] = round(_refit_bias(current, where, sg, g, owner, mom), 4)
            rep.biases_refitted += 1
        if rounds:
            _count(rep, row)
    rep.seconds = time.perf_counter() - t0
    return bytes(current), rep
