"""ONNX -> TFLite converter: NHWC-native lowering of a static ONNX graph into TensorFlow ops, then TensorFlow's
TFLiteConverter writes fp32 / fp16 / dynamic-range / full-INT8 flatbuffers.

    >>> from edgeport.export.tflite import convert, op_histogram
    >>> res = convert("model.onnx", out_dir="out", precisions=["fp32"])
    >>> op_histogram(res.artifacts["fp32"])
"""
from ._build import InputLayout, lower_graph
from ._lowering import LOWERINGS, lowering, supported_ops
from .convert import (ConversionResult, IODtype, Precision, TensorOrigin, XnnpackCoverage, artifact_filename,
                      convert, op_histogram, shuffle_pass_available, xnnpack_coverage)

__all__ = [
    "ConversionResult", "IODtype", "InputLayout", "LOWERINGS", "Precision", "TensorOrigin", "artifact_filename",
    "XnnpackCoverage", "convert", "lower_graph", "lowering", "op_histogram", "shuffle_pass_available", "supported_ops",
    "xnnpack_coverage",
]
