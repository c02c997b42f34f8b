"""Finding channel shuffles in an ONNX graph, and the small graph helpers the shuffle pass shares."""
from __future__ import annotations

import collections

import numpy as np
import onnx
from onnx import helper, numpy_helper


def shuffle_permutation(channels: int, groups: int) -> np.ndarray:
    """`p` with shuffled[:, j] == x[:, p[j]] for the ShuffleNet shuffle of `channels` channels in `groups` groups."""
    k = channels // groups
    return np.arange(channels).reshape(groups, k).T.reshape(-1)


class Consts:
    """Constant values of a model: its initializers and the outputs of its Constant nodes, by tensor name."""

    def __init__(self, model: onnx.ModelProto):
        self.values: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        for n in model.graph.node:
            if n.op_type == "Constant" and len(n.output) == 1:
                for a in n.attribute:
                    if a.name == "value":
                        self.values[n.output[0]] = numpy_helper.to_array(a.t)

    def get(self, name: str):
        return self.values.get(name)


def attr(node, name, default=None):
    """The value of attribute `name` of `node`, or `default`."""
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Tensor name -> static shape, for every tensor shape inference gives a fully known shape (and initializers)."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    out = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        t = vi.type.tensor_type
        if t.HasField("shape") and all(d.HasField("dim_value") for d in t.shape.dim):
            out[vi.name] = tuple(d.dim_value for d in t.shape.dim)
    for i in model.graph.initializer:
        out[i.name] = tuple(i.dims)
    return out


def find_channel_shuffles(model: onnx.ModelProto, *, shapes: dict[str, tuple[int, ...]] | None = None,
                          ) -> list[tuple[list[onnx.NodeProto], str, str, int]]:
    """Every Reshape(N,g,C/g,H,W) -> Transpose(0,2,1,3,4) -> Reshape(N,C,H,W) whose intermediates have no other
    consumer: list of (the three nodes, input tensor, output tensor, groups). `shapes`: static shapes already inferred
    (OnnxGraph.shapes), else inferred here."""
    if shapes is None:
        shapes = static_shapes(model)
    users = collections.defaultdict(list)
    for n in model.graph.node:
        for i in n.input:
            users[i].append(n)
    graph_outputs = {o.name for o in model.graph.output}
    found = []
    for r1 in model.graph.node:
        if r1.op_type != "Reshape":
            continue
        xs = shapes.get(r1.input[0])
        s5 = shapes.get(r1.output[0])
        if xs is None or s5 is None or len(xs) != 4 or len(s5) != 5:
            continue
        n, c, h, w = xs
        if s5[0] != n or s5[3:] != (h, w) or s5[1] * s5[2] != c:
            continue
        u1 = users[r1.output[0]]
        if len(u1) != 1 or u1[0].op_type != "Transpose" or r1.output[0] in graph_outputs:
            continue
        tr = u1[0]
        if list(attr(tr, "perm", [])) != [0, 2, 1, 3, 4]:
            continue
        u2 = users[tr.output[0]]
        if len(u2) != 1 or u2[0].op_type != "Reshape" or tr.output[0] in graph_outputs:
            continue
        r2 = u2[0]
        if shapes.get(r2.output[0]) != xs:
            continue
        found.append(([r1, tr, r2], r1.input[0], r2.output[0], int(s5[1])))
    return found
