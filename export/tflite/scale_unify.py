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

Before grouping, the output range of an op with a fused RELU / RELU6 / RELU_N1_TO_1 is intersected with that
activation's range. TensorFlow's calibrator can record a wider one: in `relu6(x + 3) * (x / 6)` (the INT8 form of
hard-swish) the ADD+RELU6 tensor came back with the whole product's range, [-0.375, 10.6] instead of [0, 6], a 1.5x
coarser step for a tensor that can only hold [0, 6].
"""
from __future__ import annotations

import numpy as np

from .flatbuffer import FUSED_ACTIVATION_RANGE, op_names, pack, unpack

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


def clamp_fused_activation_ranges(model) -> int:
    """Intersect the recorded output range of every op with a fused activation with that activation's range (in
    place on a ModelT); returns how many tensors changed."""
    sg = model.subgraphs[0]
    changed = 0
    for op in sg.operators:
        act = FUSED_ACTIVATION_RANGE.get(getattr(op.builtinOptions, "fusedActivationFunction", 0))
        if act is None or not op.outputs:
            continue
        q = sg.tensors[op.outputs[0]].quantization
        if q is None or q.min is None or len(q.min) != 1:
            continue
        lo, hi = max(float(q.min[0]), act[0]), min(float(q.max[0]), act[1])
        if lo >= hi or (lo, hi) == (float(q.min[0]), float(q.max[0])):
            continue
        q.min = np.asarray([lo], dtype=np.float32)
        q.max = np.asarray([hi], dtype=np.float32)
        changed += 1
    return changed


def unify_same_scale_ranges(calibrated: bytes) -> tuple[bytes, int]:
    """(calibrated model with fused-activation outputs clamped to their activation's range and every same-scale
    group's tensors set to the group's union range, number of tensors whose range changed). Graph inputs and outputs
    keep their own range only if they are in no group."""
    model = unpack(calibrated)
    sg = model.subgraphs[0]
    changed = clamp_fused_activation_ranges(model)
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
