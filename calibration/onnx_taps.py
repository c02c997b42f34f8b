"""ONNX Runtime with every intermediate float tensor as a graph output (a "tapped" model), for activation ranges
and per-layer attribution. The original file is not modified; the tapped copy lives in memory."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx


class TappedSession:
    """`run(feed) -> {tensor name: array}` for every float node output (and graph input) of the ONNX model.

    `producers` maps each tensor name to the name of the node that produced it (graph inputs map to themselves);
    `order` lists tensor names in graph (topological) order.
    """

    def __init__(self, onnx_path: str | Path):
        import onnxruntime as ort

        model = onnx.load(str(onnx_path))
        try:
            model = onnx.shape_inference.infer_shapes(model)
        except Exception:  # shapes only help to pick float tensors; unknown types are tapped and filtered later
            pass
        g = model.graph
        inits = {i.name for i in g.initializer}
        types = {vi.name: vi.type.tensor_type.elem_type for vi in list(g.value_info) + list(g.output) + list(g.input)}
        existing = {o.name for o in g.output}
        self.producers: dict[str, str] = {}
        self.op_types: dict[str, str] = {}
        self.order: list[str] = []
        self.node_names = {n.name for n in g.node if n.name}
        for inp in g.input:
            if inp.name not in inits:
                self.producers[inp.name] = inp.name
                self.op_types[inp.name] = "Input"
                self.order.append(inp.name)
        for node in g.node:
            if node.op_type == "Constant":
                continue
            for out in node.output:
                if not out or out in inits:
                    continue
                if types.get(out, onnx.TensorProto.FLOAT) != onnx.TensorProto.FLOAT:
                    continue
                self.producers[out] = node.name or out
                self.op_types[out] = node.op_type
                self.order.append(out)
                if out not in existing:
                    g.output.append(onnx.helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, None))
                    existing.add(out)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.intra_op_num_threads = 1
        self._sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        self._names = [o.name for o in self._sess.get_outputs()]
        self.input_names = [i.name for i in self._sess.get_inputs()]

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self._sess.run(self._names, feed)
        out = {n: v for n, v in zip(self._names, values) if n in self.producers}
        for name in self.input_names:
            if name in self.producers:
                out[name] = np.asarray(feed[name])
        return out
