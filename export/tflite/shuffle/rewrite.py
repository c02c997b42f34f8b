"""The rewrite: the original graph's nodes visited in order, each rewritten onto physical tensors.

A node none of whose inputs is channel-tracked is copied as is. Otherwise the rewriter registered for its op type
(`@rewriter("Conv")`, `REWRITERS`) rewrites it and returns True, or returns False to fall back: elementwise unary
ops and pools run per-channel on the physical tensor; anything else goes generic (every tracked input assembled in
its original channel order). A reduction to (N, C) whose only consumers are linear layers, and whose original order
could only be assembled with a Gather, leaves its output permuted and the linears' weights absorb the order
(`linear_head`); other reductions to (N, C) go generic: they leave the channel-tracked world.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
from onnx import helper

from edgeport.registry import Registry

from .forms import GroupedShuffleForm
from .linear_head import absorb_head, permuted_linear
from .match import attr, find_channel_shuffles, shuffle_permutation
from .track import MAX_RUNS, LogicalValue, Tracker, channel_runs

UNARY_OPS = {"Relu", "Clip", "Sigmoid", "HardSwish", "HardSigmoid", "LeakyRelu", "Elu", "Tanh", "Selu", "Softplus",
             "Identity", "Neg", "Abs", "Exp", "Sqrt", "Mish", "Gelu"}
POOL_OPS = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool"}

RewriteFn = Callable[["Rewriter", onnx.NodeProto], bool]
REWRITERS: Registry[RewriteFn] = Registry("shuffle-pass rewriter")


def rewriter(*op_types: str) -> Callable[[RewriteFn], RewriteFn]:
    """Register `fn(rw, node) -> bool` for `op_types`: rewrite `node` (at least one input channel-tracked) onto
    `rw`'s physical tensors and return True, or return False (nothing emitted) to fall back to the generic path."""

    def deco(fn: RewriteFn) -> RewriteFn:
        for op in op_types:
            REWRITERS.register(op, fn)
        return fn

    return deco


class Rewriter(Tracker):
    """One rewrite of `model` with conv output `orders` fixed by the planner (conv output name -> physical order:
    phys channel i holds logical orders[i]) and the form kept for a shuffle that feeds a grouped conv."""

    def __init__(self, model: onnx.ModelProto, orders: dict[str, np.ndarray], max_concat_inputs: int = 5,
                 grouped_form: GroupedShuffleForm = GroupedShuffleForm.TRANSPOSE):
        super().__init__(model, max_concat_inputs)
        self.grouped_form = GroupedShuffleForm(grouped_form)
        self.orders = orders
        self.head_order: dict[str, np.ndarray] = {}  # (N, C) head outputs left permuted (linear_head)

    def run(self) -> onnx.ModelProto:
        """The rewritten model: the same graph outputs (names, order, shapes, channel order)."""
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

    def visit(self, node: onnx.NodeProto) -> None:
        op = node.op_type
        tracked = [i for i in node.input if i and self.is_tracked(i)]
        if permuted_linear(self, node):
            return
        if not tracked:
            self.nodes.append(node)
            for o in node.output:
                s = self.out4(o)
                if s is not None and o not in self.consts.values:
                    self.new_phys(o, s[1], [None] * s[1], s)
                    self.track_phys(o, o, np.arange(s[1]))
            return
        if op in REWRITERS and REWRITERS.get(op)(self, node):
            self.stats.rewrites[op] = self.stats.rewrites.get(op, 0) + 1
            return
        if op in UNARY_OPS or op in POOL_OPS:
            if self.per_channel(node, {}):
                return
        if absorb_head(self, node):
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


# -- the rewriters (return False to fall back) ------------------------------------------------------------------

@rewriter("Conv")
def conv(rw: Rewriter, node: onnx.NodeProto) -> bool:
    """1x1 / grouped conv: input read in the cheapest physical order (weight columns permuted to match), output
    in the planned order (weight rows and bias permuted); depthwise: per-channel."""
    x, w_name = node.input[0], node.input[1]
    b_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
    w = rw.consts.get(w_name)
    b = rw.consts.get(b_name) if b_name else None
    if w is None or (b_name and b is None) or any(rw.is_tracked(i) for i in node.input[1:]):
        return False
    group = int(attr(node, "group", 1))
    v = rw.values[x]
    cout, cin_g = w.shape[0], w.shape[1]
    out = node.output[0]
    s = rw.out4(out)
    if s is None:
        return False
    if group == v.channels and cout == group and cin_g == 1:  # depthwise: per-channel
        return rw.per_channel(node, {1: 0, 2: 0})
    if group == 1:
        phys, order = rw.any_order(v, node.name or "conv")
        w_in = w[:, order]
    else:
        # grouped: block k holds logical [k*cin_g, (k+1)*cin_g); order inside a block is free
        blocks = []
        for k in range(group):
            sub = v.take(np.arange(k * cin_g, (k + 1) * cin_g))
            srt = sorted(range(cin_g), key=lambda j: (sub.src[j], int(sub.ch[j])))
            blocks.append(k * cin_g + np.array(srt, np.int64))
        order = np.concatenate(blocks)
        runs = len(channel_runs(v.take(order).pairs()))
        # (whole sources side by side, e.g. a relabelled Concat, are simply concatenated in every form)
        if runs > len(set(v.src)) and rw.grouped_form is GroupedShuffleForm.DENSE:
            return dense_conv(rw, node, v, w, b, group, s)
        whole = rw.whole_shuffle(v) if runs > 1 and rw.grouped_form is GroupedShuffleForm.TRANSPOSE else None
        if whole is not None:
            order = np.arange(v.channels)
            phys = rw.emit_shuffle(*whole, node.name or "conv")
        elif runs <= MAX_RUNS:
            phys = rw.assemble(v.take(order).pairs(), node.name or "conv")
        else:
            order = np.arange(v.channels)
            phys = rw.specific(v, order, node.name or "conv")
        co_g = cout // group
        w_in = np.concatenate([w[k * co_g:(k + 1) * co_g][:, order[k * cin_g:(k + 1) * cin_g] - k * cin_g]
                               for k in range(group)])
    out_order = rw.orders.get(out) if group == 1 else None
    if out_order is None:
        out_order = np.arange(cout)
    w_new = w_in[out_order]
    inputs = [phys, rw.const(w_name, w_new)]
    if b is not None:
        inputs.append(rw.const(b_name, b[out_order]))
    name = rw.phys_name_for(out, out_order)
    new = helper.make_node("Conv", inputs, [name], name=node.name)
    new.attribute.extend(node.attribute)
    rw.nodes.append(new)
    origin = [(out, int(k)) for k in out_order] if group == 1 else [None] * cout
    rw.new_phys(name, cout, origin, s)
    rw.track_phys(out, name, out_order)
    return True


def dense_conv(rw: Rewriter, node: onnx.NodeProto, v: LogicalValue, w: np.ndarray, b: np.ndarray | None,
               group: int, s) -> bool:
    """Grouped conv whose input is scattered: one group=1 conv over the input as it physically lies, the
    weights expanded to a block-diagonal matrix (zeros across groups) and their columns permuted to match."""
    phys, phys_order = rw.any_order(v, node.name or "conv")
    cout, cin_g = w.shape[0], w.shape[1]
    co_g = cout // group
    dense = np.zeros((cout, v.channels) + w.shape[2:], w.dtype)
    for k in range(group):
        dense[k * co_g:(k + 1) * co_g, k * cin_g:(k + 1) * cin_g] = w[k * co_g:(k + 1) * co_g]
    inputs = [phys, rw.const(node.input[1], np.ascontiguousarray(dense[:, phys_order]))]
    if b is not None:
        inputs.append(rw.const(node.input[2], b))
    out = node.output[0]
    name = rw.phys_name_for(out, np.arange(cout))
    new = helper.make_node("Conv", inputs, [name], name=node.name)
    new.attribute.extend(a for a in node.attribute if a.name != "group")
    rw.nodes.append(new)
    rw.new_phys(name, cout, [None] * cout, s)
    rw.track_phys(out, name, np.arange(cout))
    rw.stats.densified += 1
    return True


@rewriter("BatchNormalization")
def batch_normalization(rw: Rewriter, node: onnx.NodeProto) -> bool:
    """Per-channel: scale, bias, mean and variance permuted."""
    if len(node.output) != 1:
        return False
    return rw.per_channel(node, {1: 0, 2: 0, 3: 0, 4: 0})


@rewriter("PRelu")
def prelu(rw: Rewriter, node: onnx.NodeProto) -> bool:
    """Per-channel: a per-channel slope permuted, a scalar one kept."""
    slope = rw.consts.get(node.input[1])
    if slope is None:
        return False
    axis = slope.ndim - 3 if slope.ndim >= 3 else None
    if axis is None:
        return slope.size == 1 and rw.per_channel(node, {})
    return rw.per_channel(node, {1: axis})


@rewriter("Clip")
def clip(rw: Rewriter, node: onnx.NodeProto) -> bool:
    """Per-channel, with constant bounds."""
    return rw.per_channel(node, {})


@rewriter("Add", "Mul", "Sub", "Div")
def binary(rw: Rewriter, node: onnx.NodeProto) -> bool:
    """Two tracked inputs: the second assembled in the first's physical order; a tracked input and a per-channel or
    scalar constant: per-channel (the constant permuted)."""
    a, b = node.input[0], node.input[1]
    ta, tb = rw.is_tracked(a), rw.is_tracked(b)
    out = node.output[0]
    s = rw.out4(out)
    if s is None:
        return False
    if ta and tb:
        va, vb = rw.values[a], rw.values[b]
        if va.channels != vb.channels or va.channels != s[1]:
            return False
        pa, order = rw.any_order(va, node.name or node.op_type)
        pb = rw.specific(vb, order, node.name or node.op_type)
        name = rw.phys_name_for(out, order)
        new = helper.make_node(node.op_type, [pa, pb], [name], name=node.name)
        new.attribute.extend(node.attribute)
        rw.nodes.append(new)
        rw.new_phys(name, s[1], list(rw.origin[pa]), s)
        rw.track_phys(out, name, order)
        return True
    if not ta:  # constant op tracked: swap so the tracked value is first (only for commutative ops)
        if node.op_type not in ("Add", "Mul", "Max", "Min"):
            return False
        arr = rw.consts.get(a)
        if arr is None:
            return False
        swapped = helper.make_node(node.op_type, [b, a], list(node.output), name=node.name)
        return binary(rw, swapped)
    arr = rw.consts.get(b)
    if arr is None:
        return False
    if arr.ndim == 4 and arr.shape[0] == 1 and arr.shape[2:] == (1, 1) or arr.ndim == 3 and arr.shape[1:] == (1, 1):
        return rw.per_channel(node, {1: arr.ndim - 3})
    if arr.size == 1:
        return rw.per_channel(node, {})
    return False


@rewriter("Concat")
def concat(rw: Rewriter, node: onnx.NodeProto) -> bool:
    """A channel Concat of tracked inputs only relabels: no node."""
    axis = int(attr(node, "axis", 0))
    s = rw.out4(node.output[0])
    if s is None or axis not in (1, -3) or not all(rw.is_tracked(i) for i in node.input):
        return False
    vs = [rw.values[i] for i in node.input]
    rw.values[node.output[0]] = LogicalValue([x for v in vs for x in v.src], np.concatenate([v.ch for v in vs]))
    return True


def channel_ranges(rw: Rewriter, node: onnx.NodeProto) -> list[tuple[int, int]] | None:
    """[start, stop) channel range of each output of a channel Split / Slice, or None when it is not one."""
    v = rw.values[node.input[0]]
    if node.op_type == "Split":
        if int(attr(node, "axis", 0)) not in (1, -3):
            return None
        sizes = None
        if len(node.input) > 1 and node.input[1]:
            sizes = rw.consts.get(node.input[1])
        elif attr(node, "split") is not None:
            sizes = attr(node, "split")
        if sizes is None:
            k = len(node.output)
            sizes = [-(-v.channels // k)] * k
            sizes[-1] = v.channels - sum(sizes[:-1])
        starts = np.cumsum([0] + list(sizes)).tolist()
        return [(int(starts[i]), int(starts[i + 1])) for i in range(len(node.output))]
    # Slice
    args = [rw.consts.get(i) if i else None for i in node.input[1:]]
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


@rewriter("Split", "Slice")
def split(rw: Rewriter, node: onnx.NodeProto) -> bool:
    """A channel Split / unit-step Slice of a tracked input only relabels: no node."""
    ranges = channel_ranges(rw, node)
    if ranges is None:
        return False
    v = rw.values[node.input[0]]
    for o, (a, b) in zip(node.output, ranges):
        rw.values[o] = v.take(np.arange(a, b))
    return True
