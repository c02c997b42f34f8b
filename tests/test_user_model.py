"""The user's own model through every command: a `file.py:factory` source with builder arguments and a checkpoint
is exported, rebuilt from report.json `source` by `validate` (torch is the reference), and refused with one line
when the factory file changed since the export."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

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
