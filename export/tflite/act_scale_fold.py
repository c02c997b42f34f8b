"""INT8 hard-swish in two ops and hard-sigmoid in one: their 1/6 moved into the convolutions that read them.

XNNPACK (ai-edge-litert 2.3) runs no INT8 HARD_SWISH, so the INT8 trace writes hard-swish as
relu6(x + 3) * (x * 1/6): three elementwise INT8 passes where fp32 makes one (ops_elementwise.hard_swish), and
hard-sigmoid as relu6(x + 3) * 1/6: two. The scalar 1/6 costs a full pass over the tensor in INT8 (MobileNetV3-Small:
the `x * 1/6` MULs are 5 % of its INT8 time on an AMD EPYC with AVX-512 VNNI), yet every consumer of a MobileNetV3
activation is linear in it: a convolution or Gemm, or a mean / reshape / SE multiply that reaches one. So
`fold_hard_activation_scales` writes the activation without its 1/6 (6 * hswish = relu6(x + 3) * x,
6 * hsigmoid = relu6(x + 3)), follows the factor through the linear ops (a product of two folded tensors carries 36),
and divides the constant weights of the convolutions and Gemms where it ends by it. Exact in real arithmetic; in
INT8 the per-channel weight quantization gives the same integer weights with a scale 6x smaller, and the activation
tensor keeps the same relative resolution over a 6x wider range.

Applied to the graph the INT8 model is traced from only (the fp32 model is unchanged). An activation whose factor
would reach anything else (an Add, a Concat, a graph output, a non-constant weight) is left as it was. Every tensor
that carries a factor is renamed (`<name>__x6`), so per-layer validation does not compare it with the ONNX tensor
of the old name.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

# f(k x) = k f(x) for their first input
_LINEAR = frozenset({"ReduceMean", "GlobalAveragePool", "AveragePool", "Flatten", "Reshape", "Squeeze", "Unsqueeze",
                     "Transpose", "Identity", "Dropout"})
_SINKS = frozenset({"Conv", "Gemm"})  # absorb 1/k into their constant weight (input 1)
_FACTOR = 6.0


def _is_hard_sigmoid_6(node: onnx.NodeProto) -> bool:
    a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
    return abs(float(a.get("alpha", 0.2)) - 1.0 / 6.0) < 1e-7 and float(a.get("beta", 0.5)) == 0.5


def _propagate(nodes, active: set[str]) -> tuple[dict[str, float], dict[str, set[str]]]:
    """(tensor -> factor, tensor -> activations it comes from) with the activations whose outputs are in `active`
    written without their 1/6, in topological order."""
    factor: dict[str, float] = {}
    source: dict[str, set[str]] = {}
    for n in nodes:
        if n.output and n.output[0] in active:
            factor[n.output[0]], source[n.output[0]] = _FACTOR, {n.output[0]}
        elif n.op_type in _LINEAR and n.input and n.input[0] in factor:
            factor[n.output[0]], source[n.output[0]] = factor[n.input[0]], set(source[n.input[0]])
        elif n.op_type == "Mul" and any(i in factor for i in n.input):
            factor[n.output[0]] = float(np.prod([factor.get(i, 1.0) for i in n.input]))
            source[n.output[0]] = set().union(*(source.get(i, set()) for i in n.input))
    return factor, source


def _blocked(graph: onnx.GraphProto, factor, source, weights: set[str]) -> set[str]:
    """Activations whose factor reaches a consumer that cannot take it."""
    bad: set[str] = set()
    outputs = {o.name for o in graph.output}
    for n in graph.node:
        for idx, t in enumerate(n.input):
            if t not in factor:
                continue
            ok = (n.op_type in _LINEAR and idx == 0) or n.op_type == "Mul" or (
                n.op_type in _SINKS and idx == 0 and len(n.input) > 1 and n.input[1] in weights)
            if not ok:
                bad |= source[t]
    for t in outputs & set(factor):
        bad |= source[t]
    return bad


def fold_hard_activation_scales(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """(a copy of `model` with the 1/6 of every foldable HardSwish / HardSigmoid(1/6, 1/2) moved into the weights
    of the convolutions and Gemms that read it, how many activations were rewritten). `model`: topologically
    sorted, weights as initializers."""
    g = model.graph
    weights = {t.name for t in g.initializer}
    active = {n.output[0] for n in g.node
              if n.op_type == "HardSwish" or (n.op_type == "HardSigmoid" and _is_hard_sigmoid_6(n))}
    while True:
        factor, source = _propagate(g.node, active)
        bad = _blocked(g, factor, source, weights)
        if not bad:
            break
        active -= bad
    if not active:
        return model, 0
    out = onnx.ModelProto()
    out.CopyFrom(model)
    _rewrite(out, factor, active)
    return out, len(active)


def _rewrite(model: onnx.ModelProto, factor: dict[str, float], active: set[str]) -> None:
    g = model.graph
    rename = {t: f"{t}__x{k:g}" for t, k in factor.items()}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    inits = {t.name: t for t in g.initializer}
    consts = {"__act_fold_3": 3.0, "__act_fold_0": 0.0, "__act_fold_6": 6.0}
    for name, v in consts.items():
        g.initializer.append(numpy_helper.from_array(np.asarray(v, np.float32), name))
    nodes = []
    for n in g.node:
        if n.output and n.output[0] in active:
            x, y = n.input[0], rename[n.output[0]]
            shifted, clipped = f"{y}__shift", (f"{y}__relu6" if n.op_type == "HardSwish" else y)
            nodes.append(helper.make_node("Add", [x, "__act_fold_3"], [shifted]))
            if opset >= 11:
                nodes.append(helper.make_node("Clip", [shifted, "__act_fold_0", "__act_fold_6"], [clipped]))
            else:
                nodes.append(helper.make_node("Clip", [shifted], [clipped], min=0.0, max=6.0))
            if n.op_type == "HardSwish":
                nodes.append(helper.make_node("Mul", [clipped, x], [y]))
            continue
        n = _copy(n)
        inputs = list(n.input)
        if n.op_type in _SINKS and inputs and inputs[0] in factor:
            w = numpy_helper.to_array(inits[inputs[1]])
            scaled = numpy_helper.from_array((w / np.float32(factor[inputs[0]])).astype(w.dtype),
                                             f"{inputs[1]}__div{factor[inputs[0]]:g}_{len(g.initializer)}")
            g.initializer.append(scaled)
            inputs[1] = scaled.name
        n.ClearField("input")
        n.input.extend(rename.get(i, i) for i in inputs)
        outs = [rename.get(o, o) for o in n.output]
        n.ClearField("output")
        n.output.extend(outs)
        nodes.append(n)
    g.ClearField("node")
    g.node.extend(nodes)
    used = {i for n in g.node for i in n.input}
    unused = [t for t in g.initializer if t.name not in used]  # the weights the scaled copies replaced
    for t in unused:
        g.initializer.remove(t)
    kept = [vi for vi in g.value_info if vi.name not in rename]
    g.ClearField("value_info")
    g.value_info.extend(kept)


def _copy(node: onnx.NodeProto) -> onnx.NodeProto:
    c = onnx.NodeProto()
    c.CopyFrom(node)
    return c
