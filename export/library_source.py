"""`torchvision:NAME` and `timm:NAME` sources: a model built by the library's own code (the optional extra
`edgeport[upstream]`), with random weights, a `--checkpoint`, or the library's own pretrained weights
(`--pretrained`: torchvision's download into $TORCH_HOME/hub/checkpoints, timm's from the Hugging Face hub cache;
both read a file already in their cache without the network).

    >>> built = build_library_model(Library.TIMM, "mobilenetv3_small_100", builder_args={}, pretrained=False)
    >>> built.module, built.input_shape, built.mean, built.std      # the library's own preprocessing metadata

The library is imported only when such a source is used; a missing one is one ModelBuildError line naming the extra.
"""
from __future__ import annotations

import difflib
import enum
import importlib
import sys
from dataclasses import dataclass, field

from edgeport.errors import CheckpointError, ModelBuildError

EXTRA = "upstream"
IMAGENET_DEFAULTS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


class Library(str, enum.Enum):
    """Model libraries a SOURCE can name as `LIBRARY:NAME`."""

    TORCHVISION = "torchvision"
    TIMM = "timm"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class LibraryModel:
    """What the library built: the module and the preprocessing its maintainers publish for it."""

    module: object
    library: Library
    version: str
    name: str
    input_shape: tuple[int, int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    num_classes: int
    crop_fraction: float = 0.875
    weights: str | None = None   # the pretrained weights loaded (None: random init or a --checkpoint)
    notes: dict = field(default_factory=dict)


def parse_library_source(source: str) -> tuple[Library, str] | None:
    """`timm:NAME` -> (Library.TIMM, NAME); anything else (a zoo name, file.py:factory, a path) -> None."""
    prefix, sep, name = source.partition(":")
    if not sep or prefix not in {lib.value for lib in Library}:
        return None
    if not name:
        raise ModelBuildError(f"{source!r}: expected {prefix}:MODEL_NAME")
    return Library(prefix), name


def import_library(library: Library):
    """The library module, or one ModelBuildError line saying which extra installs it."""
    try:
        return importlib.import_module(library.value)
    except Exception as exc:  # noqa: BLE001  (missing, or built for another torch: RuntimeError, OSError)
        raise ModelBuildError(
            f"{library}:NAME sources need the {library} package, which is not importable in {sys.executable} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]})",
            hint=f"pip install 'edgeport[{EXTRA}]' (torchvision, timm)") from None


def _unknown(library: Library, name: str, valid: list[str]) -> ModelBuildError:
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
    return ModelBuildError(f"{library} {library_version(library)} has no model {name!r}"
                           + (f"; did you mean {', '.join(close)}?" if close else ""),
                           hint=f"{len(valid)} names; list them with {library}'s list_models()")


def library_version(library: Library) -> str:
    return str(getattr(import_library(library), "__version__", "unknown"))


def _pretrained_failure(library: Library, name: str, exc: BaseException) -> CheckpointError:
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return CheckpointError(f"{library} could not load the pretrained weights of {name!r}: {text}",
                           hint="the machine must reach the library's download host (or have the file in the "
                                "library's cache); otherwise pass the weights as --checkpoint FILE")


def _build_torchvision(name: str, builder_args: dict, pretrained: bool) -> LibraryModel:
    tv = import_library(Library.TORCHVISION)
    valid = list(tv.models.list_models())
    if name not in valid:
        raise _unknown(Library.TORCHVISION, name, valid)
    default = tv.models.get_model_weights(name).DEFAULT
    try:
        module = tv.models.get_model(name, weights=default if pretrained else None, **builder_args)
    except (OSError, RuntimeError, ValueError) as exc:
        if pretrained:
            raise _pretrained_failure(Library.TORCHVISION, name, exc) from None
        raise ModelBuildError(f"torchvision.models.get_model({name!r}) raised {type(exc).__name__}: {exc}") from None
    except TypeError as exc:
        raise ModelBuildError(f"torchvision {name}: {exc}", hint="check the --arg names") from None
    # the DEFAULT weights' published transform: metadata only, nothing is downloaded for it
    tr = default.transforms()
    crop = getattr(tr, "crop_size", None) or [224]
    resize = getattr(tr, "resize_size", None) or [int(round(crop[0] / 0.875))]
    mean, std = tuple(getattr(tr, "mean", IMAGENET_DEFAULTS[0])), tuple(getattr(tr, "std", IMAGENET_DEFAULTS[1]))
    return LibraryModel(module=module.eval(), library=Library.TORCHVISION, version=str(tv.__version__), name=name,
                        input_shape=(3, int(crop[0]), int(crop[0])), mean=mean, std=std,
                        num_classes=_num_classes(module, builder_args), crop_fraction=crop[0] / resize[0],
                        weights=str(default) if pretrained else None)


def _build_timm(name: str, builder_args: dict, pretrained: bool) -> LibraryModel:
    timm = import_library(Library.TIMM)
    if not timm.is_model(name):
        raise _unknown(Library.TIMM, name, list(timm.list_models()))
    try:
        module = timm.create_model(name, pretrained=pretrained, **builder_args)
    except TypeError as exc:
        raise ModelBuildError(f"timm {name}: {exc}", hint="check the --arg names") from None
    except Exception as exc:  # noqa: BLE001  (hub errors have many types: HTTP, offline mode, missing file)
        if pretrained:
            raise _pretrained_failure(Library.TIMM, name, exc) from None
        raise ModelBuildError(f"timm.create_model({name!r}) raised {type(exc).__name__}: {exc}") from None
    cfg = timm.data.resolve_model_data_config(module)
    c, h, w = (int(s) for s in cfg["input_size"])
    weights = None
    if pretrained:
        pcfg = getattr(module, "pretrained_cfg", {}) or {}
        weights = pcfg.get("hf_hub_id") or pcfg.get("url") or pcfg.get("tag") or "timm default"
    return LibraryModel(module=module.eval(), library=Library.TIMM, version=str(timm.__version__), name=name,
                        input_shape=(c, h, w), mean=tuple(float(v) for v in cfg["mean"]),
                        std=tuple(float(v) for v in cfg["std"]), num_classes=int(getattr(module, "num_classes", 0)),
                        crop_fraction=float(cfg.get("crop_pct") or 0.875), weights=weights)


BUILDERS = {Library.TORCHVISION: _build_torchvision, Library.TIMM: _build_timm}


def _num_classes(module, builder_args: dict) -> int:
    if "num_classes" in builder_args:
        return int(builder_args["num_classes"])
    last = None
    for m in module.modules():
        if type(m).__name__ == "Linear":
            last = m
    return int(last.out_features) if last is not None else 0


def build_library_model(library: Library, name: str, *, builder_args: dict, pretrained: bool) -> LibraryModel:
    """Build `name` with the library's own code: random weights, or its pretrained weights when `pretrained`."""
    return BUILDERS[Library(library)](name, dict(builder_args or {}), bool(pretrained))
