"""ONNX ops that the full-INT8 TFLite model computes in float, and why.

A division by a tensor the model computes (EfficientViT's linear attention `out[..., :-1] / (out[..., -1:] + eps)`,
a decomposed LayerNorm's `(x - mean) / sqrt(var + eps)`) has no good INT8 form in TFLite:
- XNNPACK has no int8 DIV kernel, so an int8 DIV splits the delegate's graph and runs on TFLite's builtin kernel;
- that kernel stops (`div.cc data[i] != zero_point`) when a divisor quantizes to its zero point, which a sum of
  ReLU products near 0 does: the divisor's int8 step is set by its largest value, and the `+ eps` that keeps it off 0
  is far below that step;
- rewriting x / y as x * r with r = 1 / y moves the problem into r, whose range (up to 1 / eps) no int8 scale spans.
So TensorFlow's quantizer is told to leave these ops float (`denylisted_nodes`): it puts DEQUANTIZE before and
QUANTIZE after them, and XNNPACK runs the island in its fp32 kernels inside the same delegate partition. The
`+ eps` (or `max(y, eps)`) that guards such a divisor stays float with it. Which ops stayed float, as TFLite ops,
and why is returned with the conversion and recorded in report.json (artifact_info.tflite_int8.float_ops).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, replace

import onnx

from .build import const_names
from .flatbuffer import op_names, schema, unpack
from .graph import OnnxGraph


class FloatReason(str, enum.Enum):
    """Why an op stays float inside the full-INT8 model."""

    COMPUTED_DIVISOR = "computed-divisor"
    DIVISOR_GUARD = "divisor-guard"

    def __str__(self) -> str:
        return self.value


WHY = {
    FloatReason.COMPUTED_DIVISOR: "divides by a tensor computed at run time: XNNPACK has no int8 DIV and TFLite's "
                                  "int8 DIV stops on a divisor that quantizes to its zero point; float DIV runs in "
                                  "XNNPACK between DEQUANTIZE and QUANTIZE",
    FloatReason.DIVISOR_GUARD: "keeps a float divisor away from zero (x + eps, max(x, eps), and what only "
                               "reshapes or broadcasts it on the way): eps rounds away at the divisor's int8 scale",
}

_GUARDS = ("Add", "Max", "Clip")
# ops that only move or broadcast the divisor between its guard and the Div (F.normalize's expand_as)
_CARRIERS = ("Expand", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Transpose")


@dataclass(frozen=True)
class FloatOp:
    """One ONNX node the INT8 model computes in float; `tflite_ops` are the TFLite ops that compute it there (empty
    until the quantized model has been read)."""

    onnx_node: str
    onnx_op: str
    onnx_output: str
    reason: FloatReason
    tflite_ops: tuple[str, ...] = ()
    guards: tuple[str, ...] = ()  # DIVISOR_GUARD: the ONNX outputs of the Divs whose divisor it produces

    @property
    def why(self) -> str:
        return WHY[self.reason]

    def to_json(self) -> dict:
        out = {"onnx_node": self.onnx_node, "onnx_op": self.onnx_op, "onnx_output": self.onnx_output,
               "reason": self.reason.value, "why": self.why, "tflite_ops": list(self.tflite_ops)}
        return {**out, "guards": list(self.guards)} if self.guards else out


def int8_float_ops(model: onnx.ModelProto | OnnxGraph) -> list[FloatOp]:
    """The nodes of `model` that its INT8 TFLite model may keep float, in graph order: every Div whose divisor is
    computed, and the Add / Max / Clip with one constant that produces such a divisor (directly or through ops that
    only reshape or broadcast it) when all it feeds is those Divs. Which of them stay float is decided on the
    converted model (`denylisted_nodes`)."""
    graph = model if isinstance(model, OnnxGraph) else OnnxGraph.from_model(model)
    known = const_names(graph)
    readers: dict[str, list[onnx.NodeProto]] = {}
    producer: dict[str, onnx.NodeProto] = {}
    for node in graph.nodes:
        for name in node.input:
            readers.setdefault(name, []).append(node)
        for name in node.output:
            producer[name] = node
    divs = [n for n in graph.nodes if n.op_type == "Div" and len(n.input) == 2 and n.input[1] not in known
            and n.output[0] not in known]
    found: dict[int, FloatOp] = {id(n): _float_op(n, FloatReason.COMPUTED_DIVISOR) for n in divs}
    for div in divs:
        for node in _guard_chain(div, producer, readers, known, {id(n) for n in divs}, graph.outputs):
            prev = found.get(id(node))
            found[id(node)] = _float_op(node, FloatReason.DIVISOR_GUARD,
                                        guards=(prev.guards if prev else ()) + (div.output[0],))
    order = {id(n): k for k, n in enumerate(graph.nodes)}
    return [found[k] for k in sorted(found, key=order.__getitem__)]


def _guard_chain(div, producer, readers, known, float_divs, graph_outputs) -> list[onnx.NodeProto]:
    """[guard, carriers...] between a guard and `div`'s divisor, or [] when the divisor has no guard or a tensor on
    the way is read by anything but the chain and the float Divs (or is a graph output)."""
    chain, name = [], div.input[1]
    while True:
        node = producer.get(name)
        if node is None or name in graph_outputs:
            return []
        inside = {id(n) for n in chain} | float_divs
        if not all(id(r) in inside for r in readers.get(name, [])):
            return []
        data = [i for i in node.input if i and i not in known]
        if node.op_type in _GUARDS and len(data) == 1 and len(data) < len([i for i in node.input if i]):
            return [node, *chain]
        if node.op_type not in _CARRIERS or len(data) != 1:
            return []
        chain.insert(0, node)
        name = data[0]


def _float_op(node: onnx.NodeProto, reason: FloatReason, guards: tuple[str, ...] = ()) -> FloatOp:
    return FloatOp(onnx_node=node.name or node.output[0], onnx_op=node.op_type, onnx_output=node.output[0],
                   reason=reason, guards=guards)


def _scope(tensor_name: str) -> str:
    """The tf name scope a TFLite tensor name starts with ("scope/op;other/op" -> "scope")."""
    return tensor_name.split(";")[0].split("/")[0]


def tflite_ops_of(model: bytes, float_ops: list[FloatOp],
                  scope_to_onnx: dict[str, str]) -> dict[str, list[tuple[str, str]]]:
    """{ONNX output of each float op: [(TFLite op name, its first output tensor's name), ...]}: the ops of a TFLite
    model (calibrated or quantized) traced from that ONNX node, found by the tf scope their output names start with
    (the lowering names every scope after the ONNX tensor it computes)."""
    wanted = {f.onnx_output for f in float_ops}
    m = unpack(model)
    sg = m.subgraphs[0]
    found: dict[str, list[tuple[str, str]]] = {}
    for name, op in zip(op_names(m), sg.operators):
        if not len(op.outputs):
            continue
        tensor = sg.tensors[op.outputs[0]].name.decode()
        onnx_name = scope_to_onnx.get(_scope(tensor))
        if onnx_name in wanted and name not in ("QUANTIZE", "DEQUANTIZE"):
            found.setdefault(onnx_name, []).append((name, tensor))
    return found


def denylisted_nodes(calibrated: bytes, float_ops: list[FloatOp], scope_to_onnx: dict[str, str]) -> list[str]:
    """The TFLite ops to keep float, by the names TensorFlow's quantizer knows them by (`mlir_quantize(
    denylisted_nodes=...)`: an op's location is its first output tensor's name): the DIV ops of the computed-divisor
    Divs, and the ops of the guards of those Divs. A Div that TensorFlow rewrote into an op with an int8 kernel
    (x / sqrt(v) becomes x * RSQRT(v)) is left to the quantizer, and so is its guard."""
    ops = tflite_ops_of(calibrated, float_ops, scope_to_onnx)
    divs = {f.onnx_output for f in float_ops if f.reason is FloatReason.COMPUTED_DIVISOR
            and any(name == "DIV" for name, _ in ops.get(f.onnx_output, []))}
    keep = []
    for f in float_ops:
        found = ops.get(f.onnx_output, [])
        if f.reason is FloatReason.COMPUTED_DIVISOR:
            keep += [tensor for name, tensor in found if name == "DIV"]
        elif divs & set(f.guards):
            keep += [tensor for _, tensor in found]
    return keep


def kept_float(quantized: bytes, float_ops: list[FloatOp], scope_to_onnx: dict[str, str]) -> list[FloatOp]:
    """The float ops as the quantized model holds them: each with its TFLite ops whose output stayed float32 (an ONNX
    node the lowering folded away or the quantizer quantized anyway is left out)."""
    m = unpack(quantized)
    sg = m.subgraphs[0]
    f32 = schema().TensorType.FLOAT32
    float_tensors = {t.name.decode() for t in sg.tensors if t.type == f32}
    ops = tflite_ops_of(quantized, float_ops, scope_to_onnx)
    out = []
    for f in float_ops:
        names = tuple(name for name, tensor in ops.get(f.onnx_output, []) if tensor in float_tensors)
        if names:
            out.append(replace(f, tflite_ops=names))
    return out
