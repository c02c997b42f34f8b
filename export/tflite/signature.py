"""A converted TFLite model's outputs named as the ONNX model names them, and a signature that says so.

TensorFlow's converter calls a concrete function's outputs `Identity`, `Identity_1`, ... and writes no signature.
`name_io` renames each graph output tensor after the ONNX output at the same position (`logits`, `map`, a user
model's own names) and adds the `serving_default` signature: every ONNX input and output name bound to its tensor,
in the model's order. Input tensors keep the converter's names (the saved tensor map traces them by name); the
signature carries the ONNX spelling. Interpreters read the same tensors by the same indices as before.
"""
from __future__ import annotations

from .flatbuffer import pack, schema, unpack

SIGNATURE_KEY = "serving_default"


def _tensor_maps(names: list[str], indices: list[int]) -> list:
    maps = []
    for name, index in zip(names, indices):
        entry = schema().TensorMapT()
        entry.name, entry.tensorIndex = name, int(index)
        maps.append(entry)
    return maps


def name_io(blob: bytes, *, input_names: list[str], output_names: list[str]) -> bytes:
    """`blob` with its output tensors named `output_names` and a `serving_default` signature over `input_names`
    and `output_names` (the ONNX graph's, in order). A model whose input or output count differs from the names
    is returned unchanged."""
    model = unpack(blob)
    graph = model.subgraphs[0]
    if len(graph.inputs) != len(input_names) or len(graph.outputs) != len(output_names):
        return blob
    for index, name in zip(graph.outputs, output_names):
        graph.tensors[index].name = name
    sig = schema().SignatureDefT()
    sig.signatureKey, sig.subgraphIndex = SIGNATURE_KEY, 0
    sig.inputs = _tensor_maps(list(input_names), list(graph.inputs))
    sig.outputs = _tensor_maps(list(output_names), list(graph.outputs))
    model.signatureDefs = [sig]
    return pack(model)
