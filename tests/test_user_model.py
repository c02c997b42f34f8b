"""The user's own model through every command: a `file.py:factory` source with builder arguments and a checkpoint
is exported, rebuilt from report.json `source` by `validate` (torch is the reference), and refused with one line
when the factory file changed since the export."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from edgeport.validation import validate_dir

FACTORY = textwrap.dedent("""
    import torch.nn as nn

    def build(width=8, num_classes=10):
        return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                             nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))
""")


def cli(*args, cwd=None):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "edgeport.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


@pytest.fixture
def factory_model(tmp_path):
    """A folder holding mynet.py (a factory with a `width` argument) and mynet.pt (its weights at width 12)."""
    (tmp_path / "mynet.py").write_text(FACTORY)
    ns: dict = {}
    exec(FACTORY, ns)
    torch.manual_seed(0)
    model = ns["build"](width=12)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "mynet.pt")
    return tmp_path


def test_factory_with_checkpoint_exports_and_validates_against_torch(factory_model):
    d = factory_model
    r = cli("export", "mynet.py:build", "--arg", "width=12", "--input-shape", "3,32,32", "--checkpoint", "mynet.pt",
            "--precision", "fp32", "--out", "out", cwd=d)
    assert r.returncode == 0, r.stderr
    src = json.loads((d / "out" / "report.json").read_text())["source"]
    assert src["kind"] == "factory" and src["function"] == "build" and src["builder_args"] == {"width": 12}
    assert src["file"] == str(d / "mynet.py") and len(src["file_sha256"]) == 64
    assert src["checkpoint"] == str(d / "mynet.pt") and len(src["checkpoint_sha256"]) == 64
    assert src["input_shape"] == [3, 32, 32]

    result = validate_dir(d / "out", num=8)  # from another working directory: the record holds absolute paths
    assert set(result.parity) == {"onnx", "tflite_fp32"} and not result.failures
    assert all(m["reference"] == "torch" for m in result.parity.values())
    assert result.parity["tflite_fp32"]["cosine_mean"] > 0.99999

    (d / "mynet.py").write_text(FACTORY + "\n# edited after the export\n")
    r = cli("validate", d / "out")
    assert r.returncode == 2 and "changed since the export" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # 10-20 s: a full export; CI runs it
def test_changed_checkpoint_is_one_line(factory_model):
    d = factory_model
    r = cli("export", "mynet.py:build", "--arg", "width=12", "--input-shape", "3,32,32", "--checkpoint", "mynet.pt",
            "--precision", "fp32", "--out", "out", cwd=d)
    assert r.returncode == 0, r.stderr
    sd = torch.load(d / "mynet.pt")["state_dict"]
    sd["7.bias"] += 1
    torch.save({"state_dict": sd}, d / "mynet.pt")
    r = cli("validate", d / "out")
    assert r.returncode == 2 and "mynet.pt changed since the export" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_run_factory_with_checkpoint_finishes(factory_model):
    d = factory_model
    r = cli("run", "mynet.py:build", "--arg", "width=12", "--input-shape", "3,64,64", "--checkpoint", "mynet.pt",
            "--out", "out", cwd=d)
    assert r.returncode == 0, r.stderr + r.stdout
    rep = json.loads((d / "out" / "report.json").read_text())
    assert {"onnx", "tflite_fp32", "tflite_int8", "onnx_int8"} <= set(rep["parity"])
    assert rep["parity"]["tflite_fp32"]["reference"] == "torch"


# ---- the input contract: --preprocess / --mean / --std / --channel-order ----------------------------------------

def test_input_contract_presets_and_overrides():
    from edgeport.errors import ModelBuildError
    from edgeport.options import SourceOptions

    assert SourceOptions().input_contract() == {}
    tf = SourceOptions(preprocess="tf").input_contract()
    assert tf == {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
    raw = SourceOptions(preprocess="none", channel_order="bgr").input_contract()
    assert raw["std"] == (1 / 255,) * 3 and raw["channel_order"] == "bgr"
    mixed = SourceOptions(preprocess="imagenet", std=(0.5,)).input_contract()
    assert mixed["mean"] == (0.485, 0.456, 0.406) and mixed["std"] == (0.5, 0.5, 0.5)
    for bad in (SourceOptions(mean=(1.0, 2.0)), SourceOptions(std=(0.0, 1.0, 1.0))):
        with pytest.raises(ModelBuildError):
            bad.input_contract()


def _photo_rgb01(spec, shape, split):
    """The same samples as the contract under test, read as RGB 0-1: the reference the BGR arrays must mirror."""
    import dataclasses

    from edgeport.calibration import load_samples
    from edgeport.models import ChannelOrder

    rgb = dataclasses.replace(spec, mean=(0.0,) * 3, std=(1.0,) * 3, channel_order=ChannelOrder.RGB)
    return load_samples("default", model_spec=rgb, input_shape=shape, split=split, num=4, seed=0).array()


def test_bgr_zero_one_contract_reaches_calibration_and_validation(factory_model):
    from edgeport.calibration import Split, load_samples
    from edgeport.export.checkpoint import resolve_source
    from edgeport.options import SourceOptions
    from edgeport.report import load_report
    from edgeport.validation.validate import choose_validation_samples, load_reference

    d = factory_model
    opts = SourceOptions(source=f"{d}/mynet.py:build", builder_args=("width=12",), input_shape=(3, 32, 32),
                         checkpoint=str(d / "mynet.pt"), preprocess="zero-one", channel_order="bgr")
    src = resolve_source(opts.source, checkpoint=opts.checkpoint, builder_args=opts.builder_kwargs(),
                         input_shape=opts.input_shape, contract=opts.input_contract())
    assert str(src.spec.channel_order) == "bgr" and src.spec.mean == (0.0,) * 3 and src.spec.std == (1.0,) * 3
    calib = load_samples("default", model_spec=src.spec, input_shape=(3, 32, 32), num=4, seed=0).array()
    rgb = _photo_rgb01(src.spec, (3, 32, 32), Split.CALIBRATION)
    assert calib.min() >= 0.0 and calib.max() <= 1.0
    np.testing.assert_array_equal(calib, rgb[:, ::-1])  # channel 0 is blue
    assert not np.array_equal(calib, rgb)

    r = cli("export", "mynet.py:build", "--arg", "width=12", "--input-shape", "3,32,32", "--checkpoint", "mynet.pt",
            "--preprocess", "zero-one", "--channel-order", "bgr", "--precision", "fp32", "--out", "out", cwd=d)
    assert r.returncode == 0, r.stderr
    report = load_report(d / "out")
    assert report.get("model")["channel_order"] == "bgr" and report.get("model")["std"] == [1.0, 1.0, 1.0]
    assert report.get("source")["input_contract"] == {"mean": [0.0] * 3, "std": [1.0] * 3, "channel_order": "bgr"}
    reference = load_reference(report, onnx_path=report.artifact_path("onnx"), trust=False)
    assert reference.spec == src.spec
    held, _ = choose_validation_samples(report, spec=reference.spec, samples="default", num=4, seed=0)
    np.testing.assert_array_equal(held.array(), _photo_rgb01(src.spec, (3, 32, 32), Split.VALIDATION)[:, ::-1])


# ---- TorchScript: dynamo cannot trace a ScriptModule, so the legacy exporter takes over (and says so) ------------

@pytest.mark.slow
def test_torchscript_falls_back_to_the_legacy_exporter(factory_model):
    d = factory_model
    ns: dict = {}
    exec(FACTORY, ns)
    torch.jit.script(ns["build"](width=12).eval()).save(str(d / "ts.pt"))
    r = cli("export", "ts.pt", "--input-shape", "3,32,32", "--precision", "fp32", "--out", "out", cwd=d)
    assert r.returncode == 2 and "pass --trust-checkpoint" in r.stderr  # TorchScript carries code
    r = cli("export", "ts.pt", "--input-shape", "3,32,32", "--precision", "fp32", "--out", "out",
            "--trust-checkpoint", cwd=d)
    assert r.returncode == 0, r.stderr
    assert "used the legacy exporter" in r.stdout and "\x1b[" not in r.stdout
    info = json.loads((d / "out" / "report.json").read_text())["artifact_info"]["onnx"]
    assert info["exporter"] == "legacy" and "dynamo exporter failed" in info["exporter_note"]
    result = validate_dir(d / "out", num=8, trust=True)
    assert result.parity["tflite_fp32"]["reference"] == "torch" and not result.failures
