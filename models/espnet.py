"""ESPNet family.

- ESPNet (V1): Mehta et al., "ESPNet: Efficient Spatial Pyramid of Dilated Convolutions for Semantic Segmentation",
  ECCV 2018 (arXiv:1803.06815). `espnet` is the segmentation network (ESPNet-C encoder with p=2, q=8 as the
  reference trains it, plus the light RUM decoder with ConvTranspose up-sampling); `espnet_c` is the encoder used as
  an ImageNet-style classifier (the paper has no official classifier: GAP, then the encoder's own 1x1 classifier
  conv, which equals the conv-then-GAP order for a linear 1x1 conv but costs 1/HW of the MACs).
- ESPNetV2: Mehta et al., "ESPNetv2: A Light-weight, Power Efficient, and General Purpose Convolutional Neural
  Network", CVPR 2019 (arXiv:1811.11431); the ImageNet classifier EESPNet of sacmehta/ESPNetv2 `imagenet/Model.py`.

Module names follow the reference repositories (sacmehta/ESPNet `train/Model.py`, sacmehta/ESPNetv2
`imagenet/Model.py`), so their state dicts load as-is. PReLU everywhere. Input reinforcement (the image avg-pooled
down to each level) is unrolled for the static input size: export at a fixed size.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import register_model
from .spec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec, Task

V1_PAPER = "Mehta et al., ESPNet, ECCV 2018 (arXiv:1803.06815)"
V2_PAPER = "Mehta et al., ESPNetv2, CVPR 2019 (arXiv:1811.11431)"

# Cityscapes statistics of the ESPNet reference (BGR 0-255 in its loader), here as RGB in [0, 1].
CITYSCAPES_MEAN = (73.1584 / 255, 82.9089 / 255, 72.3923 / 255)
CITYSCAPES_STD = (44.9148 / 255, 46.1529 / 255, 45.3192 / 255)


class CBR(nn.Module):
    """Conv (no bias) -> BN -> PReLU, 'same' padding for odd kernels."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, bn_eps: float = 1e-5):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=bn_eps)
        self.act = nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class CB(nn.Module):
    """Conv (no bias) -> BN."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, bn_eps: float = 1e-5):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class BR(nn.Module):
    """BN -> PReLU."""

    def __init__(self, c: int, bn_eps: float = 1e-5):
        super().__init__()
        self.bn = nn.BatchNorm2d(c, eps=bn_eps)
        self.act = nn.PReLU(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(x))


class C(nn.Module):
    """Conv (no bias), optionally dilated / grouped."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, d: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, (k - 1) // 2 * d, dilation=d, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


# ---- ESPNetV2 --------------------------------------------------------------------------------------------------------
class EESP(nn.Module):
    """EESP: 1x1 group conv (K groups) to n = out/K -> K parallel 3x3 depthwise convs, dilations from `r_lim`
    (receptive field 3+2i capped at r_lim, sorted) -> hierarchical feature fusion (running sums) -> concat -> BN +
    PReLU -> 1x1 group conv (K) + BN -> [+ input] -> PReLU. With stride 2 ("avg" down-sampling) it returns the
    group-conv output; the DownSampler adds the rest."""

    _RF_TO_DILATION = {3: 1, 5: 2, 7: 3, 9: 4, 11: 5, 13: 6, 15: 7, 17: 8}

    def __init__(self, cin: int, cout: int, *, stride: int = 1, k: int = 4, r_lim: int = 7, down: bool = False):
        super().__init__()
        n = cout // k
        if n * k != cout:
            raise ValueError(f"EESP needs out channels divisible by K={k}, got {cout}")
        self.stride, self.down = stride, down
        self.proj_1x1 = CBR(cin, n, 1, 1, groups=k)
        k_sizes = sorted(s if s <= r_lim else 3 for s in (3 + 2 * i for i in range(k)))
        self.spp_dw = nn.ModuleList(C(n, n, 3, stride, d=self._RF_TO_DILATION[s], groups=n) for s in k_sizes)
        self.conv_1x1_exp = CB(cout, cout, 1, 1, groups=k)
        self.br_after_cat = BR(cout)
        self.module_act = nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.proj_1x1(x)
        outs = [self.spp_dw[0](y)]
        for conv in self.spp_dw[1:]:
            outs.append(conv(y) + outs[-1])
        expanded = self.conv_1x1_exp(self.br_after_cat(torch.cat(outs, 1)))
        if self.stride == 2 and self.down:
            return expanded
        if expanded.shape == x.shape:
            expanded = expanded + x
        return self.module_act(expanded)


def _reinforce(image: torch.Tensor, size: int) -> torch.Tensor:
    """Avg-pool (3x3 s2 p1) the image until its width equals `size` (static shapes: unrolled at export)."""
    if image.shape[-1] < size:
        raise ValueError(f"input reinforcement: image width {image.shape[-1]} is below the feature width {size}")
    while int(image.shape[-1]) != size:
        image = F.avg_pool2d(image, 3, 2, 1)
    return image


class DownSampler(nn.Module):
    """cat(avgpool 3x3 s2 p1 (x), strided EESP(x)) [+ CBR3x3 -> CB1x1 of the image pooled to the same size] -> PReLU.

    `reinf` builds the image branch (the reference builds it for every DownSampler, but level 5 never receives the
    image, so its branch is unused, as in the reference)."""

    def __init__(self, nin: int, nout: int, *, k: int = 4, r_lim: int = 9, reinf: bool = True):
        super().__init__()
        self.eesp = EESP(nin, nout - nin, stride=2, k=k, r_lim=r_lim, down=True)
        self.avg = nn.AvgPool2d(3, 2, 1)
        if reinf:
            self.inp_reinf = nn.Sequential(CBR(3, 3, 3, 1), CB(3, nout, 1, 1))
        self.act = nn.PReLU(nout)

    def forward(self, x: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        avg_out = self.avg(x)
        out = torch.cat((avg_out, self.eesp(x)), 1)
        if image is not None:
            out = out + self.inp_reinf(_reinforce(image, int(avg_out.shape[-1])))
        return self.act(out)


class EESPNet(nn.Module):
    """ESPNetV2 ImageNet classifier. Input: float32 (N, 3, 224, 224) RGB, ImageNet mean/std (square: the
    reinforcement matches widths). Output: logits (N, num_classes).

    Widths for scale s: base = ceil(int(32 s)/4)*4; level widths [min(32, base), 2b, 4b, 8b, 16b]; head 1024
    (1280 for s > 1.5). Levels 3/4/5 repeat 3/7/3 EESP blocks; level 5 ends with a depthwise 3x3 CBR and a
    group-4 1x1 CBR to the head width."""

    def __init__(self, *, s: float = 1.0, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        if s > 2.0:
            raise ValueError(f"ESPNetV2 scale {s} is not supported (<= 2.0)")
        reps, r_lim, k = (0, 3, 7, 3), (13, 11, 9, 7, 5), 4
        base_s = math.ceil(int(32 * s) / k) * k
        config = [32 if base_s > 32 else base_s] + [base_s * 2**i for i in range(1, 5)]
        config.append(1024 if s <= 1.5 else 1280)
        self.level1 = CBR(3, config[0], 3, 2)
        self.level2_0 = DownSampler(config[0], config[1], k=k, r_lim=r_lim[0])
        self.level3_0 = DownSampler(config[1], config[2], k=k, r_lim=r_lim[1])
        self.level3 = nn.ModuleList(EESP(config[2], config[2], k=k, r_lim=r_lim[2]) for _ in range(reps[1]))
        self.level4_0 = DownSampler(config[2], config[3], k=k, r_lim=r_lim[2])
        self.level4 = nn.ModuleList(EESP(config[3], config[3], k=k, r_lim=r_lim[3]) for _ in range(reps[2]))
        self.level5_0 = DownSampler(config[3], config[4], k=k, r_lim=r_lim[3])
        self.level5 = nn.ModuleList(EESP(config[4], config[4], k=k, r_lim=r_lim[4]) for _ in range(reps[3]))
        self.level5.append(CBR(config[4], config[4], 3, 1, groups=config[4]))
        self.level5.append(CBR(config[4], config[5], 1, 1, groups=k))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config[5], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.level2_0(self.level1(x), x)
        out = self.level3_0(out, x)
        for layer in self.level3:
            out = layer(out)
        out = self.level4_0(out, x)
        for layer in self.level4:
            out = layer(out)
        out = self.level5_0(out)
        for layer in self.level5:
            out = layer(out)
        return self.classifier(self.dropout(out.mean((2, 3))))


_V2_PUBLISHED = {"0_5": (1_240_000, 28.4e6), "1_0": (1_670_000, 85.7e6), "1_5": (2_310_000, 168.6e6),
                 "2_0": (3_490_000, 284.8e6)}  # README: params (rounded), MFLOPs


def _v2_spec(tag: str) -> ModelSpec:
    return ModelSpec(
        name=f"espnetv2_s{tag}", family="espnetv2", input_shape=(3, 224, 224), num_classes=1000, mean=IMAGENET_MEAN,
        std=IMAGENET_STD, paper=V2_PAPER, resize=256, crop=224, test_input_shape=(3, 64, 64),
        published_params=_V2_PUBLISHED[tag][0], published_macs=_V2_PUBLISHED[tag][1], macs_tolerance=0.06,
        notes=("MFLOPs and params (1.24/1.67/2.31/3.49M) from the ESPNetv2 imagenet README. Our count is higher by "
               "exactly the final FC (1024x1000, 1280x1000 at s=2): the README leaves the classifier out. Fixed-size "
               "export only"),
    )


@register_model(_v2_spec("0_5"))
def espnetv2_s0_5(*, num_classes: int = 1000) -> EESPNet:
    return EESPNet(s=0.5, num_classes=num_classes)


@register_model(_v2_spec("1_0"))
def espnetv2_s1_0(*, num_classes: int = 1000) -> EESPNet:
    return EESPNet(s=1.0, num_classes=num_classes)


@register_model(_v2_spec("1_5"))
def espnetv2_s1_5(*, num_classes: int = 1000) -> EESPNet:
    return EESPNet(s=1.5, num_classes=num_classes)


@register_model(_v2_spec("2_0"))
def espnetv2_s2_0(*, num_classes: int = 1000) -> EESPNet:
    return EESPNet(s=2.0, num_classes=num_classes)


# ---- ESPNet (V1) -----------------------------------------------------------------------------------------------------
_V1_EPS = 1e-3  # the ESPNet reference uses BatchNorm2d(eps=1e-3)


class _ESPBase(nn.Module):
    """The five dilated branches (d = 1, 2, 4, 8, 16) with hierarchical fusion and concat, shared by the ESP block
    and its strided variant. The d=1 branch gets the remainder channels (out - 4*(out//5))."""

    def _branches(self, cin: int, cout: int, k: int, stride: int) -> None:
        n = cout // 5
        n1 = cout - 4 * n
        self.c1 = C(cin, n, k, stride)
        self.d1 = C(n, n1, 3, 1, 1)
        self.d2 = C(n, n, 3, 1, 2)
        self.d4 = C(n, n, 3, 1, 4)
        self.d8 = C(n, n, 3, 1, 8)
        self.d16 = C(n, n, 3, 1, 16)

    def _fuse(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c1(x)
        add1 = self.d2(y)
        add2 = add1 + self.d4(y)
        add3 = add2 + self.d8(y)
        add4 = add3 + self.d16(y)
        return torch.cat((self.d1(y), add1, add2, add3, add4), 1)


class DownSamplerB(_ESPBase):
    """Strided ESP: 3x3 s2 conv to out/5 -> dilated branches -> concat -> BN -> PReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self._branches(cin, cout, 3, 2)
        self.bn = nn.BatchNorm2d(cout, eps=_V1_EPS)
        self.act = nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self._fuse(x)))


class DilatedParllelResidualBlockB(_ESPBase):
    """ESP module (reference class name kept for its state-dict keys): 1x1 conv to out/5 -> dilated branches ->
    concat -> [+ input] -> BN + PReLU."""

    def __init__(self, cin: int, cout: int, add: bool = True):
        super().__init__()
        self._branches(cin, cout, 1, 1)
        self.bn = BR(cout, _V1_EPS)
        self.add = add

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._fuse(x)
        return self.bn(x + out if self.add else out)


class InputProjectionA(nn.Module):
    """The image avg-pooled (3x3 s2 p1) `times` times."""

    def __init__(self, times: int):
        super().__init__()
        self.pool = nn.ModuleList(nn.AvgPool2d(3, 2, 1) for _ in range(times))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for pool in self.pool:
            x = pool(x)
        return x


class ESPNetEncoder(nn.Module):
    """ESPNet-C: CBR 3x3 s2 to 16 ++ image/2 -> DownSamplerB to 64 + p ESP blocks ++ (level-2 input, image/4) ->
    DownSamplerB to 128 + q ESP blocks ++ -> BR(256) -> 1x1 conv to `num_classes` (1/8 resolution)."""

    def __init__(self, num_classes: int, p: int, q: int):
        super().__init__()
        self.level1 = CBR(3, 16, 3, 2, bn_eps=_V1_EPS)
        self.sample1 = InputProjectionA(1)
        self.sample2 = InputProjectionA(2)
        self.b1 = BR(16 + 3, _V1_EPS)
        self.level2_0 = DownSamplerB(16 + 3, 64)
        self.level2 = nn.ModuleList(DilatedParllelResidualBlockB(64, 64) for _ in range(p))
        self.b2 = BR(128 + 3, _V1_EPS)
        self.level3_0 = DownSamplerB(128 + 3, 128)
        self.level3 = nn.ModuleList(DilatedParllelResidualBlockB(128, 128) for _ in range(q))
        self.b3 = BR(256, _V1_EPS)
        self.classifier = C(256, num_classes, 1, 1)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (level-1 concat [19 ch, 1/2], level-2 concat [131 ch, 1/4], level-3 concat [256 ch, 1/8])."""
        out0 = self.b1(torch.cat((self.level1(x), self.sample1(x)), 1))
        out1_0 = self.level2_0(out0)
        out1 = out1_0
        for layer in self.level2:
            out1 = layer(out1)
        out1_cat = self.b2(torch.cat((out1, out1_0, self.sample2(x)), 1))
        out2_0 = self.level3_0(out1_cat)
        out2 = out2_0
        for layer in self.level3:
            out2 = layer(out2)
        return out0, out1_cat, self.b3(torch.cat((out2_0, out2), 1))


class ESPNetC(nn.Module):
    """ESPNet-C as a classifier. Input: float32 (N, 3, 224, 224) RGB, ImageNet mean/std. Output: logits
    (N, num_classes) = the encoder's 1x1 classifier conv applied to the globally pooled level-3 features."""

    def __init__(self, *, num_classes: int = 1000, p: int = 2, q: int = 8):
        super().__init__()
        self.encoder = ESPNetEncoder(num_classes, p, q)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, feats = self.encoder.features(x)
        return self.encoder.classifier(feats.mean((2, 3), keepdim=True)).flatten(1)


class ESPNet(nn.Module):
    """ESPNet segmentation network. Input: float32 (N, 3, H, W) RGB (H, W multiples of 8), normalised with the
    spec's Cityscapes mean/std. Output: per-pixel class logits (N, num_classes, H, W).

    Decoder: level-3 class map -> BN -> ConvTranspose x2; concat with the projected level-2 features -> BR -> ESP
    block (no residual) -> ConvTranspose x2 -> BR; concat with the level-1 features -> CBR 3x3 -> ConvTranspose x2."""

    def __init__(self, *, num_classes: int = 20, p: int = 2, q: int = 8):
        super().__init__()
        self.encoder = ESPNetEncoder(num_classes, p, q)
        self.level3_C = C(128 + 3, num_classes, 1, 1)
        self.br = nn.BatchNorm2d(num_classes, eps=_V1_EPS)
        self.conv = CBR(19 + num_classes, num_classes, 3, 1, bn_eps=_V1_EPS)
        self.up_l3 = nn.Sequential(nn.ConvTranspose2d(num_classes, num_classes, 2, stride=2, bias=False))
        self.combine_l2_l3 = nn.Sequential(
            BR(2 * num_classes, _V1_EPS), DilatedParllelResidualBlockB(2 * num_classes, num_classes, add=False)
        )
        self.up_l2 = nn.Sequential(
            nn.ConvTranspose2d(num_classes, num_classes, 2, stride=2, bias=False), BR(num_classes, _V1_EPS)
        )
        self.classifier = nn.ConvTranspose2d(num_classes, num_classes, 2, stride=2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out0, out1_cat, out2_cat = self.encoder.features(x)
        out2_c = self.up_l3(self.br(self.encoder.classifier(out2_cat)))
        comb = self.up_l2(self.combine_l2_l3(torch.cat((self.level3_C(out1_cat), out2_c), 1)))
        return self.classifier(self.conv(torch.cat((comb, out0), 1)))


@register_model(
    ModelSpec(
        name="espnet", family="espnet", input_shape=(3, 256, 512), num_classes=20, mean=CITYSCAPES_MEAN,
        std=CITYSCAPES_STD, paper=V1_PAPER, task=Task.SEGMENTATION, resize=256, crop=None, dataset="cityscapes",
        test_input_shape=(3, 64, 128), published_params=360_000,
        notes=("segmentation, output (N, classes, H, W). Default input 256x512 (a quarter of Cityscapes' 1024x512 "
               "paper resolution); any H, W that are multiples of 8 build (pass input_shape at export). 20 classes: "
               "Cityscapes' 19 plus the ignore label, as the reference trains. Paper: about 0.36M params (recalled); "
               "no published MACs"),
    )
)
def espnet(*, num_classes: int = 20, p: int = 2, q: int = 8) -> ESPNet:
    return ESPNet(num_classes=num_classes, p=p, q=q)


@register_model(
    ModelSpec(
        name="espnet_c", family="espnet", input_shape=(3, 224, 224), num_classes=1000, mean=IMAGENET_MEAN,
        std=IMAGENET_STD, paper=V1_PAPER, resize=256, crop=224, test_input_shape=(3, 64, 64),
        notes="ESPNet-C encoder (p=2, q=8) + GAP + its 1x1 classifier conv; no published ImageNet numbers",
    )
)
def espnet_c(*, num_classes: int = 1000, p: int = 2, q: int = 8) -> ESPNetC:
    return ESPNetC(num_classes=num_classes, p=p, q=q)
