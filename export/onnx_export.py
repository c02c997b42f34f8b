"""torch -> ONNX: export, simplify, check, and verify on ONNX Runtime against torch.

Exporter choice (measured on this machine, docs/export.md): the dynamo exporter (`torch.export` based, opset 18) is
the default. The legacy TorchScript exporter is deprecated; it is faster (0.4 s vs 3-4 s for ShuffleNetV2 1.0x) but
its raw graphs carry Shape/Gather/Constant chains that only onnxsim removes, and it lowers `chunk` to Slice pairs where
dynamo emits one Split. Both are available (`Exporter`); neither silently falls back to the other.
"""
from __future__ import annotations

import ast
import contextlib
import enum
import io
import logging
import math
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn as nn

from edgeport.errors import ExportError, InputShapeError, ParityError
from edgeport.files import current_umask
from edgeport.metrics import OutputKind, cosine_per_sample, fp32_rel_bound, output_kind
from edgeport.runtime import float_noise_floor

INPUT_NAME = "input"
CLASSES_NAME = "logits"  # a class vector's name; a spatial map is MAP_NAME, anything else output_<i>
MAP_NAME = "map"
DEFAULT_OPSET = 18
MAX_INPUT_ELEMENTS = 3 * 4096 * 4096  # one input tensor; larger shapes are typos (and would allocate >200 MB each)


class Exporter(str, enum.Enum):
    DYNAMO = "dynamo"
    LEGACY = "legacy"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class OnnxVerification:
    """ORT vs torch on the same inputs. `max_abs_err` is over all samples; `rel_err` = max_abs_err / max|torch|;
    `cosine_mean` / `cosine_min`: the per-sample cosine similarity (edgeport.metrics), mean and worst sample."""

    max_abs_err: float
    max_ref: float
    rel_err: float
    cosine_mean: float
    cosine_min: float
    n_samples: int

    def as_dict(self) -> dict:
        return {k: float(v) if isinstance(v, (float, np.floating)) else v for k, v in self.__dict__.items()}


def check_input_shape(shape) -> tuple[int, ...]:
    """A model input shape (C, H, W) or (N, C, H, W) of positive ints; returns it with batch 1 prepended if absent."""
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise InputShapeError(f"input shape {shape!r} is not a sequence of integers (expected C,H,W)") from None
    if len(dims) == 3:
        dims = (1, *dims)
    if len(dims) != 4:
        raise InputShapeError(
            f"input shape {','.join(map(str, shape))} has rank {len(shape)}; expected C,H,W or N,C,H,W (an image model)"
        )
    if any(d <= 0 for d in dims):
        raise InputShapeError(f"input shape {dims} has a non-positive size")
    if math.prod(dims) > MAX_INPUT_ELEMENTS:
        raise InputShapeError(f"input shape {dims} has {math.prod(dims):,} elements, more than edgeport handles "
                              f"({MAX_INPUT_ELEMENTS:,}: a 4096x4096 RGB image)", hint="check --input-shape")
    return dims


def output_names(shapes: list[tuple[int, ...]]) -> list[str]:
    """What the exported model's outputs are called, by what each is (its shape, batch first; the same kinds that
    validation judges them by, edgeport.metrics.output_kind): a class vector (N, K) is `logits`, a spatial map
    (N, C, H, W) with H * W > 1 (segmentation logits, a detection or text probability map) is `map`, anything else
    `output_<i>`. A name that several outputs would share gets each output's index: `map_0`, `map_1`."""
    names = []
    for i, shape in enumerate(shapes):
        shape = tuple(int(d) for d in shape)
        if output_kind(shape) is OutputKind.CLASSES:
            names.append(CLASSES_NAME)
        elif len(shape) == 4 and shape[2] * shape[3] > 1:
            names.append(MAP_NAME)
        else:
            names.append(f"output_{i}")
    return [f"{n}_{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def _tensors(value) -> list:
    """The tensors of a module's output in the order the exporters flatten it (tuples, lists, dict values)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    return []


@contextlib.contextmanager
def quiet_exporters():
    """Silence the exporters' progress prints and warnings (they go to stdout/stderr and logging)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            logger.setLevel(level)


def _atomic_save(model: onnx.ModelProto, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~current_umask())
    try:
        onnx.save(model, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_onnx(
    model: nn.Module,
    *,
    input_shape,
    path: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    exporter: Exporter | str = Exporter.DYNAMO,
    dynamic_batch: bool = False,
    simplify: bool = True,
) -> onnx.ModelProto:
    """Export `model` (eval mode) to `path`: one input "input" (N,C,H,W float32), its outputs named by what they
    are (`output_names`: `logits` for a class vector, `map` for a spatial map).

    Static batch 1 unless `dynamic_batch`. The graph is simplified with onnxsim and checked with onnx.checker
    before it is written (atomically: `path` is either the finished model or absent). Returns the written model.
    """
    shape = check_input_shape(input_shape)
    exporter = Exporter(exporter)
    if opset < 17:
        raise ExportError(f"opset {opset} is too old: edgeport needs opset >= 17 (HardSwish, LayerNorm-era ops)")
    model = model.eval()
    example = torch.randn(*shape)
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        try:
            with quiet_exporters(), torch.no_grad():
                names = output_names([tuple(t.shape) for t in _tensors(model(example))])
                if exporter is Exporter.DYNAMO:
                    kwargs = {}
                    if dynamic_batch:
                        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1, max=1024)},)
                    prog = torch.onnx.export(
                        model, (example,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
                        output_names=names, external_data=False, verbose=False, **kwargs,
                    )
                    prog.save(str(raw))
                else:
                    torch.onnx.export(
                        model, (example,), str(raw), dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                        output_names=names, do_constant_folding=True,
                        dynamic_axes={n: {0: "batch"} for n in (INPUT_NAME, *names)} if dynamic_batch else None,
                    )
        except Exception as exc:  # the exporters raise many types; report them as one typed error
            other = Exporter.LEGACY if exporter is Exporter.DYNAMO else Exporter.DYNAMO
            raise ExportError(
                f"{exporter} ONNX exporter failed: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}",
                hint=f"try --exporter {other}",
            ) from exc
        onnx_model = onnx.load(str(raw))
    modules = tensor_modules(onnx_model)
    if simplify:
        onnx_model = simplify_onnx(onnx_model)
    attach_modules(onnx_model, modules)
    try:
        onnx.checker.check_model(onnx_model, full_check=True)
    except Exception as exc:
        raise ExportError(f"exported ONNX fails onnx.checker: {exc}") from exc
    _atomic_save(onnx_model, path)
    return onnx_model


MODULE_KEY = "edgeport.module"  # node metadata: the torch module path (`features.3.conv`) the node came from
_NAME_SCOPES = "pkg.torch.onnx.name_scopes"  # what the dynamo exporter records per node


def _module_of(node: onnx.NodeProto) -> str | None:
    """The torch module path of a raw exporter node: the dynamo exporter's name scopes (the last-but-one entry), or
    the legacy exporter's node name (`/layer1/layer1.0/conv1/Conv` -> `layer1.0.conv1`)."""
    meta = {p.key: p.value for p in node.metadata_props}
    if _NAME_SCOPES in meta:
        try:
            scopes = [s for s in ast.literal_eval(meta[_NAME_SCOPES]) if s]
        except (ValueError, SyntaxError):
            return None
        return scopes[-2] if len(scopes) >= 2 else None
    if node.name.startswith("/") and node.name.count("/") >= 2:
        path = ""
        for part in node.name.strip("/").split("/")[:-1]:
            path = part if not path or part.startswith(path + ".") else f"{path}.{part}"
        return path or None
    return None


def tensor_modules(model: onnx.ModelProto) -> dict[str, str]:
    """Output tensor name -> torch module path, for every node of a raw export that records one."""
    return {out: mod for node in model.graph.node if (mod := _module_of(node)) for out in node.output}


def attach_modules(model: onnx.ModelProto, modules: dict[str, str]) -> None:
    """Record on each node of the (simplified) model the module path of the tensor it produces (`MODULE_KEY`):
    node names such as `node_Conv_828` mean nothing to the user, `_blocks.5._bn2` does."""
    for node in model.graph.node:
        mod = next((modules[o] for o in node.output if o in modules), None)
        if mod and not any(p.key == MODULE_KEY for p in node.metadata_props):
            node.metadata_props.add(key=MODULE_KEY, value=mod)


def node_modules(model: onnx.ModelProto) -> dict[str, str]:
    """Node name -> torch module path, as `export_onnx` recorded it (empty for ONNX files from elsewhere)."""
    return {n.name: p.value for n in model.graph.node for p in n.metadata_props if p.key == MODULE_KEY}


def simplify_onnx(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxsim with static shapes; raises ExportError when the simplified graph cannot be validated."""
    import onnxsim

    try:
        with quiet_exporters():
            simplified, ok = onnxsim.simplify(model)
    except Exception as exc:
        raise ExportError(f"onnxsim failed: {exc}") from exc
    if not ok:
        raise ExportError("onnxsim could not validate the simplified model against the original")
    return simplified


def ort_session(path_or_bytes, *, threads: int = 1):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    src = str(path_or_bytes) if isinstance(path_or_bytes, (str, os.PathLike)) else path_or_bytes
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


def verify_onnx(
    model: nn.Module,
    *,
    onnx_path: str | os.PathLike,
    inputs: list[np.ndarray],
    rel_tol: float = 1e-4,
    min_cosine: float = 0.99999,
) -> OnnxVerification:
    """Run torch and ORT on the same NCHW float32 inputs; raise ParityError (with the largest difference) when
    max abs err > rel_tol * max|torch output| (widened to 10x the file's float noise floor when that is larger:
    edgeport.metrics.fp32_rel_bound) or the worst sample's cosine < min_cosine, for any output (a model
    with several outputs is held to the bounds on each; the result holds the worst output's numbers)."""
    sess = ort_session(onnx_path)
    in_name = sess.get_inputs()[0].name
    refs, gots = [], []  # per sample: one flattened array per output
    with torch.no_grad():
        for x in inputs:
            out = model(torch.from_numpy(x))
            ref = [t.numpy().astype(np.float64) for t in (out if isinstance(out, (tuple, list)) else [out])]
            got = [g.astype(np.float64) for g in sess.run(None, {in_name: x})]
            if len(got) != len(ref) or any(g.shape != r.shape for g, r in zip(got, ref)):
                raise ParityError("onnx", "shape", float("nan"), float("nan"),
                                  detail=f"{[g.shape for g in got]} vs torch {[r.shape for r in ref]}")
            refs.append([r.reshape(-1) for r in ref])
            gots.append([g.reshape(-1) for g in got])
    result, floors = None, None
    for k in range(len(refs[0])):
        r, g = np.stack([s[k] for s in refs]), np.stack([s[k] for s in gots])
        max_abs, max_ref = float(np.abs(g - r).max()), float(np.abs(r).max())
        cos = cosine_per_sample(r, g)
        rel = max_abs / max(max_ref, 1e-12)
        out_k = OnnxVerification(max_abs, max_ref, rel, float(cos.mean()), float(cos.min()), len(inputs))
        where = "onnx" if len(refs[0]) == 1 else f"onnx output {k}"
        if rel > rel_tol:
            if floors is None:  # measured only when needed: the float noise floor widens the bound
                floors = float_noise_floor(onnx_path, {in_name: np.concatenate(inputs)})
            bound = fp32_rel_bound(rel_tol, floors[k])
            if rel > bound:
                raise ParityError(where, "max_abs_err/max|ref|", rel, bound,
                                  detail=f"largest difference {max_abs:.3g}; this model's own float noise floor "
                                         f"{floors[k]:.2g} (ONNX Runtime optimised vs unoptimised)")
        if out_k.cosine_min < min_cosine:
            raise ParityError(where, "cosine_min", out_k.cosine_min, min_cosine,
                              detail=f"largest difference {max_abs:.3g}")
        if result is None or out_k.cosine_min < result.cosine_min:
            result = out_k
    return result
