"""`torchvision:NAME` and `timm:NAME` sources (export/library_source.py).

Two environments:
- the project's Python (CI): torchvision and timm are NOT installed there (the optional extra `edgeport[upstream]`);
  the tests here check the one-line "install the extra" error, argument checks and source parsing;
- the upstream environment (/work/venv-upstream: torch 2.14.1 + torchvision + timm, DEVELOPERS.md): the end-to-end
  tests below run there (`/work/venv-upstream/bin/python -m pytest -m slow tests/test_library_sources.py`). In the
  project's Python they are skipped with a reason that names that environment: they do not count as run in CI.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeport.errors import ModelBuildError
from edgeport.export.library_source import Library, parse_library_source

UPSTREAM_ONLY = "runs in the upstream environment (/work/venv-upstream, DEVELOPERS.md), where {} is installed; " \
                "the project's Python and CI do not install the optional extra edgeport[upstream]"
needs_timm = pytest.mark.skipif(importlib.util.find_spec("timm") is None, reason=UPSTREAM_ONLY.format("timm"))
needs_torchvision = pytest.mark.skipif(importlib.util.find_spec("torchvision") is None,
                                       reason=UPSTREAM_ONLY.format("torchvision"))

class BlockImport:
    """A meta-path finder that makes one top-level package unimportable, so the "library missing" line is checked in
    any environment, including one where the library is installed."""

    def __init__(self, name: str):
        self.name = name

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == self.name:
            raise ModuleNotFoundError(f"No module named {name!r}")


def cli(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "edgeport.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "COLUMNS": "200", **(env or {})}, timeout=900)


def main_in_process(args, capsys) -> tuple[int, str]:
    from edgeport.cli import main

    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def test_parse_library_source():
    assert parse_library_source("timm:mobilenetv3_small_100") == (Library.TIMM, "mobilenetv3_small_100")
    assert parse_library_source("torchvision:resnet18") == (Library.TORCHVISION, "resnet18")
    for other in ("shufflenet_v2_x1_0", "net.py:build", "model.onnx", "mytimm:x", "/tmp/timm:x"):
        assert parse_library_source(other) is None
    with pytest.raises(ModelBuildError, match="expected timm:MODEL_NAME"):
        parse_library_source("timm:")


@pytest.mark.parametrize("command,library,name", [("export", "torchvision", "resnet18"),
                                                  ("run", "timm", "mobilenetv3_small_100")])
def test_missing_library_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys, command, library, name):
    for mod in [m for m in sys.modules if m.split(".")[0] == library]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setattr(sys, "meta_path", [BlockImport(library), *sys.meta_path])
    code, err = main_in_process([command, f"{library}:{name}", "--out", tmp_path / "out"], capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert f"need the {library} package" in lines[0] and "pip install 'edgeport[upstream]'" in lines[0]
    assert not (tmp_path / "out" / "model.onnx").exists()


def test_pretrained_needs_a_library_source_and_no_checkpoint(tmp_path, capsys):
    code, err = main_in_process(["export", "ghostnet_x0_5", "--pretrained", "--out", tmp_path / "a"], capsys)
    assert code == 2 and "--pretrained loads a library's own weights" in err
    assert len(err.strip().splitlines()) == 1
    (tmp_path / "w.pt").write_bytes(b"")
    code, err = main_in_process(["export", "timm:x", "--pretrained", "--checkpoint", tmp_path / "w.pt", "--out",
                                 tmp_path / "b"], capsys)
    assert code == 2 and "no --checkpoint" in err


def test_library_record_is_rebuilt_or_refused_in_one_line(tmp_path):
    """report.json's library record: another installed version refuses the rebuild with one line, before any
    model is built (here the library is missing altogether: the same one line as at export)."""
    from edgeport.export.checkpoint import rebuild_library_source

    with pytest.raises(ModelBuildError, match="report.json source records no library"):
        rebuild_library_source({"kind": "library"})
    if importlib.util.find_spec("timm") is None:
        with pytest.raises(ModelBuildError, match=r"edgeport\[upstream\]"):
            rebuild_library_source({"kind": "library", "library": "timm", "name": "x", "library_version": "0"})


# ---- upstream environment only (see the module docstring) --------------------------------------------------------

TIMM_MODEL = "mobilenetv3_small_050"
RUN_MODEL = "resnet10t"  # ReLU + BN: a random-weight network whose INT8 checks judge the conversion


@needs_timm
def test_timm_unknown_name_and_version_mismatch():
    from edgeport.export.checkpoint import rebuild_library_source, resolve_source

    with pytest.raises(ModelBuildError, match="has no model 'mobilenetv3_smal_050'; did you mean"):
        resolve_source("timm:mobilenetv3_smal_050")
    src = resolve_source(f"timm:{TIMM_MODEL}")
    rec = src.report()
    assert rec["kind"] == "library" and rec["library"] == "timm" and rec["name"] == TIMM_MODEL
    assert rec["input_shape"] == [3, 224, 224] and rec["pretrained"] is False
    with pytest.raises(ModelBuildError, match="was exported with timm 0.0.1"):
        rebuild_library_source({**rec, "library_version": "0.0.1"})


def _train_on_digits(model, *, size: int, epochs: int = 2) -> None:
    """A few epochs on scikit-learn's digits (edgeport's `digits` source, train split, ImageNet normalisation at
    size x size): trained weights, so the run's INT8 checks judge the conversion rather than a random network's
    near-tied logits."""
    import torch

    from edgeport.calibration import load_samples
    from edgeport.models import IMAGENET_MEAN, IMAGENET_STD, ModelSpec

    spec = ModelSpec(name="x", family="timm", input_shape=(3, size, size), num_classes=10, mean=IMAGENET_MEAN,
                     std=IMAGENET_STD, paper="", crop=size, resize=size)
    train = load_samples("digits", model_spec=spec, num=1000)  # of the 1257 in the train split
    x, y = torch.from_numpy(train.array()), torch.tensor(train.labels)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()


@needs_timm
@pytest.mark.slow
def test_run_timm_with_checkpoint_end_to_end(tmp_path):
    """`edgeport run timm:NAME --checkpoint FILE` -> exit 0, a full report, validated against the rebuilt torch
    model; a checkpoint of another architecture is one strict-key line."""
    import timm
    import torch

    torch.manual_seed(0)
    model = timm.create_model(RUN_MODEL, pretrained=False, num_classes=10)
    _train_on_digits(model, size=32)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "ck.pt")
    r = cli("run", f"timm:{RUN_MODEL}", "--arg", "num_classes=10", "--checkpoint", "ck.pt", "--input-shape",
            "3,32,32", "--calibration", "digits", "--runs", "3", "--warmup", "1", "--out", "out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr + r.stdout
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    src = rep["source"]
    assert src["kind"] == "library" and src["library"] == "timm" and src["library_version"] == timm.__version__
    assert src["builder_args"] == {"num_classes": 10} and src["input_shape"] == [3, 32, 32]
    assert rep["parity"]["tflite_fp32"]["reference"] == "torch" and rep["parity"]["tflite_fp32"]["cosine_min"] > 0.9999
    r = cli("validate", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    r = cli("export", f"timm:{RUN_MODEL}", "--checkpoint", "ck.pt", "--out", "bad", cwd=tmp_path)
    assert r.returncode == 2 and "checkpoint does not fit" in r.stderr and "shape-mismatched" in r.stderr


PRETRAINED_PROBE = """
import json, sys
import torch
from safetensors.torch import load_file
from edgeport.errors import EdgeportError
from edgeport.export.checkpoint import resolve_source
try:
    src = resolve_source(sys.argv[1], pretrained=True)
except EdgeportError as exc:
    print(json.dumps({"error": str(exc)}))
    sys.exit(0)
donor = load_file(sys.argv[2])
same = all(torch.equal(src.module.state_dict()[k], v) for k, v in donor.items())
print(json.dumps({"record": src.report(), "same": same}))
"""


@needs_timm
def test_timm_pretrained_reads_the_hub_cache_offline(tmp_path):
    """--pretrained runs timm's own loading code: hub download of the default pretrained tag. Offline
    (HF_HUB_OFFLINE=1, read by huggingface_hub at import, hence a fresh process) that code reads the Hugging Face
    cache; a cache entry made here from random weights stands in for the real file."""
    import timm
    import torch
    from safetensors.torch import save_file

    cfg = timm.create_model(TIMM_MODEL, pretrained=False).pretrained_cfg
    repo, revision = cfg["hf_hub_id"], "0" * 40
    snap = tmp_path / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / revision
    snap.mkdir(parents=True)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text(revision)
    torch.manual_seed(1)
    donor = timm.create_model(TIMM_MODEL, pretrained=False)
    save_file({k: v.contiguous() for k, v in donor.state_dict().items()}, str(snap / "model.safetensors"))

    def probe(cache: Path) -> dict:
        r = subprocess.run([sys.executable, "-c", PRETRAINED_PROBE, f"timm:{TIMM_MODEL}",
                            str(snap / "model.safetensors")], capture_output=True, text=True, timeout=600,
                           env={**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"})
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout.strip().splitlines()[-1])

    got = probe(tmp_path / "hub")
    assert got["same"] and got["record"]["pretrained"] is True and got["record"]["weights"] == repo
    missing = probe(tmp_path / "empty")
    assert "could not load the pretrained weights" in missing["error"] and "--checkpoint FILE" in missing["error"]


@needs_torchvision
def test_torchvision_pretrained_reads_torch_home_offline(tmp_path, monkeypatch):
    """--pretrained runs torchvision's own loading (load_state_dict_from_url into $TORCH_HOME/hub/checkpoints);
    a file placed there under the URL's name, made here from random weights, is read without the network."""
    import torch
    import torchvision

    from edgeport.export.checkpoint import resolve_source

    weights = torchvision.models.get_model_weights("mobilenet_v3_small").DEFAULT
    ckpt_dir = tmp_path / "torch" / "hub" / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    torch.manual_seed(2)
    donor = torchvision.models.mobilenet_v3_small()
    torch.save(donor.state_dict(), ckpt_dir / Path(weights.url).name)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    src = resolve_source("torchvision:mobilenet_v3_small", pretrained=True)
    rec = src.report()
    assert rec["weights"] == str(weights) and rec["input_shape"] == [3, 224, 224]
    assert torch.equal(src.module.state_dict()["classifier.3.weight"], donor.state_dict()["classifier.3.weight"])
