"""GhostNet / GhostNetV2 structure facts and the DFC attention's static resize."""
import numpy as np
import onnx
import torch

from edgeport.export.onnx_export import export_onnx, verify_onnx
from edgeport.models import build_model
from edgeport.models.ghostnet import GhostBottleneck, GhostModule, GhostSE


def _blocks(m):
    return [b for b in m.modules() if isinstance(b, GhostBottleneck)]


def test_dfc_only_after_the_second_block():
    v1, v2 = build_model("ghostnet_x1_0"), build_model("ghostnetv2_x1_0")
    assert len(_blocks(v1)) == len(_blocks(v2)) == 16
    assert not any(b.ghost1.dfc for b in _blocks(v1))
    assert [b.ghost1.dfc for b in _blocks(v2)] == [False, False] + [True] * 14
    assert not any(b.ghost2.dfc for b in _blocks(v2))  # ghost2 never has attention
    dfc = _blocks(v2)[5].ghost1.short_conv
    assert [tuple(c.kernel_size) for c in dfc if isinstance(c, torch.nn.Conv2d)] == [(1, 1), (1, 5), (5, 1)]


def test_ghost_module_halves_and_se_layout():
    gm = GhostModule(16, 48)
    assert gm.primary_conv[0].out_channels == 24 and gm.cheap_operation[0].groups == 24
    m = build_model("ghostnet_x1_0")
    ses = [b.se for b in _blocks(m) if b.se is not None]
    assert len(ses) == 7
    for se in ses:
        c = se.conv_expand.out_channels
        r = se.conv_reduce.out_channels
        assert r % 4 == 0 and abs(r - c / 4) < 4  # make_divisible(C/4, 4)
    x = torch.randn(1, 72, 8, 8)
    se = GhostSE(72)
    with torch.no_grad():
        s = se.conv_expand(se.act1(se.conv_reduce(x.mean((2, 3), keepdim=True))))
        torch.testing.assert_close(se(x), x * torch.clamp(s + 3, 0, 6) / 6)  # hard-sigmoid gate


def test_dfc_resize_exports_with_static_sizes(tmp_path):
    """At 224 the 7x7 maps pool to 3x3 and resize back with a non-integer scale: the exported Resize must have a
    constant size, no Shape ops, and ORT must match torch's nearest (asymmetric + floor)."""
    model = build_model("ghostnetv2_x1_0")
    onx = export_onnx(model, input_shape=(3, 224, 224), path=tmp_path / "m.onnx")
    ops = [n.op_type for n in onx.graph.node]
    assert "Shape" not in ops and ops.count("Resize") == 14
    consts = {i.name for i in onx.graph.initializer} | {o for n in onx.graph.node if n.op_type == "Constant"
                                                        for o in n.output}
    for n in onx.graph.node:
        if n.op_type == "Resize":
            size_inputs = [i for i in n.input[1:] if i]
            assert size_inputs and all(i in consts for i in size_inputs), n.input
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
            assert attrs["mode"] == b"nearest"
    rng = np.random.default_rng(0)
    res = verify_onnx(model, onnx_path=tmp_path / "m.onnx",
                      inputs=[rng.standard_normal((1, 3, 224, 224), dtype=np.float32)])
    assert res.rel_err <= 1e-4


def test_widths_scale_by_four():
    for name, stem, last in (("ghostnet_x0_5", 8, 480), ("ghostnet_x1_0", 16, 960), ("ghostnet_x1_3", 20, 1248)):
        m = build_model(name)
        assert m.conv_stem.out_channels == stem and m.conv_head.in_channels == last
