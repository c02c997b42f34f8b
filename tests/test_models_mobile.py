"""EfficientNet-B0 / V2-S, MobileNetV3 and MnasNet structure facts."""
import torch
import torch.nn as nn

from edgeport.models import build_model
from edgeport.models.efficientnet import FusedMBConv, MBConvSE
from edgeport.models.layers import SqueezeExcite, make_divisible
from edgeport.models.mnasnet import A1Block
from edgeport.models.mobilenet import MBV3Block


def test_efficientnet_b0_se_from_block_input_and_silu():
    m = build_model("efficientnet_b0")
    blocks = [b for b in m.modules() if isinstance(b, MBConvSE)]
    assert len(blocks) == 16
    for b in blocks:
        se = next(x for x in b.block if isinstance(x, SqueezeExcite))
        cin = b.block[0][0].in_channels
        assert se.fc1.out_channels == max(1, cin // 4)  # 0.25 x the block's input, not its expanded width
        assert isinstance(se.act, nn.SiLU) and isinstance(se.gate, nn.Sigmoid)
    assert not any(isinstance(x, (nn.ReLU, nn.ReLU6)) for x in m.modules())


def test_efficientnetv2_s_fused_stages():
    m = build_model("efficientnetv2_s")
    fused = [b for b in m.modules() if isinstance(b, FusedMBConv)]
    mb = [b for b in m.modules() if isinstance(b, MBConvSE)]
    assert (len(fused), len(mb)) == (2 + 4 + 4, 6 + 9 + 15)
    for b in fused:  # no depthwise conv and no SE in Fused-MBConv
        convs = [x for x in b.modules() if isinstance(x, nn.Conv2d)]
        assert all(c.groups == 1 for c in convs) and convs[0].kernel_size == (3, 3)
        assert not any(isinstance(x, SqueezeExcite) for x in b.modules())


def test_mobilenet_v3_se_and_activations():
    for name, n_se in (("mobilenet_v3_large", 8), ("mobilenet_v3_small", 9)):
        m = build_model(name)
        ses = [x for b in m.modules() if isinstance(b, MBV3Block) for x in b.block if isinstance(x, SqueezeExcite)]
        assert len(ses) == n_se
        for se in ses:
            assert se.fc1.out_channels == make_divisible(se.fc2.out_channels // 4, 8)
            assert isinstance(se.gate, nn.Hardsigmoid) and isinstance(se.act, nn.ReLU)
        assert isinstance(m.features[0][2], nn.Hardswish)
        assert m.features[0][1].eps == 1e-3


def test_mnasnet_a1_se_stages():
    m = build_model("mnasnet_a1")
    blocks = [b for b in m.modules() if isinstance(b, A1Block)]
    assert len(blocks) == 15
    with_se = [b for b in blocks if isinstance(b.se, SqueezeExcite)]
    assert [b.conv_pwl[0].out_channels for b in with_se] == [40] * 3 + [112] * 2 + [160] * 3
    for b in with_se:
        assert b.se.fc1.out_channels == b.conv_pw[0].in_channels // 4
    # torchvision's mnasnet1_0 (B1) has no SE at all
    assert not any(isinstance(x, SqueezeExcite) for x in build_model("mnasnet1_0").modules())
