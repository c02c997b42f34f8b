"""The pass's driver: rewrite, plan the free conv output orders from what the rewrite assembled, rewrite again
until the plan is stable (keeping the cheapest rewrite), then optionally split sliced convs and check the graph."""
from __future__ import annotations

import collections

import numpy as np
import onnx

from edgeport.errors import ExportError

from .forms import GroupedShuffleForm, PieceForm, ShufflePassStats
from .match import find_channel_shuffles
from .rewrite import Rewriter
from .split_convs import PASS_NAME, split_sliced_convs


def plan_orders(events: list[list[tuple[str, int]]], origin: dict[str, list]) -> dict[str, np.ndarray]:
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


def _cost(stats: ShufflePassStats) -> tuple:
    return (stats.gathers, stats.shuffles_materialised, sum(stats.concat_inputs) + stats.slices)


def remove_channel_shuffles(
    model: onnx.ModelProto, *, max_iterations: int = 4, max_concat_inputs: int = 5,
    grouped_form: GroupedShuffleForm | str = GroupedShuffleForm.TRANSPOSE,
    piece_form: PieceForm | str = PieceForm.SLICES,
) -> tuple[onnx.ModelProto, dict[str, list[int]]]:
    """Remove every channel shuffle of `model` exactly (see the package docstring).

    Returns the rewritten model and `{tensor name: p}` with rewritten[:, i] == original[:, p[i]] for every tensor of
    the rewritten graph that keeps an original name with permuted channels. `grouped_form`: how a shuffle that feeds
    a grouped conv is kept (GroupedShuffleForm); `piece_form`: how the pieces the absorbed shuffles read are produced
    (PieceForm). Raises ExportError when the rewritten model fails onnx.checker.
    """
    rewritten, perms, _ = remove_channel_shuffles_with_stats(
        model, max_iterations=max_iterations, max_concat_inputs=max_concat_inputs, grouped_form=grouped_form,
        piece_form=piece_form)
    return rewritten, perms


def _split_pieces(out: onnx.ModelProto, perms: dict[str, list[int]], stats: ShufflePassStats):
    """PieceForm.CONVS: each piece computed by its own conv; returns (model, perms) with every piece's channels."""
    out, stats.convs_split, pieces = split_sliced_convs(out)
    # a piece holds channels [a, e) of the sliced tensor, itself permuted (perms) or not: record which
    # original channels, so per-layer attribution can compare the pieces (edgeport.validation.layers)
    # (only the pass's own slices, `<tensor>_slice__sp<k>`: a Slice the graph kept keeps its original value)
    for piece, (t, a, e) in pieces.items():
        if PASS_NAME.search(piece):
            perms[piece] = list(perms[t][a:e]) if t in perms else list(range(a, e))
            stats.slices -= 1  # that Slice is gone: the piece is computed, not copied
    present = {t for n in out.graph.node for t in n.output}
    return out, {k: v for k, v in perms.items() if k in present}


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
        rw = Rewriter(model, orders, max_concat_inputs, grouped_form)
        out = rw.run()
        rw.stats.plan_iterations = it + 1
        if best is None or _cost(rw.stats) < _cost(best[2]):
            best = (out, {k: v.tolist() for k, v in rw.perm_of.items()}, rw.stats)
        new_orders = plan_orders(rw.events, rw.origin)
        if all(np.array_equal(new_orders.get(k, np.arange(len(v))), v) for k, v in orders.items()) and \
                set(new_orders) <= set(orders) and it > 0:
            break
        orders = new_orders
    out, perms, stats = best
    if piece_form is PieceForm.CONVS:
        out, perms = _split_pieces(out, perms, stats)
    try:
        onnx.checker.check_model(out)
    except Exception as exc:  # noqa: BLE001 - report as a typed error
        raise ExportError(f"channel-shuffle pass produced an invalid ONNX graph: {exc}") from exc
    return out, perms, stats
