"""The lowering machinery: registry of per-op lowerings, the tracked-layout value, and the lowering context.

Layout tracking: every activation is a `Value` holding a TensorFlow tensor plus `perm`, the permutation with
`tf_tensor == np.transpose(onnx_tensor, perm)`. 4-D activations are kept as NHWC-of-NCHW (`perm == (0, 2, 3, 1)`);
axis-based ops remap their axes through `perm` instead of transposing; ONNX Transpose only updates `perm`.
A real TRANSPOSE is emitted only where the ONNX graph itself moves data in a way no layout can absorb (e.g. the
5-D transpose of a channel shuffle) or at an I/O boundary requested by the caller; every one is counted in
`LoweringContext.transposes`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx
import tensorflow as tf

from edgeport.errors import UnsupportedOpError
from edgeport.registry import Registry

from .graph import OnnxGraph, unique_name

NHWC = (0, 2, 3, 1)

LowerFn = Callable[["LoweringContext", onnx.NodeProto, dict], list]
LOWERINGS: Registry[LowerFn] = Registry("ONNX op lowering")


def lowering(*op_types: str) -> Callable[[LowerFn], LowerFn]:
    """Register `fn(ctx, node, attrs) -> list[Value | np.ndarray]` (one entry per node output) for `op_types`."""

    def deco(fn: LowerFn) -> LowerFn:
        for op in op_types:
            LOWERINGS.register(op, fn)
        return fn

    return deco


def supported_ops() -> list[str]:
    return sorted(LOWERINGS.names())


def identity(rank: int) -> tuple[int, ...]:
    return tuple(range(rank))


def inverse(perm) -> tuple[int, ...]:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


@dataclass
class Value:
    """An activation: `tensor` (tf) equals `np.transpose(onnx_value, perm)`; `shape` is the ONNX shape."""

    tensor: tf.Tensor
    perm: tuple[int, ...]
    shape: tuple[int, ...]

    @property
    def rank(self) -> int:
        return len(self.shape)

    def tf_axis(self, onnx_axis: int) -> int:
        return self.perm.index(onnx_axis % self.rank)


def unsupported(node: onnx.NodeProto, detail: str) -> UnsupportedOpError:
    return UnsupportedOpError(node.op_type, node.name or node.output[0], supported_ops(), detail)


_SCOPE_BAD = re.compile(r"[^A-Za-z0-9_.\-]")


class LoweringContext:
    """Holds values by ONNX name while one graph is lowered inside a `tf.function` trace."""

    def __init__(self, graph: OnnxGraph, *, for_int8: bool = False):
        self.graph = graph
        self.for_int8 = for_int8  # lowering for the INT8 quantizer: prefer forms XNNPACK runs in INT8
        self.values: dict[str, Value | np.ndarray] = dict(graph.consts)
        self.transposes = 0
        self.scope_to_onnx: dict[str, str] = {}
        self.onnx_layout: dict[str, tuple[int, ...]] = {}

    # ---- access -----------------------------------------------------------------------------------------------
    def get(self, name: str) -> Value | np.ndarray | None:
        if name == "":
            return None
        return self.values[name]

    def const(self, node: onnx.NodeProto, i: int, *, default=None) -> np.ndarray | None:
        """Input `i` of `node` as a numpy constant (None if absent); raises if it is a runtime tensor."""
        if i >= len(node.input) or node.input[i] == "":
            return default
        v = self.values[node.input[i]]
        if isinstance(v, Value):
            raise unsupported(node, f"input {i} ({node.input[i]!r}) must be a constant for the TFLite lowering")
        return v

    def act(self, node: onnx.NodeProto, i: int) -> Value:
        """Input `i` as an activation `Value` (a constant is wrapped with the identity layout)."""
        v = self.values[node.input[i]]
        if isinstance(v, Value):
            return v
        arr = np.asarray(v)
        return Value(tf.constant(arr), identity(arr.ndim), tuple(arr.shape))

    def shape_of(self, name: str) -> tuple[int, ...]:
        v = self.values.get(name)
        if isinstance(v, Value):
            return v.shape
        if v is not None:
            return tuple(np.asarray(v).shape)
        return self.graph.shapes[name]

    # ---- layout -----------------------------------------------------------------------------------------------
    def to_perm(self, v: Value, perm: tuple[int, ...]) -> tf.Tensor:
        """v's tensor in layout `perm` (a TRANSPOSE only if the layouts differ)."""
        perm = tuple(perm)
        if v.perm == perm:
            return v.tensor
        # tf_new = transpose(onnx, perm) = transpose(tf_old, q) with q[j] = position of perm[j] in v.perm
        q = [v.perm.index(p) for p in perm]
        if _is_pure_reshape(v, q):
            return tf.reshape(v.tensor, [v.shape[p] for p in perm])
        self.transposes += 1
        return tf.transpose(v.tensor, q)

    def const_in_layout(self, arr: np.ndarray, rank: int, perm: tuple[int, ...]) -> np.ndarray:
        """A constant broadcastable against an ONNX tensor of `rank`, laid out like a tensor with `perm`."""
        arr = np.asarray(arr)
        if arr.ndim < rank:
            arr = arr.reshape((1,) * (rank - arr.ndim) + arr.shape)
        return np.ascontiguousarray(np.transpose(arr, perm))


def _is_pure_reshape(v: Value, q: list[int]) -> bool:
    """True when transposing by q only moves size-1 axes (so a RESHAPE, which is free, does the job)."""
    tf_shape = [v.shape[p] for p in v.perm]
    kept = [ax for ax in q if tf_shape[ax] != 1]
    return kept == sorted(kept)


def scope_name(onnx_name: str, used: set[str]) -> str:
    """A valid, unique tf name scope for an ONNX tensor name."""
    base = _SCOPE_BAD.sub("_", onnx_name) or "t"
    if not re.match(r"[A-Za-z0-9.]", base[0]):
        base = "t" + base
    return unique_name(base, used)
