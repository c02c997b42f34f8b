"""Params and exact MACs of zoo models (ONNX-counted), used by `edgeport models` and the docs.

Counting exports each model to ONNX (legacy exporter + onnxsim, for static shapes), which takes ~1 s per model; results are cached in ~/.cache/edgeport/zoo_stats.json keyed by the model's
name and a hash of the zoo's source files, so an edited model is recounted.
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
import os
from pathlib import Path

import onnx
import torch

from edgeport.export.analysis import count_macs
from edgeport.export.onnx_export import _quiet, simplify_onnx
from edgeport.models import build_model, get_spec
from edgeport.models.layers import count_params

_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def _cache_path() -> Path:
    root = Path(os.environ.get("EDGEPORT_CACHE", Path.home() / ".cache" / "edgeport"))
    return root / "zoo_stats.json"


@functools.lru_cache(maxsize=1)
def _zoo_hash() -> str:
    from edgeport import models

    h = hashlib.sha256(torch.__version__.encode())
    for f in sorted(Path(models.__file__).parent.glob("*.py")):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:16]


def _count(name: str) -> dict:
    spec = get_spec(name)
    model = build_model(name)
    buf = io.BytesIO()
    with _quiet(), torch.no_grad():
        torch.onnx.export(model, (torch.randn(1, *spec.input_shape),), buf, dynamo=False, opset_version=17)
    macs = count_macs(simplify_onnx(onnx.load_from_string(buf.getvalue())))
    return {
        "name": name, "family": spec.family, "input_shape": list(spec.input_shape), "params": count_params(model),
        "macs": macs, "published_params": spec.published_params, "published_macs": spec.published_macs,
        "paper": spec.paper,
    }


@functools.lru_cache(maxsize=None)
def zoo_stats(name: str) -> dict:
    """{name, family, input_shape, params, macs, published_params, published_macs, paper} at the spec's shape."""
    path = _cache_path()
    key = f"{name}@{_zoo_hash()}"
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return cache[key]
    stats = _count(name)
    cache = {k: v for k, v in cache.items() if k.endswith(_zoo_hash())}
    cache[key] = stats
    try:
        from edgeport.report import atomic_write_text

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(cache, indent=1))
    except OSError:
        pass  # a read-only home only costs speed
    return stats
