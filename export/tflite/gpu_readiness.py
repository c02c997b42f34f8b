"""GPU delegate readiness of a .tflite file: can the TFLite GPU delegate take the whole graph, and which ops would
fall back to the CPU (and why)?

The rules are those of TensorFlow's own offline checker, `tflite::CheckGpuDelegateCompatibility`
(tensorflow/lite/tools/versioning/gpu_compatibility.cc, the function `tf.lite.experimental.Analyzer.analyze(...,
gpu_compatibility=True)` calls), restated for the op signatures a .tflite file holds: which builtin ops the delegate
has at all, and the per-op conditions on ranks, constant inputs and types. Why not call the analyzer: the
TensorFlow 2.21 wheel's analyzer reports every model compatible, even a Flex (select-TF) op and a CAST to int64
that the checker's source rejects (measured; `docs/gpu_readiness.md`), so its verdict cannot be trusted here.
What this does not see: run-time limits of a given GPU (texture sizes, memory), op versions newer than the delegate.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeport.export.tflite.flatbuffer import schema, unpack

RULES_SOURCE = "tensorflow/lite/tools/versioning/gpu_compatibility.cc (CheckGpuDelegateCompatibility)"

# Builtin ops the checker accepts (subject to the per-op conditions in _CHECKS); any other op: "Not supported op".
GPU_OPS = frozenset("""
ADD ADD_N AVERAGE_POOL_2D BATCH_MATMUL CAST CONCATENATION CONV_2D CUMSUM DENSIFY DEPTHWISE_CONV_2D DEPTH_TO_SPACE
DEQUANTIZE EMBEDDING_LOOKUP DYNAMIC_UPDATE_SLICE FULLY_CONNECTED GATHER HARD_SWISH LSTM MAX_POOL_2D MEAN MUL PACK
ONE_HOT QUANTIZE RELU_N1_TO_1 PRELU RESHAPE SELECT SELECT_V2 SLICE SOFTMAX SPACE_TO_DEPTH SPLIT SPLIT_V
STRIDED_SLICE TILE TRANSPOSE TRANSPOSE_CONV RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR RELU RELU6 LEAKY_RELU REDUCE_MAX
REDUCE_MIN REDUCE_PROD SUM PAD PADV2 MIRROR_PAD ABS CEIL COS ELU EXP FLOOR GELU LOG LOGISTIC NEG RSQRT SIGN SIN SQRT
SQUARE TANH ATAN2 DIV EQUAL FLOOR_DIV FLOOR_MOD GREATER GREATER_EQUAL LOGICAL_AND LESS LESS_EQUAL MAXIMUM MINIMUM
NOT_EQUAL POW SQUARED_DIFFERENCE SUB
""".split())
_BINARY = frozenset("ATAN2 DIV EQUAL FLOOR_DIV FLOOR_MOD GREATER GREATER_EQUAL LOGICAL_AND LESS LESS_EQUAL MAXIMUM "
                    "MINIMUM NOT_EQUAL POW SQUARED_DIFFERENCE SUB".split())
_UNARY = frozenset("ABS CEIL COS ELU EXP FLOOR GELU LOG LOGISTIC NEG RSQRT SIGN SIN SQRT SQUARE TANH".split())


@dataclass(frozen=True)
class Operand:
    """One input or output of an op: its shape, TFLite type name, and whether it is a constant (has a buffer)."""

    shape: tuple[int, ...]
    dtype: str
    const: bool


@dataclass(frozen=True)
class OpSignature:
    index: int
    op: str
    inputs: tuple[Operand, ...]
    outputs: tuple[Operand, ...]

    @property
    def runtime_inputs(self) -> int:
        return sum(not i.const for i in self.inputs)


@dataclass(frozen=True)
class GpuReadiness:
    """ops_total ops, ops_gpu of them accepted by the GPU delegate; fallback: the others with the reason."""

    ops_total: int
    ops_gpu: int
    fallback: tuple[dict, ...] = ()
    tensors_over_4d: int = 0
    rules: str = field(default=RULES_SOURCE)

    @property
    def whole_graph(self) -> bool:
        return self.ops_gpu == self.ops_total

    def summary(self) -> str:
        """'149/149 ops' or '140/149 ops; falls back: GATHER x3 (reason), ...'."""
        text = f"{self.ops_gpu}/{self.ops_total} ops"
        if self.fallback:
            groups: dict[tuple[str, str], int] = {}
            for f in self.fallback:
                groups[(f["op"], f["reason"])] = groups.get((f["op"], f["reason"]), 0) + 1
            text += "; falls back: " + ", ".join(f"{op} x{n} ({why})" for (op, why), n in groups.items())
        return text

    def to_json(self) -> dict:
        return {"ops_total": self.ops_total, "ops_gpu": self.ops_gpu, "whole_graph": self.whole_graph,
                "fallback": list(self.fallback), "tensors_over_4d": self.tensors_over_4d, "rules": self.rules}


def _runtime_count(sig: OpSignature, n: int) -> str | None:
    return None if sig.runtime_inputs == n else f"expects {n} runtime input(s), has {sig.runtime_inputs}"


def _rank_3_or_4(sig: OpSignature) -> str | None:
    r = len(sig.inputs[0].shape)
    return None if r in (3, 4) else f"supports 3-D or 4-D input only, has {r}-D"


def _axes_const(sig: OpSignature) -> str | None:
    if len(sig.inputs) < 2 or not sig.inputs[1].const:
        return "axes must be a constant"
    return None if sig.inputs[1].dtype == "INT32" else "axes must be INT32"


def _pad(sig: OpSignature) -> str | None:
    if len(sig.inputs) < 2 or not sig.inputs[1].const:
        return "paddings must be a constant"
    s = sig.inputs[1].shape
    return None if len(s) == 2 and s[0] in (3, 4) and s[1] == 2 else f"paddings must be 4x2 or 3x2, got {s}"


def _gather(sig: OpSignature) -> str | None:
    if sig.inputs[0].dtype == "INT32":
        return "does not accept INT32 input"
    if len(sig.inputs[1].shape) != 1:
        return "supports 1-D indices only"
    return None if sig.inputs[1].dtype == "INT32" else "accepts INT32 indices only"


def _cast(sig: OpSignature) -> str | None:
    a, b = sig.inputs[0].dtype, sig.outputs[0].dtype
    ok = ((a == "BOOL" and b in ("FLOAT16", "FLOAT32")) or (a in ("FLOAT16", "FLOAT32") and b == "BOOL")
          or (a in ("FLOAT32", "INT32") and b in ("FLOAT32", "INT32")))
    return None if ok else f"CAST {a} -> {b} not supported"


def _mul(sig: OpSignature) -> str | None:
    if len(sig.inputs) != 2:
        return "MUL requires two inputs"
    a, b = sig.inputs[0].shape, sig.inputs[1].shape
    if len(a) == len(b) and any(x < y for x, y in zip(a, b)) and any(y < x for x, y in zip(a, b)):
        return "MUL requires one input not smaller than the other in every dimension"
    return None


def _binary(sig: OpSignature) -> str | None:
    return None if sig.runtime_inputs in (1, 2) and len(sig.inputs) == 2 else "handles 1 or 2 operands only"


def _fully_connected(sig: OpSignature) -> str | None:
    if sig.inputs[0].const:
        return "constant input not supported"
    return None if sig.runtime_inputs <= 2 else "more than 2 runtime inputs"


_CHECKS = {
    "SLICE": _rank_3_or_4, "STRIDED_SLICE": _rank_3_or_4, "MEAN": _axes_const, "SUM": _axes_const,
    "REDUCE_MAX": _axes_const, "REDUCE_MIN": _axes_const, "REDUCE_PROD": _axes_const, "PAD": _pad, "PADV2": _pad,
    "MIRROR_PAD": _pad, "GATHER": _gather, "CAST": _cast, "MUL": _mul, "FULLY_CONNECTED": _fully_connected,
    "ADD_N": lambda s: None if len(s.inputs) == 2 else "ADD_N supports 2 inputs only",
    "RESHAPE": lambda s: _runtime_count(s, 1), "TRANSPOSE": lambda s: _runtime_count(s, 1),
    "TILE": lambda s: _runtime_count(s, 1), "QUANTIZE": lambda s: _runtime_count(s, 1),
    "HARD_SWISH": lambda s: _runtime_count(s, 1),
    **{op: _binary for op in _BINARY},
    **{op: (lambda s: None if s.runtime_inputs == 1 and len(s.inputs) == 1 else "one runtime input only")
       for op in _UNARY},
}


def check_op(sig: OpSignature) -> str | None:
    """None when the GPU delegate takes the op, else the reason it falls back."""
    if sig.op not in GPU_OPS:
        return f"not supported op {sig.op}"
    check = _CHECKS.get(sig.op)
    return check(sig) if check is not None else None


def op_signatures(tflite_bytes: bytes) -> list[OpSignature]:
    """Every operator of subgraph 0 with its operands' shapes, types and constness."""
    sch = schema()
    model = unpack(tflite_bytes)
    codes = {v: k for k, v in vars(sch.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k for k, v in vars(sch.TensorType).items() if not k.startswith("_")}
    g = model.subgraphs[0]

    def operand(i: int) -> Operand:
        t = g.tensors[i]
        buf = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
        const = buf is not None and (buf.data is not None and len(buf.data) > 0 or bool(getattr(buf, "size", 0)))
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else np.zeros(0)))
        return Operand(shape, types.get(t.type, str(t.type)), const)

    sigs = []
    for j, op in enumerate(g.operators):
        code = model.operatorCodes[op.opcodeIndex]
        name = codes.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
        if name == "CUSTOM" and code.customCode:
            name = code.customCode.decode() if isinstance(code.customCode, bytes) else str(code.customCode)
        ins = tuple(operand(i) for i in (op.inputs if op.inputs is not None else []) if i >= 0)
        outs = tuple(operand(i) for i in (op.outputs if op.outputs is not None else []) if i >= 0)
        sigs.append(OpSignature(j, name, ins, outs))
    return sigs


def gpu_readiness(path: str | Path) -> GpuReadiness:
    """The GPU delegate readiness of one .tflite file."""
    sigs = op_signatures(Path(path).read_bytes())
    fallback = []
    for s in sigs:
        why = check_op(s)
        if why is not None:
            fallback.append({"index": s.index, "op": s.op, "reason": why})
    over_4d = sum(len(o.shape) > 4 for s in sigs for o in (*s.inputs, *s.outputs))
    return GpuReadiness(ops_total=len(sigs), ops_gpu=len(sigs) - len(fallback), fallback=tuple(fallback),
                        tensors_over_4d=over_4d)


__all__ = ["GPU_OPS", "RULES_SOURCE", "GpuReadiness", "OpSignature", "Operand", "check_op", "gpu_readiness",
           "op_signatures"]
