"""The model zoo: from-scratch PyTorch implementations, one file per family, each variant a registered builder.

    >>> from edgeport.models import build_model, get_spec, model_names
    >>> model = build_model("shufflenet_v2_x1_0")          # eval mode, random init
    >>> get_spec("shufflenet_v2_x1_0").input_shape          # (3, 224, 224)
"""
from .registry import MODELS, build_model, get_model_entry, get_spec, model_names, register_model
from .spec import IMAGENET_MEAN, IMAGENET_STD, ChannelOrder, Layout, ModelEntry, ModelSpec, Task, Tolerances
from .layers import calibrate_batchnorm

# Importing a family module registers its models.
from . import shufflenet  # noqa: E402,F401
from . import mobilenet  # noqa: E402,F401
from . import efficientnet  # noqa: E402,F401
from . import mnasnet  # noqa: E402,F401
from . import ghostnet  # noqa: E402,F401
from . import fbnet  # noqa: E402,F401
from . import espnet  # noqa: E402,F401

__all__ = [
    "MODELS", "build_model", "get_model_entry", "get_spec", "model_names", "register_model",
    "IMAGENET_MEAN", "IMAGENET_STD", "ChannelOrder", "Layout", "ModelEntry", "ModelSpec", "Task", "Tolerances", "calibrate_batchnorm",
]
