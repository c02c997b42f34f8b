"""Channel-shuffle removal: an exact ONNX -> ONNX rewrite run after onnxsim and before the NHWC lowering.

A channel shuffle (Reshape (N,C,H,W)->(N,g,C/g,H,W), Transpose (0,2,1,3,4), Reshape back) is a fixed permutation of
channels. This pass tracks, for every 4-D activation, where each *logical* (original-graph) channel physically lives:
`(physical tensor, channel)` per logical channel. Shuffles, channel Splits/Slices and channel Concats then cost
nothing: they only relabel. Physical tensors are produced only by real compute:

- a 1x1 (any group=1) Conv takes its input in whatever physical order is cheapest to assemble; its weights' input
  channels are permuted to match. Its *output* channel order is free (weight rows and bias permuted) and is planned
  so that every later consumer finds its channels contiguously (see `_plan_orders`);
- per-channel ops (depthwise Conv, BatchNormalization, PRelu, Relu-like, pools, Add/Mul by a per-channel constant)
  run on the physical tensor as it is, their per-channel parameters permuted;
- where a consumer needs a physical tensor that does not exist yet, it is assembled from contiguous runs by Slice +
  Concat ("materialised"). A consumer that needs a specific order that cannot be assembled from few runs gets the
  shuffle back as Reshape/Transpose/Reshape on one tensor;
- the pieces an absorbed shuffle leaves (ShuffleNetV2: each unit reads its input from several producers) are
  channel Slices of a conv output, or, with `PieceForm.CONVS`, each piece is computed by its own conv
  (`split_sliced_convs`). Which is faster depends on the CPU (`PieceForm`);
- a shuffle that feeds a grouped Conv (ShuffleNetV1, FBNet-A) cannot be absorbed: it is kept in the form chosen by
  `GroupedShuffleForm` (default: the Reshape/Transpose/Reshape, measured fastest).

I/O contract: `remove_channel_shuffles(model=...)` takes a shape-inferable, simplified ONNX model (static shapes,
NCHW) and returns `(rewritten_model, perms)`. The rewritten model computes exactly the same graph outputs (same names,
order, shapes and channel order). `perms[name] = p` for every tensor of the rewritten graph that carries an original
tensor's name with its channels permuted: `rewritten[:, i] == original[:, p[i]]`; identities are omitted. A piece
that a split conv computes (`<tensor>_slice__sp<k>`, see `split_sliced_convs`) has `piece[:, i] == tensor[:, p[i]]`.
"""
from __future__ import annotations

import collections
import enum
import re
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgeport.errors import ExportError
from edgeport.export.tflite._graph import unique_name

__all__ = ["GroupedShuffleForm", "PieceForm", "remove_channel_shuffles", "ShufflePassStats", "find_channel_shuffles",
           "shuffle_permutation", "split_sliced_convs"]

# consumers that need more runs than this get a specific order by other means (shuffle or Gather)
_MAX_RUNS = 12
_UNARY = {"Relu", "Clip", "Sigmoid", "HardSwish", "HardSigmoid", "LeakyRelu", "Elu", "Tanh", "Selu", "Softplus",
          "Identity", "Neg", "Abs", "Exp", "Sqrt", "Mish", "Gelu"}
_POOLS = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool"}
_BINARY = {"Add", "Mul", "Sub", "Div", "Max", "Min"}


class GroupedShuffleForm(str, enum.Enum):
    """Exact form of a channel shuffle that feeds a grouped convolution (where absorbing it is impossible: the
    permutation mixes channels across the groups of both the producing and the consuming grouped conv).

    TRANSPOSE: Reshape / Transpose / Reshape on the bottleneck tensor (fastest measured, the default; the lowering
    writes it as three transposes XNNPACK tiles well, `_build.channel_shuffle_nhwc`).
    SLICES: the consumer's groups assembled from contiguous runs by Slice + Concat (two copies).
    DENSE: the consuming grouped conv becomes a group=1 conv with zero blocks, input channels permuted (no copy,
    `groups` times that conv's multiply-adds). `benchmarks/converter_speed.py --parts forms` times all three."""

    TRANSPOSE = "transpose"
    SLICES = "slices"
    DENSE = "dense"


class PieceForm(str, enum.Enum):
    """How a piece of a conv output that an absorbed shuffle reads is produced (ShuffleNetV2/AugShuffleNet: after k
    shuffles, a unit's input channels come from k producers, each read in channel runs).

    SLICES (default): the producing conv computes all its channels; each run is a Slice (a copy; XNNPACK copies a
    channel slice of an NHWC tensor one pixel at a time).
    CONVS: the producing conv is split into one conv per run (`split_sliced_convs`): no copy, more and narrower
    convs. ShuffleNetV2 1.0x INT8 goes from 37 CONV_2D + 69 SLICE to 90 CONV_2D + 0 SLICE.

    Measured INT8 / shuffle-free bound, 1 thread XNNPACK (`benchmarks/converter_speed.py --parts bound` times both):
    on an Intel Xeon (AVX-512, this project's CI machine) SLICES 1.05-1.07 and CONVS 1.17-1.25 for ShuffleNetV2 and
    AugShuffleNet; on an AMD EPYC Zen 5, CONVS 1.03-1.09 and SLICES 1.07-1.11. fp32 is faster with SLICES on both
    (narrow convs waste most of XNNPACK's fp32 GEMM tile). docs/converter_speed.md has every run."""

    SLICES = "slices"
    CONVS = "convs"


def shuffle_permutation(channels: int, groups: int) -> np.ndarray:
    """`p` with shuffled[:, j] == x[:, p[j]] for the ShuffleNet shuffle of `channels` channels in `groups` groups."""
    k = channels // groups
    return np.arange(channels).reshape(groups, k).T.reshape(-1)


@dataclass
class ShufflePassStats:
    shuffles_found: int = 0
    shuffles_materialised: int = 0  # kept as an explicit shuffle (Reshape/Transpose/Reshape)
    gathers: int = 0
    slices: int = 0  # Slice copies the pass added (after split_sliced_convs)
    concats: int = 0
    concat_inputs: list[int] = field(default_factory=list)
    plan_iterations: int = 0
    densified: int = 0
    convs_split: int = 0


# ---------------------------------------------------------------------------------------------------------------
# graph helpers

class _Consts:
    def __init__(self, model: onnx.ModelProto):
        self.values: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        for n in model.graph.node:
            if n.op_type == "Constant" and len(n.output) == 1:
                for a in n.attribute:
                    if a.name == "value":
                        self.values[n.output[0]] = numpy_helper.to_array(a.t)

    def get(self, name: str):
        return self.values.get(name)


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    out = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        t = vi.type.tensor_type
        if t.HasField("shape") and all(d.HasField("dim_value") for d in t.shape.dim):
            out[vi.name] = tuple(d.dim_value for d in t.shape.dim)
    for i in model.graph.initializer:
        out[i.name] = tuple(i.dims)
    return out


def find_channel_shuffles(model: onnx.ModelProto, *, shapes: dict[str, tuple[int, ...]] | None = None,
                          ) -> list[tuple[list[onnx.NodeProto], str, str, int]]:
    """Every Reshape(N,g,C/g,H,W) -> Transpose(0,2,1,3,4) -> Reshape(N,C,H,W) whose intermediates have no other
    consumer: list of (the three nodes, input tensor, output tensor, groups). `shapes`: static shapes already inferred
    (OnnxGraph.shapes), else inferred here."""
    if shapes is None:
        shapes = _shapes(model)
    users = collections.defaultdict(list)
    for n in model.graph.node:
        for i in n.input:
            users[i].append(n)
    graph_outputs = {o.name for o in model.graph.output}
    found = []
    for r1 in model.graph.node:
        if r1.op_type != "Reshape":
            continue
        xs = shapes.get(r1.input[0])
        s5 = shapes.get(r1.output[0])
        if xs is None or s5 is None or len(xs) != 4 or len(s5) != 5:
            continue
        n, c, h, w = xs
        if s5[0] != n or s5[3:] != (h, w) or s5[1] * s5[2] != c:
            continue
        u1 = users[r1.output[0]]
        if len(u1) != 1 or u1[0].op_type != "Transpose" or r1.output[0] in graph_outputs:
            continue
        tr = u1[0]
        if list(_attr(tr, "perm", [])) != [0, 2, 1, 3, 4]:
            continue
        u2 = users[tr.output[0]]
        if len(u2) != 1 or u2[0].op_type != "Reshape" or tr.output[0] in graph_outputs:
            continue
        r2 = u2[0]
        if shapes.get(r2.output[0]) != xs:
            continue
        found.append(([r1, tr, r2], r1.input[0], r2.output[0], int(s5[1])))
    return found


# ---------------------------------------------------------------------------------------------------------------
# the rewrite

@dataclass
class _Value:
    """A logical 4-D activation: logical channel j lives in physical tensor `src[j]` at channel `ch[j]`."""

    src: list[str]
    ch: np.ndarray

    @property
    def channels(self) -> int:
        return len(self.ch)

    def sources(self) -> list[str]:
        seen = []
        for s in self.src:
            if not seen or seen[-1] != s:
                if s not in seen:
                    seen.append(s)
        return seen

    def take(self, idx) -> "_Value":
        idx = np.asarray(idx, dtype=np.int64)
        return _Value([self.src[i] for i in idx], self.ch[idx])

    def pairs(self):
        return list(zip(self.src, self.ch.tolist()))


def _runs(pairs) -> list[tuple[str, int, int]]:
    """Maximal runs (src, start, stop) of consecutive channels of the same source, in the given order."""
    runs: list[list] = []
    for s, c in pairs:
        if runs and runs[-1][0] == s and runs[-1][2] == c:
            runs[-1][2] += 1
        else:
            runs.append([s, c, c + 1])
    return [tuple(r) for r in runs]


class _Rewriter:
    def __init__(self, model: onnx.ModelProto, orders: dict[str, np.ndarray], max_concat_inputs: int = 5,
                 grouped_form: GroupedShuffleForm = GroupedShuffleForm.TRANSPOSE):
        self.model = model
        self.grouped_form = GroupedShuffleForm(grouped_form)
        self.max_concat_inputs = max(2, int(max_concat_inputs))
        self.orders = orders  # conv node output name -> physical order (phys i holds logical orders[i])
        self.shapes = _shapes(model)
        self.consts = _Consts(model)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.values: dict[str, _Value] = {}  # original tensor name -> logical value
        self.phys_channels: dict[str, int] = {}
        self.origin: dict[str, list] = {}  # phys tensor -> per channel (conv key, logical channel) or None
        self.events: list[list[tuple[str, int]]] = []  # every physical assembly, in order
        self.cache: dict[tuple, tuple[str, np.ndarray]] = {}
        self.stats = ShufflePassStats()
        self.counter = 0
        self.graph_outputs = {o.name for o in model.graph.output}
        self.used_names = {n for node in model.graph.node for n in list(node.input) + list(node.output)}
        self.used_names |= {i.name for i in model.graph.initializer} | {i.name for i in model.graph.input}
        self.perm_of: dict[str, np.ndarray] = {}
        self.phys_shape: dict[str, tuple] = {}

    # -- naming -----------------------------------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        while True:
            self.counter += 1
            name = f"{base}__sp{self.counter}"
            if name not in self.used_names:
                self.used_names.add(name)
                return name

    def const(self, base: str, arr: np.ndarray) -> str:
        name = self.fresh(base)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    # -- physical tensors ---------------------------------------------------------------------------------------
    def new_phys(self, name: str, channels: int, origin: list, shape) -> None:
        self.phys_channels[name] = channels
        self.origin[name] = origin
        self.phys_shape[name] = (shape[0], channels, shape[2], shape[3])

    def is_tracked(self, name: str) -> bool:
        return name in self.values

    def track_phys(self, orig_name: str, phys: str, logical_at_phys: np.ndarray) -> None:
        """The original tensor `orig_name` is physical tensor `phys` with phys channel i = logical logical_at_phys[i]."""
        ch = np.empty_like(logical_at_phys)
        ch[logical_at_phys] = np.arange(len(logical_at_phys))
        self.values[orig_name] = _Value([phys] * len(ch), ch)
        if phys == orig_name and not np.array_equal(logical_at_phys, np.arange(len(ch))):
            self.perm_of[phys] = logical_at_phys.copy()

    def phys_name_for(self, orig: str, logical_at_phys: np.ndarray) -> str:
        identity = np.array_equal(logical_at_phys, np.arange(len(logical_at_phys)))
        if orig in self.graph_outputs and not identity:
            return self.fresh(orig)
        return orig

    def assemble(self, pairs: list[tuple[str, int]], base: str) -> str:
        """A physical tensor holding exactly `pairs` in this order, built from Slice/Concat of contiguous runs."""
        self.events.append(pairs)
        runs = _runs(pairs)
        if len(runs) == 1 and runs[0][1] == 0 and runs[0][2] == self.phys_channels[runs[0][0]]:
            return runs[0][0]
        key = ("runs", tuple(runs))
        if key in self.cache:
            return self.cache[key][0]
        pieces = []
        for s, a, b in runs:
            if a == 0 and b == self.phys_channels[s]:
                pieces.append(s)
                continue
            out = self.fresh(f"{s}_slice")
            self.nodes.append(helper.make_node(
                "Slice", [s, self.const("starts", np.array([a], np.int64)), self.const("ends", np.array([b], np.int64)),
                          self.const("axes", np.array([1], np.int64))], [out], name=out))
            self.stats.slices += 1
            self.new_phys(out, b - a, self.origin[s][a:b], self.phys_shape[s])
            pieces.append(out)
        fan_in = self.max_concat_inputs
        while len(pieces) > fan_in:  # XNNPACK delegates concatenations of at most 5 inputs: nest the first ones
            k = min(fan_in, len(pieces) - fan_in + 1)
            inner = self.fresh(f"{base}_cat")
            self.nodes.append(helper.make_node("Concat", pieces[:k], [inner], name=inner, axis=1))
            self.stats.concats += 1
            self.stats.concat_inputs.append(k)
            sub = [self.phys_channels[p] for p in pieces[:k]]
            self.new_phys(inner, sum(sub), [o for p in pieces[:k] for o in self.origin[p]], self.phys_shape[pieces[0]])
            pieces = [inner] + pieces[k:]
        if len(pieces) == 1:
            out = pieces[0]
        else:
            out = self.fresh(f"{base}_cat")
            self.nodes.append(helper.make_node("Concat", pieces, [out], name=out, axis=1))
            self.stats.concats += 1
            self.stats.concat_inputs.append(len(pieces))
        self.new_phys(out, len(pairs), [self.origin[s][c] for s, c in pairs], self.phys_shape[pairs[0][0]])
        self.cache[key] = (out, None)
        return out

    def any_order(self, v: _Value, base: str) -> tuple[str, np.ndarray]:
        """Physical tensor holding v's channels in the cheapest order; returns (name, logical index at each phys pos)."""
        by_src = collections.OrderedDict()
        for j, (s, c) in enumerate(v.pairs()):
            by_src.setdefault(s, []).append((c, j))
        order: list[int] = []
        pairs = []
        # smallest contributions first: a nested concatenation then copies the fewest channels twice
        for s, lst in sorted(by_src.items(), key=lambda kv: len(kv[1])):
            lst.sort()
            order += [j for _, j in lst]
            pairs += [(s, c) for c, _ in lst]
        return self.assemble(pairs, base), np.array(order, dtype=np.int64)

    def specific(self, v: _Value, logical_order: np.ndarray, base: str) -> str:
        """Physical tensor whose phys channel i holds logical channel logical_order[i] of v."""
        w = v.take(logical_order)
        pairs = w.pairs()
        runs = _runs(pairs)
        if len(runs) <= _MAX_RUNS:
            return self.assemble(pairs, base)
        # one whole source in a shuffled order: emit the shuffle itself (measured: cheapest exact form)
        whole = self.whole_shuffle(w)
        if whole is not None:
            return self.emit_shuffle(*whole, base)
        # fall back: assemble in the cheapest order, then Gather (exact, but not delegated by XNNPACK)
        phys, order = self.any_order(w, base)
        out = self.fresh(f"{base}_gather")
        self.nodes.append(helper.make_node("Gather", [phys, self.const("idx", np.argsort(order).astype(np.int64))],
                                           [out], name=out, axis=1))
        self.stats.gathers += 1
        self.new_phys(out, len(pairs), [self.origin[s][c] for s, c in pairs], self.phys_shape[pairs[0][0]])
        return out

    def whole_shuffle(self, w: _Value) -> tuple[str, int] | None:
        """(source, groups) when w is all of one physical tensor in ShuffleNet-shuffled order, else None."""
        srcs = set(w.src)
        if len(srcs) != 1:
            return None
        s = next(iter(srcs))
        n = self.phys_channels[s]
        if n != w.channels:
            return None
        for g in range(2, n):
            if n % g == 0 and np.array_equal(w.ch, shuffle_permutation(n, g)):
                return s, g
        return None

    def emit_shuffle(self, src: str, groups: int, base: str) -> str:
        n, c, h, w = self.shapes_phys(src)
        r1, tr, out = self.fresh(f"{base}_r5"), self.fresh(f"{base}_t5"), self.fresh(f"{base}_shuffled")
        self.nodes += [
            helper.make_node("Reshape", [src, self.const("shape5", np.array([n, groups, c // groups, h, w], np.int64))],
                             [r1], name=r1),
            helper.make_node("Transpose", [r1], [tr], name=tr, perm=[0, 2, 1, 3, 4]),
            helper.make_node("Reshape", [tr, self.const("shape4", np.array([n, c, h, w], np.int64))], [out], name=out),
        ]
        self.stats.shuffles_materialised += 1
        p = shuffle_permutation(c, groups)
        self.new_phys(out, c, [self.origin[src][k] for k in p], self.phys_shape[src])
        return out

    def shapes_phys(self, phys: str) -> tuple[int, int, int, int]:
        s = self.phys_shape[phys]
        return (s[0], self.phys_channels[phys], s[2], s[3])

    def logical_input(self, name: str, base: str) -> str:
        """Original tensor `name` as a physical tensor in its original channel order."""
        if not self.is_tracked(name):
            return name
        v = self.values[name]
        return self.specific(v, np.arange(v.channels), base)

    # -- main loop ----------------------------------------------------------------------------------------------
    def run(self) -> onnx.ModelProto:
        g = self.model.graph
        found = find_channel_shuffles(self.model)
        shuffles = {nodes[2].output[0]: (nodes, src, groups) for nodes, src, _, groups in found}
        skipped = {id(n) for nodes, *_ in found for n in nodes[:2]}
        self.stats.shuffles_found = len(shuffles)
        for inp in g.input:
            s = self.shapes.get(inp.name)
            if s is not None and len(s) == 4 and inp.name not in self.consts.values:
                self.new_phys(inp.name, s[1], [None] * s[1], s)
                self.track_phys(inp.name, inp.name, np.arange(s[1]))
        for node in g.node:
            if id(node) in skipped:
                continue
            if node.output and node.output[0] in shuffles:
                nodes, src, groups = shuffles[node.output[0]]
                if self.is_tracked(src):
                    v = self.values[src]
                    self.values[node.output[0]] = v.take(shuffle_permutation(v.channels, groups))
                else:  # not a channel-tracked tensor: keep the shuffle as it was
                    self.nodes += nodes
                continue
            self.visit(node)
        return self.finish()

    def out4(self, name: str):
        s = self.shapes.get(name)
        return s if s is not None and len(s) == 4 else None

    def visit(self, node: onnx.NodeProto) -> None:
        op = node.op_type
        tracked = [i for i in node.input if i and self.is_tracked(i)]
        if not tracked:
            self.nodes.append(node)
            for o in node.output:
                s = self.out4(o)
                if s is not None and o not in self.consts.values:
                    self.new_phys(o, s[1], [None] * s[1], s)
                    self.track_phys(o, o, np.arange(s[1]))
            return
        x = node.input[0]
        handler = getattr(self, f"op_{op}", None)
        if handler is not None and handler(node):
            return
        if op in _UNARY or op in _POOLS:
            if self.per_channel(node, {}):
                return
        self.generic(node)

    def generic(self, node: onnx.NodeProto) -> None:
        new_inputs = [self.logical_input(i, node.name or node.op_type) if i else i for i in node.input]
        new = helper.make_node(node.op_type, new_inputs, list(node.output), name=node.name, domain=node.domain)
        new.attribute.extend(node.attribute)
        self.nodes.append(new)
        for o in node.output:
            s = self.out4(o)
            if s is not None:
                self.new_phys(o, s[1], [None] * s[1], s)
                self.track_phys(o, o, np.arange(s[1]))

    def single_source(self, v: _Value, base: str) -> tuple[str, np.ndarray, np.ndarray | None]:
        """Physical tensor to run a per-channel op on. Returns (phys, logical index at each phys pos, None)."""
        srcs = set(v.src)
        if len(srcs) == 1:
            s = next(iter(srcs))
            n = self.phys_channels[s]
            if n == v.channels:
                order = np.empty(n, np.int64)
                order[v.ch] = np.arange(n)
                return s, order, None
            lo, hi = int(v.ch.min()), int(v.ch.max()) + 1
            if hi - lo == v.channels:  # a contiguous range: one slice
                pairs = [(s, c) for c in range(lo, hi)]
                phys = self.assemble(pairs, base)
                order = np.empty(v.channels, np.int64)
                order[v.ch - lo] = np.arange(v.channels)
                return phys, order, None
        phys, order = self.any_order(v, base)
        return phys, order, None

    def per_channel(self, node: onnx.NodeProto, params: dict[int, int]) -> bool:
        """Run `node` on the physical tensor of its first input; `params` maps input index -> axis of the channel
        dimension in that constant (permuted to the physical order). False when not applicable."""
        out = node.output[0]
        s = self.out4(out)
        if s is None or len(node.output) != 1:
            return False
        v = self.values[node.input[0]]
        if s[1] != v.channels:
            return False
        new_inputs = list(node.input)
        for idx, inp in enumerate(node.input[1:], start=1):
            if inp and self.is_tracked(inp):
                return False
            if inp and idx not in params and self.consts.get(inp) is None and inp not in self.shapes:
                return False
        phys, order, _ = self.single_source(v, node.name or node.op_type)
        new_inputs[0] = phys
        for idx, axis in params.items():
            if idx < len(node.input) and node.input[idx]:
                arr = self.consts.get(node.input[idx])
                if arr is None:
                    return False
                if arr.ndim > axis and arr.shape[axis] == v.channels:
                    arr = np.take(arr, order, axis=axis)
                elif arr.size != 1:
                    return False
                new_inputs[idx] = self.const(node.input[idx], arr)
        name = self.phys_name_for(out, order)
        new = helper.make_node(node.op_type, new_inputs, [name], name=node.name, domain=node.domain)
        new.attribute.extend(node.attribute)
        self.nodes.append(new)
        self.new_phys(name, v.channels, list(self.origin[phys]), s)
        self.track_phys(out, name, order)
        return True

    # -- op handlers (return False to fall back to generic) --------------------------------------------------
    def op_Conv(self, node) -> bool:
        x, w_name = node.input[0], node.input[1]
        b_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
        w = self.consts.get(w_name)
        b = self.consts.get(b_name) if b_name else None
        if w is None or (b_name and b is None) or any(self.is_tracked(i) for i in node.input[1:]):
            return False
        group = int(_attr(node, "group", 1))
        v = self.values[x]
        cout, cin_g = w.shape[0], w.shape[1]
        out = node.output[0]
        s = self.out4(out)
        if s is None:
            return False
        if group == v.channels and cout == group and cin_g == 1:  # depthwise: per-channel
            return self.per_channel(node, {1: 0, 2: 0})
        if group == 1:
            phys, order = self.any_order(v, node.name or "conv")
            w_in = w[:, order]
        else:
            # grouped: block k holds logical [k*cin_g, (k+1)*cin_g); order inside a block is free
            blocks = []
            for k in range(group):
                sub = v.take(np.arange(k * cin_g, (k + 1) * cin_g))
                srt = sorted(range(cin_g), key=lambda j: (sub.src[j], int(sub.ch[j])))
                blocks.append(k * cin_g + np.array(srt, np.int64))
            order = np.concatenate(blocks)
            runs = len(_runs(v.take(order).pairs()))
            # (whole sources side by side, e.g. a relabelled Concat, are simply concatenated in every form)
            if runs > len(set(v.src)) and self.grouped_form is GroupedShuffleForm.DENSE:
                return self.dense_conv(node, v, w, b, group, s)
            whole = self.whole_shuffle(v) if runs > 1 and self.grouped_form is GroupedShuffleForm.TRANSPOSE else None
            if whole is not None:
                order = np.arange(v.channels)
                phys = self.emit_shuffle(*whole, node.name or "conv")
            elif runs <= _MAX_RUNS:
                phys = self.assemble(v.take(order).pairs(), node.name or "conv")
            else:
                order = np.arange(v.channels)
                phys = self.specific(v, order, node.name or "conv")
            w_in = np.concatenate([w[k * (cout // group):(k + 1) * (cout // group)][:, order[k * cin_g:(k + 1) * cin_g] - k * cin_g]
                                   for k in range(group)])
        out_order = self.orders.get(out) if group == 1 else None
        if out_order is None:
            out_order = np.arange(cout)
        w_new = w_in[out_order]
        inputs = [phys, self.const(w_name, w_new)]
        if b is not None:
            inputs.append(self.const(b_name, b[out_order]))
        name = self.phys_name_for(out, out_order)
        new = helper.make_node("Conv", inputs, [name], name=node.name)
        new.attribute.extend(node.attribute)
        self.nodes.append(new)
        origin = [(out, int(k)) for k in out_order] if group == 1 else [None] * cout
        self.new_phys(name, cout, origin, s)
        self.track_phys(out, name, out_order)
        return True

    def dense_conv(self, node, v: _Value, w: np.ndarray, b: np.ndarray | None, group: int, s) -> bool:
        """Grouped conv whose input is scattered: one group=1 conv over the input as it physically lies, the
        weights expanded to a block-diagonal matrix (zeros across groups) and their columns permuted to match."""
        phys, phys_order = self.any_order(v, node.name or "conv")
        cout, cin_g = w.shape[0], w.shape[1]
        co_g = cout // group
        dense = np.zeros((cout, v.channels) + w.shape[2:], w.dtype)
        for k in range(group):
            dense[k * co_g:(k + 1) * co_g, k * cin_g:(k + 1) * cin_g] = w[k * co_g:(k + 1) * co_g]
        inputs = [phys, self.const(node.input[1], np.ascontiguousarray(dense[:, phys_order]))]
        if b is not None:
            inputs.append(self.const(node.input[2], b))
        out = node.output[0]
        name = self.phys_name_for(out, np.arange(cout))
        new = helper.make_node("Conv", inputs, [name], name=node.name)
        new.attribute.extend(a for a in node.attribute if a.name != "group")
        self.nodes.append(new)
        self.new_phys(name, cout, [None] * cout, s)
        self.track_phys(out, name, np.arange(cout))
        self.stats.densified += 1
        return True

    def op_BatchNormalization(self, node) -> bool:
        if len(node.output) != 1:
            return False
        return self.per_channel(node, {1: 0, 2: 0, 3: 0, 4: 0})

    def op_PRelu(self, node) -> bool:
        slope = self.consts.get(node.input[1])
        if slope is None:
            return False
        axis = slope.ndim - 3 if slope.ndim >= 3 else None
        if axis is None:
            return slope.size == 1 and self.per_channel(node, {})
        return self.per_channel(node, {1: axis})

    def op_Clip(self, node) -> bool:
        return self.per_channel(node, {})

    def _binary(self, node) -> bool:
        a, b = node.input[0], node.input[1]
        ta, tb = self.is_tracked(a), self.is_tracked(b)
        out = node.output[0]
        s = self.out4(out)
        if s is None:
            return False
        if ta and tb:
            va, vb = self.values[a], self.values[b]
            if va.channels != vb.channels or va.channels != s[1]:
                return False
            pa, order = self.any_order(va, node.name or node.op_type)
            pb = self.specific(vb, order, node.name or node.op_type)
            name = self.phys_name_for(out, order)
            new = helper.make_node(node.op_type, [pa, pb], [name], name=node.name)
            new.attribute.extend(node.attribute)
            self.nodes.append(new)
            self.new_phys(name, s[1], list(self.origin[pa]), s)
            self.track_phys(out, name, order)
            return True
        if not ta:  # constant op tracked: swap so the tracked value is first (only for commutative ops)
            if node.op_type not in ("Add", "Mul", "Max", "Min"):
                return False
            arr = self.consts.get(a)
            if arr is None:
                return False
            swapped = helper.make_node(node.op_type, [b, a], list(node.output), name=node.name)
            return self._binary(swapped)
        arr = self.consts.get(b)
        if arr is None:
            return False
        if arr.ndim == 4 and arr.shape[0] == 1 and arr.shape[2:] == (1, 1) or arr.ndim == 3 and arr.shape[1:] == (1, 1):
            return self.per_channel(node, {1: arr.ndim - 3})
        if arr.size == 1:
            return self.per_channel(node, {})
        return False

    op_Add = op_Mul = op_Sub = op_Div = _binary

    def op_Concat(self, node) -> bool:
        axis = int(_attr(node, "axis", 0))
        s = self.out4(node.output[0])
        if s is None or axis not in (1, -3) or not all(self.is_tracked(i) for i in node.input):
            return False
        vs = [self.values[i] for i in node.input]
        self.values[node.output[0]] = _Value([x for v in vs for x in v.src], np.concatenate([v.ch for v in vs]))
        return True

    def _channel_ranges(self, node) -> list[tuple[int, int]] | None:
        v = self.values[node.input[0]]
        if node.op_type == "Split":
            if int(_attr(node, "axis", 0)) not in (1, -3):
                return None
            sizes = None
            if len(node.input) > 1 and node.input[1]:
                sizes = self.consts.get(node.input[1])
            elif _attr(node, "split") is not None:
                sizes = _attr(node, "split")
            if sizes is None:
                k = len(node.output)
                sizes = [-(-v.channels // k)] * k
                sizes[-1] = v.channels - sum(sizes[:-1])
            starts = np.cumsum([0] + list(sizes)).tolist()
            return [(int(starts[i]), int(starts[i + 1])) for i in range(len(node.output))]
        # Slice
        args = [self.consts.get(i) if i else None for i in node.input[1:]]
        if any(a is None for a, i in zip(args, node.input[1:]) if i):
            return None
        starts, ends = args[0], args[1]
        axes = args[2] if len(args) > 2 and args[2] is not None else np.arange(len(starts))
        steps = args[3] if len(args) > 3 and args[3] is not None else np.ones(len(starts), np.int64)
        if len(axes) != 1 or int(axes[0]) not in (1, -3) or int(steps[0]) != 1:
            return None
        c = v.channels
        a, b = int(starts[0]), int(ends[0])
        a = max(0, min(c, a + c if a < 0 else a))
        b = max(0, min(c, b + c if b < 0 else b))
        return [(a, b)]

    def op_Split(self, node) -> bool:
        ranges = self._channel_ranges(node)
        if ranges is None:
            return False
        v = self.values[node.input[0]]
        for o, (a, b) in zip(node.output, ranges):
            self.values[o] = v.take(np.arange(a, b))
        return True

    op_Slice = op_Split

    def op_ReduceMean(self, node) -> bool:
        return False  # goes generic: logical order (reductions to (N, C) leave the channel-tracked world)

    # -- output ---------------------------------------------------------------------------------------------------
    def finish(self) -> onnx.ModelProto:
        g = self.model.graph
        for o in g.output:
            if self.is_tracked(o.name):
                v = self.values[o.name]
                phys = self.specific(v, np.arange(v.channels), o.name)
                if phys != o.name:
                    self.nodes.append(helper.make_node("Identity", [phys], [o.name], name=f"{o.name}__sp_out"))
        used = {i for n in self.nodes for i in n.input}
        inits = [i for i in g.initializer if i.name in used] + [i for i in self.inits if i.name in used]
        # keep Constant nodes only when used
        nodes = [n for n in self.nodes if not (n.op_type == "Constant" and not (set(n.output) & used))]
        graph = helper.make_graph(nodes, g.name, list(g.input), list(g.output), inits)
        model = helper.make_model(graph, opset_imports=list(self.model.opset_import),
                                  producer_name=self.model.producer_name or "edgeport")
        model.ir_version = self.model.ir_version
        return model


def _plan_orders(events: list[list[tuple[str, int]]], origin: dict[str, list]) -> dict[str, np.ndarray]:
    """Order each free conv output by (first assembly that uses the channel, its position there), so every
    consumer finds each producer's channels as one contiguous run."""
    keys: dict[str, dict[int, tuple[int, int]]] = collections.defaultdict(dict)
    for e, pairs in enumerate(events):
        for pos, (s, c) in enumerate(pairs):
            o = origin.get(s, [None] * (c + 1))[c]
            if o is None:
                continue
            conv, k = o
            keys[conv].setdefault(k, (e, pos))
    orders = {}
    for conv, kd in keys.items():
        n = max(kd) + 1
        n = max(n, len(origin.get(conv, [])))
        big = (len(events) + 1, 0)
        orders[conv] = np.array(sorted(range(n), key=lambda k: (kd.get(k, big), k)), dtype=np.int64)
    return orders


_PASS_NAME = re.compile(r"__sp\d+$")
_ELEMENTWISE = {"Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu", "Elu", "Tanh", "Selu"}


def split_sliced_convs(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int, dict[str, tuple[str, int, int]]]:
    """A Conv (group 1, constant weights) whose output, after any chain of elementwise activations, is read only by
    disjoint channel Slices becomes one Conv per slice, each computing exactly that slice's channels (weight and bias
    rows cut). The slices were copies: XNNPACK copies a channel slice of an NHWC tensor pixel by pixel. The split
    convs do the same multiply-adds in fewer ops, and channels nobody reads are no longer computed. The absorbed
    ShuffleNetV2 cuts every branch output into the pieces later units read; splitting those convs took its INT8
    channel copies from 89 ops / 40.3k pixel rows to 20 / 21.1k (`benchmarks/converter_speed.py --parts bound`).
    Returns (model, number of convs split, {piece tensor: (the tensor it was sliced from, start, stop)}); a piece
    keeps its Slice's output name."""
    g = model.graph
    consts = _Consts(model)
    users = collections.defaultdict(list)
    for n in g.node:
        for i in n.input:
            users[i].append(n)
    outputs = {o.name for o in g.output}
    taken = {t for n in g.node for t in list(n.input) + list(n.output)} | {i.name for i in g.initializer}

    def fresh(base: str) -> str:
        return unique_name(base, taken)

    replace: dict[int, list[onnx.NodeProto]] = {}
    drop: set[int] = set()
    new_inits: list[onnx.TensorProto] = []
    count = 0
    pieces: dict[str, tuple[str, int, int]] = {}
    for conv in g.node:
        if conv.op_type != "Conv" or int(_attr(conv, "group", 1)) != 1:
            continue
        w = consts.get(conv.input[1])
        b = consts.get(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
        if w is None or (len(conv.input) > 2 and conv.input[2] and b is None):
            continue
        chain, t = [], conv.output[0]
        while len(users[t]) == 1 and users[t][0].op_type in _ELEMENTWISE and t not in outputs \
                and all(consts.get(i) is not None for i in users[t][0].input[1:] if i):
            chain.append(users[t][0])
            t = chain[-1].output[0]
        slices = users[t]
        if not slices or t in outputs or any(s.op_type != "Slice" or s.input[0] != t for s in slices):
            continue
        ranges = []
        for sl in slices:
            args = [consts.get(i) if i else None for i in sl.input[1:]]
            if len(args) < 3 or any(a is None for a in args[:3]) or len(args[0]) != 1 \
                    or int(args[2][0]) not in (1, 1 - w.ndim):
                ranges = None
                break
            if len(args) > 3 and args[3] is not None and int(args[3][0]) != 1:
                ranges = None
                break
            c = w.shape[0]
            a, e = int(args[0][0]), int(args[1][0])
            a = max(0, min(c, a + c if a < 0 else a))
            e = max(0, min(c, e + c if e < 0 else e))
            ranges.append((a, e))
        if not ranges or any(e <= a for a, e in ranges):
            continue
        srt = sorted(ranges)
        if any(srt[i][1] > srt[i + 1][0] for i in range(len(srt) - 1)):
            continue  # overlapping slices: a channel would be computed twice
        nodes = []
        for sl, (a, e) in zip(slices, ranges):
            wn = fresh(f"{conv.input[1]}__rows{a}_{e}")
            new_inits.append(numpy_helper.from_array(np.ascontiguousarray(w[a:e]), wn))
            ins = [conv.input[0], wn]
            if b is not None:
                bn = fresh(f"{conv.input[2]}__rows{a}_{e}")
                new_inits.append(numpy_helper.from_array(np.ascontiguousarray(b[a:e]), bn))
                ins.append(bn)
            produced = [conv.output[0]] + [n.output[0] for n in chain]
            names = [fresh(f"{x}__rows{a}_{e}") for x in produced[:-1]] + [sl.output[0]]
            pieces[sl.output[0]] = (t, a, e)
            piece = helper.make_node("Conv", ins, [names[0]], name=fresh(f"{conv.name or 'conv'}__rows{a}_{e}"))
            piece.attribute.extend(conv.attribute)
            nodes.append(piece)
            for k, n in enumerate(chain):
                act = helper.make_node(n.op_type, [names[k]] + list(n.input[1:]), [names[k + 1]],
                                       name=fresh(f"{n.name or n.op_type}__rows{a}_{e}"))
                act.attribute.extend(n.attribute)
                nodes.append(act)
        replace[id(conv)] = nodes
        drop |= {id(n) for n in chain} | {id(n) for n in slices}
        count += 1
    if not count:
        return model, 0, {}
    new_nodes = []
    for n in g.node:
        if id(n) in replace:
            new_nodes += replace[id(n)]
        elif id(n) not in drop:
            new_nodes.append(n)
    used = {i for n in new_nodes for i in n.input}
    inits = [i for i in list(g.initializer) + new_inits if i.name in used]
    graph = helper.make_graph(new_nodes, g.name, list(g.input), list(g.output), inits)
    out = helper.make_model(graph, opset_imports=list(model.opset_import), producer_name=model.producer_name)
    out.ir_version = model.ir_version
    return out, count, pieces


def _cost(stats: ShufflePassStats) -> tuple:
    return (stats.gathers, stats.shuffles_materialised, sum(stats.concat_inputs) + stats.slices)


def remove_channel_shuffles(
    model: onnx.ModelProto, *, max_iterations: int = 4, max_concat_inputs: int = 5,
    grouped_form: GroupedShuffleForm | str = GroupedShuffleForm.TRANSPOSE,
    piece_form: PieceForm | str = PieceForm.SLICES,
) -> tuple[onnx.ModelProto, dict[str, list[int]]]:
    """Remove every channel shuffle of `model` exactly (see module docstring).

    Returns the rewritten model and `{tensor name: p}` with rewritten[:, i] == original[:, p[i]] for every tensor of
    the rewritten graph that keeps an original name with permuted channels. `grouped_form`: how a shuffle that feeds
    a grouped conv is kept (GroupedShuffleForm); `piece_form`: how the pieces the absorbed shuffles read are produced
    (PieceForm). Raises ExportError when the rewritten model fails onnx.checker.
    """
    rewritten, perms, _ = remove_channel_shuffles_with_stats(
        model, max_iterations=max_iterations, max_concat_inputs=max_concat_inputs, grouped_form=grouped_form,
        piece_form=piece_form)
    return rewritten, perms


def remove_channel_shuffles_with_stats(
    model: onnx.ModelProto, *, max_iterations: int = 4, max_concat_inputs: int = 5,
    grouped_form: GroupedShuffleForm | str = GroupedShuffleForm.TRANSPOSE,
    piece_form: PieceForm | str = PieceForm.SLICES,
) -> tuple[onnx.ModelProto, dict[str, list[int]], ShufflePassStats]:
    """`remove_channel_shuffles` with the pass's counters."""
    grouped_form = GroupedShuffleForm(grouped_form)
    piece_form = PieceForm(piece_form)
    if not find_channel_shuffles(model):
        return model, {}, ShufflePassStats()
    orders: dict[str, np.ndarray] = {}
    best = None
    for it in range(max_iterations):
        rw = _Rewriter(model, orders, max_concat_inputs, grouped_form)
        out = rw.run()
        rw.stats.plan_iterations = it + 1
        if best is None or _cost(rw.stats) < _cost(best[2]):
            best = (out, {k: v.tolist() for k, v in rw.perm_of.items()}, rw.stats)
        new_orders = _plan_orders(rw.events, rw.origin)
        if all(np.array_equal(new_orders.get(k, np.arange(len(v))), v) for k, v in orders.items()) and \
                set(new_orders) <= set(orders) and it > 0:
            break
        orders = new_orders
    out, perms, stats = best
    if piece_form is PieceForm.CONVS:
        out, stats.convs_split, pieces = split_sliced_convs(out)
        # a piece holds channels [a, e) of the sliced tensor, itself permuted (perms) or not: record which
        # original channels, so per-layer attribution can compare the pieces (calibration/layers.py)
        # (only the pass's own slices, `<tensor>_slice__sp<k>`: a Slice the graph kept keeps its original value)
        for piece, (t, a, e) in pieces.items():
            if _PASS_NAME.search(piece):
                perms[piece] = list(perms[t][a:e]) if t in perms else list(range(a, e))
                stats.slices -= 1  # that Slice is gone: the piece is computed, not copied
        present = {t for n in out.graph.node for t in n.output}
        perms = {k: v for k, v in perms.items() if k in present}
    try:
        onnx.checker.check_model(out)
    except Exception as exc:  # noqa: BLE001 - report as a typed error
        raise ExportError(f"channel-shuffle pass produced an invalid ONNX graph: {exc}") from exc
    return out, perms, stats
