"""Blocks shared across model families."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round `v` to the nearest multiple of `divisor`, never going below 90% of `v` (the MobileNet rule)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle: (N, g*k, H, W) -> view (N, g, k, H, W) -> transpose -> (N, k*g, H, W)."""
    n, c, h, w = x.shape
    x = x.view(n, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(n, c, h, w)


class ChannelShuffle(nn.Module):
    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups)


class SamePad2d(nn.Module):
    """TensorFlow 'SAME' padding for a fixed input size (asymmetric: the extra pixel goes right/bottom)."""

    def __init__(self, kernel_size: int, stride: int, dilation: int = 1):
        super().__init__()
        self.k, self.s, self.d = kernel_size, stride, dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        eff = (self.k - 1) * self.d + 1
        ph = max((math.ceil(ih / self.s) - 1) * self.s + eff - ih, 0)
        pw = max((math.ceil(iw / self.s) - 1) * self.s + eff - iw, 0)
        if ph == 0 and pw == 0:
            return x
        return F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])


class Conv2dSame(nn.Conv2d):
    """nn.Conv2d with TensorFlow 'SAME' padding (weights trained in TF expect it; state-dict keys unchanged)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, **kwargs):
        super().__init__(in_ch, out_ch, kernel_size, stride, 0, **kwargs)
        self.same = SamePad2d(kernel_size, stride, self.dilation[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.same(x))


def _act(name: str | None) -> nn.Module:
    return {
        None: nn.Identity,
        "relu": lambda: nn.ReLU(inplace=True),
        "relu6": lambda: nn.ReLU6(inplace=True),
        "silu": lambda: nn.SiLU(inplace=True),
        "hswish": lambda: nn.Hardswish(inplace=True),
        "hsigmoid": lambda: nn.Hardsigmoid(inplace=True),
        "sigmoid": nn.Sigmoid,
        "prelu": None,  # needs the channel count, built in ConvBNAct
    }[name]()


def make_act(name: str | None, channels: int | None = None) -> nn.Module:
    if name == "prelu":
        if channels is None:
            raise ValueError("prelu needs the channel count")
        return nn.PReLU(channels)
    return _act(name)


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> activation. Children are named 0, 1, 2 (torchvision's Conv2dNormActivation).

    padding: None -> symmetric (k-1)//2*dilation (PyTorch style); "same_tf" -> TensorFlow SAME via SamePad2d.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 3,
        stride: int = 1,
        *,
        groups: int = 1,
        dilation: int = 1,
        act: str | None = "relu",
        padding: int | str | None = None,
        bn_eps: float = 1e-5,
        bn: bool = True,
    ):
        layers: list[nn.Module] = []
        if padding == "same_tf":
            layers.append(Conv2dSame(in_ch, out_ch, kernel_size, stride, dilation=dilation, groups=groups, bias=not bn))
        else:
            pad = (kernel_size - 1) // 2 * dilation if padding is None else padding
            layers.append(
                nn.Conv2d(in_ch, out_ch, kernel_size, stride, pad, dilation=dilation, groups=groups, bias=not bn)
            )
        if bn:
            layers.append(nn.BatchNorm2d(out_ch, eps=bn_eps))
        if act is not None:
            layers.append(make_act(act, out_ch))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: GAP -> 1x1 reduce -> act -> 1x1 expand -> gate -> scale."""

    def __init__(self, channels: int, reduced: int, *, act: str = "relu", gate: str = "sigmoid"):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.act = make_act(act)
        self.fc2 = nn.Conv2d(reduced, channels, 1)
        self.gate = make_act(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.gate(self.fc2(self.act(self.fc1(s))))
        return x * s


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, *, inputs: torch.Tensor) -> nn.Module:
    """Set every BatchNorm's running statistics to the statistics it sees on `inputs` (one forward pass in train
    mode, cumulative average), then return the model in eval mode.

    For benchmarks and tests on random-init weights: with default running stats (mean 0, var 1) a random network's
    activations shrink or grow layer after layer (MobileNetV3-Large ends with INT8 scales near 1e-6), which no trained
    network does and which changes what an INT8 model does (XNNPACK refuses binary ops whose scale ratios fall
    outside its range). Afterwards every BN output is normalised per channel on `inputs`, as in a trained network.
    Weights are untouched; only running_mean / running_var change."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over this pass
    model.train()
    model(inputs)
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum
    return model.eval()
