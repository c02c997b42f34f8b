"""The frozen per-model contract that export, calibration, validation and benchmarks all read."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Callable

import torch.nn as nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


class Layout(str, enum.Enum):
    NCHW = "nchw"
    NHWC = "nhwc"

    def __str__(self) -> str:
        return self.value


class ChannelOrder(str, enum.Enum):
    """The colour order of a model's 3-channel input (PaddleOCR and OpenCV-trained models read BGR)."""

    RGB = "rgb"
    BGR = "bgr"

    def __str__(self) -> str:
        return self.value


class Task(str, enum.Enum):
    CLASSIFICATION = "classification"
    SEGMENTATION = "segmentation"
    MICRO = "micro"  # micro-benchmark networks (guidelines), no meaningful labels

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Tolerances:
    """Parity thresholds per precision. `fp32_rel` is max abs err relative to max |reference output|."""

    fp32_rel: float = 1e-4
    fp32_cosine: float = 0.99999
    fp16_cosine: float = 0.999
    int8_cosine: float = 0.95
    int8_top1: float = 0.80
    int8_sqnr_db: float = 12.0
    # ONNX Runtime's static QDQ INT8 (no bias correction) where it differs from the TFLite INT8 bar; None = same
    ort_int8_top1: float | None = None
    ort_int8_sqnr_db: float | None = None


@dataclass(frozen=True)
class ModelSpec:
    """What a model expects. Input is float32, NCHW in torch, in `channel_order` (RGB unless declared), values
    normalised as (x/255 - mean)/std with mean/std per input channel in that order.

    `input_shape` is (C, H, W) without the batch dimension; `resize`/`crop` say how an image is brought to it
    (resize the short side to `resize`, then centre-crop `crop`).
    """

    name: str
    family: str
    input_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    paper: str
    layout: Layout = Layout.NCHW
    task: Task = Task.CLASSIFICATION
    resize: int | None = None
    crop: int | None = None
    dataset: str = "imagenet"
    calibration_source: str = "default"
    tolerances: Tolerances = field(default_factory=Tolerances)
    # Small input for fast tests where the architecture allows it (None: only the full shape works).
    test_input_shape: tuple[int, int, int] | None = None
    # Published numbers the tests and docs compare against (None where unpublished).
    published_params: int | None = None
    published_macs: float | None = None  # multiply-adds, at input_shape
    macs_tolerance: float = 0.03
    notes: str = ""
    channel_order: ChannelOrder = ChannelOrder.RGB

    @property
    def resize_size(self) -> int:
        return self.resize or int(round(self.input_shape[1] / 0.875))

    @property
    def crop_size(self) -> int:
        return self.crop or self.input_shape[1]


# A checkpoint format converts a third-party state dict into this model's own key names.
StateDictConverter = Callable[[dict], dict]


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its spec, its builder and the third-party checkpoint formats it can read."""

    spec: ModelSpec
    builder: Callable[..., nn.Module]
    checkpoint_formats: dict[str, StateDictConverter] = field(default_factory=dict)
    # Keyword arguments the builder understands beyond num_classes (for docs and `--arg` validation).
    builder_args: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.spec.name

    def build(self, **kwargs) -> nn.Module:
        return self.builder(**kwargs)
