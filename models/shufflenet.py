"""ShuffleNet family.

- ShuffleNetV2: Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design", ECCV 2018
  (arXiv:1807.11164). Module names follow torchvision's `shufflenetv2.py`, so torchvision state dicts load as-is.
- AugShuffleNet: Ye, "AugShuffleNet: Communicate More, Compute Less", arXiv:2203.06589 (CIFAR only).

Where the AugShuffleNet seed's code and the paper differ (see docs/models.md):
- shuffle groups: the seed's blog code uses 4 groups in the augmented block; the paper's figure and the third-party
  implementation use 2 (ShuffleNetV2's). We default to 2 and expose `shuffle_groups` (2 or 4).
- widths: 1.0x uses 120/240/480 (not ShuffleNetV2's 116/232/464) because 116*r is not an integer; 0.5x and 1.5x
  keep ShuffleNetV2's widths, as the paper's table does.
- stride-1 stem, no max-pool, (3, 7, 3) stride-1 blocks after each stage's down-sampling block; only the 10
  stride-1 blocks of stages 3 and 4 are augmented (the author's repo), stage 2 keeps ShuffleNetV2 blocks.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .registry import register_model
from .spec import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD, ModelSpec
from .layers import channel_shuffle

V2_PAPER = "Ma et al., ShuffleNet V2, ECCV 2018 (arXiv:1807.11164)"
AUG_PAPER = "Ye, AugShuffleNet: Communicate More, Compute Less, arXiv:2203.06589"

# width -> (stage channels..., conv5 channels)
V2_WIDTHS = {
    "x0_5": (24, 48, 96, 192, 1024),
    "x1_0": (24, 116, 232, 464, 1024),
    "x1_5": (24, 176, 352, 704, 1024),
    "x2_0": (24, 244, 488, 976, 2048),
}
AUG_WIDTHS = {
    "x0_5": (24, 48, 96, 192, 1024),
    "x1_0": (24, 120, 240, 480, 1024),
    "x1_5": (24, 176, 352, 704, 1024),
}
STAGE_REPEATS = (4, 8, 4)


def _dw(ch: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(ch, ch, 3, stride, 1, groups=ch, bias=False)


def _pw(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, 1, 0, bias=False)


class InvertedResidual(nn.Module):
    """ShuffleNetV2 unit. stride 1: split in half, right half conv'd; stride 2: both branches conv'd, channels double."""

    def __init__(self, inp: int, oup: int, stride: int, *, shuffle: bool = True):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError("stride must be 1 or 2")
        self.stride = stride
        self.shuffle = shuffle
        bf = oup // 2
        if stride == 1 and inp != bf * 2:
            raise ValueError(f"stride-1 unit needs inp == oup, got {inp} -> {oup}")
        if stride > 1:
            self.branch1 = nn.Sequential(_dw(inp, stride), nn.BatchNorm2d(inp), _pw(inp, bf), nn.BatchNorm2d(bf), nn.ReLU(inplace=True))
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            _pw(inp if stride > 1 else bf, bf), nn.BatchNorm2d(bf), nn.ReLU(inplace=True),
            _dw(bf, stride), nn.BatchNorm2d(bf),
            _pw(bf, bf), nn.BatchNorm2d(bf), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2) if self.shuffle else out


class AugmentedShuffleBlock(nn.Module):
    """AugShuffleNet's stride-1 block (split ratio r < 0.5).

    Split C into [rC, (1-r)C/2, (1-r)C/2] = [x1, x2, x3]. x1 -> 1x1 conv + BN (no ReLU) -> 3x3 dw + BN -> chunk
    into (c1, c2). Crossover: cat(c2, x2) has exactly C/2 channels -> 1x1 conv + BN + ReLU. Output
    cat(out, x3, c1), then a channel shuffle.
    """

    def __init__(self, channels: int, *, split_ratio: float = 0.375, shuffle_groups: int = 2, shuffle: bool = True):
        super().__init__()
        if not 0 < split_ratio < 0.5:
            raise ValueError(f"split_ratio must be in (0, 0.5), got {split_ratio}")
        c1 = channels * split_ratio
        c2 = channels * (1 - split_ratio) / 2
        if c1 != int(c1) or c2 != int(c2) or int(c1) % 2:
            raise ValueError(
                f"split_ratio {split_ratio} does not divide {channels} channels into whole, even parts"
            )
        self.splits = [int(c1), int(c2), int(c2)]
        half = channels // 2
        if channels % shuffle_groups:
            raise ValueError(f"{channels} channels are not divisible by shuffle_groups={shuffle_groups}")
        self.shuffle_groups = shuffle_groups
        self.shuffle = shuffle
        cin = self.splits[0]
        self.conv0 = _pw(cin, cin)
        self.bn0 = nn.BatchNorm2d(cin)
        self.conv1 = _dw(cin, 1)
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv2 = _pw(half, half)
        self.bn2 = nn.BatchNorm2d(half)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2, x3 = torch.split(x, self.splits, dim=1)
        out = self.bn1(self.conv1(self.bn0(self.conv0(x1))))
        c1, c2 = out.chunk(2, dim=1)
        out = self.relu(self.bn2(self.conv2(torch.cat((c2, x2), dim=1))))
        out = torch.cat((out, x3, c1), dim=1)
        return channel_shuffle(out, self.shuffle_groups) if self.shuffle else out


class ShuffleNetV2(nn.Module):
    """ImageNet (224, stride-2 stem + max-pool) or CIFAR (32, stride-1 stem, no max-pool) ShuffleNetV2.

    Input: float32 (N, 3, H, W), RGB normalised with the spec's mean/std. Output: logits (N, num_classes).
    With `augmented`, the stride-1 blocks of stages 3 and 4 are AugShuffleNet blocks.
    """

    def __init__(
        self,
        widths: tuple[int, ...],
        *,
        num_classes: int = 1000,
        cifar: bool = False,
        channel_shuffle: bool = True,
        augmented: bool = False,
        split_ratio: float = 0.375,
        shuffle_groups: int = 2,
    ):
        super().__init__()
        stem, *stages, last = widths
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, stem, 3, 1 if cifar else 2, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True)
        )
        self.maxpool = nn.Identity() if cifar else nn.MaxPool2d(3, 2, 1)
        inp = stem
        for idx, (repeats, oup) in enumerate(zip(STAGE_REPEATS, stages)):
            blocks: list[nn.Module] = [InvertedResidual(inp, oup, 2, shuffle=channel_shuffle)]
            for _ in range(repeats - 1):
                if augmented and idx >= 1:
                    blocks.append(
                        AugmentedShuffleBlock(
                            oup, split_ratio=split_ratio, shuffle_groups=shuffle_groups, shuffle=channel_shuffle
                        )
                    )
                else:
                    blocks.append(InvertedResidual(oup, oup, 1, shuffle=channel_shuffle))
            setattr(self, f"stage{idx + 2}", nn.Sequential(*blocks))
            inp = oup
        self.conv5 = nn.Sequential(nn.Conv2d(inp, last, 1, 1, 0, bias=False), nn.BatchNorm2d(last), nn.ReLU(inplace=True))
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.stage4(self.stage3(self.stage2(x)))
        x = self.conv5(x).mean((2, 3))
        return self.fc(x)


# ---- ShuffleNetV2, ImageNet ---------------------------------------------------------------------------------------
_V2_PUBLISHED = {  # torchvision's exact parameter counts; the paper's MFLOPs (multiply-adds)
    "x0_5": (1_366_792, 41e6),
    "x1_0": (2_278_604, 146e6),
    "x1_5": (3_503_624, 299e6),
    "x2_0": (7_393_996, 591e6),
}


def _v2_spec(width: str) -> ModelSpec:
    params, macs = _V2_PUBLISHED[width]
    return ModelSpec(
        name=f"shufflenet_v2_{width}", family="shufflenet_v2", input_shape=(3, 224, 224), num_classes=1000,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, paper=V2_PAPER, resize=256, crop=224,
        test_input_shape=(3, 64, 64), published_params=params, published_macs=macs,
    )


def _v2(width: str, num_classes: int, channel_shuffle: bool) -> ShuffleNetV2:
    return ShuffleNetV2(V2_WIDTHS[width], num_classes=num_classes, channel_shuffle=channel_shuffle)


@register_model(_v2_spec("x0_5"))
def shufflenet_v2_x0_5(*, num_classes: int = 1000, channel_shuffle: bool = True) -> ShuffleNetV2:
    return _v2("x0_5", num_classes, channel_shuffle)


@register_model(_v2_spec("x1_0"))
def shufflenet_v2_x1_0(*, num_classes: int = 1000, channel_shuffle: bool = True) -> ShuffleNetV2:
    return _v2("x1_0", num_classes, channel_shuffle)


@register_model(_v2_spec("x1_5"))
def shufflenet_v2_x1_5(*, num_classes: int = 1000, channel_shuffle: bool = True) -> ShuffleNetV2:
    return _v2("x1_5", num_classes, channel_shuffle)


@register_model(_v2_spec("x2_0"))
def shufflenet_v2_x2_0(*, num_classes: int = 1000, channel_shuffle: bool = True) -> ShuffleNetV2:
    return _v2("x2_0", num_classes, channel_shuffle)


# ---- ShuffleNetV2 and AugShuffleNet, CIFAR (32x32, 10 classes) ---------------------------------------------------
# The author's AugShuffleNet-Plus repo (CIFAR-10, 10 classes): MAdds / params of its models; no published numbers
# for ShuffleNetV2-CIFAR, whose counts are only checked against the architecture.
_AUG_PUBLISHED = {"x0_5": (330_000, 10.20e6), "x1_0": (1_210_000, 43.55e6), "x1_5": (2_220_000, 85.38e6)}


def _cifar_spec(name: str, family: str, paper: str, published=(None, None), notes: str = "") -> ModelSpec:
    return ModelSpec(
        name=name, family=family, input_shape=(3, 32, 32), num_classes=10, mean=CIFAR_MEAN, std=CIFAR_STD,
        paper=paper, resize=32, crop=32, dataset="cifar10", test_input_shape=(3, 32, 32),
        published_params=published[0], published_macs=published[1], notes=notes,
    )


def _v2_cifar(width: str, num_classes: int, channel_shuffle: bool) -> ShuffleNetV2:
    return ShuffleNetV2(V2_WIDTHS[width], num_classes=num_classes, cifar=True, channel_shuffle=channel_shuffle)


@register_model(_cifar_spec("shufflenet_v2_cifar_x0_5", "shufflenet_v2", V2_PAPER))
def shufflenet_v2_cifar_x0_5(*, num_classes: int = 10, channel_shuffle: bool = True) -> ShuffleNetV2:
    return _v2_cifar("x0_5", num_classes, channel_shuffle)


@register_model(_cifar_spec("shufflenet_v2_cifar_x1_0", "shufflenet_v2", V2_PAPER))
def shufflenet_v2_cifar_x1_0(*, num_classes: int = 10, channel_shuffle: bool = True) -> ShuffleNetV2:
    return _v2_cifar("x1_0", num_classes, channel_shuffle)


@register_model(_cifar_spec("shufflenet_v2_cifar_x1_5", "shufflenet_v2", V2_PAPER))
def shufflenet_v2_cifar_x1_5(*, num_classes: int = 10, channel_shuffle: bool = True) -> ShuffleNetV2:
    return _v2_cifar("x1_5", num_classes, channel_shuffle)


_AUG_NOTES = "published numbers are the author's AugShuffleNet-Plus (no shuffle) at r=0.375, CIFAR-10"


def _aug(width: str, num_classes: int, channel_shuffle: bool, split_ratio: float, shuffle_groups: int) -> ShuffleNetV2:
    return ShuffleNetV2(
        AUG_WIDTHS[width], num_classes=num_classes, cifar=True, channel_shuffle=channel_shuffle, augmented=True,
        split_ratio=split_ratio, shuffle_groups=shuffle_groups,
    )


@register_model(_cifar_spec("augshufflenet_x0_5", "augshufflenet", AUG_PAPER, _AUG_PUBLISHED["x0_5"], _AUG_NOTES))
def augshufflenet_x0_5(
    *, num_classes: int = 10, channel_shuffle: bool = True, split_ratio: float = 0.375, shuffle_groups: int = 2
) -> ShuffleNetV2:
    return _aug("x0_5", num_classes, channel_shuffle, split_ratio, shuffle_groups)


@register_model(_cifar_spec("augshufflenet_x1_0", "augshufflenet", AUG_PAPER, _AUG_PUBLISHED["x1_0"], _AUG_NOTES))
def augshufflenet_x1_0(
    *, num_classes: int = 10, channel_shuffle: bool = True, split_ratio: float = 0.375, shuffle_groups: int = 2
) -> ShuffleNetV2:
    return _aug("x1_0", num_classes, channel_shuffle, split_ratio, shuffle_groups)


@register_model(_cifar_spec("augshufflenet_x1_5", "augshufflenet", AUG_PAPER, _AUG_PUBLISHED["x1_5"], _AUG_NOTES))
def augshufflenet_x1_5(
    *, num_classes: int = 10, channel_shuffle: bool = True, split_ratio: float = 0.375, shuffle_groups: int = 2
) -> ShuffleNetV2:
    return _aug("x1_5", num_classes, channel_shuffle, split_ratio, shuffle_groups)


# ---- ShuffleNetV1, ImageNet ---------------------------------------------------------------------------------------
# Zhang et al., "ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices", CVPR 2018
# (arXiv:1707.01083). Module names and the unit's layer order follow Megvii's reference (megvii-model/ShuffleNet-Series
# ShuffleNetV1), so its state dicts load as-is: the shuffle sits after the depthwise conv there, which computes the
# same function as the paper's shuffle-before-depthwise (a depthwise conv commutes with a channel permutation).
V1_PAPER = "Zhang et al., ShuffleNet, CVPR 2018 (arXiv:1707.01083)"

# (groups, width) -> (stem, stage2, stage3, stage4): paper Table 1 at 1.0x, Megvii's 0.5x (which halves the stem too).
V1_WIDTHS = {
    (1, "x1_0"): (24, 144, 288, 576),
    (2, "x1_0"): (24, 200, 400, 800),
    (3, "x1_0"): (24, 240, 480, 960),
    (4, "x1_0"): (24, 272, 544, 1088),
    (8, "x1_0"): (24, 384, 768, 1536),
    (3, "x0_5"): (12, 120, 240, 480),
    (8, "x0_5"): (16, 192, 384, 768),
}


class ShuffleV1Unit(nn.Module):
    """ShuffleNetV1 unit: 1x1 group conv (bottleneck = oup/4) + BN + ReLU -> 3x3 dw (stride) + BN -> shuffle(g) ->
    1x1 group conv + BN. Stride 1: relu(x + branch). Stride 2: cat(avgpool3x3s2p1(x), relu(branch)), so the branch
    makes oup - inp channels. `first_group_ungrouped`: the first 1x1 conv of stage 2 is dense (its input has 24 ch)."""

    def __init__(self, inp: int, oup: int, *, stride: int, groups: int, first_group_ungrouped: bool = False,
                 shuffle: bool = True):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError("stride must be 1 or 2")
        self.stride, self.groups, self.shuffle = stride, groups, shuffle
        mid = oup // 4
        outputs = oup - inp if stride == 2 else oup
        g1 = 1 if first_group_ungrouped else groups
        self.branch_main_1 = nn.Sequential(
            nn.Conv2d(inp, mid, 1, 1, 0, groups=g1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid),
        )
        self.branch_main_2 = nn.Sequential(nn.Conv2d(mid, outputs, 1, 1, 0, groups=groups, bias=False), nn.BatchNorm2d(outputs))
        self.branch_proj = nn.AvgPool2d(3, 2, 1) if stride == 2 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch_main_1(x)
        if self.shuffle and self.groups > 1:
            out = channel_shuffle(out, self.groups)
        out = self.branch_main_2(out)
        if self.stride == 1:
            return torch.relu(x + out)
        return torch.cat((self.branch_proj(x), torch.relu(out)), dim=1)


class ShuffleNetV1(nn.Module):
    """Input: float32 (N, 3, 224, 224) RGB, ImageNet mean/std. Output: logits (N, num_classes).

    conv 3x3 s2 -> maxpool 3x3 s2 -> stages of (4, 8, 4) units (the first of each stride 2) -> GAP -> FC (no bias,
    as Megvii's)."""

    def __init__(self, widths: tuple[int, int, int, int], *, groups: int, num_classes: int = 1000,
                 channel_shuffle: bool = True):
        super().__init__()
        stem, *stages = widths
        self.first_conv = nn.Sequential(nn.Conv2d(3, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        units: list[nn.Module] = []
        inp = stem
        for idx, (repeats, oup) in enumerate(zip(STAGE_REPEATS, stages)):
            for i in range(repeats):
                units.append(ShuffleV1Unit(
                    inp, oup, stride=2 if i == 0 else 1, groups=groups,
                    first_group_ungrouped=(idx == 0 and i == 0), shuffle=channel_shuffle,
                ))
                inp = oup
        self.features = nn.Sequential(*units)
        self.classifier = nn.Sequential(nn.Linear(inp, num_classes, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.maxpool(self.first_conv(x)))
        return self.classifier(x.mean((2, 3)))


# (groups, width) -> MFLOPs (multiply-adds) and the source. Megvii's re-trained table gives 0.5x g3/g8 and 1.0x g3/g8;
# the 1.0x g1/g2/g4 figures are the paper's Table 2 complexity column (recalled, models.md marks them R).
_V1_PUBLISHED_MACS = {
    (1, "x1_0"): 143e6, (2, "x1_0"): 140e6, (3, "x1_0"): 138e6, (4, "x1_0"): 133e6, (8, "x1_0"): 138e6,
    (3, "x0_5"): 38e6, (8, "x0_5"): 40e6,
}


# Megvii's rounded parameter counts (0.5x g3's "0.7M" is left out: 717k rounds to it but is 2.5% above)
_V1_PUBLISHED_PARAMS = {(3, "x1_0"): 1_900_000, (8, "x1_0"): 2_400_000, (8, "x0_5"): 1_000_000}


def _v1_spec(groups: int, width: str) -> ModelSpec:
    megvii = (groups, width) in {(3, "x1_0"), (8, "x1_0"), (3, "x0_5"), (8, "x0_5")}
    return ModelSpec(
        name=f"shufflenet_v1_g{groups}_{width}", family="shufflenet_v1", input_shape=(3, 224, 224), num_classes=1000,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, paper=V1_PAPER, resize=256, crop=224, test_input_shape=(3, 64, 64),
        published_macs=_V1_PUBLISHED_MACS[(groups, width)],
        published_params=_V1_PUBLISHED_PARAMS.get((groups, width)),
        notes=("MACs: Megvii's re-trained table" if megvii else "MACs: paper Table 2 (recalled, unverified)")
        + "; no exact published parameter count (Megvii: 0.7M/1.0M/1.9M/2.4M for 0.5x g3/g8, 1.0x g3/g8)",
    )


def _v1(groups: int, width: str, num_classes: int, channel_shuffle: bool) -> ShuffleNetV1:
    return ShuffleNetV1(V1_WIDTHS[(groups, width)], groups=groups, num_classes=num_classes, channel_shuffle=channel_shuffle)


@register_model(_v1_spec(1, "x1_0"))
def shufflenet_v1_g1_x1_0(*, num_classes: int = 1000, channel_shuffle: bool = True) -> ShuffleNetV1:
    return _v1(1, "x1_0", num_classes, channel_shuffle)


@register_model(_v1_spec(2, "x1_0"))
def shufflenet_v1_g2_x1_0(*, num_classes: int = 1000, channel_shuffle: bool = True) -> ShuffleNetV1:
    return _v1(2, "x1_0", num_classes, channel_shuffle)


@register_model(_v1_spec(3, "x1_0"))
def shufflenet_v1_g3_x1_0(*, num_classes: int = 1000, channel_shuffle: bool = True) -> ShuffleNetV1:
    return _v1(3, "x1_0", num_classes, channel_shuffle)


@register_model(_v1_spec(4, "x1_0"))
def shufflenet_v1_g4_x1_0(*, num_classes: int = 1000, channel_shuffle: bool = True) -> ShuffleNetV1:
    return _v1(4, "x1_0", num_classes, channel_shuffle)


@register_model(_v1_spec(8, "x1_0"))
def shufflenet_v1_g8_x1_0(*, num_classes: int = 1000, channel_shuffle: bool = True) -> ShuffleNetV1:
    return _v1(8, "x1_0", num_classes, channel_shuffle)


@register_model(_v1_spec(3, "x0_5"))
def shufflenet_v1_g3_x0_5(*, num_classes: int = 1000, channel_shuffle: bool = True) -> ShuffleNetV1:
    return _v1(3, "x0_5", num_classes, channel_shuffle)


@register_model(_v1_spec(8, "x0_5"))
def shufflenet_v1_g8_x0_5(*, num_classes: int = 1000, channel_shuffle: bool = True) -> ShuffleNetV1:
    return _v1(8, "x0_5", num_classes, channel_shuffle)
