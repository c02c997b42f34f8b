"""Shared helpers for the TFLite converter tests: tiny ONNX graphs, ORT reference, TFLite run (NHWC aware)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OPSET = 18


def make_model(nodes, inputs: dict, inits: dict | None = None, outputs=("y",), opset: int = OPSET) -> onnx.ModelProto:
    g = helper.make_graph(
        nodes, "t",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, a.shape) for n, a in inputs.items()],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        initializer=[numpy_helper.from_array(np.asarray(v), n) for n, v in (inits or {}).items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def run_ort(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def run_tflite(path, result, feeds: dict) -> list[np.ndarray]:
    """Run a converted model on NCHW float feeds (quantized for integer I/O); outputs float, back in ONNX layout."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    ins = it.get_input_details()
    # TFLite keeps the signature order of inputs; match by shape+order
    for d, name in zip(sorted(ins, key=lambda d: d["index"]), result.input_names):
        x = np.asarray(feeds[name], np.float32)
        if x.ndim == 4 and str(result.input_layout) == "nhwc":
            x = x.transpose(0, 2, 3, 1)
        if d["dtype"] != np.float32:  # integer I/O: quantize with the model's input parameters
            scale, zp = d["quantization"]
            info = np.iinfo(d["dtype"])
            x = np.clip(np.round(x / scale + zp), info.min, info.max).astype(d["dtype"])
        it.set_tensor(d["index"], np.ascontiguousarray(x))
    it.invoke()
    outs = []
    for k, name in enumerate(result.output_names):
        d = it.get_output_details()[k]
        y = it.get_tensor(d["index"])
        if d["dtype"] != np.float32:
            scale, zp = d["quantization"]
            y = (y.astype(np.float32) - zp) * scale
        perm = result.output_perms[name]
        outs.append(np.transpose(y, np.argsort(perm)))
    return outs
