"""Key/shape manifests of torchvision state dicts, generated from torchvision's architecture facts and naming rules
(torchvision cannot be installed here). Independent of edgeport's modules on purpose: a renamed or reshaped
parameter in our implementation makes the strict load in tests/test_thirdparty_formats.py fail."""
from __future__ import annotations


def _bn(prefix: str, c: int) -> dict:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def shufflenet_v2(stages_out: list[int], conv5: int, num_classes: int = 1000) -> dict:
    """torchvision/models/shufflenetv2.py: conv1, stage2..4 of InvertedResidual(branch1, branch2), conv5, fc."""
    m = {"conv1.0.weight": (24, 3, 3, 3), **_bn("conv1.1", 24)}
    inp = 24
    for s, (repeats, oup) in enumerate(zip((4, 8, 4), stages_out), start=2):
        bf = oup // 2
        for i in range(repeats):
            p = f"stage{s}.{i}"
            if i == 0:
                m |= {f"{p}.branch1.0.weight": (inp, 1, 3, 3), **_bn(f"{p}.branch1.1", inp),
                      f"{p}.branch1.2.weight": (bf, inp, 1, 1), **_bn(f"{p}.branch1.3", bf)}
            m |= {f"{p}.branch2.0.weight": (bf, inp if i == 0 else bf, 1, 1), **_bn(f"{p}.branch2.1", bf),
                  f"{p}.branch2.3.weight": (bf, 1, 3, 3), **_bn(f"{p}.branch2.4", bf),
                  f"{p}.branch2.5.weight": (bf, bf, 1, 1), **_bn(f"{p}.branch2.6", bf)}
        inp = oup
    m |= {"conv5.0.weight": (conv5, inp, 1, 1), **_bn("conv5.1", conv5),
          "fc.weight": (num_classes, conv5), "fc.bias": (num_classes,)}
    return m


def mobilenet_v2(num_classes: int = 1000) -> dict:
    """torchvision/models/mobilenetv2.py: features.0 Conv2dNormActivation, 17 InvertedResidual `.conv`, features.18."""
    m = {"features.0.0.weight": (32, 3, 3, 3), **_bn("features.0.1", 32)}
    inp, idx = 32, 1
    for t, c, n, _s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):
        for _ in range(n):
            p, hid = f"features.{idx}.conv", inp * t
            if t != 1:
                m |= {f"{p}.0.0.weight": (hid, inp, 1, 1), **_bn(f"{p}.0.1", hid),
                      f"{p}.1.0.weight": (hid, 1, 3, 3), **_bn(f"{p}.1.1", hid),
                      f"{p}.2.weight": (c, hid, 1, 1), **_bn(f"{p}.3", c)}
            else:
                m |= {f"{p}.0.0.weight": (hid, 1, 3, 3), **_bn(f"{p}.0.1", hid),
                      f"{p}.1.weight": (c, hid, 1, 1), **_bn(f"{p}.2", c)}
            inp, idx = c, idx + 1
    m |= {f"features.{idx}.0.weight": (1280, inp, 1, 1), **_bn(f"features.{idx}.1", 1280),
          "classifier.1.weight": (num_classes, 1280), "classifier.1.bias": (num_classes,)}
    return m


MANIFESTS = {
    "shufflenet_v2_x0_5": lambda: shufflenet_v2([48, 96, 192], 1024),
    "shufflenet_v2_x1_0": lambda: shufflenet_v2([116, 232, 464], 1024),
    "shufflenet_v2_x1_5": lambda: shufflenet_v2([176, 352, 704], 1024),
    "shufflenet_v2_x2_0": lambda: shufflenet_v2([244, 488, 976], 2048),
    "mobilenet_v2": mobilenet_v2,
}
