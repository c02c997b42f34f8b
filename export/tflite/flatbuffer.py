"""Read and rewrite TFLite flatbuffers through TensorFlow's generated schema (object API): the passes that edit a
converted model (bias correction, same-scale range unification, percentile ranges) share these four helpers."""
from __future__ import annotations

# TFLite ActivationFunctionType fused into an op -> the range its output is confined to (NONE and others: absent)
FUSED_ACTIVATION_RANGE = {1: (0.0, float("inf")), 2: (-1.0, 1.0), 3: (0.0, 6.0)}  # RELU, RELU_N1_TO_1, RELU6


def schema():
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


def unpack(buf: bytes):
    """bytes -> mutable ModelT."""
    return schema().ModelT.InitFromPackedBuf(bytearray(buf), 0)


def pack(model) -> bytes:
    """ModelT -> bytes (file identifier TFL3)."""
    import flatbuffers

    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def op_names(model) -> list[str]:
    """Builtin op name (e.g. "CONV_2D") of every operator of subgraph 0, in execution order."""
    codes = {v: k for k, v in vars(schema().BuiltinOperator).items() if not k.startswith("_")}
    out = []
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        out.append(codes.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM"))
    return out
