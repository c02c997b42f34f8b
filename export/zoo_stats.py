"""Params and exact MACs of zoo models (ONNX-counted), used by `edgeport models` and the docs.

Counting exports each model to ONNX (legacy exporter + onnxsim, for static shapes), which takes ~1 s per model; results
are cached in ~/.cache/edgeport/zoo_stats.json keyed by the model's name and a hash of the zoo's source files and the
torch version, so an edited model is recounted. The whole-zoo table is cached too, and read without importing torch
or the models (`zoo_table`): `edgeport models` answers in well under a second once the cache exists.
"""
from __future__ import annotations

import difflib
import functools
import hashlib
import io
import json
import os
from importlib import metadata
from pathlib import Path

from edgeport.errors import UnknownNameError
from edgeport.files import atomic_write_text

_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
_TABLE_KEY = "__table__"


def _cache_path() -> Path:
    root = Path(os.environ.get("EDGEPORT_CACHE", Path.home() / ".cache" / "edgeport"))
    return root / "zoo_stats.json"


@functools.lru_cache(maxsize=1)
def _zoo_hash() -> str:
    """The zoo's source files and the torch version (read from the installed metadata: no torch import)."""
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = "none"
    h = hashlib.sha256(torch_version.encode())
    for f in sorted(_MODELS_DIR.glob("*.py")):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:16]


def _read_cache() -> dict:
    try:
        cache = json.loads(_cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def _write_cache(cache: dict) -> None:
    cache = {k: v for k, v in cache.items() if k.endswith(_zoo_hash())}
    try:
        _cache_path().parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(_cache_path(), json.dumps(cache, indent=1))
    except OSError:
        pass  # a read-only home only costs speed


def _count(name: str) -> dict:
    import onnx
    import torch

    from edgeport.export.analysis import count_macs
    from edgeport.export.onnx_export import quiet_exporters, simplify_onnx
    from edgeport.models import build_model, get_spec
    from edgeport.models.layers import count_params

    spec = get_spec(name)
    model = build_model(name)
    buf = io.BytesIO()
    with quiet_exporters(), torch.no_grad():
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
    key = f"{name}@{_zoo_hash()}"
    cache = _read_cache()
    if key in cache:
        return cache[key]
    stats = _count(name)
    cache = _read_cache()
    cache[key] = stats
    _write_cache(cache)
    return stats


def zoo_table(*, family: str | None = None) -> list[dict]:
    """zoo_stats of every registered model (from the cache when the zoo is unchanged), filtered by family: a
    family or a prefix of one (`mobilenet` lists mobilenet_v2 and mobilenet_v3). An unknown family raises
    UnknownNameError with the valid ones (and the closest as "did you mean")."""
    key = f"{_TABLE_KEY}@{_zoo_hash()}"
    rows = _read_cache().get(key)
    if not isinstance(rows, list):  # count what is asked for; the whole table is cached once it has been counted
        from edgeport.models import get_spec, model_names

        names = [n for n in model_names() if family is None or _in_family(get_spec(n).family, family)]
        rows = [zoo_stats(n) for n in names]
        if family is None:
            cache = _read_cache()
            cache[key] = rows
            _write_cache(cache)
    chosen = [r for r in rows if family is None or _in_family(r["family"], family)]
    if not chosen:
        from edgeport.models import get_spec, model_names

        families = sorted({get_spec(n).family for n in model_names()})
        raise UnknownNameError("model family", family, families, suggestion=_closest(family, families))
    return chosen


def _in_family(model_family: str, asked: str) -> bool:
    return model_family == asked or model_family.startswith(asked)


def _closest(word: str, choices: list[str]) -> str | None:
    hits = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return hits[0] if hits else None
