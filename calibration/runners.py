"""Run one artifact (torch module, ONNX via ONNX Runtime, TFLite via the LiteRT interpreter) over samples.

Input: float32 (N, C, H, W) samples in torch layout, normalised per the spec. Output: float32 (N, ...) outputs of
the first model output, in the reference layout (integer outputs dequantized, NHWC feature maps back to NCHW).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def run_torch(module, samples: np.ndarray, *, batch: int = 32) -> np.ndarray:
    import torch

    outs = []
    with torch.no_grad():
        for i in range(0, len(samples), batch):
            y = module(torch.from_numpy(np.ascontiguousarray(samples[i:i + batch])))
            if isinstance(y, (tuple, list)):
                y = y[0]
            outs.append(y.float().numpy())
    return np.concatenate(outs, axis=0)


def run_onnx(path: str | Path, samples: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: samples[i:i + 1]})[0] for i in range(len(samples))], axis=0)


def quantize_input(x: np.ndarray, detail: dict) -> np.ndarray:
    """float -> the tensor's integer dtype with its scale/zero-point (identity for float tensors)."""
    dtype = detail["dtype"]
    if dtype == np.float32:
        return x.astype(np.float32)
    scale, zp = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zp), info.min, info.max).astype(dtype)


def dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return y.astype(np.float32)
    scale, zp = detail["quantization"]
    return ((y.astype(np.float32) - zp) * scale).astype(np.float32)


def tflite_interpreter(path: str | Path, *, preserve_all_tensors: bool = False):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kw = {}
    if preserve_all_tensors:  # delegates hide intermediate tensors
        kw = {"experimental_preserve_all_tensors": True,
              "experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    interp = Interpreter(model_path=str(path), num_threads=1, **kw)
    interp.allocate_tensors()
    return interp


def to_tflite_layout(sample: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(1, C, H, W) -> the interpreter's input shape (NHWC or NCHW)."""
    if tuple(sample.shape) == tuple(shape):
        return sample
    nhwc = sample.transpose(0, 2, 3, 1)
    if tuple(nhwc.shape) == tuple(shape):
        return np.ascontiguousarray(nhwc)
    raise ValueError(f"sample {sample.shape} fits neither the TFLite input {tuple(shape)} nor its NHWC form")


def run_tflite(path: str | Path, samples: np.ndarray, *, interpreter=None, on_sample=None) -> np.ndarray:
    """`on_sample(i, interpreter)` is called after each invoke (per-layer attribution reads tensors there)."""
    interp = interpreter or tflite_interpreter(path)
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    outs = []
    for i in range(len(samples)):
        interp.set_tensor(inp["index"], quantize_input(to_tflite_layout(samples[i:i + 1], inp["shape"]), inp))
        interp.invoke()
        y = dequantize(interp.get_tensor(out["index"]), out)
        if y.ndim == 4:  # feature-map outputs come back NHWC
            y = y.transpose(0, 3, 1, 2)
        outs.append(y)
        if on_sample is not None:
            on_sample(i, interp)
    return np.concatenate(outs, axis=0)


def run_artifact(path: str | Path, samples: np.ndarray) -> np.ndarray:
    p = str(path)
    if p.endswith(".onnx"):
        return run_onnx(p, samples)
    if p.endswith(".tflite"):
        return run_tflite(p, samples)
    raise ValueError(f"unknown artifact type: {p}")
