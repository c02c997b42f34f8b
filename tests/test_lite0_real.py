"""Meaning-level check on real data: the real ImageNet-trained Lite0 checkpoint classifies real photographs."""
import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from edgeport.export.checkpoint import resolve_source

# its module-scoped fixtures build once: pytest-xdist (--dist loadgroup) keeps the module on one worker
pytestmark = pytest.mark.xdist_group("test_lite0_real")

# ImageNet classes: 281 tabby, 282 tiger cat, 283 Persian, 284 Siamese, 285 Egyptian cat; 967 espresso, 968 cup
CATS = set(range(281, 286))
COFFEE = {967, 968, 504}  # espresso, cup, coffee mug


def _prep(img: np.ndarray, spec) -> torch.Tensor:
    im = Image.fromarray(img).convert("RGB")
    w, h = im.size
    s = spec.resize_size / min(w, h)
    im = im.resize((round(w * s), round(h * s)), Image.BILINEAR)
    w, h = im.size
    c = spec.crop_size
    left, top = (w - c) // 2, (h - c) // 2
    x = np.asarray(im.crop((left, top, left + c, top + c)), dtype=np.float32) / 255.0
    x = (x - np.array(spec.mean, dtype=np.float32)) / np.array(spec.std, dtype=np.float32)
    return torch.from_numpy(x.transpose(2, 0, 1)[None].copy())


@pytest.fixture(scope="module")
def lite0(lite0_checkpoint):
    src = resolve_source("efficientnet_lite0", checkpoint=lite0_checkpoint)
    assert src.checkpoint_format == "lukemelas"
    return src


@pytest.mark.parametrize("photo,classes", [("chelsea", CATS), ("coffee", COFFEE)])
def test_lite0_classifies_real_photos(lite0, photo, classes):
    x = _prep(getattr(skimage.data, photo)(), lite0.spec)
    with torch.no_grad():
        probs = lite0.module(x).softmax(-1)[0]
    top1 = int(probs.argmax())
    assert top1 in classes, f"{photo}: top-1 class {top1} (p={float(probs[top1]):.2f}) not in {sorted(classes)}"
    assert float(probs[list(classes)].sum()) > 0.5
