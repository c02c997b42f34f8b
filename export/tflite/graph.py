"""Reading an ONNX graph for lowering: static shapes, constants, attributes, leftover constant folding.

`OnnxGraph.load(model_or_path)` returns the graph with every tensor's static shape known (onnx shape inference;
a symbolic batch dimension of a graph input is fixed to 1). Initializers and `Constant` nodes are numpy constants.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from edgeport.errors import ExportError, InputShapeError


def attrs_of(node: onnx.NodeProto) -> dict:
    """Node attributes as python values (ints, floats, strings decoded, tensors as numpy)."""
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, onnx.TensorProto):
            v = numpy_helper.to_array(v)
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [s.decode() for s in v]
        out[a.name] = v
    return out


@dataclass
class OnnxGraph:
    """A static-shape ONNX graph: `nodes` in topological order, `shapes` name -> tuple, `consts` name -> ndarray."""

    model: onnx.ModelProto
    nodes: list[onnx.NodeProto]
    inputs: list[str]
    outputs: list[str]
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, np.dtype]
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    opset: int = 17

    @staticmethod
    def load(model_or_path: onnx.ModelProto | str | os.PathLike) -> "OnnxGraph":
        if isinstance(model_or_path, onnx.ModelProto):
            model = onnx.ModelProto()
            model.CopyFrom(model_or_path)
        else:
            path = Path(model_or_path)
            if not path.is_file():
                raise ExportError(f"ONNX file {str(path)!r} does not exist", hint="export it first with `edgeport export`")
            model = onnx.load(str(path))
        return OnnxGraph.from_model(model)

    @staticmethod
    def from_model(model: onnx.ModelProto) -> "OnnxGraph":
        g = model.graph
        init_names = {t.name for t in g.initializer}
        # Fix a symbolic batch dimension of graph inputs to 1; any other symbolic dimension is an error.
        for vi in g.input:
            if vi.name in init_names:
                continue
            dims = vi.type.tensor_type.shape.dim
            for i, d in enumerate(dims):
                if d.HasField("dim_value") and d.dim_value > 0:
                    continue
                if i == 0:
                    d.Clear()
                    d.dim_value = 1
                else:
                    raise InputShapeError(
                        f"ONNX input {vi.name!r} has a dynamic dimension {i} ({d.dim_param or '?'}); the TFLite "
                        "converter needs static shapes", hint="export with a fixed input shape")
        try:
            model = shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
        except Exception as e:  # onnx raises several exception types for malformed graphs
            raise ExportError(f"ONNX shape inference failed: {e}") from e
        g = model.graph
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
        shapes: dict[str, tuple[int, ...]] = {}
        dtypes: dict[str, np.dtype] = {}
        for vi in list(g.input) + list(g.value_info) + list(g.output):
            tt = vi.type.tensor_type
            if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
                shapes[vi.name] = tuple(int(d.dim_value) for d in tt.shape.dim)
            if tt.elem_type:
                dtypes[vi.name] = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type))
        consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        for name, arr in consts.items():
            shapes[name] = tuple(arr.shape)
            dtypes[name] = arr.dtype
        inputs = [vi.name for vi in g.input if vi.name not in init_names]
        outputs = [vi.name for vi in g.output]
        return OnnxGraph(model=model, nodes=list(g.node), inputs=inputs, outputs=outputs, shapes=shapes,
                         dtypes=dtypes, consts=consts, opset=opset)

    def input_shape(self, name: str) -> tuple[int, ...]:
        return self.shapes[name]


def fold_node(node: onnx.NodeProto, inputs: dict[str, np.ndarray], opset: int) -> list[np.ndarray]:
    """Evaluate one node whose inputs are all constants (ONNX reference evaluator). Used for constant leftovers."""
    from onnx.reference import ReferenceEvaluator

    g = helper.make_graph(
        [node], "fold", [],
        [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output if o],
        initializer=[numpy_helper.from_array(np.asarray(v), n) for n, v in inputs.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    res = ReferenceEvaluator(m).run(None, {})
    return [np.asarray(r) for r in res]


def unique_name(base: str, used: set[str]) -> str:
    """`base`, or `base_2`, `base_3`, ... : the first not in `used`, which it is added to."""
    name, k = base, 1
    while name in used:
        k += 1
        name = f"{base}_{k}"
    used.add(name)
    return name
