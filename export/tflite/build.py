"""ONNX graph -> TensorFlow concrete function, via the registered lowerings (NHWC, tracked layouts)."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from edgeport.errors import UnsupportedOpError

from .fusions import fuse_patterns
from .graph import OnnxGraph, attrs_of, fold_node
from .lowerings import LOWERINGS, NHWC, LoweringContext, Value, identity, scope_name, supported_ops
from .shuffle import find_channel_shuffles

# importing the op families registers their lowerings
from . import ops_conv, ops_elementwise, ops_index, ops_norm, ops_pool  # noqa: E402,F401
from . import ops_reduce, ops_resize, ops_shape  # noqa: E402,F401


class InputLayout(str, enum.Enum):
    """Layout of the TFLite model's 4-D inputs (and 4-D outputs): NHWC (default) or NCHW (one TRANSPOSE each)."""

    NHWC = "nhwc"
    NCHW = "nchw"

    def __str__(self) -> str:
        return self.value


@dataclass
class Lowered:
    """A traced graph: `function` (concrete, inputs in `input_layout`), plus what the trace learned."""

    function: object
    input_names: list[str]
    output_names: list[str]
    input_shapes: dict[str, tuple[int, ...]]   # shapes the TFLite model takes (in input_layout)
    output_perms: dict[str, tuple[int, ...]]   # tflite output = transpose(onnx output, perm)
    layouts: dict[str, tuple[int, ...]] = field(default_factory=dict)   # ONNX tensor -> perm of its tf tensor
    scope_to_onnx: dict[str, str] = field(default_factory=dict)
    transposes: int = 0            # TRANSPOSEs the lowering emitted inside the graph (data movement)
    boundary_transposes: int = 0   # TRANSPOSEs at the I/O boundary (input_layout=nchw)


def const_names(graph: OnnxGraph) -> set[str]:
    """Tensors whose values are known before inference (initializers, Constant/Shape and nodes fed only by them)."""
    known = set(graph.consts)
    for node in graph.nodes:
        ins = [n for n in node.input if n]
        if node.op_type in ("Constant", "Shape") or (ins and all(n in known for n in ins)):
            known.update(o for o in node.output if o)
    return known


def check_supported(graph: OnnxGraph) -> None:
    """Raise UnsupportedOpError for the first node that needs a lowering the converter lacks."""
    known = const_names(graph)
    for node in graph.nodes:
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedOpError(f"{node.domain}::{node.op_type}", node.name or node.output[0], supported_ops())
        if all(o in known for o in node.output if o):
            continue
        if node.op_type not in LOWERINGS:
            raise UnsupportedOpError(node.op_type, node.name or node.output[0], supported_ops())


def channel_shuffle_nhwc(t: tf.Tensor, groups: int) -> tf.Tensor:
    """ShuffleNet's channel shuffle of an NHWC tensor as three transposes XNNPACK tiles well: (HW, C) -> (C, HW),
    swap the two channel factors moving whole H*W rows, and back. The direct form, a 5-D transpose that swaps the two
    innermost factors of every pixel's channels, moves one element at a time: INT8 28x28x116 shuffle 66 us against
    12 us, 28x28x60 in 3 groups 37 us against 7 us (fp32 56 / 21 us and 26 / 14 us)."""
    n, h, w, c = (int(d) for d in t.shape)
    a = tf.transpose(tf.reshape(t, [n, h * w, c]), [0, 2, 1])                               # (N, C, HW)
    a = tf.transpose(tf.reshape(a, [n, groups, c // groups, h * w]), [0, 2, 1, 3])          # (N, C/g, g, HW)
    return tf.reshape(tf.transpose(tf.reshape(a, [n, c, h * w]), [0, 2, 1]), [n, h, w, c])


def _channel_shuffles(graph: OnnxGraph) -> dict[str, tuple[tuple, int]]:
    """First Reshape's output -> ((reshape, transpose, reshape), groups) for every channel shuffle in the graph."""
    found = find_channel_shuffles(graph.model, shapes=graph.shapes)
    return {nodes[0].output[0]: (tuple(nodes), groups) for nodes, _, _, groups in found}


def lower_graph(graph: OnnxGraph, *, input_layout: InputLayout | str = InputLayout.NHWC,
                for_int8: bool = False, output_layout: InputLayout | str | None = None) -> Lowered:
    """Trace the ONNX graph into a TensorFlow concrete function.

    `for_int8`: the trace feeds the full-integer quantizer, so ops whose INT8 kernel XNNPACK does not run are
    written in an equivalent form it does run (HardSwish: see ops_elementwise.hard_swish).

    Inputs: 4-D ONNX inputs (N,C,H,W) become NHWC float32 inputs (N,H,W,C) unless `input_layout="nchw"`.
    Outputs: a 4-D output leaves in `output_layout` (default: the input layout; NCHW costs one TRANSPOSE per 4-D
    output, counted in `boundary_transposes`); other ranks in ONNX layout.
    """
    input_layout = InputLayout(input_layout)
    output_layout = input_layout if output_layout is None else InputLayout(output_layout)
    graph = fuse_patterns(graph)
    check_supported(graph)
    in_shapes = {}
    specs = []
    for name in graph.inputs:
        shape = graph.shapes[name]
        dt = tf.as_dtype(graph.dtypes.get(name, np.dtype(np.float32)))
        tshape = tuple(shape[p] for p in NHWC) if (len(shape) == 4 and input_layout is InputLayout.NHWC) else shape
        in_shapes[name] = tshape
        specs.append(tf.TensorSpec(tshape, dt, name=scope_name(name, set())))
    state: dict = {}
    shuffles = _channel_shuffles(graph)

    def fn(*args):
        ctx = LoweringContext(graph, for_int8=for_int8)
        used: set[str] = set()
        boundary = 0
        skip: set[str] = set()  # first outputs of the Transpose/Reshape of shuffles lowered as a whole
        for name, t in zip(graph.inputs, args):
            shape = graph.shapes[name]
            if len(shape) == 4 and input_layout is InputLayout.NHWC:
                ctx.values[name] = Value(t, NHWC, shape)
            elif len(shape) == 4:
                boundary += 1
                ctx.values[name] = Value(tf.transpose(t, NHWC), NHWC, shape)
            else:
                ctx.values[name] = Value(t, identity(len(shape)), shape)
        for node in graph.nodes:
            if node.output and node.output[0] in skip:
                continue
            shuffle = shuffles.get(node.output[0]) if node.output else None
            if shuffle is not None and isinstance(ctx.values.get(node.input[0]), Value):
                (_, tr, r2), groups = shuffle
                skip.update((tr.output[0], r2.output[0]))
                v = ctx.values[node.input[0]]
                scope = scope_name(r2.output[0], used)
                ctx.scope_to_onnx[scope] = r2.output[0]
                with tf.name_scope(scope):
                    y = channel_shuffle_nhwc(ctx.to_perm(v, NHWC), groups)
                ctx.values[r2.output[0]] = Value(y, NHWC, v.shape)
                ctx.onnx_layout[r2.output[0]] = NHWC
                continue
            ins = [n for n in node.input if n]
            attrs = attrs_of(node)
            if ins and all(not isinstance(ctx.values[n], Value) for n in ins) and node.op_type != "Shape":
                outs = fold_node(node, {n: ctx.values[n] for n in ins}, graph.opset)
            else:
                scope = scope_name(node.output[0], used)
                ctx.scope_to_onnx[scope] = node.output[0]
                with tf.name_scope(scope):
                    outs = LOWERINGS.get(node.op_type)(ctx, node, attrs)
            for oname, val in zip(node.output, outs):
                if oname:
                    ctx.values[oname] = val
                    if isinstance(val, Value):
                        ctx.onnx_layout[oname] = val.perm
        results, perms = [], {}
        for name in graph.outputs:
            v = ctx.values[name]
            if not isinstance(v, Value):
                v = Value(tf.constant(np.asarray(v)), identity(np.ndim(v)), tuple(np.shape(v)))
            if v.rank == 4 and output_layout is InputLayout.NHWC:
                t = ctx.to_perm(v, NHWC)
                perms[name] = NHWC
            else:
                before = ctx.transposes
                t = ctx.to_perm(v, identity(v.rank))
                if v.rank == 4:
                    boundary += ctx.transposes - before
                    ctx.transposes = before
                perms[name] = identity(v.rank)
            results.append(tf.identity(t, name=scope_name(name, used)))
        state.update(ctx=ctx, perms=perms, boundary=boundary)
        return results

    cf = tf.function(fn, input_signature=specs, autograph=False).get_concrete_function()
    ctx = state["ctx"]
    return Lowered(function=cf, input_names=list(graph.inputs), output_names=list(graph.outputs),
                   input_shapes=in_shapes, output_perms=state["perms"], layouts=dict(ctx.onnx_layout),
                   scope_to_onnx=dict(ctx.scope_to_onnx), transposes=ctx.transposes,
                   boundary_transposes=state["boundary"])
