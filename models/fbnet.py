"""FBNet family, built from facebookresearch/mobile-vision's `fbnet_v2` model definitions.

- FBNet A/B/C: Wu et al., "FBNet: Hardware-Aware Efficient ConvNet Design via Differentiable Neural Architecture
  Search", CVPR 2019 (arXiv:1812.03443); block lists from `fbnet_modeldef_cls_fbnet.py`.
- FBNetV2 F4 / L2: Wan et al., "FBNetV2: Differentiable Neural Architecture Search for Spatial and Channel
  Dimensions", CVPR 2020 (arXiv:2004.05565); block lists from `fbnet_modeldef_cls_fbnetv2.py`.
- FBNetV3-B: Dai et al., "FBNetV3: Joint Architecture-Recipe Search using Predictor Pretraining", CVPR 2021
  (arXiv:2006.02049); block list from `fbnet_modeldef_cls_fbnetv3.py` ("FBNetV3_B", input 248, including its two
  non-standard depthwise paddings). timm's `_gen_fbnetv3` builds the same blocks with standard padding and a ReLU
  inside SE; we follow the authors' definition (SE uses the block's activation).

Block semantics (mobile-vision `IRFBlock`): mid = round-to-8(in * e); 1x1 pw + BN + act (omitted when mid == in);
channel shuffle when the pw is grouped ("g2" blocks); kxk depthwise + BN + act; optional SE (squeeze
round-to-8(mid/4), or mid/(4e) with `less_se_channels`; act, then hard-sigmoid gate); 1x1 pwl + BN (linear,
optionally grouped); residual add when stride 1 and in == out. "skip" is the identity, or a 1x1 conv + BN + ReLU when
the width changes. FBNet V1 definitions give the block convs a bias (redundant before BN; we keep it, so parameter
counts match the definition). The classifier head is GAP -> Linear (mobile-vision's 1x1 conv head, same weights).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .registry import register_model
from .spec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec
from .layers import SqueezeExcite, channel_shuffle, make_act

V1_PAPER = "Wu et al., FBNet, CVPR 2019 (arXiv:1812.03443)"
V2_PAPER = "Wan et al., FBNetV2, CVPR 2020 (arXiv:2004.05565)"
V3_PAPER = "Dai et al., FBNetV3, CVPR 2021 (arXiv:2006.02049)"


def _div8(v: float) -> int:
    """mobile-vision's get_divisible_by(v, 8): round half away from zero to a multiple of 8 (at least 8)."""
    if v % 8 == 0:
        return int(v)
    q = v / 8
    r = int(q + 0.5) if q >= 0 else -int(-q + 0.5)
    return int((r or 1) * 8)


@dataclass(frozen=True)
class B:
    """One block of a definition: kind "ir" | "skip"; kernel; expansion; out channels; stride; repeats; SE;
    activation; grouped 1x1 convs (g2 blocks); explicit depthwise padding (None: kernel // 2)."""

    kind: str
    k: int
    e: float
    c: int
    s: int = 1
    n: int = 1
    se: bool = False
    act: str = "relu"
    groups: int = 1
    dw_pad: int | None = None


def ir(k, e, c, s=1, n=1, *, se=False, act="relu", groups=1, dw_pad=None) -> B:
    return B("ir", k, e, c, s, n, se, act, groups, dw_pad)


def skip(c, s=1) -> B:
    return B("skip", 1, 1, c, s)


def _cba(cin, cout, k=1, s=1, *, groups=1, act="relu", bias=False, padding=None, bn=True) -> nn.Sequential:
    pad = k // 2 if padding is None else padding
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, s, pad, groups=groups, bias=bias)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    if act is not None:
        layers.append(make_act(act))
    return nn.Sequential(*layers)


class IRFBlock(nn.Module):
    """mobile-vision's inverted residual block (see the module docstring)."""

    def __init__(self, inp: int, cfg: B, stride: int, *, bias: bool, less_se_channels: bool):
        super().__init__()
        mid = _div8(inp * cfg.e)
        self.pw = _cba(inp, mid, groups=cfg.groups, act=cfg.act, bias=bias) if mid != inp else None
        self.shuffle_groups = cfg.groups
        self.dw = _cba(mid, mid, cfg.k, stride, groups=mid, act=cfg.act, bias=bias, padding=cfg.dw_pad)
        if cfg.se:
            squeeze = _div8(int(mid * (0.25 / cfg.e if less_se_channels else 0.25)))
            self.se = SqueezeExcite(mid, squeeze, act=cfg.act, gate="hsigmoid")
        else:
            self.se = None
        self.pwl = _cba(mid, cfg.c, groups=cfg.groups, act=None, bias=bias)
        self.residual = stride == 1 and inp == cfg.c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pw(x) if self.pw is not None else x
        if self.shuffle_groups > 1:
            y = channel_shuffle(y, self.shuffle_groups)
        y = self.dw(y)
        if self.se is not None:
            y = self.se(y)
        y = self.pwl(y)
        return x + y if self.residual else y


class Skip(nn.Module):
    """Identity, or 1x1 conv (stride) + BN + ReLU when the width or resolution changes."""

    def __init__(self, inp: int, oup: int, stride: int):
        super().__init__()
        self.conv = _cba(inp, oup, 1, stride) if (inp != oup or stride != 1) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) if self.conv is not None else x


class FBNet(nn.Module):
    """Input: float32 (N, 3, H, W) RGB, ImageNet mean/std. Output: logits (N, num_classes).

    stem 3x3 s2 -> blocks -> head -> GAP -> [pool head] -> dropout -> Linear. Head "conv": 1x1 conv + BN + act to
    `head_channels` before GAP (FBNet V1). Head "pool" (mobile-vision `ir_pool`, V2/V3): 1x1 conv + BN + act to
    in*head_expansion, GAP, 1x1 conv (no BN) + act to `head_channels`."""

    def __init__(self, blocks: tuple[B, ...], *, stem: int, stem_act: str, head: str, head_channels: int,
                 head_act: str, head_expansion: float = 6, bias: bool = False, less_se_channels: bool = False,
                 num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self.stem = _cba(3, stem, 3, 2, act=stem_act)
        layers: list[nn.Module] = []
        inp = stem
        for cfg in blocks:
            for i in range(cfg.n):
                stride = cfg.s if i == 0 else 1
                if cfg.kind == "skip":
                    layers.append(Skip(inp, cfg.c, stride))
                else:
                    # an explicit dw padding applies to the strided first repeat only (as in the definitions)
                    c = cfg if i == 0 else B(**{**cfg.__dict__, "dw_pad": None})
                    layers.append(IRFBlock(inp, c, stride, bias=bias, less_se_channels=less_se_channels))
                inp = cfg.c
        self.blocks = nn.Sequential(*layers)
        self.pool_head = head == "pool"
        if self.pool_head:
            mid = _div8(inp * head_expansion)
            self.head = _cba(inp, mid, act=head_act)
            self.head_pwl = _cba(mid, head_channels, act=head_act, bn=False)
        else:
            self.head = _cba(inp, head_channels, act=head_act)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(head_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x))).mean((2, 3), keepdim=True)
        if self.pool_head:
            x = self.head_pwl(x)
        return self.classifier(self.dropout(x.flatten(1)))


# ---- FBNet A / B / C (fbnet_modeldef_cls_fbnet.py) -----------------------------------------------------------------
FBNET_A = (
    skip(16),
    ir(3, 3, 24, 2), ir(3, 1, 24), skip(24), skip(24),
    ir(5, 6, 32, 2), ir(3, 3, 32), ir(5, 1, 32), ir(3, 3, 32),
    ir(5, 6, 64, 2), ir(5, 3, 64), ir(5, 1, 64, groups=2), ir(5, 6, 64),
    ir(3, 6, 112), ir(5, 1, 112, groups=2), ir(5, 3, 112), ir(3, 1, 112, groups=2),
    ir(5, 6, 184, 2), ir(5, 6, 184), ir(5, 3, 184), ir(5, 6, 184), ir(5, 6, 352),
)
FBNET_B = (
    ir(3, 1, 16),
    ir(3, 6, 24, 2), ir(5, 1, 24), ir(3, 1, 24), ir(3, 1, 24),
    ir(5, 6, 32, 2), ir(5, 3, 32), ir(3, 6, 32), ir(5, 6, 32),
    ir(5, 6, 64, 2), ir(5, 6, 64), skip(64), ir(5, 3, 64),
    ir(5, 6, 112), ir(3, 1, 112), ir(5, 1, 112), ir(5, 3, 112),
    ir(5, 6, 184, 2), ir(5, 1, 184), ir(5, 6, 184), ir(5, 6, 184), ir(3, 6, 352),
)
FBNET_C = (
    ir(3, 1, 16),
    ir(3, 6, 24, 2), skip(24), ir(3, 1, 24), ir(3, 1, 24),
    ir(5, 6, 32, 2), ir(5, 3, 32), ir(5, 6, 32), ir(3, 6, 32),
    ir(5, 6, 64, 2), ir(5, 3, 64), ir(5, 6, 64), ir(5, 6, 64),
    ir(5, 6, 112), ir(5, 6, 112), ir(5, 6, 112), ir(5, 3, 112),
    ir(5, 6, 184, 2), ir(5, 6, 184), ir(5, 6, 184), ir(5, 6, 184), ir(3, 6, 352),
)


def _v1(blocks, head_channels: int, num_classes: int) -> FBNet:
    return FBNet(blocks, stem=16, stem_act="relu", head="conv", head_channels=head_channels, head_act="relu",
                 bias=True, num_classes=num_classes)


def _spec(name: str, paper: str, macs: float | None, tol: float, notes: str, size: int = 224,
          params: int | None = None) -> ModelSpec:
    return ModelSpec(
        name=name, family="fbnet", input_shape=(3, size, size), num_classes=1000, mean=IMAGENET_MEAN,
        std=IMAGENET_STD, paper=paper, resize=int(round(size / 0.875)), crop=size, test_input_shape=(3, 64, 64),
        published_macs=macs, macs_tolerance=tol, published_params=params, notes=notes,
    )


_V1_NOTE = ("MACs: paper Table 2 (249/295/375M); params 4.3/4.5/5.5M (recalled, models.md marks them R); "
            "FBNet-B is 4.82M against the recalled 4.5M, so no published params are set for it")


@register_model(_spec("fbnet_a", V1_PAPER, 249e6, 0.06, _V1_NOTE, params=4_300_000))
def fbnet_a(*, num_classes: int = 1000) -> FBNet:
    return _v1(FBNET_A, 1504, num_classes)


@register_model(_spec("fbnet_b", V1_PAPER, 295e6, 0.06, _V1_NOTE))
def fbnet_b(*, num_classes: int = 1000) -> FBNet:
    return _v1(FBNET_B, 1984, num_classes)


@register_model(_spec("fbnet_c", V1_PAPER, 375e6, 0.06, _V1_NOTE, params=5_500_000))
def fbnet_c(*, num_classes: int = 1000) -> FBNet:
    return _v1(FBNET_C, 1984, num_classes)


# ---- FBNetV2 (fbnet_modeldef_cls_fbnetv2.py) -----------------------------------------------------------------------
def _se(k, e, c, s=1, act="relu"):
    return ir(k, e, c, s, se=True, act=act)


FBNETV2_F4 = (
    ir(3, 1, 16, act="hswish"),
    ir(5, 5.4566, 24, 2, act="hswish"), ir(5, 1.7912, 24, act="hswish"), ir(5, 1.7912, 24, act="hswish"),
    _se(5, 5.3501, 32, 2), _se(5, 3.5379, 32), _se(5, 4.5379, 32), _se(5, 4.5379, 32),
    ir(5, 5.7133, 64, 2, act="hswish"), ir(3, 2.1212, 64, act="hswish"), skip(64), ir(3, 5.0333, 104, act="hswish"),
    _se(5, 2.5070, 104, act="hswish"), _se(5, 1.7712, 104, act="hswish"), _se(5, 3.7712, 112, act="hswish"),
    _se(3, 5.5685, 184, 2, act="hswish"), _se(5, 2.8400, 184, act="hswish"), _se(5, 4.8754, 184, act="hswish"),
    skip(224),
)
FBNETV2_L2 = (
    ir(3, 1, 16, act="hswish"),
    ir(5, 5.4566, 24, 2, act="hswish"), ir(5, 1.7912, 24, act="hswish"), ir(3, 1.7912, 24, act="hswish"),
    ir(5, 1.7912, 24, act="hswish"),
    _se(5, 5.3501, 40, 2, act="hswish"), _se(5, 3.5379, 32, act="hswish"), _se(5, 4.5379, 32, act="hswish"),
    _se(5, 4.5379, 32, act="hswish"),
    ir(5, 5.7133, 64, 2, act="hswish"), ir(3, 2.1212, 64, act="hswish"), skip(64), ir(3, 3.1246, 64, act="hswish"),
    ir(3, 5.0333, 112, act="hswish"), _se(5, 2.5070, 112, act="hswish"), _se(5, 1.7712, 112, act="hswish"),
    _se(5, 2.7712, 112, act="hswish"), _se(5, 3.7712, 112, act="hswish"), _se(5, 3.7712, 112, act="hswish"),
    _se(3, 5.5685, 184, 2, act="hswish"), _se(5, 2.8400, 184, act="hswish"), _se(5, 2.8400, 184, act="hswish"),
    _se(5, 4.8754, 184, act="hswish"), _se(5, 4.8754, 184, act="hswish"), skip(224),
)


def _v2(blocks, num_classes: int) -> FBNet:
    return FBNet(blocks, stem=16, stem_act="hswish", head="pool", head_channels=1984, head_act="hswish",
                 head_expansion=6, num_classes=num_classes)


@register_model(_spec("fbnetv2_f4", V2_PAPER, 238.35e6, 0.03,
                      "MACs: the definition's comment (238.35M, 6.99M params as counted by mobile-vision)",
                      params=6_990_000))
def fbnetv2_f4(*, num_classes: int = 1000) -> FBNet:
    return _v2(FBNETV2_F4, num_classes)


@register_model(_spec("fbnetv2_l2", V2_PAPER, 423.91e6, 0.03,
                      "MACs: the definition's comment (423.9M, 8.50M params as counted by mobile-vision), input 256",
                      size=256, params=8_500_000))
def fbnetv2_l2(*, num_classes: int = 1000) -> FBNet:
    return _v2(FBNETV2_L2, num_classes)


# ---- FBNetV3-B (fbnet_modeldef_cls_fbnetv3.py, "FBNetV3_B") --------------------------------------------------------
def _hs(k, e, c, s=1, n=1, *, se=False, dw_pad=None):
    return ir(k, e, c, s, n, se=se, act="hswish", dw_pad=dw_pad)


FBNETV3_B = (
    _hs(3, 1, 16, n=2),
    _hs(5, 4, 24, 2), _hs(5, 2, 24, n=3),
    _hs(5, 5, 40, 2, se=True), _hs(5, 3, 40, n=4, se=True),
    _hs(5, 5, 72, 2, dw_pad=1), _hs(3, 3, 72, n=4), _hs(3, 5, 120, se=True), _hs(5, 3, 120, n=5, se=True),
    _hs(3, 6, 184, 2, se=True, dw_pad=0), _hs(5, 4, 184, n=5, se=True), _hs(5, 6, 224, se=True),
)


@register_model(_spec("fbnetv3_b", V3_PAPER, 461e6, 0.03,
                      "input 248 (the definition's input_size). MACs: the paper's 461M for FBNetV3-B (recalled, not "
                      "re-verified here); timm reports 8.6M params for its fbnetv3_b (same blocks)", size=248,
                      params=8_600_000))
def fbnetv3_b(*, num_classes: int = 1000) -> FBNet:
    return FBNet(FBNETV3_B, stem=16, stem_act="hswish", head="pool", head_channels=1984, head_act="hswish",
                 head_expansion=6, less_se_channels=True, num_classes=num_classes)
