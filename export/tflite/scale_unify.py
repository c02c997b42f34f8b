"""One quantization range per same-scale group of a calibrated TFLite model, so the INT8 model needs no requantizing.

TensorFlow's INT8 quantizer gives CONCATENATION inputs and output, and a SLICE / STRIDED_SLICE / SPLIT / RESHAPE
input and its outputs, one scale and zero point. When their calibrated ranges differ it inserts a QUANTIZE
(requantize) op per mismatching tensor: ShuffleNetV2 1.0x after the channel-shuffle pass got 53 of them (every
branch output is sliced into the next units' concatenations), each a full extra pass over the tensor, which made its
INT8 model 1.6x slower than the shuffle-free lower bound on XNNPACK.

`unify_same_scale_ranges` works on the *calibrated* float model (TFLiteConverter with `_experimental_calibrate_only`,
whose tensors carry the recorded min/max): a union-find over those ops' tensors, then every tensor of a group gets the
group's union range, and TensorFlow's MLIR quantizer (`mlir_quantize`) sees no mismatch to fix. The cost is a
slightly coarser scale for the tensors whose own range was narrower than their group's.
"""
from __future__ import annotations

import numpy as np

from ._flatbuffer import op_names, pack, unpack

# ops whose INT8 kernels need the same scale on their activation input(s) and output(s)
SAME_SCALE_OPS = frozenset({"CONCATENATION", "SLICE", "STRIDED_SLICE", "SPLIT", "SPLIT_V", "RESHAPE", "SQUEEZE"})


def same_scale_groups(model) -> list[list[int]]:
    """Groups (lists of tensor indices, each >= 2) of subgraph 0 that TFLite quantizes with one scale."""
    sg = model.subgraphs[0]
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def has_range(i: int) -> bool:
        q = sg.tensors[i].quantization
        return q is not None and q.min is not None and len(q.min) == 1

    for op, name in zip(sg.operators, op_names(model)):
        if name not in SAME_SCALE_OPS:
            continue
        data_inputs = list(op.inputs) if name == "CONCATENATION" else [op.inputs[1] if name == "SPLIT" else op.inputs[0]]
        members = [i for i in data_inputs + list(op.outputs) if i >= 0 and has_range(i)]
        for m in members[1:]:
            ra, rb = find(members[0]), find(m)
            if ra != rb:
                parent[rb] = ra
    groups: dict[int, list[int]] = {}
    for i in parent:
        groups.setdefault(find(i), []).append(i)
    return [sorted(g) for g in groups.values() if len(g) > 1]


def unify_same_scale_ranges(calibrated: bytes) -> tuple[bytes, int]:
    """(calibrated model with every same-scale group's tensors set to the group's union range, number of tensors
    whose range changed). Graph inputs and outputs keep their own range only if they are in no group."""
    model = unpack(calibrated)
    sg = model.subgraphs[0]
    changed = 0
    for group in same_scale_groups(model):
        lo = min(float(sg.tensors[i].quantization.min[0]) for i in group)
        hi = max(float(sg.tensors[i].quantization.max[0]) for i in group)
        for i in group:
            q = sg.tensors[i].quantization
            if float(q.min[0]) != lo or float(q.max[0]) != hi:
                changed += 1
            q.min = np.asarray([lo], dtype=np.float32)
            q.max = np.asarray([hi], dtype=np.float32)
    if not changed:
        return calibrated, 0
    return pack(model), changed
