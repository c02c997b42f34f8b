"""FBNet structure facts from the mobile-vision definitions."""
import torch

from edgeport.models import build_model
from edgeport.models.fbnet import IRFBlock, Skip


def _blocks(m):
    return list(m.blocks)


def test_fbnet_a_grouped_projections_with_shuffle():
    m = build_model("fbnet_a")
    g2 = [b for b in _blocks(m) if isinstance(b, IRFBlock) and b.pwl[0].groups == 2]
    assert len(g2) == 3 and all(b.shuffle_groups == 2 and b.pw is None for b in g2)  # e1: no expansion conv
    assert [b.dw[0].kernel_size[0] for b in g2] == [5, 5, 3]
    for name in ("fbnet_b", "fbnet_c"):
        assert not any(isinstance(b, IRFBlock) and b.pwl[0].groups > 1 for b in _blocks(build_model(name)))


def test_block_counts_skips_and_heads():
    for name, skips, head in (("fbnet_a", 3, 1504), ("fbnet_b", 1, 1984), ("fbnet_c", 1, 1984)):
        m = build_model(name)
        assert len(_blocks(m)) == 22
        sk = [b for b in _blocks(m) if isinstance(b, Skip)]
        assert len(sk) == skips and all(b.conv is None for b in sk)  # same-width skips are identities
        assert m.classifier.in_features == head
        assert not any(isinstance(x, torch.nn.Hardswish) for x in m.modules())  # V1: ReLU only, no SE
        assert not any(b.se for b in _blocks(m) if isinstance(b, IRFBlock))


def test_fbnetv3_b_paddings_give_7x7_at_248():
    m = build_model("fbnetv3_b")
    with torch.no_grad():
        feats = m.blocks(m.stem(torch.randn(1, 3, 248, 248)))
    assert feats.shape == (1, 224, 7, 7)
    strided = [b for b in _blocks(m) if isinstance(b, IRFBlock) and b.dw[0].stride[0] == 2]
    assert [b.dw[0].padding[0] for b in strided] == [2, 2, 1, 0]  # k5 p2, k5 p2, k5 p1 (72), k3 p0 (184)
    se = [b.se for b in _blocks(m) if isinstance(b, IRFBlock) and b.se is not None]
    assert se and all(s.fc1.out_channels % 8 == 0 for s in se)
    # less_se_channels: squeeze from the block input, not the expanded width (24 -> e5 -> 120: squeeze 8, not 32)
    first = next(b for b in _blocks(m) if isinstance(b, IRFBlock) and b.se is not None)
    assert first.se.fc2.out_channels == 120 and first.se.fc1.out_channels == 8


def test_fbnetv2_channel_changing_skip_is_a_1x1_conv():
    m = build_model("fbnetv2_f4")
    last = _blocks(m)[-1]
    assert isinstance(last, Skip) and last.conv[0].kernel_size == (1, 1) and last.conv[0].out_channels == 224
