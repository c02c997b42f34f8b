"""A permuted channel order that reaches a linear layer through a global mean is absorbed into the linear's weights.

The mean over H, W commutes with a channel permutation, so `Gemm(Flatten(GAP(x_perm)), W)` equals the original when
W's input rows are permuted the same way: no Gather, no shuffle, no Slice/Concat to put the channels back in order.
Applied only where the original order would need the shuffle back or a Gather (`needs_reorder`). Handled heads:
GlobalAveragePool -> Flatten | Reshape to (N, C), and ReduceMean over H, W without keepdims; every consumer of the (N, C) tensor must be a Gemm (transA = 0) or a MatMul
with a constant 2-D weight, and the tensor must not be a graph output.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from .track import MAX_RUNS, channel_runs


def spatial_mean_axes(rw, node: onnx.NodeProto) -> list[int] | None:
    """The reduced axes of a ReduceMean (attribute or input), normalised to 0..3, or None when not static."""
    for a in node.attribute:
        if a.name == "axes":
            return sorted(int(i) % 4 for i in a.ints)
    if len(node.input) > 1 and node.input[1]:
        arr = rw.consts.get(node.input[1])
        return None if arr is None else sorted(int(i) % 4 for i in np.asarray(arr).reshape(-1))
    return None


def _keepdims(node: onnx.NodeProto) -> int:
    return next((int(a.i) for a in node.attribute if a.name == "keepdims"), 1)


def _linear_consumers(rw, name: str) -> list[onnx.NodeProto] | None:
    """Every consumer of `name` when all are linear layers with a constant weight reading it as input 0."""
    users = [n for n in rw.model.graph.node if name in n.input]
    if not users or name in rw.graph_outputs:
        return None
    for n in users:
        if list(n.input).index(name) != 0 or list(n.input).count(name) != 1 or n.op_type not in ("Gemm", "MatMul"):
            return None
        w = rw.consts.get(n.input[1])
        if w is None or np.ndim(w) != 2:
            return None
        if n.op_type == "Gemm" and any(a.name == "transA" and a.i for a in n.attribute):
            return None
    return users


def needs_reorder(rw, v) -> bool:
    """True when v's original order cannot be assembled from a few Slice/Concat runs (`Tracker.specific` would emit
    the shuffle back, or a Gather): only then is the head absorbed, so every graph the pass already assembled from
    slices stays exactly as it was."""
    w = v.take(np.arange(v.channels))
    return len(channel_runs(w.pairs())) > MAX_RUNS


def absorb_head(rw, node: onnx.NodeProto) -> bool:
    """Rewrite `node` (Flatten / Reshape of a pooled tensor, or ReduceMean over H, W without keepdims) on the
    physical tensor as it is, leaving its (N, C) output permuted; the linear consumers get permuted weights when
    visited (`permuted_linear`). False when the pattern does not apply."""
    out = node.output[0]
    v = rw.values.get(node.input[0])
    in_shape, out_shape = rw.shapes.get(node.input[0]), rw.shapes.get(out)
    if v is None or in_shape is None or out_shape is None or len(in_shape) != 4 or len(out_shape) != 2:
        return False
    if out_shape != (in_shape[0], in_shape[1]):
        return False
    if node.op_type == "ReduceMean":
        if spatial_mean_axes(rw, node) != [2, 3] or _keepdims(node) != 0:
            return False
    elif node.op_type in ("Flatten", "Reshape"):
        if in_shape[2] != 1 or in_shape[3] != 1:
            return False
    else:
        return False
    if _linear_consumers(rw, out) is None or not needs_reorder(rw, v):
        return False
    phys, order, _ = rw.single_source(v, node.name or node.op_type)
    new = helper.make_node(node.op_type, [phys, *node.input[1:]], [out], name=node.name, domain=node.domain)
    new.attribute.extend(node.attribute)
    rw.nodes.append(new)
    rw.head_order[out] = order
    if not np.array_equal(order, np.arange(len(order))):
        rw.perm_of[out] = order.copy()
    return True


def permuted_linear(rw, node: onnx.NodeProto) -> bool:
    """A Gemm / MatMul reading a head output left permuted by `absorb_head`: its weight's input rows permuted."""
    if node.op_type not in ("Gemm", "MatMul") or not node.input or node.input[0] not in rw.head_order:
        return False
    order = rw.head_order[node.input[0]]
    w = np.asarray(rw.consts.get(node.input[1]))
    trans_b = node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute)
    w = np.take(w, order, axis=1 if trans_b else 0)
    new = helper.make_node(node.op_type, [node.input[0], rw.const(node.input[1], w), *node.input[2:]],
                           list(node.output), name=node.name, domain=node.domain)
    new.attribute.extend(node.attribute)
    rw.nodes.append(new)
    key = f"{node.op_type} (permuted head)"
    rw.stats.rewrites[key] = rw.stats.rewrites.get(key, 0) + 1
    return True
