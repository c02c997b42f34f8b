"""The model registry: `@register_model(spec)` on a small builder function."""
from __future__ import annotations

import inspect
from typing import Callable

import torch.nn as nn

from edgeport.errors import ModelBuildError
from edgeport.registry import Registry

from .spec import ModelEntry, ModelSpec, StateDictConverter

MODELS: Registry[ModelEntry] = Registry("model")


def register_model(
    spec: ModelSpec, *, checkpoint_formats: dict[str, StateDictConverter] | None = None
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register `builder` under `spec.name`. The builder takes keyword-only arguments and returns an nn.Module."""

    def deco(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if builder.__name__ != spec.name:
            raise ValueError(f"builder {builder.__name__} registered under a different name {spec.name}")
        params = inspect.signature(builder).parameters
        bad = [p for p in params.values() if p.kind not in (p.KEYWORD_ONLY, p.VAR_KEYWORD)]
        if bad:
            raise ValueError(f"builder {spec.name}: arguments must be keyword-only, got {[p.name for p in bad]}")
        MODELS.register(
            spec.name,
            ModelEntry(
                spec=spec,
                builder=builder,
                checkpoint_formats=dict(checkpoint_formats or {}),
                builder_args=tuple(p.name for p in params.values() if p.kind == p.KEYWORD_ONLY),
            ),
        )
        return builder

    return deco


def get_model_entry(name: str) -> ModelEntry:
    return MODELS.get(name)


def get_spec(name: str) -> ModelSpec:
    return MODELS.get(name).spec


def model_names(*, family: str | None = None) -> list[str]:
    return [n for n, e in MODELS.items() if family is None or e.spec.family == family]


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model in eval mode. Unknown keyword arguments raise ModelBuildError naming the valid ones."""
    entry = MODELS.get(name)
    unknown = [k for k in kwargs if k not in entry.builder_args]
    if unknown:
        raise ModelBuildError(
            f"model {name!r} does not take {', '.join(unknown)}; it takes {', '.join(entry.builder_args) or 'no arguments'}"
        )
    try:
        model = entry.build(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ModelBuildError(f"cannot build {name!r} with {kwargs}: {exc}") from None
    return model.eval()
