"""INT8 scale groups: sets of ONNX tensors that TFLite quantizes with one shared scale and zero point.

TFLite's quantizer requires CONCATENATION inputs and output, and SLICE / STRIDED_SLICE / SPLIT(_V) inputs and
outputs, to carry the same quantization parameters. When the calibrated ranges of such tensors differ it inserts a
requantizing QUANTIZE op per mismatching input (measured: 53 of them in ShuffleNetV2 1.0x after the channel-shuffle
pass, docs/channel_shuffle.md). A converter that gives every tensor of a group the union of the group's calibrated
ranges (e.g. a FakeQuant with that range on each tensor before TFLiteConverter runs) gets none.

I/O contract: `shared_scale_groups(model=...)` takes an ONNX model and returns a list of groups (each a sorted list of
tensor names, at least 2 names), every tensor in at most one group. `union_ranges(groups=..., ranges=...)` takes
per-tensor (min, max) and returns the per-tensor range to use: the group's union for grouped tensors, unchanged
otherwise.
"""
from __future__ import annotations

import onnx

__all__ = ["shared_scale_groups", "union_ranges", "SAME_SCALE_OPS"]

# ONNX ops whose TFLite lowering requires the same scale on (activation) inputs and outputs
SAME_SCALE_OPS = frozenset({"Concat", "Slice", "Split"})


def shared_scale_groups(*, model: onnx.ModelProto) -> list[list[str]]:
    """Union-find over Concat (all inputs + output) and Slice/Split (data input + outputs)."""
    parent: dict[str, str] = {}
    consts = {i.name for i in model.graph.initializer}
    consts |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[rb] = ra

    for n in model.graph.node:
        if n.op_type == "Concat":
            tensors = [i for i in n.input if i and i not in consts] + list(n.output)
        elif n.op_type in ("Slice", "Split"):
            tensors = [n.input[0]] + [o for o in n.output if o]
        else:
            continue
        for t in tensors[1:]:
            union(tensors[0], t)
    groups: dict[str, list[str]] = {}
    for t in parent:
        groups.setdefault(find(t), []).append(t)
    return sorted((sorted(g) for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def union_ranges(
    *, groups: list[list[str]], ranges: dict[str, tuple[float, float]]
) -> dict[str, tuple[float, float]]:
    """Per-tensor (min, max): grouped tensors get the union over their group's tensors that have a range."""
    out = dict(ranges)
    for g in groups:
        known = [ranges[t] for t in g if t in ranges]
        if not known:
            continue
        lo, hi = min(r[0] for r in known), max(r[1] for r in known)
        for t in g:
            out[t] = (lo, hi)
    return out
