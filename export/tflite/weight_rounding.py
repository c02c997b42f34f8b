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

    >>> int8, rep = adaptive_rounding(int8_bytes, float_model=fp32_bytes, inputs=[x0, x1, ...])  # NHWC float32
    >>> rep.as_dict()["changed_weights"]
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
from .int8_layers import Geometry, buffer_offsets, correctable_layers, feed, float_interpreter, layer_geometries

DAMPING = 0.01
POSITIONS_PER_SAMPLE = 256
MAX_WEIGHTS_PER_CHANNEL = 4608  # 3x3x512: larger layers would need an H of over 170 MB
INT8_WEIGHT_RANGE = (-127, 127)  # TFLite's symmetric int8 weights
MIN_ROWS_PER_WEIGHT = 8  # fewer input rows than this per weight of a channel: the objective would fit the samples


class WeightRounding(str, enum.Enum):
    """How INT8 weights are rounded to their grid: NEAREST (TensorFlow's quantizer), ADAPTIVE (up or down per weight,
    by the layer-output error on calibration inputs: this module)."""

    NEAREST = "nearest"
    ADAPTIVE = "adaptive"

    def __str__(self) -> str:
        return self.value


@dataclass
class RoundingReport:
    layers: int = 0
    rounded: int = 0
    samples: int = 0
    weights: int = 0
    changed_weights: int = 0
    seconds: float = 0.0
    skipped: dict[str, str] = field(default_factory=dict)
    per_layer: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        gains = sorted(self.per_layer, key=lambda r: r["error_ratio"])[:5]
        return {"method": WeightRounding.ADAPTIVE.value, "layers": self.layers, "rounded": self.rounded,
                "samples": self.samples, "weights": self.weights, "changed_weights": self.changed_weights,
                "seconds": round(self.seconds, 2), "skipped": self.skipped, "largest_gains": gains}


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
                       bounds: tuple[int, int] = INT8_WEIGHT_RANGE, max_sweeps: int = 8) -> np.ndarray:
    """Minimise (q_o - u_o)^T h[owner[o]] (q_o - u_o) for every row o over q_oi in {floor(u_oi), floor(u_oi) + 1}
    (within `bounds`), starting from `q` (integers, (O, n)); returns the new integers. Each accepted flip lowers its
    row's objective, so the result is never worse than the start."""
    q = q.astype(np.float64).copy()
    lo = np.floor(u)
    d = q - u
    small = h.shape[1] <= 64  # per-row H fits: (O, n, n)
    hs = h[owner] if small else None
    diag = np.einsum("gii->gi", h)[owner]
    if small:
        grad = np.einsum("oij,oj->oi", hs, d)
    else:
        grad = np.empty_like(d)
        for k in range(h.shape[0]):
            rows = owner == k
            grad[rows] = d[rows] @ h[k]
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


def _objective(q: np.ndarray, u: np.ndarray, h: np.ndarray, owner: np.ndarray) -> float:
    d = q - u
    total = 0.0
    for k in np.unique(owner):
        rows = owner == k
        total += float(np.einsum("oi,ij,oj->", d[rows], h[k], d[rows]))
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
        short = name.split(";")[0]
        mom = moments[name]
        if mom.rows < MIN_ROWS_PER_WEIGHT * n:
            rep.skipped[short] = (f"{mom.rows} input rows for {n} weights per channel (needs "
                                  f"{MIN_ROWS_PER_WEIGHT * n})")
            continue
        h = mom.hessian(centred=centred)
        wq_t = sg.tensors[g.weight_tensor]
        start, length = where[wq_t.buffer]
        stored = np.frombuffer(current, dtype=np.int8, count=length, offset=start).reshape(wq_t.shape)
        scale = np.broadcast_to(np.asarray(g.w_scale, dtype=np.float64).reshape(-1), owner.shape)
        u = _channels_last(g, g.w_float) / scale[:, None]
        q0 = _channels_last(g, stored.astype(np.float64))
        q = coordinate_descent(q0, u, h, owner)
        before, after = _objective(q0, u, h, owner), _objective(q, u, h, owner)
        changed = int((q != q0).sum())
        rep.weights += q.size
        rep.changed_weights += changed
        rep.rounded += 1
        rep.per_layer.append({"layer": short, "changed": changed,
                              "error_ratio": round(after / before, 4) if before > 0 else 1.0})
        if changed:
            new = q.T.reshape(stored.shape) if g.kind == "DEPTHWISE_CONV_2D" else q.reshape(stored.shape)
            current[start:start + length] = new.astype(np.int8).tobytes()
    rep.seconds = time.perf_counter() - t0
    return bytes(current), rep
