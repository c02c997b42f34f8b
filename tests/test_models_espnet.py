"""ESPNet / ESPNetV2 structure facts: EESP dilations, grouped 1x1 (K=4), PReLU, input reinforcement, decoder."""
import onnx
import pytest
import torch
import torch.nn as nn

from edgeport.export.onnx_export import export_onnx, verify_onnx
from edgeport.models import build_model, get_spec
from edgeport.models.espnet import EESP, DownSampler


def _dilations(block: EESP) -> list[int]:
    return [c.conv.dilation[0] for c in block.spp_dw]


def test_eesp_dilations_and_groups_per_level():
    m = build_model("espnetv2_s1_0")
    # receptive-field limits 13/11/9/7/5 per level: dilations sorted, capped kernels fall back to d=1
    assert _dilations(m.level2_0.eesp) == [1, 2, 3, 4]
    assert all(_dilations(b) == [1, 2, 3, 4] for b in m.level3)
    assert all(_dilations(b) == [1, 1, 2, 3] for b in m.level4)
    assert all(_dilations(b) == [1, 1, 1, 2] for b in m.level5[:3])
    assert (len(m.level3), len(m.level4), len(m.level5)) == (3, 7, 3 + 2)
    for b in [*m.level3, *m.level4, *m.level5[:3]]:
        assert b.proj_1x1.conv.groups == 4 and b.conv_1x1_exp.conv.groups == 4
        assert all(c.conv.groups == c.conv.in_channels == c.conv.out_channels for c in b.spp_dw)  # depthwise
    assert m.level5[-1].conv.groups == 4 and m.level5[-1].conv.out_channels == 1024
    assert m.level5[-2].conv.groups == 512  # depthwise 3x3 before the group 1x1


@pytest.mark.parametrize("name,widths", [("espnetv2_s0_5", (16, 32, 64, 128, 256, 1024)),
                                         ("espnetv2_s1_0", (32, 64, 128, 256, 512, 1024)),
                                         ("espnetv2_s1_5", (32, 96, 192, 384, 768, 1024)),
                                         ("espnetv2_s2_0", (32, 128, 256, 512, 1024, 1280))])
def test_widths(name, widths):
    m = build_model(name)
    got = (m.level1.conv.out_channels, m.level2_0.act.num_parameters, m.level3_0.act.num_parameters,
           m.level4_0.act.num_parameters, m.level5_0.act.num_parameters, m.classifier.in_features)
    assert got == widths


def test_prelu_everywhere_no_relu():
    m = build_model("espnetv2_s1_0")
    kinds = {type(x) for x in m.modules()}
    assert nn.PReLU in kinds and nn.ReLU not in kinds and nn.ReLU6 not in kinds


def test_input_reinforcement_uses_the_image():
    m = build_model("espnetv2_s0_5")
    ds: DownSampler = m.level3_0
    x = torch.randn(1, 32, 16, 16)
    img1, img2 = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b, c = ds(x, img1), ds(x, img2), ds(x)
    assert a.shape == (1, 64, 8, 8) and not torch.allclose(a, b) and not torch.allclose(a, c)


def test_espnetv2_exports_static_with_prelu(tmp_path):
    model = build_model("espnetv2_s0_5")
    onx = export_onnx(model, input_shape=(3, 224, 224), path=tmp_path / "m.onnx")
    ops = [n.op_type for n in onx.graph.node]
    assert "PRelu" in ops and not {"Loop", "If", "Shape"} & set(ops)
    # reinforcement unrolled into one shared image pyramid 224 -> 112 -> 56 -> 28 -> 14 (the exporter merges the
    # repeated pools of the same image), plus one avg-pool branch per DownSampler
    assert ops.count("AveragePool") == 4 + 4
    dil = {tuple(onnx.helper.get_attribute_value(a)) for n in onx.graph.node if n.op_type == "Conv"
           for a in n.attribute if a.name == "dilations"}
    assert {(2, 2), (3, 3), (4, 4)} <= dil
    x = [torch.randn(1, 3, 224, 224).numpy()]
    assert verify_onnx(model, onnx_path=tmp_path / "m.onnx", inputs=x).rel_err <= 1e-4


def test_espnetv2_macs_are_readme_plus_classifier():
    """The README's MFLOPs leave out the final FC: ours minus the FC equals the README to 0.1M."""
    from edgeport.export.zoo_stats import zoo_stats

    for name, fc in (("espnetv2_s1_0", 1024 * 1000), ("espnetv2_s2_0", 1280 * 1000)):
        macs = zoo_stats(name)["macs"]
        assert abs((macs - fc) - get_spec(name).published_macs) < 0.1e6


@pytest.mark.parametrize("hw", [(64, 128), (96, 96)])
def test_espnet_segmentation_configurable_size(hw):
    m = build_model("espnet")
    with torch.no_grad():
        y = m(torch.randn(1, 3, *hw))
    assert y.shape == (1, get_spec("espnet").num_classes, *hw)


def test_espnet_decoder_and_dilations(tmp_path):
    m = build_model("espnet")
    assert sum(isinstance(x, nn.ConvTranspose2d) for x in m.modules()) == 3
    assert (len(m.encoder.level2), len(m.encoder.level3)) == (2, 8)  # p = 2, q = 8 as the reference trains
    assert {c.dilation[0] for c in m.modules() if isinstance(c, nn.Conv2d)} >= {1, 2, 4, 8, 16}
    onx = export_onnx(m, input_shape=(3, 64, 128), path=tmp_path / "s.onnx")
    assert [n.op_type for n in onx.graph.node].count("ConvTranspose") == 3
    assert [d.dim_value for d in onx.graph.output[0].type.tensor_type.shape.dim] == [1, 20, 64, 128]


def test_espnet_c_pooling_before_classifier_is_exact():
    m = build_model("espnet_c")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        _, _, feats = m.encoder.features(x)
        conv_then_pool = m.encoder.classifier(feats).mean((2, 3))
        torch.testing.assert_close(m(x), conv_then_pool, rtol=1e-4, atol=1e-5)
