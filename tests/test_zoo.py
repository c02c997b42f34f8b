"""Every registered model: builds, forward shape, exact params (golden), MACs vs the paper, ONNX export + ORT parity.

Parametrized over the registry; `test_every_model_has_golden` fails when a model is registered without its entry in
tests/fixtures/zoo_expected.json (regenerate with EDGEPORT_REGEN_GOLDEN=1 after checking the numbers).
"""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeport.export.onnx_export import verify_onnx
from edgeport.export.zoo_stats import zoo_stats
from edgeport.models import MODELS, build_model, get_spec, model_names
from conftest import zoo_params
from edgeport.models.layers import count_params

GOLDEN = Path(__file__).parent / "fixtures" / "zoo_expected.json"
ALL = model_names()


def _golden() -> dict:
    return json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}


def test_every_model_has_golden():
    golden = _golden()
    if os.environ.get("EDGEPORT_REGEN_GOLDEN"):
        golden = {n: {"params": count_params(build_model(n))} for n in ALL}
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    missing = [n for n in ALL if n not in golden]
    assert not missing, f"registered models without a golden entry (params) in {GOLDEN.name}: {missing}"
    stale = [n for n in golden if n not in MODELS]
    assert not stale, f"golden entries for models that are no longer registered: {stale}"


@pytest.mark.parametrize("name", ALL)
def test_params_exact(name):
    spec = get_spec(name)
    params = count_params(build_model(name))
    assert params == _golden()[name]["params"]
    if spec.published_params and spec.published_params % 1000:  # an exact published count (not a rounded "3.4M")
        assert params == spec.published_params
    elif spec.published_params:
        assert abs(params / spec.published_params - 1) < 0.02, (params, spec.published_params)


@pytest.mark.parametrize("name", zoo_params(ALL))
def test_forward_shape(name):
    spec = get_spec(name)
    shape = spec.test_input_shape or spec.input_shape
    model = build_model(name)
    with torch.no_grad():
        out = model(torch.randn(2, *shape))
    if spec.task.value == "segmentation":
        assert out.shape[:2] == (2, spec.num_classes)
    else:
        assert out.shape == (2, spec.num_classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", zoo_params(ALL))
def test_macs_vs_paper(name):
    spec = get_spec(name)
    stats = zoo_stats(name)
    assert stats["macs"] > 0
    if spec.published_macs:
        ratio = stats["macs"] / spec.published_macs
        assert abs(ratio - 1) <= spec.macs_tolerance, (
            f"{name}: {stats['macs'] / 1e6:.1f}M MACs vs published {spec.published_macs / 1e6:.1f}M "
            f"(tolerance {spec.macs_tolerance:.0%})"
        )


@pytest.mark.parametrize("name", zoo_params(ALL))
def test_onnx_export_parity(name, zoo_onnx):
    spec = get_spec(name)
    shape = spec.test_input_shape or spec.input_shape
    model, path = zoo_onnx(name)  # the export test_tflite_convert's conversion audit converts
    rng = np.random.default_rng(1)
    res = verify_onnx(model, onnx_path=path,
                      inputs=[rng.standard_normal((1, *shape), dtype=np.float32) for _ in range(2)])
    assert res.rel_err <= 1e-4 and res.cosine_min >= 0.99999 and res.cosine_mean >= res.cosine_min


@pytest.mark.parametrize("name", ["shufflenet_v2_x1_0", "shufflenet_v1_g3_x1_0", "augshufflenet_x1_0"])
def test_channel_shuffle_false_same_flops(name):
    a, b = build_model(name), build_model(name, channel_shuffle=False)
    assert count_params(a) == count_params(b)
    x = torch.randn(1, *(get_spec(name).test_input_shape or get_spec(name).input_shape))
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        assert not torch.allclose(a(x), b(x)), "deleting the shuffles must change the function"
