"""GhostNet family.

- GhostNet: Han et al., "GhostNet: More Features from Cheap Operations", CVPR 2020 (arXiv:1911.11907).
- GhostNetV2: Tang et al., "GhostNetV2: Enhance Cheap Operation with Long-Range Attention", NeurIPS 2022
  (arXiv:2211.12905): the first ghost module of every block after the second gets DFC attention.

Module names follow huawei-noah/Efficient-AI-Backbones `ghostnet_pytorch/ghostnet.py` and
`ghostnetv2_pytorch/model/ghostnetv2_torch.py` (conv_stem, blocks.S.B.ghost1.primary_conv, ..., conv_head,
classifier), so the official state dicts load as-is.

DFC attention resizes a sigmoid map from (H/2, W/2) back to (H, W) with nearest neighbour. The target size is taken
from the feature map's static shape as Python ints, so the exported graph has a constant-size Resize (no
Shape/Gather chain); export at a fixed input size.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import register_model
from .spec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec
from .layers import make_divisible

V1_PAPER = "Han et al., GhostNet, CVPR 2020 (arXiv:1911.11907)"
V2_PAPER = "Tang et al., GhostNetV2, NeurIPS 2022 (arXiv:2211.12905)"

# Stages of (kernel, expansion, out, SE ratio, stride), the official table at width 1.0.
CFGS = (
    ((3, 16, 16, 0, 1),),
    ((3, 48, 24, 0, 2),),
    ((3, 72, 24, 0, 1),),
    ((5, 72, 40, 0.25, 2),),
    ((5, 120, 40, 0.25, 1),),
    ((3, 240, 80, 0, 2),),
    ((3, 200, 80, 0, 1), (3, 184, 80, 0, 1), (3, 184, 80, 0, 1), (3, 480, 112, 0.25, 1), (3, 672, 112, 0.25, 1)),
    ((5, 672, 160, 0.25, 2),),
    ((5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1), (5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1)),
)


class GhostSE(nn.Module):
    """SE: GAP -> 1x1 (bias) to make_divisible(C/4, 4) -> ReLU -> 1x1 (bias) -> hard-sigmoid gate -> scale."""

    def __init__(self, channels: int, se_ratio: float = 0.25):
        super().__init__()
        reduced = make_divisible(channels * se_ratio, 4)
        self.conv_reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act1 = nn.ReLU(inplace=True)
        self.conv_expand = nn.Conv2d(reduced, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.conv_expand(self.act1(self.conv_reduce(x.mean((2, 3), keepdim=True))))
        return x * F.hardsigmoid(s)


class GhostModule(nn.Module):
    """1x1 conv to ceil(oup/2) ("intrinsic") -> 3x3 depthwise cheap op -> concat -> first `oup` channels.

    `dfc=True` (GhostNetV2 "attn" mode) multiplies the result by the DFC attention map: avg-pool 2x2 -> 1x1 conv + BN
    -> depthwise 1x5 + BN -> depthwise 5x1 + BN -> sigmoid -> nearest resize to the output's (static) size."""

    def __init__(self, inp: int, oup: int, *, relu: bool = True, dfc: bool = False):
        super().__init__()
        self.oup, self.dfc = oup, dfc
        init = math.ceil(oup / 2)
        self.primary_conv = nn.Sequential(
            nn.Conv2d(inp, init, 1, 1, 0, bias=False), nn.BatchNorm2d(init),
            nn.ReLU(inplace=True) if relu else nn.Sequential(),
        )
        self.cheap_operation = nn.Sequential(
            nn.Conv2d(init, init, 3, 1, 1, groups=init, bias=False), nn.BatchNorm2d(init),
            nn.ReLU(inplace=True) if relu else nn.Sequential(),
        )
        if dfc:
            self.short_conv = nn.Sequential(
                nn.Conv2d(inp, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup),
                nn.Conv2d(oup, oup, (1, 5), 1, (0, 2), groups=oup, bias=False), nn.BatchNorm2d(oup),
                nn.Conv2d(oup, oup, (5, 1), 1, (2, 0), groups=oup, bias=False), nn.BatchNorm2d(oup),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.primary_conv(x)
        out = torch.cat((x1, self.cheap_operation(x1)), dim=1)[:, : self.oup]
        if not self.dfc:
            return out
        gate = torch.sigmoid(self.short_conv(F.avg_pool2d(x, kernel_size=2, stride=2)))
        size = (int(out.shape[-2]), int(out.shape[-1]))  # static ints: a constant-size Resize in the export
        return out * F.interpolate(gate, size=size, mode="nearest")


class GhostBottleneck(nn.Module):
    """ghost1 (ReLU[, DFC]) -> [dw kxk stride-2 + BN] -> [SE] -> ghost2 (linear) -> + shortcut.
    The shortcut is identity, or dw kxk (stride) + BN + 1x1 + BN when the shape changes."""

    def __init__(self, inp: int, mid: int, oup: int, kernel: int, stride: int, *, se_ratio: float = 0.0,
                 dfc: bool = False):
        super().__init__()
        self.stride = stride
        self.ghost1 = GhostModule(inp, mid, relu=True, dfc=dfc)
        if stride > 1:
            self.conv_dw = nn.Conv2d(mid, mid, kernel, stride, (kernel - 1) // 2, groups=mid, bias=False)
            self.bn_dw = nn.BatchNorm2d(mid)
        self.se = GhostSE(mid, se_ratio) if se_ratio else None
        self.ghost2 = GhostModule(mid, oup, relu=False)
        if inp == oup and stride == 1:
            self.shortcut = nn.Sequential()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(inp, inp, kernel, stride, (kernel - 1) // 2, groups=inp, bias=False), nn.BatchNorm2d(inp),
                nn.Conv2d(inp, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.ghost1(x)
        if self.stride > 1:
            out = self.bn_dw(self.conv_dw(out))
        if self.se is not None:
            out = self.se(out)
        return self.ghost2(out) + self.shortcut(x)


class ConvBnAct(nn.Module):
    """The official final 1x1 conv + BN + ReLU (names conv, bn1, act1)."""

    def __init__(self, inp: int, oup: int):
        super().__init__()
        self.conv = nn.Conv2d(inp, oup, 1, 1, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(oup)
        self.act1 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act1(self.bn1(self.conv(x)))


class GhostNet(nn.Module):
    """Input: float32 (N, 3, 224, 224) RGB, ImageNet mean/std. Output: logits (N, num_classes).

    Channels are make_divisible(c * width, 4). Head: 1x1 conv to 960*width -> GAP -> 1x1 conv (bias) to 1280 ->
    ReLU -> dropout -> Linear. `v2`: DFC attention in ghost1 of every block with index > 1 (0-based over the net)."""

    def __init__(self, *, width: float = 1.0, num_classes: int = 1000, dropout: float = 0.2, v2: bool = False):
        super().__init__()
        stem = make_divisible(16 * width, 4)
        self.conv_stem = nn.Conv2d(3, stem, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.act1 = nn.ReLU(inplace=True)
        inp, layer_id, stages = stem, 0, []
        for cfg in CFGS:
            layers = []
            for k, exp, c, se, s in cfg:
                oup, mid = make_divisible(c * width, 4), make_divisible(exp * width, 4)
                layers.append(GhostBottleneck(inp, mid, oup, k, s, se_ratio=se, dfc=v2 and layer_id > 1))
                inp, layer_id = oup, layer_id + 1
            stages.append(nn.Sequential(*layers))
        last = make_divisible(960 * width, 4)
        stages.append(nn.Sequential(ConvBnAct(inp, last)))
        self.blocks = nn.Sequential(*stages)
        self.conv_head = nn.Conv2d(last, 1280, 1, 1, 0, bias=True)
        self.act2 = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.act1(self.bn1(self.conv_stem(x))))
        x = self.act2(self.conv_head(x.mean((2, 3), keepdim=True)))
        return self.classifier(self.dropout(x.flatten(1)))


def _spec(name: str, paper: str, macs: float, tol: float, notes: str, params: int) -> ModelSpec:
    return ModelSpec(
        name=name, family="ghostnet", input_shape=(3, 224, 224), num_classes=1000, mean=IMAGENET_MEAN,
        std=IMAGENET_STD, paper=paper, resize=256, crop=224, test_input_shape=(3, 64, 64),
        published_macs=macs, macs_tolerance=tol, published_params=params, notes=notes,
    )


_V1_NOTE = "MACs and params (2.6M / 5.2M / 7.3M) from the paper's Table 7; no exact published parameter count"


@register_model(_spec("ghostnet_x0_5", V1_PAPER, 42e6, 0.06, _V1_NOTE, 2_600_000))
def ghostnet_x0_5(*, num_classes: int = 1000) -> GhostNet:
    return GhostNet(width=0.5, num_classes=num_classes)


@register_model(_spec("ghostnet_x1_0", V1_PAPER, 141e6, 0.06, _V1_NOTE, 5_200_000))
def ghostnet_x1_0(*, num_classes: int = 1000) -> GhostNet:
    return GhostNet(width=1.0, num_classes=num_classes)


@register_model(_spec("ghostnet_x1_3", V1_PAPER, 226e6, 0.06, _V1_NOTE, 7_300_000))
def ghostnet_x1_3(*, num_classes: int = 1000) -> GhostNet:
    return GhostNet(width=1.3, num_classes=num_classes)


@register_model(_spec("ghostnetv2_x1_0", V2_PAPER, 167e6, 0.06,
                      "MACs and params (6.1M) from the paper's abstract / Table; timm: 6.16M params", 6_100_000))
def ghostnetv2_x1_0(*, num_classes: int = 1000) -> GhostNet:
    return GhostNet(width=1.0, num_classes=num_classes, v2=True)
