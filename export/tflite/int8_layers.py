"""The INT8 layers of a full-integer TFLite model and where each reads its float counterpart: what the passes that
edit an INT8 model after TensorFlow's quantizer share (bias_correction.py patches int32 biases, weight_rounding.py
int8 weights). Every pass pairs an INT8 op with the float op of the same lowering by the op's output tensor name.

    >>> model, fmodel = unpack(int8_bytes), unpack(float_bytes)
    >>> for g in layer_geometries(model, fmodel, correctable_layers(model)):
    ...     g.kind, g.w_float.shape, g.input_name
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .flatbuffer import FUSED_ACTIVATION_RANGE, op_names, pack, schema as _schema

# ops whose int32 bias (input 2) and int8 weights (input 1) the passes edit
CORRECTABLE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def float_interpreter(content: bytes):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # one thread: the builtin kernels' thread pool spins, and on these small tensors a second thread cost 3x on an
    # idle 2-core machine and 20x when the process shares its core (ShuffleNetV2: 3.3 s / 10.7 s / 69 s)
    it = Interpreter(model_content=content, experimental_preserve_all_tensors=True, num_threads=1,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    return it


def feed(it, x: np.ndarray) -> None:
    d = it.get_input_details()[0]
    if d["dtype"] != np.float32:
        scale, zp = d["quantization"]
        info = np.iinfo(d["dtype"])
        x = np.clip(np.round(x / scale + zp), info.min, info.max).astype(d["dtype"])
    it.set_tensor(d["index"], x)
    it.invoke()


@dataclass
class Layer:
    """A correctable INT8 op: its index, output and bias tensors, output name, fused activation range."""

    op_index: int
    out_tensor: int
    bias_tensor: int
    name: str
    act: tuple[float, float] | None


def correctable_layers(model) -> list[Layer]:
    schema = _schema()
    sg = model.subgraphs[0]
    out = []
    for i, (op, name) in enumerate(zip(sg.operators, op_names(model))):
        if name not in CORRECTABLE_OPS or len(op.inputs) < 3 or op.inputs[2] < 0:
            continue
        bias = sg.tensors[op.inputs[2]]
        if bias.type != schema.TensorType.INT32 or bias.quantization is None or bias.quantization.scale is None:
            continue
        opts = op.builtinOptions
        act = FUSED_ACTIVATION_RANGE.get(getattr(opts, "fusedActivationFunction", 0))
        out.append(Layer(i, op.outputs[0], op.inputs[2], sg.tensors[op.outputs[0]].name.decode(), act))
    return out


def unshare_biases(model, int8_model: bytes, wanted: list[Layer]) -> bytes:
    """TensorFlow stores identical constants once (e.g. two all-zero biases): give every shared bias of the `wanted`
    layers its own copy in `model` (unpacked `int8_model`) and repack once; from here on a pass patches the bias
    bytes in place (same size, no repacking). Returns `int8_model` itself when nothing was shared."""
    sg = model.subgraphs[0]
    users = Counter(t.buffer for g in model.subgraphs for t in g.tensors)
    cloned = False
    for ly in wanted:
        bias_t = sg.tensors[ly.bias_tensor]
        if users[bias_t.buffer] > 1:
            users[bias_t.buffer] -= 1
            clone = _schema().BufferT()
            clone.data = np.array(model.buffers[bias_t.buffer].data, dtype=np.uint8, copy=True)
            model.buffers.append(clone)
            bias_t.buffer = len(model.buffers) - 1
            cloned = True
    return pack(model) if cloned else int8_model


def buffer_offsets(blob: bytearray, buffers: Sequence[int]) -> dict[int, tuple[int, int]]:
    """{buffer index: (byte offset, byte length)} of those buffers' data inside the serialized model."""
    m = _schema().Model.GetRootAs(blob, 0)
    out = {}
    for b in buffers:
        tab = m.Buffers(b)._tab
        o = tab.Offset(4)  # Buffer.data
        if o == 0:
            raise ValueError(f"buffer {b} has no inline data (a model over 2 GB keeps buffers outside)")
        out[b] = (tab.Vector(o), tab.VectorLen(o))
    return out


def tensor_array(model, t) -> np.ndarray:
    buf = model.buffers[t.buffer].data
    dtype = {0: np.float32, 2: np.int32, 9: np.int8}[t.type]
    return np.frombuffer(np.asarray(buf, dtype=np.uint8).tobytes(), dtype=dtype).reshape(t.shape)


@dataclass
class Geometry:
    """Where a correctable layer of the INT8 model reads its input and float weights in the float model."""

    layer: Layer
    kind: str
    input_name: str
    w_float: np.ndarray
    w_quant: np.ndarray
    in_scale: float
    in_zp: int
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    same: bool = True
    weight_tensor: int = -1  # the INT8 model's weight tensor index
    w_scale: np.ndarray | None = None  # its per-output-channel (or per-tensor) scale


def quant_params(t) -> tuple[np.ndarray, np.ndarray]:
    q = t.quantization
    scale = np.asarray(q.scale, dtype=np.float64).reshape(-1)
    zp = np.asarray(q.zeroPoint if q.zeroPoint is not None else np.zeros_like(scale), dtype=np.int64).reshape(-1)
    return scale, zp


def layer_geometries(model, fmodel, layers: list[Layer]) -> list[Geometry]:
    """A Geometry per layer of `model` (unpacked INT8) whose op the float model `fmodel` (same lowering) also has,
    with int8 weights and float weights; others are left out."""
    sg, fsg = model.subgraphs[0], fmodel.subgraphs[0]
    kinds = op_names(model)
    fops = {fsg.tensors[op.outputs[0]].name.decode(): op for op in fsg.operators if len(op.outputs)}
    out = []
    for ly in layers:
        op, fop = sg.operators[ly.op_index], fops.get(ly.name)
        if fop is None or len(fop.inputs) < 2:
            continue
        wq_t, wf_t, x_t = sg.tensors[op.inputs[1]], fsg.tensors[fop.inputs[1]], sg.tensors[op.inputs[0]]
        if wq_t.type != 9 or wf_t.type != 0 or fmodel.buffers[wf_t.buffer].data is None:
            continue
        ws, _ = quant_params(wq_t)
        wq = tensor_array(model, wq_t).astype(np.float64)
        axis = wq_t.quantization.quantizedDimension if ws.size > 1 else 0
        shape = [1] * wq.ndim
        shape[axis] = ws.size
        xs, xz = quant_params(x_t)
        g = Geometry(ly, kinds[ly.op_index], fsg.tensors[fop.inputs[0]].name.decode(),
                     tensor_array(fmodel, wf_t).astype(np.float64), wq * ws.reshape(shape), float(xs[0]), int(xz[0]),
                     weight_tensor=int(op.inputs[1]), w_scale=ws)
        o = op.builtinOptions
        if g.kind != "FULLY_CONNECTED":
            g.kernel = (wq.shape[1], wq.shape[2])
            g.stride = (o.strideH, o.strideW)
            g.dilation = (o.dilationHFactor, o.dilationWFactor)
            g.same = o.padding == 0
        out.append(g)
    return out
