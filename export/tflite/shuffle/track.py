"""Channel tracking for the shuffle pass: where each logical (original-graph) channel of a 4-D activation
physically lives, and the physical tensors assembled on demand (Slice / Concat of contiguous channel runs, an
explicit shuffle, or a Gather) when a consumer needs channels in an order that does not exist yet."""
from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .forms import ShufflePassStats
from .match import Consts, shuffle_permutation, static_shapes

# consumers that need more runs than this get a specific order by other means (shuffle or Gather)
MAX_RUNS = 12


@dataclass
class LogicalValue:
    """A logical 4-D activation: logical channel j lives in physical tensor `src[j]` at channel `ch[j]`."""

    src: list[str]
    ch: np.ndarray

    @property
    def channels(self) -> int:
        return len(self.ch)

    def take(self, idx) -> "LogicalValue":
        idx = np.asarray(idx, dtype=np.int64)
        return LogicalValue([self.src[i] for i in idx], self.ch[idx])

    def pairs(self):
        return list(zip(self.src, self.ch.tolist()))


def channel_runs(pairs) -> list[tuple[str, int, int]]:
    """Maximal runs (src, start, stop) of consecutive channels of the same source, in the given order."""
    runs: list[list] = []
    for s, c in pairs:
        if runs and runs[-1][0] == s and runs[-1][2] == c:
            runs[-1][2] += 1
        else:
            runs.append([s, c, c + 1])
    return [tuple(r) for r in runs]


class Tracker:
    """The state of one rewrite of `model`: the logical value of every tracked original tensor (`values`), the
    physical tensors (`phys_channels`, `phys_shape`, `origin`: per channel, (conv output, logical channel) of a conv
    whose output order the planner may choose, else None), the nodes and initializers emitted so far, and every
    physical assembly in order (`events`, the planner's input). `perm_of`: original tensor name -> the channel
    permutation it carries in the rewritten graph."""

    def __init__(self, model: onnx.ModelProto, max_concat_inputs: int = 5):
        self.model = model
        self.max_concat_inputs = max(2, int(max_concat_inputs))
        self.shapes = static_shapes(model)
        self.consts = Consts(model)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.values: dict[str, LogicalValue] = {}  # original tensor name -> logical value
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
        """The original tensor `orig_name` is physical tensor `phys`, whose channel i is logical channel
        logical_at_phys[i]."""
        ch = np.empty_like(logical_at_phys)
        ch[logical_at_phys] = np.arange(len(logical_at_phys))
        self.values[orig_name] = LogicalValue([phys] * len(ch), ch)
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
        runs = channel_runs(pairs)
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

    def any_order(self, v: LogicalValue, base: str) -> tuple[str, np.ndarray]:
        """Physical tensor holding v's channels in the cheapest order; returns (name, logical index at each phys
        pos)."""
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

    def specific(self, v: LogicalValue, logical_order: np.ndarray, base: str) -> str:
        """Physical tensor whose phys channel i holds logical channel logical_order[i] of v."""
        w = v.take(logical_order)
        pairs = w.pairs()
        runs = channel_runs(pairs)
        if len(runs) <= MAX_RUNS:
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

    def whole_shuffle(self, w: LogicalValue) -> tuple[str, int] | None:
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

    def out4(self, name: str):
        s = self.shapes.get(name)
        return s if s is not None and len(s) == 4 else None

    # -- per-channel ops --------------------------------------------------------------------------------------
    def single_source(self, v: LogicalValue, base: str) -> tuple[str, np.ndarray, np.ndarray | None]:
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

