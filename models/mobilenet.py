"""MobileNet family.

- MobileNetV2: Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018
  (arXiv:1801.04381). Module names follow torchvision's `mobilenetv2.py`, so torchvision state dicts load as-is.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ._registry import register_model
from ._spec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec
from .layers import ConvBNAct, make_divisible

V2_PAPER = "Sandler et al., MobileNetV2, CVPR 2018 (arXiv:1801.04381)"

# t (expansion), c (out channels), n (repeats), s (first stride)
MBV2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class MBV2Block(nn.Module):
    """Inverted residual with a linear bottleneck: [1x1 expand ReLU6] -> 3x3 dw ReLU6 -> 1x1 project (no act)."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(inp, hidden, 1, act="relu6"))
        layers += [
            ConvBNAct(hidden, hidden, 3, stride, groups=hidden, act="relu6"),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """Input: float32 (N, 3, 224, 224) RGB, ImageNet mean/std. Output: logits (N, num_classes)."""

    def __init__(self, *, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2):
        super().__init__()
        inp = make_divisible(32 * width_mult)
        last = make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [ConvBNAct(3, inp, 3, 2, act="relu6")]
        for t, c, n, s in MBV2_SETTING:
            oup = make_divisible(c * width_mult)
            for i in range(n):
                features.append(MBV2Block(inp, oup, s if i == 0 else 1, t))
                inp = oup
        features.append(ConvBNAct(inp, last, 1, act="relu6"))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


@register_model(
    ModelSpec(
        name="mobilenet_v2", family="mobilenet_v2", input_shape=(3, 224, 224), num_classes=1000,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, paper=V2_PAPER, resize=256, crop=224,
        test_input_shape=(3, 64, 64), published_params=3_504_872, published_macs=300e6,
    )
)
def mobilenet_v2(*, num_classes: int = 1000, width_mult: float = 1.0) -> MobileNetV2:
    return MobileNetV2(num_classes=num_classes, width_mult=width_mult)
