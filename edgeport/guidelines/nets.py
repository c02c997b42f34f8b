"""The micro-networks of ShuffleNetV2's four design guidelines (Ma et al., ECCV 2018, Sec. 2): the paper's validation
experiments (seeds 001/003; channel counts of the paper's "x1" setting), one `MicroNet` per variant.

- G1 "equal channel width minimizes memory access cost": 10 blocks of two 1x1 convs (c1 -> c2 -> c1) with
  c1:c2 = 1:1, 1:2, 1:6, 1:12 at (almost) the same FLOPs, hw*c1*c2 = hw*128^2 per conv.
- G2 "excessive group convolution increases MAC": 10 stacked 1x1 group convs, g = 1, 2, 4, 8 with the channel
  count raised so hw*c^2/g stays hw*128^2.
- G3 "network fragmentation reduces the degree of parallelism": blocks of 1, 2 or 4 1x1 convs in series or in
  parallel (branches concatenated), widths chosen so every block has the 1-fragment block's FLOPs; 10 blocks.
- G4 "element-wise operations are non-negligible": 10 ResNet bottlenecks (1x1 -> 3x3 -> 1x1, width 128, inner 32)
  with and without the ReLUs and the shortcut add.

torch is imported when a network is first built, so importing this module stays cheap for the CLI.
"""
from __future__ import annotations

import functools
import math
import types
from dataclasses import dataclass
from typing import Callable

GUIDELINES = ("G1", "G2", "G3", "G4")
DEFAULT_SIZE = 28  # feature-map side: a ShuffleNet stage-2/3 sized map; keeps a full run to a few minutes
FLOPS_TOLERANCE = 0.02  # the variants of one guideline have the baseline's MACs within 2 %

TITLES = {
    "G1": "G1: equal channel width minimizes memory access cost",
    "G2": "G2: excessive group convolution increases memory access cost",
    "G3": "G3: network fragmentation reduces the degree of parallelism",
    "G4": "G4: element-wise operations are non-negligible",
}
# What the paper/seeds claim, in one line each (seed 003 = the paper's Sec. 2 in Chinese; seed 001 = a reading of it).
CLAIMS = {
    "G1": "c1:c2 = 1:1 is fastest; the further from 1:1, the slower (ARM 1:12 ~ 1.3x the 1:1 time)",
    "G2": "more groups at equal FLOPs are slower: g=8 ~ 2-4x the g=1 time on GPU, ~ 30 % fewer images/s on ARM",
    "G3": "fragmented blocks are slower at equal FLOPs (GPU 4-fragment up to ~ 3.5x); on ARM parallel "
          "fragments cost 15-20 %, series ones ~ 5 %",
    "G4": "removing ReLU and the shortcut gives ~ 20 % speed-up on GPU and ARM (recalled ARM table: 0.85x the time)",
}


# ---- the micro-networks ------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _nn():
    """The torch modules of the micro-networks (built on first use: importing this module stays cheap for the CLI)."""
    import torch
    import torch.nn as nn

    def _init(conv: nn.Conv2d, *, relu: bool) -> nn.Conv2d:
        """He init for ReLU layers, LeCun for linear ones: activations keep a unit-ish scale through 10-40 layers, so
        INT8 calibration sees sensible ranges. No bias (a bias would be folded by the converters anyway)."""
        fan_in = conv.in_channels // conv.groups * conv.kernel_size[0] * conv.kernel_size[1]
        with torch.no_grad():
            conv.weight.normal_(0.0, math.sqrt((2.0 if relu else 1.0) / fan_in))
        return conv


    def _conv(cin: int, cout: int, *, k: int = 1, groups: int = 1, relu: bool = True) -> nn.Conv2d:
        return _init(nn.Conv2d(cin, cout, k, 1, k // 2, groups=groups, bias=False), relu=relu)


    class ConvReLUStack(nn.Sequential):
        """conv(+ReLU) layers in series: [(cin, cout, groups), ...]."""

        def __init__(self, layers: list[tuple[int, int, int]], *, relu: bool = True):
            mods: list[nn.Module] = []
            for cin, cout, g in layers:
                mods.append(_conv(cin, cout, groups=g, relu=relu))
                if relu:
                    mods.append(nn.ReLU())
            super().__init__(*mods)


    class ParallelFragments(nn.Module):
        """`n` 1x1 conv+ReLU branches on the same input, each c -> c/n, concatenated back to c channels."""

        def __init__(self, c: int, n: int):
            super().__init__()
            if c % n:
                raise ValueError(f"{c} channels do not split into {n} branches")
            self.branches = nn.ModuleList(ConvReLUStack([(c, c // n, 1)]) for _ in range(n))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([b(x) for b in self.branches], dim=1)


    class Bottleneck(nn.Module):
        """ResNet bottleneck c -> m (1x1) -> m (3x3) -> c (1x1), optionally without its ReLUs and/or its shortcut."""

        def __init__(self, c: int, m: int, *, relu: bool, shortcut: bool):
            super().__init__()
            self.relu, self.shortcut = relu, shortcut
            self.conv1 = _conv(c, m, relu=relu)
            self.conv2 = _conv(m, m, k=3, relu=relu)
            # the last conv feeds an add: scale it down so 10 residual adds do not blow the range up
            self.conv3 = _conv(m, c, relu=False)
            if shortcut:
                with torch.no_grad():
                    self.conv3.weight.mul_(0.5)
            self.act = nn.ReLU() if relu else nn.Identity()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.act(self.conv1(x))
            y = self.act(self.conv2(y))
            y = self.conv3(y)
            if self.shortcut:
                y = y + x
            return self.act(y)

    return types.SimpleNamespace(torch=torch, nn=nn, conv=_conv, ConvReLUStack=ConvReLUStack,
                                 ParallelFragments=ParallelFragments, Bottleneck=Bottleneck)


@dataclass(frozen=True)
class MicroNet:
    """One variant of one guideline's experiment. `baseline`: the variant the others are compared with.
    `claim`: "slower" / "faster" = what the paper says this variant is relative to the baseline."""

    guideline: str
    key: str
    label: str
    build: Callable[[], "torch.nn.Module"]
    in_channels: int
    convs: tuple[tuple[int, int, int, int], ...]  # (cin, cout, groups, k) of every conv, for memory-access theory
    baseline: bool = False
    claim: str | None = None
    paper_arm: float | None = None  # the paper's ARM time ratio vs the baseline (recalled, see PAPER_NOTE)
    paper_gpu: float | None = None

    def design_macs(self, size: int) -> int:
        return sum(size * size * cin * cout // g * k * k for cin, cout, g, k in self.convs)

    def memory_access(self, size: int) -> int:
        """The paper's memory access cost: per conv hw*(c_in + c_out) + weights (values, not bytes)."""
        return sum(size * size * (cin + cout) + cin * cout // g * k * k for cin, cout, g, k in self.convs)


PAPER_NOTE = ("paper ratios are the paper's Tables 1-4 (x1 setting) converted from images/s (ARM, Snapdragon 810, 1 "
              "thread) and batches/s (GPU, 1080Ti) to time relative to the baseline; the tables are images in the "
              "seeds, these values were recalled (R) and not re-checked against the PDF")


def _sp(a: float, b: float) -> float:  # throughput ratio -> time ratio
    return round(a / b, 3)


def _g1(scale: float) -> list[MicroNet]:
    # paper: (128,128) (90,180) (52,312) (36,432); for 1:12 we use (37,444): 0.3 % off the 1:1 FLOPs instead of 5 %
    base = [(1, 128, 128, 76.2, 1480), (2, 90, 180, 72.9, 1296), (6, 52, 312, 69.1, 876), (12, 37, 444, 57.6, 748)]
    out = []
    for ratio, c1, c2, arm, gpu in base:
        c1, c2 = max(1, round(c1 * scale)), max(1, round(c2 * scale))
        convs = tuple(x for _ in range(10) for x in ((c1, c2, 1, 1), (c2, c1, 1, 1)))
        out.append(MicroNet(
            "G1", f"g1_1to{ratio}", f"1:{ratio} ({c1},{c2})",
            (lambda c1=c1, c2=c2: _nn().ConvReLUStack([(c1, c2, 1), (c2, c1, 1)] * 10)), c1, convs,
            baseline=ratio == 1, claim=None if ratio == 1 else "slower",
            paper_arm=_sp(76.2, arm), paper_gpu=_sp(1480, gpu)))
    return out


def _g2(scale: float) -> list[MicroNet]:
    base = [(1, 128, 40.0, 2451), (2, 180, 35.0, 1725), (4, 256, 32.9, 1026), (8, 360, 27.8, 634)]
    out = []
    for g, c, arm, gpu in base:
        c = max(g, int(round(c * scale / g)) * g)
        convs = tuple((c, c, g, 1) for _ in range(10))
        out.append(MicroNet(
            "G2", f"g2_g{g}", f"g={g} (c={c})", (lambda c=c, g=g: _nn().ConvReLUStack([(c, c, g)] * 10)), c, convs,
            baseline=g == 1, claim=None if g == 1 else "slower", paper_arm=_sp(40.0, arm), paper_gpu=_sp(2451, gpu)))
    return out


def _series_width(c: int, n: int) -> int:
    """Inner width m of an n-conv series block c -> m -> ... -> m -> c with the FLOPs of one c -> c conv:
    2cm + (n-2)m^2 = c^2."""
    if n == 2:
        return c // 2
    a, b = n - 2, 2 * c
    return int(round((-b + math.sqrt(b * b + 4 * a * c * c)) / (2 * a)))


def _g3(scale: float) -> list[MicroNet]:
    c = max(4, int(round(128 * scale / 4)) * 4)
    out = [MicroNet("G3", "g3_1frag", "1-fragment", lambda: _nn().ConvReLUStack([(c, c, 1)] * 10), c,
                    tuple((c, c, 1, 1) for _ in range(10)), baseline=True, paper_arm=1.0, paper_gpu=1.0)]
    for n, arm, gpu in ((2, 38.6, 1790), (4, 38.4, 752)):
        m = _series_width(c, n)
        layers = [(c, m, 1)] + [(m, m, 1)] * (n - 2) + [(m, c, 1)]
        out.append(MicroNet("G3", f"g3_{n}series", f"{n}-fragment-series (m={m})",
                            (lambda layers=layers: _nn().ConvReLUStack(layers * 10)), c,
                            tuple((a, b, g, 1) for _ in range(10) for a, b, g in layers),
                            claim="slower", paper_arm=_sp(40.2, arm), paper_gpu=_sp(2446, gpu)))
    for n, arm, gpu in ((2, 33.4, 1537), (4, 35.0, 691)):
        out.append(MicroNet("G3", f"g3_{n}parallel", f"{n}-fragment-parallel ({n}x{c // n})",
                            (lambda n=n: _nn().nn.Sequential(*[_nn().ParallelFragments(c, n) for _ in range(10)])), c,
                            tuple((c, c // n, 1, 1) for _ in range(10 * n)),
                            claim="slower", paper_arm=_sp(40.2, arm), paper_gpu=_sp(2446, gpu)))
    return out


def _g4(scale: float) -> list[MicroNet]:
    m = max(1, int(round(32 * scale)))
    c = 4 * m
    convs = tuple(x for _ in range(10) for x in ((c, m, 1, 1), (m, m, 1, 3), (m, c, 1, 1)))
    rows = [(True, True, 56.7, 2427), (True, False, 61.9, 2647), (False, True, 57.3, 2672), (False, False, 66.3, 2842)]
    out = []
    for relu, sc, arm, gpu in rows:
        key = f"g4_{'relu' if relu else 'norelu'}_{'sc' if sc else 'nosc'}"
        label = f"ReLU {'yes' if relu else 'no'}, shortcut {'yes' if sc else 'no'}"
        out.append(MicroNet(
            "G4", key, label,
            (lambda relu=relu, sc=sc: _nn().nn.Sequential(*[_nn().Bottleneck(c, m, relu=relu, shortcut=sc) for _ in range(10)])),
            c, convs, baseline=relu and sc, claim=None if relu and sc else "faster",
            paper_arm=_sp(56.7, arm), paper_gpu=_sp(2427, gpu)))
    return out


def micro_networks(guidelines=GUIDELINES, *, scale: float = 1.0) -> list[MicroNet]:
    """The variants of the requested guidelines, baseline first within each guideline."""
    makers = {"G1": _g1, "G2": _g2, "G3": _g3, "G4": _g4}
    out = []
    for g in guidelines:
        out.extend(makers[g](scale))
    return out
