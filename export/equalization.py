"""Cross-layer equalization (Nagel et al., "Data-Free Quantization Through Weight Equalization and Bias Correction",
ICCV 2019, section 4.1) of an ONNX model, before calibration.

For two convolutions in a row, conv1 -> [ReLU] -> conv2, scaling output channel i of conv1 (its weights and bias)
by 1/s_i and input channel i of conv2 by s_i leaves the network's function unchanged, because ReLU(x / s) =
ReLU(x) / s for s > 0. With s_i = sqrt(r1_i / r2_i) (r1_i: conv1's largest |weight| of output channel i, r2_i:
conv2's largest |weight| reading input channel i) both ranges become sqrt(r1_i r2_i): per-tensor activation
quantization of the tensor between them and per-channel weight quantization of conv2 lose less to channels of very
different size (a depthwise conv's channels range over orders of magnitude).

Which pairs: conv1 (any group count, depthwise included) whose output feeds only conv2, or only one Relu that feeds
only conv2; every tensor involved an initializer used by that node alone. Pairs across ReLU6 / Clip / HardSwish /
HardSigmoid / BatchNormalization are **skipped**: a clip at a fixed bound is not scale-equivariant (ReLU6(x / s) !=
ReLU6(x) / s once x > 6 s), and moving the bound per channel has no TFLite form. The pass is exact in real arithmetic;
in float32 it changes outputs by rounding only (tests/test_int8_techniques.py checks ~1e-5 relative).

    >>> model, stats = equalize_model(onnx.load("m.onnx"))
    >>> stats.pairs, stats.skipped_clipped
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

_CLIPPING = {"Clip", "Relu6", "HardSwish", "HardSigmoid", "BatchNormalization"}


@dataclass
class EqualizationStats:
    """What the pass did: pairs equalized, pairs skipped because a clipping op sits between them, iterations."""

    pairs: int = 0
    skipped_clipped: int = 0
    iterations: int = 0

    def as_dict(self) -> dict:
        return {"pairs": self.pairs, "skipped_clipped": self.skipped_clipped, "iterations": self.iterations}


def pair_scales(w1: np.ndarray, w2: np.ndarray, group2: int) -> np.ndarray:
    """s (one per conv1 output channel) that equalizes conv1 (weights (C, ...)) and conv2 (weights
    (O, C / group2, ...)): r1 / s = r2 * s."""
    c = w1.shape[0]
    r1 = np.abs(w1.reshape(c, -1)).max(axis=1)
    r2 = _input_channel_ranges(w2, group2, c)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.sqrt(r1 / r2)
    return np.where(np.isfinite(s) & (s > 0), s, 1.0)


def _input_channel_ranges(w2: np.ndarray, group2: int, c: int) -> np.ndarray:
    o, cg = w2.shape[0], w2.shape[1]
    per = o // group2
    out = np.empty(c)
    for i in range(c):
        g, local = divmod(i, cg)
        out[i] = np.abs(w2[g * per:(g + 1) * per, local]).max()
    return out


def _scale_conv2(w2: np.ndarray, s: np.ndarray, group2: int) -> np.ndarray:
    o, cg = w2.shape[0], w2.shape[1]
    per = o // group2
    w2 = w2.copy()
    for i, si in enumerate(s):
        g, local = divmod(i, cg)
        w2[g * per:(g + 1) * per, local] *= si
    return w2


def _group(node) -> int:
    return next((a.i for a in node.attribute if a.name == "group"), 1)


def _pairs(graph, inits: dict, uses: dict, stats: EqualizationStats):
    """(conv1, conv2) node pairs that can be equalized exactly."""
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in graph.output}

    def only(name):
        c = consumers.get(name, [])
        return c[0] if len(c) == 1 and name not in outputs else None

    for n in graph.node:
        if n.op_type != "Conv" or len(n.input) < 2 or n.input[1] not in inits:
            continue
        feed = n.output[0]
        nxt = only(feed)
        if nxt is not None and nxt.op_type == "Relu":
            feed = nxt.output[0]
            nxt = only(feed)
        elif nxt is not None and nxt.op_type in _CLIPPING:
            after = only(nxt.output[0])
            stats.skipped_clipped += after is not None and after.op_type == "Conv"
            continue
        if nxt is None or nxt.op_type != "Conv" or nxt.input[0] != feed or nxt.input[1] not in inits:
            continue
        tensors = [n.input[1], nxt.input[1]] + ([n.input[2]] if len(n.input) > 2 and n.input[2] else [])
        if any(t not in inits or uses[t] > 1 for t in tensors):
            continue
        yield n, nxt


def equalize_model(model: onnx.ModelProto, *, iterations: int = 4) -> tuple[onnx.ModelProto, EqualizationStats]:
    """A copy of `model` with every eligible conv pair equalized (`iterations` sweeps: a conv in two pairs moves
    towards both). Stats say how many pairs were equalized and how many were skipped at a clipping activation."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    uses: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    stats = EqualizationStats()
    first = EqualizationStats()
    pairs = list(_pairs(g, inits, uses, first))
    stats.pairs, stats.skipped_clipped = len(pairs), first.skipped_clipped
    arrays = {name: numpy_helper.to_array(t).astype(np.float64) for name, t in inits.items()
              if any(name in (a.input[1], *a.input[2:3], b.input[1]) for a, b in pairs)}
    for _ in range(iterations if pairs else 0):
        stats.iterations += 1
        for a, b in pairs:
            w1, w2 = arrays[a.input[1]], arrays[b.input[1]]
            s = pair_scales(w1, w2, _group(b))
            arrays[a.input[1]] = w1 / s.reshape(-1, *([1] * (w1.ndim - 1)))
            if len(a.input) > 2 and a.input[2]:
                arrays[a.input[2]] = arrays[a.input[2]] / s
            arrays[b.input[1]] = _scale_conv2(w2, s, _group(b))
    for name, arr in arrays.items():
        inits[name].CopyFrom(numpy_helper.from_array(arr.astype(np.float32), name))
    return model, stats
