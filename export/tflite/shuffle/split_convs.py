"""Split a conv whose output is read only in channel slices into one conv per slice (PieceForm.CONVS)."""
from __future__ import annotations

import collections
import re

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..graph import unique_name
from .match import Consts, attr

# the names the shuffle pass gives the tensors it creates: `<base>__sp<k>`
PASS_NAME = re.compile(r"__sp\d+$")
_ELEMENTWISE = {"Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu", "Elu", "Tanh", "Selu"}


def _activation_chain(conv: onnx.NodeProto, users, consts: Consts, outputs: set[str]):
    """The elementwise activations (constant extra inputs) that follow `conv` one after the other, each its
    predecessor's only reader; returns (chain, the last tensor)."""
    chain, t = [], conv.output[0]
    while len(users[t]) == 1 and users[t][0].op_type in _ELEMENTWISE and t not in outputs \
            and all(consts.get(i) is not None for i in users[t][0].input[1:] if i):
        chain.append(users[t][0])
        t = chain[-1].output[0]
    return chain, t


def _slice_ranges(slices: list[onnx.NodeProto], consts: Consts, w: np.ndarray) -> list[tuple[int, int]] | None:
    """[start, stop) output channels of each unit-step channel Slice, or None when one is not such a slice."""
    ranges = []
    for sl in slices:
        args = [consts.get(i) if i else None for i in sl.input[1:]]
        if len(args) < 3 or any(a is None for a in args[:3]) or len(args[0]) != 1 \
                or int(args[2][0]) not in (1, 1 - w.ndim):
            return None
        if len(args) > 3 and args[3] is not None and int(args[3][0]) != 1:
            return None
        c = w.shape[0]
        a, e = int(args[0][0]), int(args[1][0])
        a = max(0, min(c, a + c if a < 0 else a))
        e = max(0, min(c, e + c if e < 0 else e))
        ranges.append((a, e))
    return ranges


def _piece_nodes(conv, chain, slices, ranges, w, b, t, *, fresh, new_inits, pieces) -> list[onnx.NodeProto]:
    """One conv (weight and bias rows [a, e)) and a copy of the activation chain per slice; the last node of each
    piece writes the slice's output name. Records each piece in `pieces` and its initializers in `new_inits`."""
    nodes = []
    for sl, (a, e) in zip(slices, ranges):
        wn = fresh(f"{conv.input[1]}__rows{a}_{e}")
        new_inits.append(numpy_helper.from_array(np.ascontiguousarray(w[a:e]), wn))
        ins = [conv.input[0], wn]
        if b is not None:
            bn = fresh(f"{conv.input[2]}__rows{a}_{e}")
            new_inits.append(numpy_helper.from_array(np.ascontiguousarray(b[a:e]), bn))
            ins.append(bn)
        produced = [conv.output[0]] + [n.output[0] for n in chain]
        names = [fresh(f"{x}__rows{a}_{e}") for x in produced[:-1]] + [sl.output[0]]
        pieces[sl.output[0]] = (t, a, e)
        piece = helper.make_node("Conv", ins, [names[0]], name=fresh(f"{conv.name or 'conv'}__rows{a}_{e}"))
        piece.attribute.extend(conv.attribute)
        nodes.append(piece)
        for k, n in enumerate(chain):
            act = helper.make_node(n.op_type, [names[k]] + list(n.input[1:]), [names[k + 1]],
                                   name=fresh(f"{n.name or n.op_type}__rows{a}_{e}"))
            act.attribute.extend(n.attribute)
            nodes.append(act)
    return nodes


def _rebuild(model: onnx.ModelProto, replace: dict[int, list], drop: set[int], new_inits: list) -> onnx.ModelProto:
    g = model.graph
    new_nodes = []
    for n in g.node:
        if id(n) in replace:
            new_nodes += replace[id(n)]
        elif id(n) not in drop:
            new_nodes.append(n)
    used = {i for n in new_nodes for i in n.input}
    inits = [i for i in list(g.initializer) + new_inits if i.name in used]
    graph = helper.make_graph(new_nodes, g.name, list(g.input), list(g.output), inits)
    out = helper.make_model(graph, opset_imports=list(model.opset_import), producer_name=model.producer_name)
    out.ir_version = model.ir_version
    return out


def split_sliced_convs(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int, dict[str, tuple[str, int, int]]]:
    """A Conv (group 1, constant weights) whose output, after any chain of elementwise activations, is read only by
    disjoint channel Slices becomes one Conv per slice, each computing exactly that slice's channels (weight and bias
    rows cut). The slices were copies: XNNPACK copies a channel slice of an NHWC tensor pixel by pixel. The split
    convs do the same multiply-adds in fewer ops, and channels nobody reads are no longer computed. The absorbed
    ShuffleNetV2 cuts every branch output into the pieces later units read; splitting those convs took its INT8
    channel copies from 89 ops / 40.3k pixel rows to 20 / 21.1k (`benchmarks/converter_speed.py --parts bound`).
    Returns (model, number of convs split, {piece tensor: (the tensor it was sliced from, start, stop)}); a piece
    keeps its Slice's output name."""
    g = model.graph
    consts = Consts(model)
    users = collections.defaultdict(list)
    for n in g.node:
        for i in n.input:
            users[i].append(n)
    outputs = {o.name for o in g.output}
    taken = {t for n in g.node for t in list(n.input) + list(n.output)} | {i.name for i in g.initializer}

    def fresh(base: str) -> str:
        return unique_name(base, taken)

    replace: dict[int, list[onnx.NodeProto]] = {}
    drop: set[int] = set()
    new_inits: list[onnx.TensorProto] = []
    pieces: dict[str, tuple[str, int, int]] = {}
    for conv in g.node:
        if conv.op_type != "Conv" or int(attr(conv, "group", 1)) != 1:
            continue
        w = consts.get(conv.input[1])
        b = consts.get(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
        if w is None or (len(conv.input) > 2 and conv.input[2] and b is None):
            continue
        chain, t = _activation_chain(conv, users, consts, outputs)
        slices = users[t]
        if not slices or t in outputs or any(s.op_type != "Slice" or s.input[0] != t for s in slices):
            continue
        ranges = _slice_ranges(slices, consts, w)
        if not ranges or any(e <= a for a, e in ranges):
            continue
        srt = sorted(ranges)
        if any(srt[i][1] > srt[i + 1][0] for i in range(len(srt) - 1)):
            continue  # overlapping slices: a channel would be computed twice
        replace[id(conv)] = _piece_nodes(conv, chain, slices, ranges, w, b, t, fresh=fresh, new_inits=new_inits,
                                         pieces=pieces)
        drop |= {id(n) for n in chain} | {id(n) for n in slices}
    if not replace:
        return model, 0, {}
    return _rebuild(model, replace, drop, new_inits), len(replace), pieces
