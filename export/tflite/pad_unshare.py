"""One PAD per convolution in the INT8 model, so XNNPACK can fuse every explicit pad into the convolution it feeds.

The lowering writes PyTorch's pads that SAME cannot express as an explicit PAD before the (depthwise) convolution
(ops_conv.pad_for_conv), and XNNPACK folds such a PAD into the convolution's own padding, but only when the PAD's
output has that one consumer. TensorFlow's converter merges identical PADs of one tensor into one op: in the INT8
model of ESPNetV2 the image's PAD feeds both the first convolution and the input-reinforcement average pool
(written as a depthwise convolution for INT8, ops_pool.average_pool), so XNNPACK ran it as a separate pad operator,
one 3-byte pixel at a time: 14 % of ESPNetV2-s0.5's INT8 time on an AMD EPYC (AVX-512 VNNI), none of its fp32 time.
`unshare_conv_pads` gives each convolution consumer its own copy of the PAD (same input, paddings and quantization),
which XNNPACK then fuses: the copies cost nothing at run time.
"""
from __future__ import annotations

import copy

from .flatbuffer import op_names, pack, unpack

CONV_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D"})


def unshare_conv_pads(model_bytes: bytes) -> tuple[bytes, int]:
    """(model where every PAD that feeds more than one op, all of them convolutions, is split into one PAD per
    consumer, how many PAD ops were added). A PAD with another kind of consumer or a graph output is left alone."""
    model = unpack(model_bytes)
    sg = model.subgraphs[0]
    names = op_names(model)
    consumers: dict[int, list[int]] = {}
    for i, op in enumerate(sg.operators):
        for t in op.inputs:
            if t >= 0:
                consumers.setdefault(t, []).append(i)
    outputs = set(sg.outputs)
    inserts: list[tuple[int, object]] = []  # (insert before op index, new PAD op)
    for i, (op, name) in enumerate(zip(sg.operators, names)):
        out = op.outputs[0] if name == "PAD" and len(op.outputs) == 1 else None
        users = consumers.get(out, []) if out is not None else []
        if len(users) < 2 or out in outputs or any(names[u] not in CONV_OPS for u in users):
            continue
        for k, u in enumerate(users[1:], start=1):
            tensor = copy.deepcopy(sg.tensors[out])
            tensor.name = (tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name) + f"_{k}"
            sg.tensors.append(tensor)
            new_out = len(sg.tensors) - 1
            pad = copy.deepcopy(op)
            pad.outputs = [new_out]
            consumer = sg.operators[u]
            consumer.inputs = [new_out if t == out else t for t in consumer.inputs]
            inserts.append((i + 1, pad))
    if not inserts:
        return model_bytes, 0
    for at, pad in sorted(inserts, key=lambda p: p[0], reverse=True):
        sg.operators.insert(at, pad)
    return pack(model), len(inserts)
