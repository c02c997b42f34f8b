"""Bias correction of ONNX Runtime QDQ INT8 models (export/ort_bias_correction.py): only biases change, the mean
output shift on held-out inputs shrinks, the output error does not grow, and the summary says what it did. The
real checkpoint (EfficientNet-Lite0 through `edgeport export` + `validate`) is in tests/test_validate.py."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from edgeport.export.onnx_export import export_onnx
from edgeport.export.ort_bias_correction import correct_qdq_biases
from edgeport.export.ort_int8 import quantize_onnx_int8
from edgeport.metrics import sqnr_db
from edgeport.validation import run_artifact


def _net() -> nn.Module:
    """Depthwise-separable blocks with ReLU6 (where 8-bit depthwise weights shift channel means the most) and a
    linear head; weights scaled per channel so some channels are coarse in 8 bits."""
    torch.manual_seed(3)
    layers, c = [nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU6()], 16
    for _ in range(3):
        layers += [nn.Conv2d(c, c, 3, padding=1, groups=c), nn.ReLU6(), nn.Conv2d(c, 2 * c, 1), nn.ReLU6()]
        c *= 2
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.mul_(torch.rand(m.out_channels, 1, 1, 1) * 3 + 0.2)
                m.bias.uniform_(-0.2, 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def qdq_pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("ortbc")
    model = _net()
    export_onnx(model, input_shape=(1, 3, 32, 32), path=d / "m.onnx", exporter="legacy")
    rng = np.random.default_rng(0)
    cal = [{"input": rng.random((1, 3, 32, 32), dtype=np.float32) * 2 - 1} for _ in range(16)]
    held = rng.random((64, 3, 32, 32), dtype=np.float32) * 2 - 1
    plain = quantize_onnx_int8(onnx_path=d / "m.onnx", out_path=d / "plain.onnx", calibration=cal)
    fixed = quantize_onnx_int8(onnx_path=d / "m.onnx", out_path=d / "fixed.onnx", calibration=cal,
                               bias_correction=True)
    ref = run_artifact(d / "m.onnx", held)
    return d, plain, fixed, ref, held


def test_only_biases_change_and_the_summary_says_so(qdq_pair):
    d, plain, fixed, _, _ = qdq_pair
    assert plain["bias_correction"] is None
    bc = fixed["bias_correction"]
    assert bc["method"] == "local" and bc["layers"] == 8 and bc["samples"] == 16 and bc["corrected"] >= 6, bc
    assert len(bc["largest_shifts"]) == 5 and bc["largest_shifts"][0]["mean_shift"] > 0
    a = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(d / "plain.onnx")).graph.initializer}
    b = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(d / "fixed.onnx")).graph.initializer}
    assert a.keys() == b.keys()
    changed = sorted(k for k in a if not np.array_equal(a[k], b[k]))
    assert changed and all(k.endswith("bias_quantized") or k.endswith("bias") for k in changed), changed
    assert [n.op_type for n in onnx.load(str(d / "plain.onnx")).graph.node] == \
        [n.op_type for n in onnx.load(str(d / "fixed.onnx")).graph.node]


def test_mean_shift_shrinks_and_error_does_not_grow_on_held_out_inputs(qdq_pair):
    d, _, _, ref, held = qdq_pair
    plain, fixed = run_artifact(d / "plain.onnx", held), run_artifact(d / "fixed.onnx", held)
    shift_plain = np.abs((plain - ref).mean(axis=0)).mean()
    shift_fixed = np.abs((fixed - ref).mean(axis=0)).mean()
    assert shift_fixed < 0.7 * shift_plain, (shift_plain, shift_fixed)
    assert sqnr_db(ref, fixed) > sqnr_db(ref, plain), (sqnr_db(ref, plain), sqnr_db(ref, fixed))


def test_a_model_without_biases_is_left_alone(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4, bias=False))
    export_onnx(model.eval(), input_shape=(1, 3, 8, 8), path=tmp_path / "m.onnx", exporter="legacy")
    cal = [{"input": np.random.default_rng(i).random((1, 3, 8, 8), dtype=np.float32)} for i in range(4)]
    s = quantize_onnx_int8(onnx_path=tmp_path / "m.onnx", out_path=tmp_path / "q.onnx", calibration=cal,
                           bias_correction=True)
    assert s["bias_correction"]["layers"] == 0 and s["bias_correction"]["corrected"] == 0
    q = onnx.load(str(tmp_path / "q.onnx"))
    report = correct_qdq_biases(qdq=q, float_model=onnx.load(str(tmp_path / "m.onnx")), samples=cal)
    assert report.layers == 0
