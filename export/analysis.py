"""Static analysis of an exported ONNX graph: exact multiply-add counts and op histograms.

MACs are counted from the graph with inferred static shapes: Conv (k_h*k_w*C_in/groups per output element),
ConvTranspose (per input element), Gemm and MatMul. Element-wise ops, pooling, BN (folded by onnxsim) and activations
are not multiply-adds in the papers' sense and are not counted, matching how the papers report FLOPs.
"""
from __future__ import annotations

import collections
import os

import numpy as np
import onnx
from onnx import shape_inference


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    inferred = shape_inference.infer_shapes(model)
    shapes: dict[str, tuple[int, ...]] = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)
    for init in inferred.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def _load(model) -> onnx.ModelProto:
    return onnx.load(str(model)) if isinstance(model, (str, os.PathLike)) else model


def count_macs(model: onnx.ModelProto | str | os.PathLike) -> int:
    """Exact multiply-adds of one forward pass at the graph's static input shape (batch included)."""
    model = _load(model)
    shapes = _shapes(model)
    total = 0
    for node in model.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv":
            w = shapes[node.input[1]]
            out = shapes.get(node.output[0])
            if not out or -1 in out:
                raise ValueError(f"Conv {node.name}: output shape unknown; export with static shapes")
            # weight (M, C/g, kh, kw): each output element needs C/g*kh*kw MACs
            total += int(np.prod(out)) * int(np.prod(w[1:]))
        elif node.op_type == "ConvTranspose":
            w = shapes[node.input[1]]  # (C, M/g, kh, kw)
            x = shapes[node.input[0]]
            total += int(np.prod(x)) * int(np.prod(w[1:]))
        elif node.op_type == "Gemm":
            a = shapes[node.input[0]]
            b = shapes[node.input[1]]
            k = a[0] if attrs.get("transA", 0) else a[1]
            m = a[1] if attrs.get("transA", 0) else a[0]
            n = b[0] if attrs.get("transB", 0) else b[1]
            total += m * k * n
        elif node.op_type == "MatMul":
            a = shapes[node.input[0]]
            out = shapes[node.output[0]]
            total += int(np.prod(out)) * a[-1]
    return total


def count_params_onnx(model: onnx.ModelProto | str | os.PathLike) -> int:
    """Number of values in float initializers (after onnxsim folding BN into Conv this differs from torch's count)."""
    model = _load(model)
    return sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT)


def op_histogram_onnx(model: onnx.ModelProto | str | os.PathLike) -> dict[str, int]:
    model = _load(model)
    return dict(collections.Counter(n.op_type for n in model.graph.node).most_common())
