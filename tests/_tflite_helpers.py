"""Shared helpers for the TFLite converter tests: tiny ONNX graphs, ORT reference, TFLite run (NHWC aware, through
the engine layer edgeport.runtime.engines)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgeport.runtime.engines import open_engine, run

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
    """Run a converted model on NCHW float feeds through the engine layer (integer I/O quantized and dequantized
    inside it); outputs float, back in ONNX layout (`result`: the converter's ConversionResult)."""
    eng = open_engine("tflite", path)
    # TFLite keeps the signature order of inputs: the i-th input by tensor index is result.input_names[i]
    by_index = sorted(range(len(eng.input_details)), key=lambda k: eng.input_details[k]["index"])
    names = {k: name for k, name in zip(by_index, result.input_names)}
    inputs = []
    for k in range(len(eng.input_details)):
        x = np.asarray(feeds[names[k]], np.float32)
        if x.ndim == 4 and str(result.input_layout) == "nhwc":
            x = x.transpose(0, 2, 3, 1)
        inputs.append(x)
    outs = run(eng, inputs)
    return [np.transpose(y, np.argsort(result.output_perms[name])) for y, name in zip(outs, result.output_names)]
