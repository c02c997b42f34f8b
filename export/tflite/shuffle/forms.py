"""The shuffle pass's choices (closed enums) and its counters."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field


class GroupedShuffleForm(str, enum.Enum):
    """Exact form of a channel shuffle that feeds a grouped convolution (where absorbing it is impossible: the
    permutation mixes channels across the groups of both the producing and the consuming grouped conv).

    TRANSPOSE: Reshape / Transpose / Reshape on the bottleneck tensor (fastest measured, the default; the lowering
    writes it as three transposes XNNPACK tiles well, `build.channel_shuffle_nhwc`).
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
    # op type -> nodes its registered rewriter (rewrite.REWRITERS) rewrote; ops without one, or whose rewriter
    # declined, went through the generic path (inputs in their original channel order)
    rewrites: dict[str, int] = field(default_factory=dict)
