"""Third-party checkpoint formats: torchvision names (from manifests) and lukemelas efficientnet_pytorch names."""
import pytest
import torch

from edgeport.export.checkpoint import load_state_dict_strict
from edgeport.models import build_model, get_model_entry

from torchvision_manifests import MANIFESTS


def _random_state(manifest: dict) -> dict:
    g = torch.Generator().manual_seed(0)
    return {k: (torch.randint(0, 100, (), generator=g) if shape == () else torch.randn(*shape, generator=g))
            for k, shape in manifest.items()}


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_torchvision_state_dict_loads_strictly(name):
    state = _random_state(MANIFESTS[name]())
    model = build_model(name)
    fmt = load_state_dict_strict(model, state, formats=get_model_entry(name).checkpoint_formats, name=name)
    assert fmt in ("native", "torchvision")
    own = model.state_dict()
    assert all(torch.equal(own[k].float(), v.float()) for k, v in state.items() if v.dim())
    params = sum(v.numel() for k, v in state.items() if "running" not in k and "num_batches" not in k)
    assert params == sum(p.numel() for p in model.parameters())


def test_lukemelas_lite0_format(lite0_checkpoint):
    state = torch.load(lite0_checkpoint, weights_only=True)
    model = build_model("efficientnet_lite0")
    assert load_state_dict_strict(model, state, formats=get_model_entry("efficientnet_lite0").checkpoint_formats) == "lukemelas"
