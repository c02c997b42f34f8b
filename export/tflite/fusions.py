"""Graph patterns lowered as one op: the GELU that exporters spell out element by element.

`fuse_patterns(graph)` returns the graph with every matched pattern replaced by one ONNX `Gelu` node (opset 20's op,
whose lowering is in ops_norm) that writes the pattern's last output. Only patterns whose inner tensors have no other
consumer and are no graph output are fused, so the fused graph computes the same outputs.

- exact:  x * 0.5 * (1 + erf(x / sqrt(2)))   (torch's F.gelu; Div by sqrt(2) or Mul by 1/sqrt(2); any Mul order)
- tanh:   x * 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))   (x^3 as Pow(x, 3) or Mul(Mul(x, x), x))
- doubled: x * (1 + erf(x / sqrt(2))) (or the tanh gate) without the 0.5, which onnxsim folds into the next layer's
  weights (timm ConvNeXt's MLP): one `Gelu` and an `Add` of its output to itself
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import onnx
from onnx import helper

from .graph import OnnxGraph, attrs_of

_SQRT2 = math.sqrt(2.0)
_TANH_K = math.sqrt(2.0 / math.pi)


def _close(v, target: float) -> bool:
    return v is not None and np.size(v) == 1 and abs(float(np.asarray(v).reshape(-1)[0]) - target) <= 1e-4 * abs(target)


class _Matcher:
    def __init__(self, graph: OnnxGraph):
        self.graph = graph
        self.producer = {o: n for n in graph.nodes for o in n.output if o}
        self.consumers: dict[str, int] = {}
        for n in graph.nodes:
            for i in n.input:
                self.consumers[i] = self.consumers.get(i, 0) + 1
        self.outputs = set(graph.outputs)

    def const(self, name: str):
        if name in self.graph.consts:
            return self.graph.consts[name]
        p = self.producer.get(name)
        if p is not None and p.op_type == "Constant":
            a = attrs_of(p)
            v = a.get("value", a.get("value_float"))
            return None if v is None else np.asarray(v)
        return None

    def inner(self, name: str) -> onnx.NodeProto | None:
        """The node producing `name`, if its output feeds exactly one node and is no graph output."""
        if self.consumers.get(name, 0) != 1 or name in self.outputs:
            return None
        return self.producer.get(name)

    def split(self, node, op: str, value: float | None = None):
        """(other input, const input) of a binary `op` node with one constant operand (close to `value` if given)."""
        if node is None or node.op_type != op or len(node.input) != 2:
            return None
        for a, b in ((0, 1), (1, 0)):
            c = self.const(node.input[b])
            if c is not None and (value is None or _close(c, value)):
                return node.input[a], c
        return None

    def gate_input(self, gate: onnx.NodeProto) -> tuple[str, list, str] | None:
        """(x, inner nodes, mode) for the Erf/Tanh `gate` of a GELU, else None."""
        if gate.op_type == "Erf":
            arg = self.inner(gate.input[0])
            hit = self.split(arg, "Div", _SQRT2) or self.split(arg, "Mul", 1.0 / _SQRT2)
            if hit is None or (arg.op_type == "Div" and arg.input[0] != hit[0]):
                return None
            return hit[0], [arg], "none"
        if gate.op_type != "Tanh":
            return None
        scaled = self.inner(gate.input[0])
        hit = self.split(scaled, "Mul", _TANH_K)
        if hit is None:
            return None
        poly = self.inner(hit[0])
        if poly is None or poly.op_type != "Add":
            return None
        for a, b in ((0, 1), (1, 0)):
            x = poly.input[a]
            m = self.inner(poly.input[b])
            hit2 = self.split(m, "Mul", 0.044715)
            if hit2 is None:
                continue
            cube = self.inner(hit2[0])
            if cube is None:
                continue
            if cube.op_type == "Pow" and cube.input[0] == x and _close(self.const(cube.input[1]), 3.0):
                return x, [scaled, poly, m, cube], "tanh"
            if cube.op_type == "Mul" and x in cube.input:
                sq = self.inner(cube.input[1] if cube.input[0] == x else cube.input[0])
                if sq is not None and sq.op_type == "Mul" and list(sq.input) == [x, x]:
                    return x, [scaled, poly, m, cube, sq], "tanh"
        return None

    def gelu_at(self, last: onnx.NodeProto) -> tuple[str, list, str] | None:
        """When `last` (a Mul) ends a GELU: (x, every node of the pattern, mode)."""
        if last.op_type != "Mul" or len(last.input) != 2:
            return None
        # three shapes: (x * (1+g)) * 0.5, (x * 0.5) * (1+g), x * ((1+g) * 0.5) (and mirrored operands)
        for a, b in ((0, 1), (1, 0)):
            half = self.split(last, "Mul", 0.5)
            if half is not None:
                mid = self.inner(half[0])
                if mid is None or mid.op_type != "Mul":
                    return None
                for c, d in ((0, 1), (1, 0)):
                    got = self._one_plus_gate(mid.input[d], mid.input[c])
                    if got is not None:
                        return got[0], [last, mid, *got[1]], got[2]
                return None
            other = self.inner(last.input[b])
            hit = self.split(other, "Mul", 0.5)
            if hit is None:
                continue
            # other = x * 0.5 with last = other * (1+g), or other = (1+g) * 0.5 with last = x * other
            got = self._one_plus_gate(last.input[a], hit[0])
            if got is not None:
                return got[0], [last, other, *got[1]], got[2]
            got = self._one_plus_gate(hit[0], last.input[a])
            if got is not None:
                return got[0], [last, other, *got[1]], got[2]
        return None

    def doubled_gelu_at(self, last: onnx.NodeProto) -> tuple[str, list, str] | None:
        """When `last` (a Mul) is x * (1 + gate(x)), i.e. 2 * GELU(x): (x, every node of the pattern, mode)."""
        if last.op_type != "Mul" or len(last.input) != 2:
            return None
        for a, b in ((0, 1), (1, 0)):
            got = self._one_plus_gate(last.input[b], last.input[a])
            if got is not None:
                return got[0], [last, *got[1]], got[2]
        return None

    def _one_plus_gate(self, name: str, x: str):
        add = self.inner(name)
        hit = self.split(add, "Add", 1.0)
        if hit is None:
            return None
        gate = self.inner(hit[0])
        if gate is None:
            return None
        got = self.gate_input(gate)
        if got is None or got[0] != x:
            return None
        return x, [add, gate, *got[1]], got[2]


def fuse_patterns(graph: OnnxGraph) -> OnnxGraph:
    """`graph` with every GELU pattern replaced by one `Gelu` node (the same graph object when none matches). Whole
    patterns first, so a doubled GELU is only what remains once every x * (1 + gate) * 0.5 is fused."""
    m = _Matcher(graph)
    gone: set[int] = set()
    replace: dict[int, list[onnx.NodeProto]] = {}
    for doubled in (False, True):
        for node in graph.nodes:
            if id(node) in gone:
                continue
            hit = m.doubled_gelu_at(node) if doubled else m.gelu_at(node)
            if hit is None or any(id(n) in gone for n in hit[1]):
                continue
            x, nodes, mode = hit
            gone.update(id(n) for n in nodes)
            name, out = node.name or node.output[0], node.output[0]
            if doubled:
                half = f"{out}__gelu"
                replace[id(node)] = [helper.make_node("Gelu", [x], [half], name=f"{name}/gelu", approximate=mode),
                                     helper.make_node("Add", [half, half], [out], name=name)]
            else:
                replace[id(node)] = [helper.make_node("Gelu", [x], [out], name=name, approximate=mode)]
    if not replace:
        return graph
    new_nodes = [r for n in graph.nodes if id(n) in replace or id(n) not in gone for r in replace.get(id(n), [n])]
    return dataclasses.replace(graph, nodes=new_nodes)
