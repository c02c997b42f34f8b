"""Channel-shuffle removal: an exact ONNX -> ONNX rewrite run after onnxsim and before the NHWC lowering.

A channel shuffle (Reshape (N,C,H,W)->(N,g,C/g,H,W), Transpose (0,2,1,3,4), Reshape back) is a fixed permutation of
channels. This pass tracks, for every 4-D activation, where each *logical* (original-graph) channel physically lives:
`(physical tensor, channel)` per logical channel. Shuffles, channel Splits/Slices and channel Concats then cost
nothing: they only relabel. Physical tensors are produced only by real compute:

- a 1x1 (any group=1) Conv takes its input in whatever physical order is cheapest to assemble; its weights' input
  channels are permuted to match. Its *output* channel order is free (weight rows and bias permuted) and is planned
  so that every later consumer finds its channels contiguously (see `plan.plan_orders`);
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

Modules: `match` (finding shuffles), `track` (logical -> physical channels, assembling physical tensors),
`rewrite` (the node visitor and the per-op rewriters, registered with `@rewriter("Conv")` in `REWRITERS`), `plan`
(conv output orders, the driver), `split_convs` (PieceForm.CONVS), `forms` (the choices and the counters).
"""
from __future__ import annotations

from .forms import GroupedShuffleForm, PieceForm, ShufflePassStats
from .match import find_channel_shuffles, shuffle_permutation
from .plan import remove_channel_shuffles, remove_channel_shuffles_with_stats
from .rewrite import REWRITERS, rewriter
from .split_convs import split_sliced_convs

__all__ = ["GroupedShuffleForm", "PieceForm", "REWRITERS", "ShufflePassStats", "find_channel_shuffles",
           "remove_channel_shuffles", "remove_channel_shuffles_with_stats", "rewriter", "shuffle_permutation",
           "split_sliced_convs"]
