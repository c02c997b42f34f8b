"""The bundled default: real photographs that scikit-image ships inside its wheel (no network), cut into random
resized crops. Calibration and validation use DISJOINT photos, so no validation pixel was seen during calibration.

Only images that load offline are used (skimage.data fetches some others from the internet: skin, lily, eagle...).
Grayscale photos are replicated to three channels.
"""
from __future__ import annotations

import functools

import numpy as np

from .preprocess import to_rgb_uint8

# name -> how to load it from skimage.data
CALIBRATION_PHOTOS: tuple[str, ...] = (
    "astronaut", "coffee", "motorcycle_left", "immunohistochemistry", "camera", "coins", "grass", "brick",
)
VALIDATION_PHOTOS: tuple[str, ...] = (
    "chelsea", "rocket", "hubble_deep_field", "retina", "moon", "gravel",
)


@functools.lru_cache(maxsize=None)
def load_photo(name: str) -> np.ndarray:
    """uint8 HxWx3 RGB photograph from skimage.data."""
    import skimage.data as data

    if name == "motorcycle_left":
        img = data.stereo_motorcycle()[0]
    else:
        img = getattr(data, name)()
    out = to_rgb_uint8(img)
    out.setflags(write=False)
    return out


def photos_for(split: str) -> tuple[str, ...]:
    return CALIBRATION_PHOTOS if str(split) == "calibration" else VALIDATION_PHOTOS
