"""ONNX -> TFLite converter: NHWC-native lowering of a static ONNX graph into TensorFlow ops, then TensorFlow's
TFLiteConverter writes fp32 / fp16 / dynamic-range / full-INT8 flatbuffers.

    >>> from edgeport.export.tflite import convert, op_histogram
    >>> res = convert("model.onnx", out_dir="out", precisions=["fp32"])
    >>> op_histogram(res.artifacts["fp32"])
"""
from .build import InputLayout, lower_graph
from .lowerings import LOWERINGS, lowering, supported_ops
from .convert import ConversionResult, IODtype, Precision, artifact_filename, convert, op_histogram
from .tensor_map import TensorMapFile, TensorOrigin, load_tensor_map, tensor_map_path
from .xnnpack import XnnpackCoverage, xnnpack_coverage

__all__ = [
    "ConversionResult", "IODtype", "InputLayout", "LOWERINGS", "Precision", "TensorMapFile", "TensorOrigin",
    "XnnpackCoverage", "artifact_filename", "convert", "load_tensor_map", "lower_graph", "lowering", "op_histogram",
    "supported_ops", "tensor_map_path", "xnnpack_coverage",
]
