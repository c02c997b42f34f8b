"""torchvision key compatibility for MobileNetV3, EfficientNet-B0 / V2-S and MNASNet 1.0.

The manifests (state-dict key -> shape) are generated here from torchvision's architecture tables and naming rules
(`torchvision/models/mobilenetv3.py`, `efficientnet.py`, `mnasnet.py`), independently of edgeport's modules, and
each manifest's parameter count is checked against torchvision's documented count first. A random state dict with
exactly those keys and shapes must then load strictly into our model.
"""
import pytest
import torch

from edgeport.export.checkpoint import load_state_dict_strict
from edgeport.models import build_model, get_model_entry


def _bn(p: str, c: int) -> dict:
    return {f"{p}.weight": (c,), f"{p}.bias": (c,), f"{p}.running_mean": (c,), f"{p}.running_var": (c,),
            f"{p}.num_batches_tracked": ()}


def _cna(p: str, cout: int, cin_per_group: int, k: int) -> dict:
    """torchvision Conv2dNormActivation: `.0` conv (no bias), `.1` BatchNorm2d."""
    return {f"{p}.0.weight": (cout, cin_per_group, k, k), **_bn(f"{p}.1", cout)}


def _se(p: str, c: int, squeeze: int) -> dict:
    """torchvision.ops.SqueezeExcitation: fc1 / fc2 are 1x1 convs with bias."""
    return {f"{p}.fc1.weight": (squeeze, c, 1, 1), f"{p}.fc1.bias": (squeeze,),
            f"{p}.fc2.weight": (c, squeeze, 1, 1), f"{p}.fc2.bias": (c,)}


def _make_divisible(v: float, d: int = 8) -> int:
    new_v = max(d, int(v + d / 2) // d * d)
    return new_v + d if new_v < 0.9 * v else new_v


# torchvision mobilenetv3.py `_mobilenet_v3_conf`: input, kernel, expanded, out, use_se, activation, stride
_MBV3 = {
    "mobilenet_v3_large": ([
        (16, 3, 16, 16, 0), (16, 3, 64, 24, 0), (24, 3, 72, 24, 0), (24, 5, 72, 40, 1), (40, 5, 120, 40, 1),
        (40, 5, 120, 40, 1), (40, 3, 240, 80, 0), (80, 3, 200, 80, 0), (80, 3, 184, 80, 0), (80, 3, 184, 80, 0),
        (80, 3, 480, 112, 1), (112, 3, 672, 112, 1), (112, 5, 672, 160, 1), (160, 5, 960, 160, 1),
        (160, 5, 960, 160, 1)], 1280),
    "mobilenet_v3_small": ([
        (16, 3, 16, 16, 1), (16, 3, 72, 24, 0), (24, 3, 88, 24, 0), (24, 5, 96, 40, 1), (40, 5, 240, 40, 1),
        (40, 5, 240, 40, 1), (40, 5, 120, 48, 1), (48, 5, 144, 48, 1), (48, 5, 288, 96, 1), (96, 5, 576, 96, 1),
        (96, 5, 576, 96, 1)], 1024),
}


def mobilenet_v3(name: str) -> dict:
    conf, last_channel = _MBV3[name]
    m = _cna("features.0", 16, 3, 3)
    for i, (cin, k, exp, out, se) in enumerate(conf, start=1):
        p, j = f"features.{i}.block", 0
        if exp != cin:
            m |= _cna(f"{p}.{j}", exp, cin, 1)
            j += 1
        m |= _cna(f"{p}.{j}", exp, 1, k)
        j += 1
        if se:
            m |= _se(f"{p}.{j}", exp, _make_divisible(exp // 4, 8))
            j += 1
        m |= _cna(f"{p}.{j}", out, exp, 1)
    last_in = conf[-1][3]
    m |= _cna(f"features.{len(conf) + 1}", 6 * last_in, last_in, 1)
    m |= {"classifier.0.weight": (last_channel, 6 * last_in), "classifier.0.bias": (last_channel,),
          "classifier.3.weight": (1000, last_channel), "classifier.3.bias": (1000,)}
    return m


# torchvision efficientnet.py: (block, expand_ratio, kernel, stride, in, out, layers)
_EFF = {
    "efficientnet_b0": (32, [("mb", 1, 3, 1, 32, 16, 1), ("mb", 6, 3, 2, 16, 24, 2), ("mb", 6, 5, 2, 24, 40, 2),
                             ("mb", 6, 3, 2, 40, 80, 3), ("mb", 6, 5, 1, 80, 112, 3), ("mb", 6, 5, 2, 112, 192, 4),
                             ("mb", 6, 3, 1, 192, 320, 1)]),
    "efficientnetv2_s": (24, [("fused", 1, 3, 1, 24, 24, 2), ("fused", 4, 3, 2, 24, 48, 4),
                              ("fused", 4, 3, 2, 48, 64, 4), ("mb", 4, 3, 2, 64, 128, 6),
                              ("mb", 6, 3, 1, 128, 160, 9), ("mb", 6, 3, 2, 160, 256, 15)]),
}


def efficientnet(name: str) -> dict:
    stem, conf = _EFF[name]
    m = _cna("features.0", stem, 3, 3)
    for s, (kind, e, k, _stride, cin0, out, n) in enumerate(conf, start=1):
        for b in range(n):
            cin = cin0 if b == 0 else out
            p, exp = f"features.{s}.{b}.block", _make_divisible(cin * e, 8)
            if kind == "fused":
                if e != 1:
                    m |= _cna(f"{p}.0", exp, cin, k) | _cna(f"{p}.1", out, exp, 1)
                else:
                    m |= _cna(f"{p}.0", out, cin, k)
                continue
            j = 0
            if exp != cin:
                m |= _cna(f"{p}.{j}", exp, cin, 1)
                j += 1
            m |= _cna(f"{p}.{j}", exp, 1, k) | _se(f"{p}.{j + 1}", exp, max(1, cin // 4)) | _cna(f"{p}.{j + 2}", out, exp, 1)
    last_in = conf[-1][5]
    m |= _cna(f"features.{len(conf) + 1}", 1280, last_in, 1)
    m |= {"classifier.1.weight": (1000, 1280), "classifier.1.bias": (1000,)}
    return m


def mnasnet1_0() -> dict:
    """torchvision mnasnet.py, alpha 1.0: depths [32, 16, 24, 40, 80, 96, 192, 320]; `layers` Sequential."""
    d = [32, 16, 24, 40, 80, 96, 192, 320]
    m = {"layers.0.weight": (32, 3, 3, 3), **_bn("layers.1", 32), "layers.3.weight": (32, 1, 3, 3),
         **_bn("layers.4", 32), "layers.6.weight": (16, 32, 1, 1), **_bn("layers.7", 16)}
    stacks = [(3, 3, 3), (5, 3, 3), (5, 6, 3), (3, 6, 2), (5, 6, 4), (3, 6, 1)]  # kernel, expansion, repeats
    for s, ((k, e, n), cin0, out) in enumerate(zip(stacks, d[1:-1], d[2:]), start=8):
        for b in range(n):
            cin = cin0 if b == 0 else out
            p, mid = f"layers.{s}.{b}.layers", cin * e
            m |= {f"{p}.0.weight": (mid, cin, 1, 1), **_bn(f"{p}.1", mid), f"{p}.3.weight": (mid, 1, k, k),
                  **_bn(f"{p}.4", mid), f"{p}.6.weight": (out, mid, 1, 1), **_bn(f"{p}.7", out)}
    m |= {"layers.14.weight": (1280, 320, 1, 1), **_bn("layers.15", 1280),
          "classifier.1.weight": (1000, 1280), "classifier.1.bias": (1000,)}
    return m


# model -> (manifest, torchvision's documented parameter count)
MANIFESTS = {
    "mobilenet_v3_large": (lambda: mobilenet_v3("mobilenet_v3_large"), 5_483_032),
    "mobilenet_v3_small": (lambda: mobilenet_v3("mobilenet_v3_small"), 2_542_856),
    "efficientnet_b0": (lambda: efficientnet("efficientnet_b0"), 5_288_548),
    "efficientnetv2_s": (lambda: efficientnet("efficientnetv2_s"), 21_458_488),
    "mnasnet1_0": (mnasnet1_0, 4_383_312),
}


def _params(manifest: dict) -> int:
    n = 0
    for k, shape in manifest.items():
        if "running_" not in k and "num_batches" not in k:
            n += int(torch.tensor(shape).prod()) if shape else 1
    return n


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_manifest_matches_torchvision_count(name):
    build, published = MANIFESTS[name]
    assert _params(build()) == published


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_torchvision_state_dict_loads_strictly(name):
    manifest = MANIFESTS[name][0]()
    g = torch.Generator().manual_seed(0)
    state = {k: (torch.randint(0, 100, (), generator=g) if s == () else torch.randn(*s, generator=g))
             for k, s in manifest.items()}
    model = build_model(name)
    load_state_dict_strict(model, state, formats=get_model_entry(name).checkpoint_formats, name=name)
    own = model.state_dict()
    assert set(own) == set(state)
    assert all(torch.equal(own[k].float(), v.float()) for k, v in state.items() if v.dim())
    # the loaded weights are used: two different random states give different outputs
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        y1 = model(x)
        model.load_state_dict({k: v * 1.1 if v.is_floating_point() else v for k, v in state.items()})
        assert not torch.allclose(y1, model(x))
