"""Checkpoints and model sources: what `edgeport export SOURCE` accepts.

SOURCE is one of
- a zoo name (`shufflenet_v2_x1_0`), optionally with `--checkpoint PATH` and builder `--arg KEY=VALUE`;
- `path/to/file.py:factory`, a callable returning an nn.Module, with `--input-shape C,H,W`;
- `model.onnx`, an existing ONNX model (exported and verified elsewhere; no torch reference);
- `torchvision:NAME` / `timm:NAME`, built by the library's own code (extra `edgeport[upstream]`), with random
  weights, `--checkpoint PATH` or `--pretrained` (export/library_source.py);
- a TorchScript archive or a pickled full module given as `--checkpoint` for a zoo name or as SOURCE itself.

Checkpoints are read with `torch.load(weights_only=True)`. A file that needs arbitrary code to unpickle (a pickled
full module) is refused unless the caller opts in with `trust=True` (`--trust-checkpoint`). So is a TorchScript
archive: `torch.jit.load` compiles and runs the TorchScript code stored in the file (its methods, and `__setstate__`
of scripted classes while loading), and TorchScript reaches every registered torch operator, file I/O included;
it is not arbitrary Python, but it is code from the file, so it needs the same opt-in.
"""
from __future__ import annotations

import enum
import hashlib
import importlib.util
import os
import pickle
import sys
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn as nn

from edgeport.errors import CheckpointError, ModelBuildError
from edgeport.export.library_source import build_library_model, library_version, parse_library_source
from edgeport.export.onnx_inputs import fix_input_shapes, graph_inputs, static_input_shapes
from edgeport.models import IMAGENET_MEAN, IMAGENET_STD, ChannelOrder, ModelSpec, build_model, get_model_entry

NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "module", "ema", "model_ema")


class SourceKind(str, enum.Enum):
    ZOO = "zoo"
    FACTORY = "factory"
    ONNX = "onnx"
    TORCHSCRIPT = "torchscript"
    MODULE = "module"
    LIBRARY = "library"  # torchvision:NAME, timm:NAME (export/library_source.py)

    def __str__(self) -> str:
        return self.value


@dataclass
class LoadedSource:
    """A resolved source: the torch reference (None for ONNX sources), its spec, and where it came from."""

    kind: SourceKind
    name: str
    spec: ModelSpec
    module: nn.Module | None
    checkpoint: Path | None = None
    checkpoint_sha256: str | None = None
    checkpoint_format: str | None = None
    onnx_path: Path | None = None
    builder_args: dict = field(default_factory=dict)
    factory: FactoryRef | None = None
    contract: dict = field(default_factory=dict)
    # ONNX sources: {input name: static shape}, in graph order (the file's dynamic dimensions fixed)
    input_shapes: dict = field(default_factory=dict)
    # library sources: {library, library_version, pretrained, weights}
    library: dict = field(default_factory=dict)

    def onnx_model(self):
        """The user's ONNX file with static input shapes (`input_shapes`), not yet simplified."""
        import onnx

        return fix_input_shapes(onnx.load(str(self.onnx_path)), self.input_shapes)

    @property
    def input_names(self) -> list[str]:
        return list(self.input_shapes) or ["input"]

    def report(self) -> dict:
        """report.json `source`: everything a later command needs to rebuild the reference (`rebuild_source`)."""
        out = {
            "kind": str(self.kind),
            "name": self.name,
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "checkpoint_sha256": self.checkpoint_sha256,
            "checkpoint_format": self.checkpoint_format,
            "builder_args": self.builder_args,
            "onnx_path": str(self.onnx_path) if self.onnx_path else None,
        }
        if self.contract:  # declared by the user (--preprocess/--mean/--std/--channel-order); the spec holds it
            out["input_contract"] = {k: (list(v) if isinstance(v, tuple) else str(v)) for k, v in self.contract.items()}
        if self.input_shapes:
            out["input_shapes"] = {k: list(v) for k, v in self.input_shapes.items()}
        if self.factory is not None:
            out.update(file=str(self.factory.path), file_sha256=self.factory.sha256, function=self.factory.function,
                       input_shape=list(self.spec.input_shape))
        if self.library:
            out.update(self.library, input_shape=list(self.spec.input_shape))
        return out


@dataclass(frozen=True)
class FactoryRef:
    """A `file.py:function` source: the file (absolute), its sha256 when it was loaded, and the function name."""

    path: Path
    sha256: str
    function: str

    @property
    def source(self) -> str:
        return f"{self.path}:{self.function}"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())


def read_checkpoint(path: str | os.PathLike, *, trust: bool = False) -> dict | nn.Module:
    """Read a checkpoint file: a state dict (possibly nested), or (with `trust`) a TorchScript archive or a pickled
    module."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file")
    if _is_torchscript(path):
        if not trust:
            raise CheckpointError(f"{path} is a TorchScript archive, and loading it runs the TorchScript code inside "
                                  f"it; refusing", hint="if you trust this file, pass --trust-checkpoint")
        try:
            return torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise CheckpointError(f"{path} looks like a TorchScript archive but cannot be loaded: {exc}") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Unsupported global" in str(exc) or "GLOBAL" in str(exc):
            if not trust:
                raise CheckpointError(
                    f"{path} needs arbitrary code to unpickle (a pickled module or custom objects); "
                    "refusing to run it",
                    hint="if you trust this file, pass --trust-checkpoint",
                ) from None
            try:
                obj = torch.load(str(path), map_location="cpu", weights_only=False)
            except Exception as exc2:
                raise CheckpointError(f"{path} cannot be unpickled even with --trust-checkpoint: {exc2}") from None
        else:
            raise CheckpointError(f"{path} is not a PyTorch checkpoint ({exc})") from None
    except (RuntimeError, EOFError, OSError, ValueError, IndexError, KeyError, zipfile.BadZipFile) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {first[:200]}") from None
    if isinstance(obj, nn.Module):
        return obj
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict or a module")
    return obj


def unwrap_state_dict(obj: dict) -> dict[str, torch.Tensor]:
    """Find the tensor dict inside common wrappers ({'state_dict': ...}, {'model': ...}) and strip `module.`."""
    for _ in range(3):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        nested = next((obj[k] for k in NESTED_KEYS if isinstance(obj.get(k), dict)), None)
        if nested is None:
            nested_mod = next((obj[k] for k in NESTED_KEYS if isinstance(obj.get(k), nn.Module)), None)
            if nested_mod is not None:
                return nested_mod.state_dict()
            break
        obj = nested
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(
            f"no tensors found in the checkpoint (top-level keys: {', '.join(list(obj)[:10])})"
        )
    for prefix in ("module.", "_orig_mod.", "model."):
        if all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix):]: v for k, v in tensors.items()}
    return tensors


@dataclass(frozen=True)
class KeyMismatch:
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    shape: tuple[tuple[str, tuple, tuple], ...]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.shape)

    @property
    def size(self) -> int:
        return len(self.missing) + len(self.unexpected) + len(self.shape)

    def describe(self, limit: int = 8) -> str:
        parts = []

        def few(keys):
            keys = list(keys)
            more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
            return ", ".join(keys[:limit]) + more

        if self.missing:
            parts.append(f"missing {len(self.missing)}: {few(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected {len(self.unexpected)}: {few(self.unexpected)}")
        if self.shape:
            parts.append(
                f"shape-mismatched {len(self.shape)}: "
                + few(f"{k} checkpoint {tuple(a)} vs model {tuple(b)}" for k, a, b in self.shape)
            )
        return "; ".join(parts)


def compare_keys(model: nn.Module, state: dict[str, torch.Tensor]) -> KeyMismatch:
    own = model.state_dict()
    ignore = lambda k: k.endswith("num_batches_tracked")  # noqa: E731  (absent in some exporters' checkpoints)
    missing = tuple(k for k in own if k not in state and not ignore(k))
    unexpected = tuple(k for k in state if k not in own and not ignore(k))
    shape = tuple(
        (k, tuple(state[k].shape), tuple(own[k].shape))
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    )
    return KeyMismatch(missing, unexpected, shape)


def load_state_dict_strict(
    model: nn.Module, state: dict[str, torch.Tensor], *, formats: dict | None = None, name: str = "model"
) -> str:
    """Load `state` into `model` strictly, trying the native key names and then each third-party format.

    Returns the format used ("native" or a format name). Raises one CheckpointError listing missing, unexpected and
    shape-mismatched keys of the closest candidate.
    """
    candidates = [("native", state)]
    for fmt, convert in (formats or {}).items():
        try:
            candidates.append((fmt, convert(state)))
        except Exception as exc:  # a format converter that does not apply to these keys
            candidates.append((fmt, {"__edgeport_convert_error__": torch.zeros(0)}))
            _ = exc
    best = None
    for fmt, cand in candidates:
        mismatch = compare_keys(model, cand)
        if mismatch.ok:
            own = model.state_dict()
            full = {k: v for k, v in cand.items() if k in own}
            for k in own:
                if k not in full:  # num_batches_tracked
                    full[k] = own[k]
            model.load_state_dict(full, strict=True)
            return fmt
        if best is None or mismatch.size < best[1].size:
            best = (fmt, mismatch)
    fmt, mismatch = best
    tried = ", ".join(f for f, _ in candidates)
    raise CheckpointError(
        f"checkpoint does not fit {name} (closest key format: {fmt}; tried {tried}): {mismatch.describe()}",
        hint="check the model name and builder arguments (--arg), e.g. num_classes",
    )


def load_factory(spec_str: str, *, builder_args: dict | None = None) -> nn.Module:
    """`path/to/file.py:factory` -> factory(**builder_args) which must return an nn.Module."""
    path_str, _, attr = spec_str.rpartition(":")
    path = Path(path_str)
    if not path.is_file():
        raise ModelBuildError(f"factory file {path} does not exist")
    if not attr.isidentifier():
        raise ModelBuildError(f"{spec_str!r}: expected path/to/file.py:function_name")
    mod_name = f"edgeport_user_{path.stem}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except SystemExit as exc:  # a script-style file: its exit code must not become edgeport's
        raise ModelBuildError(f"importing {path} called sys.exit({exc.code})",
                              hint="guard the script part with `if __name__ == '__main__':`") from None
    except Exception as exc:
        raise ModelBuildError(f"importing {path} failed: {type(exc).__name__}: {exc}") from None
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise ModelBuildError(f"{path} has no callable {attr!r}")
    try:
        obj = factory(**(builder_args or {}))
    except SystemExit as exc:
        raise ModelBuildError(f"{spec_str} called sys.exit({exc.code})") from None
    except Exception as exc:
        raise ModelBuildError(f"{spec_str} raised {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, nn.Module):
        raise ModelBuildError(f"{spec_str} returned a {type(obj).__name__}, not a torch.nn.Module")
    return obj.eval()


def user_spec(name: str, input_shape: tuple[int, ...], *, num_classes: int = 0) -> ModelSpec:
    """A spec for a model outside the zoo: ImageNet normalisation, the given input shape."""
    c, h, w = input_shape[-3:]
    return ModelSpec(
        name=name, family="user", input_shape=(c, h, w), num_classes=num_classes, mean=IMAGENET_MEAN,
        std=IMAGENET_STD, paper="user model", resize=int(round(h / 0.875)) if h > 64 else h, crop=h,
    )


def resolve_source(
    source: str,
    *,
    checkpoint: str | os.PathLike | None = None,
    builder_args: dict | None = None,
    input_shape: tuple[int, ...] | None = None,
    trust: bool = False,
    contract: dict | None = None,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    pretrained: bool = False,
) -> LoadedSource:
    """Turn a CLI SOURCE (+ checkpoint, builder args, input shape, input contract) into a LoadedSource, or raise a
    typed error. `contract` ({mean, std, channel_order}, SourceOptions.input_contract()) overrides the spec's.
    `pretrained`: a library source (`timm:NAME`, `torchvision:NAME`) loads the library's own pretrained weights."""
    if pretrained and (checkpoint is not None or parse_library_source(source) is None):
        raise ModelBuildError("--pretrained loads a library's own weights: it takes a torchvision:NAME or timm:NAME "
                              "source and no --checkpoint")
    if source.endswith(".onnx"):
        src = _resolve_onnx(Path(source), input_shape=input_shape, input_shapes=input_shapes)
    else:
        if input_shapes:
            raise ModelBuildError("--input-shape NAME=DIMS names an input of an ONNX file; give C,H,W for "
                                  f"{source}")
        src = _resolve(source, checkpoint=checkpoint, builder_args=builder_args, input_shape=input_shape,
                       trust=trust, pretrained=pretrained)
    return with_contract(src, contract or {})


def _resolve_onnx(path: Path, *, input_shape, input_shapes: dict | None) -> LoadedSource:
    """An ONNX file: checked, its inputs given static shapes; the spec's input shape is the image input's C,H,W."""
    import onnx

    from edgeport.export.onnx_export import check_input_shape

    if not path.is_file():
        raise ModelBuildError(f"ONNX file {path} does not exist")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ModelBuildError(f"{path} is not a valid ONNX model: {str(exc).splitlines()[0][:200]}") from None
    inputs = graph_inputs(model)
    shape = check_input_shape(input_shape) if input_shape is not None else None
    shapes = static_input_shapes(inputs, shape=shape, named=input_shapes)
    image = next((s for s in shapes.values() if len(s) == 4), None)
    if image is None:
        raise ModelBuildError(f"{path} has no 4-D (N, C, H, W) input (inputs: "
                              f"{', '.join(f'{k} {list(v)}' for k, v in shapes.items())}); edgeport converts image models")
    spec_shape = tuple(image[1:])
    return LoadedSource(SourceKind.ONNX, path.stem, user_spec(path.stem, spec_shape), None, onnx_path=path,
                        input_shapes=shapes)


def with_contract(src: LoadedSource, contract: dict) -> LoadedSource:
    """`src` with its spec's mean / std / channel order replaced by the declared ones (kept in `src.contract`)."""
    if not contract:
        return src
    values = {k: tuple(float(x) for x in v) for k, v in contract.items() if k in ("mean", "std")}
    if "channel_order" in contract:
        try:
            values["channel_order"] = ChannelOrder(contract["channel_order"])
        except ValueError:
            raise ModelBuildError(f"channel order {contract['channel_order']!r}; valid: rgb, bgr") from None
    src.spec = replace(src.spec, **values)
    src.contract = dict(values)
    return src


def _resolve(source: str, *, checkpoint, builder_args: dict | None, input_shape, trust: bool,
             pretrained: bool = False) -> LoadedSource:
    from edgeport.export.onnx_export import check_input_shape

    builder_args = dict(builder_args or {})
    shape = check_input_shape(input_shape)[1:] if input_shape is not None else None
    if parse_library_source(source) is not None:
        return _resolve_library(source, checkpoint=checkpoint, builder_args=builder_args, shape=shape, trust=trust,
                                pretrained=pretrained)
    if ":" in source and source.split(":")[0].endswith(".py"):
        if shape is None:
            raise ModelBuildError(f"{source}: a factory model needs --input-shape C,H,W")
        module = load_factory(source, builder_args=builder_args)
        path_str, _, name = source.rpartition(":")
        ref = FactoryRef(Path(path_str).resolve(), sha256_file(path_str), name)
        src = LoadedSource(SourceKind.FACTORY, name, user_spec(name, shape), module, builder_args=builder_args,
                           factory=ref)
        if checkpoint is not None:  # absolute, so `validate` from another directory finds it
            _apply_checkpoint(src, Path(checkpoint).resolve(), trust=trust, formats={})
        return src
    if source.endswith((".pt", ".pth", ".ts", ".ptl")) and Path(source).is_file():
        obj = read_checkpoint(source, trust=trust)
        if not isinstance(obj, nn.Module):
            raise ModelBuildError(
                f"{source} is a state dict; give the architecture as SOURCE (a zoo name or file.py:factory) "
                f"and the file as --checkpoint"
            )
        if shape is None:
            raise ModelBuildError(f"{source}: a module checkpoint needs --input-shape C,H,W")
        kind = SourceKind.TORCHSCRIPT if isinstance(obj, torch.jit.ScriptModule) else SourceKind.MODULE
        name = Path(source).stem
        return LoadedSource(kind, name, user_spec(name, shape), obj.eval(), checkpoint=Path(source).resolve(),
                            checkpoint_sha256=sha256_file(source), checkpoint_format=str(kind))
    entry = get_model_entry(source)  # UnknownNameError lists the valid names
    module = build_model(source, **builder_args)
    spec = entry.spec
    if "num_classes" in builder_args:
        spec = replace(spec, num_classes=int(builder_args["num_classes"]))
    if shape is not None:
        spec = replace(spec, input_shape=shape, resize=None, crop=None)
    src = LoadedSource(SourceKind.ZOO, source, spec, module, builder_args=builder_args)
    if checkpoint is not None:
        _apply_checkpoint(src, checkpoint, trust=trust, formats=entry.checkpoint_formats)
    return src


def _resolve_library(source: str, *, checkpoint, builder_args: dict, shape, trust: bool,
                     pretrained: bool) -> LoadedSource:
    """`torchvision:NAME` / `timm:NAME`: the library's model, its published input size and normalisation (an
    --input-shape replaces the size), random weights, --checkpoint (strict key report) or --pretrained."""
    library, name = parse_library_source(source)
    built = build_library_model(library, name, builder_args=builder_args, pretrained=pretrained)
    c, h, w = shape or built.input_shape
    spec = ModelSpec(name=name, family=str(library), input_shape=(c, h, w), num_classes=built.num_classes,
                     mean=built.mean, std=built.std, paper=f"{library} {built.version}", crop=h,
                     resize=int(round(h / built.crop_fraction)) if built.crop_fraction else h)
    src = LoadedSource(SourceKind.LIBRARY, name, spec, built.module, builder_args=builder_args,
                       library={"library": str(library), "library_version": built.version, "pretrained": pretrained,
                                "weights": built.weights})
    if checkpoint is not None:  # absolute, so `validate` from another directory finds it
        _apply_checkpoint(src, Path(checkpoint).resolve(), trust=trust, formats={})
    return src


def rebuild_library_source(record: dict, *, trust: bool = False) -> LoadedSource:
    """Rebuild a library source from its report.json record: the same library version (another version may build
    another network), the same checkpoint file (sha256), arguments, input shape and contract."""
    library, name, version = record.get("library"), record.get("name"), record.get("library_version")
    if not library or not name:
        raise ModelBuildError("report.json source records no library/name", hint="export the model again")
    installed = library_version(parse_library_source(f"{library}:{name}")[0])
    if version and installed != version:
        raise ModelBuildError(f"{library} {installed} is installed; the model was exported with {library} {version}",
                              hint=f"pip install {library}=={version}, or export the model again")
    _check_recorded_checkpoint(record)
    shape = record.get("input_shape")
    return resolve_source(f"{library}:{name}", checkpoint=record.get("checkpoint"),
                          builder_args=record.get("builder_args") or {}, input_shape=(1, *shape) if shape else None,
                          trust=trust, contract=record.get("input_contract"), pretrained=bool(record.get("pretrained")))


def _check_recorded_checkpoint(record: dict) -> None:
    checkpoint = record.get("checkpoint")
    if checkpoint:
        if not Path(checkpoint).is_file():
            raise CheckpointError(f"checkpoint {checkpoint} (recorded in report.json) does not exist",
                                  hint="restore the file or export the model again")
        if record.get("checkpoint_sha256") and sha256_file(checkpoint) != record["checkpoint_sha256"]:
            raise CheckpointError(f"checkpoint {checkpoint} changed since the export (sha256 differs)",
                                  hint="restore the exported version or export the model again")


def _apply_checkpoint(src: LoadedSource, checkpoint, *, trust: bool, formats: dict) -> None:
    path = Path(checkpoint)
    obj = read_checkpoint(path, trust=trust)
    src.checkpoint = path
    src.checkpoint_sha256 = sha256_file(path)
    if isinstance(obj, nn.Module):
        state = obj.state_dict()
    else:
        state = unwrap_state_dict(obj)
    src.checkpoint_format = load_state_dict_strict(src.module, state, formats=formats, name=src.name)
    src.module.eval()


def rebuild_factory_source(record: dict, *, trust: bool = False) -> LoadedSource:
    """Rebuild a `file.py:function` source from its report.json `source` record (LoadedSource.report()).

    The factory file and the checkpoint must be the ones exported: a missing file or a different sha256 is one
    ModelBuildError / CheckpointError line (exit 2), never a silently different reference."""
    path = Path(record.get("file") or "")
    function = record.get("function") or ""
    if not record.get("file") or not function:
        raise ModelBuildError("report.json source records no factory file/function (exported by an older edgeport)",
                              hint="export the model again")
    if not path.is_file():
        raise ModelBuildError(f"factory file {path} (recorded in report.json) does not exist",
                              hint="restore the file or export the model again")
    if record.get("file_sha256") and sha256_file(path) != record["file_sha256"]:
        raise ModelBuildError(f"factory file {path} changed since the export (sha256 differs)",
                              hint="restore the exported version or export the model again")
    _check_recorded_checkpoint(record)
    checkpoint = record.get("checkpoint")
    shape = record.get("input_shape")
    if not shape:
        raise ModelBuildError("report.json source records no input shape for the factory model",
                              hint="export the model again")
    return resolve_source(f"{path}:{function}", checkpoint=checkpoint, builder_args=record.get("builder_args") or {},
                          input_shape=(1, *shape), trust=trust, contract=record.get("input_contract"))
