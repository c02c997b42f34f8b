"""MnasNet family.

Tan et al., "MnasNet: Platform-Aware Neural Architecture Search for Mobile", CVPR 2019 (arXiv:1807.11626).

- `mnasnet_a1`: the paper's A1 (SE in the 5x5 / 112 / 160 stages), block table from timm's `_gen_mnasnet_a1`
  (stem 32, a depthwise-separable block to 16 without skip, then inverted residuals; SE squeezes to 1/4 of the
  block's *input* channels, ReLU then sigmoid gate; head 1x1 conv to 1280).
- `mnasnet1_0`: torchvision's MNASNet 1.0, which is the paper's B1 (no SE). Module names follow torchvision's
  `mnasnet.py` (`layers.N`, stacks of `_InvertedResidual` with `layers.M`), so torchvision state dicts load as-is.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .registry import register_model
from .spec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec
from .layers import ConvBNAct, SqueezeExcite

PAPER = "Tan et al., MnasNet, CVPR 2019 (arXiv:1807.11626)"

# MnasNet-A1 stages after the stem: expansion, kernel, stride, out channels, repeats, SE
A1_STAGES = ((6, 3, 2, 24, 2, False), (3, 5, 2, 40, 3, True), (6, 3, 2, 80, 4, False), (6, 3, 1, 112, 2, True),
             (6, 5, 2, 160, 3, True), (6, 3, 1, 320, 1, False))
# torchvision MNASNet 1.0 (B1) depths and stacks: out, kernel, stride, expansion, repeats
B1_DEPTHS = (32, 16, 24, 40, 80, 96, 192, 320)
B1_STACKS = ((3, 2, 3, 3), (5, 2, 3, 3), (5, 2, 6, 3), (3, 1, 6, 2), (5, 2, 6, 4), (3, 1, 6, 1))
_TV_BN_MOMENTUM = 1 - 0.9997


class A1Block(nn.Module):
    """Inverted residual: 1x1 expand ReLU -> kxk dw ReLU -> [SE] -> 1x1 project; residual when shapes match."""

    def __init__(self, inp: int, oup: int, *, expand: int, kernel: int, stride: int, se: bool):
        super().__init__()
        mid = inp * expand
        self.conv_pw = ConvBNAct(inp, mid, 1)
        self.conv_dw = ConvBNAct(mid, mid, kernel, stride, groups=mid)
        self.se = SqueezeExcite(mid, inp // 4, act="relu", gate="sigmoid") if se else nn.Identity()
        self.conv_pwl = ConvBNAct(mid, oup, 1, act=None)
        self.has_skip = stride == 1 and inp == oup

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_pwl(self.se(self.conv_dw(self.conv_pw(x))))
        return x + out if self.has_skip else out


class MnasNetA1(nn.Module):
    """Input: float32 (N, 3, 224, 224) RGB, ImageNet mean/std. Output: logits (N, num_classes)."""

    def __init__(self, *, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self.stem = ConvBNAct(3, 32, 3, 2)
        # depthwise-separable block, no skip: 3x3 dw ReLU -> 1x1 to 16 (linear)
        self.sep = nn.Sequential(ConvBNAct(32, 32, 3, 1, groups=32), ConvBNAct(32, 16, 1, act=None))
        blocks: list[nn.Module] = []
        inp = 16
        for e, k, s, c, n, se in A1_STAGES:
            for i in range(n):
                blocks.append(A1Block(inp, c, expand=e, kernel=k, stride=s if i == 0 else 1, se=se))
                inp = c
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBNAct(inp, 1280, 1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.sep(self.stem(x))))
        return self.classifier(x.mean((2, 3)))


class _InvertedResidual(nn.Module):
    """torchvision's MNASNet block: 1x1 expand ReLU -> kxk dw ReLU -> 1x1 project, as one `layers` Sequential."""

    def __init__(self, inp: int, oup: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = inp * expand
        bn = lambda c: nn.BatchNorm2d(c, momentum=_TV_BN_MOMENTUM)  # noqa: E731
        self.apply_residual = inp == oup and stride == 1
        self.layers = nn.Sequential(
            nn.Conv2d(inp, mid, 1, bias=False), bn(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False), bn(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, oup, 1, bias=False), bn(oup),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x) if self.apply_residual else self.layers(x)


class MNASNet(nn.Module):
    """torchvision's MNASNet 1.0 (paper B1). Input: float32 (N, 3, 224, 224) RGB, ImageNet mean/std.
    Output: logits (N, num_classes)."""

    def __init__(self, *, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        d = B1_DEPTHS
        bn = lambda c: nn.BatchNorm2d(c, momentum=_TV_BN_MOMENTUM)  # noqa: E731
        layers: list[nn.Module] = [
            nn.Conv2d(3, d[0], 3, 2, 1, bias=False), bn(d[0]), nn.ReLU(inplace=True),
            nn.Conv2d(d[0], d[0], 3, 1, 1, groups=d[0], bias=False), bn(d[0]), nn.ReLU(inplace=True),
            nn.Conv2d(d[0], d[1], 1, bias=False), bn(d[1]),
        ]
        for (k, s, e, n), inp, oup in zip(B1_STACKS, d[1:-1], d[2:]):
            layers.append(nn.Sequential(*[_InvertedResidual(inp if i == 0 else oup, oup, k, s if i == 0 else 1, e)
                                          for i in range(n)]))
        layers += [nn.Conv2d(d[-1], 1280, 1, bias=False), bn(1280), nn.ReLU(inplace=True)]
        self.layers = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.layers(x).mean((2, 3)))


@register_model(
    ModelSpec(
        name="mnasnet_a1", family="mnasnet", input_shape=(3, 224, 224), num_classes=1000,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, paper=PAPER, resize=256, crop=224, test_input_shape=(3, 64, 64),
        published_macs=312e6, macs_tolerance=0.03, published_params=3_900_000,
        notes="MACs: the paper's Table 1 (312M; models.md's summary says 315M); params 3.9M (paper), no exact count",
    )
)
def mnasnet_a1(*, num_classes: int = 1000) -> MnasNetA1:
    return MnasNetA1(num_classes=num_classes)


@register_model(
    ModelSpec(
        name="mnasnet1_0", family="mnasnet", input_shape=(3, 224, 224), num_classes=1000,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, paper=PAPER + "; B1 as torchvision's mnasnet1_0", resize=256, crop=224,
        test_input_shape=(3, 64, 64), published_params=4_383_312, published_macs=310e6, macs_tolerance=0.03,
        notes="params: torchvision's exact count; MACs: torchvision's 0.31 GFLOPS (multiply-adds)",
    )
)
def mnasnet1_0(*, num_classes: int = 1000) -> MNASNet:
    return MNASNet(num_classes=num_classes)
