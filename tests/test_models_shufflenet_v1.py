"""ShuffleNetV1 block-structure facts (paper Table 1 / Megvii reference)."""
import onnx
import pytest
import torch
import torch.nn as nn

from edgeport.export.onnx_export import export_onnx
from edgeport.models import build_model
from edgeport.models.shufflenet import ShuffleV1Unit

V1 = ["shufflenet_v1_g1_x1_0", "shufflenet_v1_g2_x1_0", "shufflenet_v1_g3_x1_0", "shufflenet_v1_g4_x1_0",
      "shufflenet_v1_g8_x1_0", "shufflenet_v1_g3_x0_5", "shufflenet_v1_g8_x0_5"]
# paper Table 1 (1.0x) and Megvii (0.5x): stem, stage 2, 3, 4 output channels
WIDTHS = {"g1_x1_0": (24, 144, 288, 576), "g2_x1_0": (24, 200, 400, 800), "g3_x1_0": (24, 240, 480, 960),
          "g4_x1_0": (24, 272, 544, 1088), "g8_x1_0": (24, 384, 768, 1536), "g3_x0_5": (12, 120, 240, 480),
          "g8_x0_5": (16, 192, 384, 768)}


def _units(model):
    return [m for m in model.features if isinstance(m, ShuffleV1Unit)]


@pytest.mark.parametrize("name", V1)
def test_widths_grouping_and_shortcuts(name):
    tag = name.removeprefix("shufflenet_v1_")
    g = int(tag[1])
    model = build_model(name)
    units = _units(model)
    assert len(units) == 16 and [i for i, u in enumerate(units) if u.stride == 2] == [0, 4, 12]
    assert model.first_conv[0].out_channels == WIDTHS[tag][0]
    outs = [units[i].branch_main_2[0].out_channels + (units[i].branch_main_1[0].in_channels if units[i].stride == 2 else 0)
            for i in (3, 11, 15)]
    assert tuple(outs) == WIDTHS[tag][1:]
    for i, u in enumerate(units):
        pw1, pw2 = u.branch_main_1[0], u.branch_main_2[0]
        # the first pointwise conv of stage 2 is dense; every other 1x1 conv has g groups
        assert pw1.groups == (1 if i == 0 else g)
        assert pw2.groups == g
        assert pw1.out_channels == (WIDTHS[tag][1 + (i >= 4) + (i >= 12)]) // 4  # bottleneck = out / 4
        if u.stride == 2:
            assert isinstance(u.branch_proj, nn.AvgPool2d)
            assert (u.branch_proj.kernel_size, u.branch_proj.stride, u.branch_proj.padding) == (3, 2, 1)
        else:
            assert u.branch_proj is None


def test_stride2_unit_concatenates_avgpool_shortcut():
    unit = ShuffleV1Unit(24, 240, stride=2, groups=3, first_group_ungrouped=True).eval()
    x = torch.randn(1, 24, 16, 16)
    with torch.no_grad():
        y = unit(x)
    assert y.shape == (1, 240, 8, 8)
    torch.testing.assert_close(y[:, :24], nn.functional.avg_pool2d(x, 3, 2, 1))
    assert (y[:, 24:] >= 0).all()  # ReLU on the branch


def test_stride1_unit_is_relu_of_residual_sum():
    unit = ShuffleV1Unit(240, 240, stride=1, groups=3).eval()
    x = torch.randn(1, 240, 8, 8)
    with torch.no_grad():
        branch = unit.branch_main_2(_shuffled(unit, x))
        torch.testing.assert_close(unit(x), torch.relu(x + branch))


def _shuffled(unit, x):
    from edgeport.models.layers import channel_shuffle
    return channel_shuffle(unit.branch_main_1(x), unit.groups)


def test_onnx_has_padded_avgpool_and_grouped_convs(tmp_path):
    onx = export_onnx(build_model("shufflenet_v1_g3_x0_5"), input_shape=(3, 64, 64), path=tmp_path / "m.onnx")
    pools = [n for n in onx.graph.node if n.op_type == "AveragePool"]
    assert len(pools) == 3
    for n in pools:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        assert list(attrs["kernel_shape"]) == [3, 3] and list(attrs["strides"]) == [2, 2]
        assert list(attrs["pads"]) == [1, 1, 1, 1] and attrs.get("count_include_pad") == 1  # PyTorch's default
    groups = [onnx.helper.get_attribute_value(a) for n in onx.graph.node if n.op_type == "Conv"
              for a in n.attribute if a.name == "group"]
    assert groups.count(3) == 31  # 16 units x 2 grouped 1x1 convs, minus stage 2's dense first one
