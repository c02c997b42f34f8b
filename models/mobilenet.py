"""MobileNet family.

- MobileNetV2: Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018
  (arXiv:1801.04381). Module names follow torchvision's `mobilenetv2.py`, so torchvision state dicts load as-is.
- MobileNetV3: Howard et al., "Searching for MobileNetV3", ICCV 2019 (arXiv:1905.02244). Module names, block table
  and BN settings follow torchvision's `mobilenetv3.py` (SE squeeze make_divisible(exp // 4, 8), ReLU then
  hard-sigmoid gate; head 1x1 conv to 6x the last width, GAP, Linear -> hard-swish -> dropout -> Linear).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .registry import register_model
from .spec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec
from .layers import ConvBNAct, SqueezeExcite, make_divisible

V3_PAPER = "Howard et al., Searching for MobileNetV3, ICCV 2019 (arXiv:1905.02244)"
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


# ---- MobileNetV3 ----------------------------------------------------------------------------------------------------
# in, kernel, expanded, out, SE, activation, stride (torchvision's bneck_conf, width 1.0)
MBV3_LARGE = (
    (16, 3, 16, 16, False, "relu", 1), (16, 3, 64, 24, False, "relu", 2), (24, 3, 72, 24, False, "relu", 1),
    (24, 5, 72, 40, True, "relu", 2), (40, 5, 120, 40, True, "relu", 1), (40, 5, 120, 40, True, "relu", 1),
    (40, 3, 240, 80, False, "hswish", 2), (80, 3, 200, 80, False, "hswish", 1), (80, 3, 184, 80, False, "hswish", 1),
    (80, 3, 184, 80, False, "hswish", 1), (80, 3, 480, 112, True, "hswish", 1), (112, 3, 672, 112, True, "hswish", 1),
    (112, 5, 672, 160, True, "hswish", 2), (160, 5, 960, 160, True, "hswish", 1), (160, 5, 960, 160, True, "hswish", 1),
)
MBV3_SMALL = (
    (16, 3, 16, 16, True, "relu", 2), (16, 3, 72, 24, False, "relu", 2), (24, 3, 88, 24, False, "relu", 1),
    (24, 5, 96, 40, True, "hswish", 2), (40, 5, 240, 40, True, "hswish", 1), (40, 5, 240, 40, True, "hswish", 1),
    (40, 5, 120, 48, True, "hswish", 1), (48, 5, 144, 48, True, "hswish", 1), (48, 5, 288, 96, True, "hswish", 2),
    (96, 5, 576, 96, True, "hswish", 1), (96, 5, 576, 96, True, "hswish", 1),
)
_MBV3_BN_EPS = 1e-3  # torchvision: BatchNorm2d(eps=0.001, momentum=0.01)


class MBV3Block(nn.Module):
    """[1x1 expand act] -> kxk dw act -> [SE (ReLU, hard-sigmoid)] -> 1x1 project; residual when shapes match.
    Children of `block` are numbered as torchvision numbers them (no expand layer when expanded == in)."""

    def __init__(self, inp: int, k: int, exp: int, oup: int, se: bool, act: str, stride: int):
        super().__init__()
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if exp != inp:
            layers.append(ConvBNAct(inp, exp, 1, act=act, bn_eps=_MBV3_BN_EPS))
        layers.append(ConvBNAct(exp, exp, k, stride, groups=exp, act=act, bn_eps=_MBV3_BN_EPS))
        if se:
            layers.append(SqueezeExcite(exp, make_divisible(exp // 4, 8), act="relu", gate="hsigmoid"))
        layers.append(ConvBNAct(exp, oup, 1, act=None, bn_eps=_MBV3_BN_EPS))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.use_res_connect else self.block(x)


class MobileNetV3(nn.Module):
    """Input: float32 (N, 3, 224, 224) RGB, ImageNet mean/std. Output: logits (N, num_classes)."""

    def __init__(self, setting, *, last_channel: int, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        features: list[nn.Module] = [ConvBNAct(3, setting[0][0], 3, 2, act="hswish", bn_eps=_MBV3_BN_EPS)]
        features += [MBV3Block(*cfg) for cfg in setting]
        last_in = setting[-1][3]
        features.append(ConvBNAct(last_in, 6 * last_in, 1, act="hswish", bn_eps=_MBV3_BN_EPS))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(
            nn.Linear(6 * last_in, last_channel), nn.Hardswish(inplace=True), nn.Dropout(dropout),
            nn.Linear(last_channel, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


_V3_NOTES = ("params: torchvision's exact count. MACs: large 217M (slim README); small 56M is the paper's Table 3 "
             "(recalled, models.md marks it R), matching the 2.5M-param model torchvision builds; the slim README's "
             "66M / 2.9M small is a different (larger) revision. Counted conv+FC multiply-adds, SE included")


@register_model(
    ModelSpec(
        name="mobilenet_v3_large", family="mobilenet_v3", input_shape=(3, 224, 224), num_classes=1000,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, paper=V3_PAPER, resize=256, crop=224,
        test_input_shape=(3, 64, 64), published_params=5_483_032, published_macs=217e6, notes=_V3_NOTES,
    )
)
def mobilenet_v3_large(*, num_classes: int = 1000) -> MobileNetV3:
    return MobileNetV3(MBV3_LARGE, last_channel=1280, num_classes=num_classes)


@register_model(
    ModelSpec(
        name="mobilenet_v3_small", family="mobilenet_v3", input_shape=(3, 224, 224), num_classes=1000,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, paper=V3_PAPER, resize=256, crop=224,
        test_input_shape=(3, 64, 64), published_params=2_542_856, published_macs=56e6, notes=_V3_NOTES,
    )
)
def mobilenet_v3_small(*, num_classes: int = 1000) -> MobileNetV3:
    return MobileNetV3(MBV3_SMALL, last_channel=1024, num_classes=num_classes)
