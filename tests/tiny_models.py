"""The tiny models the tests share, made by the project's own export (`edgeport export`), each defined once here.

`make_bench_dir(path)` runs `edgeport export tiny.py:make --input-shape 3,16,16 --precision fp32,int8` on a tiny
CNN (conv-BN-ReLU, depthwise, pointwise, global pool, linear; 10 classes), calibrated on 16 random NCHW arrays. The
folder then holds exactly what a user's export holds: model.onnx (NCHW), model_fp32.tflite and model_int8.tflite
(NHWC, int8 input/output), model_int8.onnx (QDQ) and a report.json that lists them. Its calibration .npy holds
bundled photos (`photo_calibration`), the distribution validation checks on.

`TWO_OUTPUT_FACTORY` is a user-style factory file with two outputs from one input (a 4-class map and 10 logits;
`make(seg_only=True)` returns the map alone); `cached_two_output_dir` exports it the same way: what validation and
device parity must compare output by output. `two_input_model()` is an ONNX model with two inputs (an image and a
second tensor, float or int64): what calibration, validation and device parity must feed input by input.

Kept tiny on purpose: under qemu-user emulation every inference is 300-600x slower than on x86.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

SHAPE_NCHW = (1, 3, 16, 16)
NUM_CLASSES = 10

FACTORY = '''
import torch
import torch.nn as nn


def make():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), nn.ReLU(),
        nn.Conv2d(8, 16, 1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    ).eval()
'''


# Two outputs from one input: a 4-class map (N, 4, 16, 16) and 10 logits (N, 10), both off shared features;
# `make(seg_only=True)`: the map alone.
TWO_OUTPUT_FACTORY = '''
import torch
import torch.nn as nn


class SegAndClasses(nn.Module):
    """conv features -> a 4-class segmentation map (N, 4, H, W) and 10 logits (N, 10)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.seg = nn.Conv2d(8, 4, 1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        f = self.features(x)
        return self.seg(f), self.fc(f.mean((2, 3)))


class SegOnly(SegAndClasses):
    def forward(self, x):
        return self.seg(self.features(x))


def make(seg_only=False):
    torch.manual_seed(0)
    return (SegOnly() if seg_only else SegAndClasses()).eval()
'''


def two_input_model(ids_type=None, *, gather: bool = False):
    """An onnx.ModelProto: images (N, 3, 16, 16) float and ids (N, 4) -> y = images * 2 (a 4-D map) and z (N, 4):
    ids * 2 (Cast first for an integer input), or with `gather` an embedding lookup of int64 ids in a 10-row table,
    summed over the ids. `ids_type`: an onnx.TensorProto element type (default FLOAT)."""
    from onnx import TensorProto, helper

    ids_type = TensorProto.FLOAT if ids_type is None else ids_type
    if gather:
        table = helper.make_tensor("table", TensorProto.FLOAT, [10, 4], np.linspace(-1, 1, 40).tolist())
        ids_nodes = [helper.make_node("Gather", ["table", "ids"], ["emb"], axis=0),
                     helper.make_node("ReduceSum", ["emb", "axes1"], ["idsf"], keepdims=0)]
        inits = [table, helper.make_tensor("axes1", TensorProto.INT64, [1], [1])]
    else:
        ids_nodes = ([helper.make_node("Cast", ["ids"], ["idsf"], to=1)] if ids_type != TensorProto.FLOAT
                     else [helper.make_node("Identity", ["ids"], ["idsf"])])
        inits = []
    g = helper.make_graph(
        [helper.make_node("Mul", ["images", "two"], ["y"]), *ids_nodes,
         helper.make_node("Mul", ["idsf", "two"], ["z"])],
        "two", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 16, 16]),
                helper.make_tensor_value_info("ids", ids_type, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 16, 16]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]), *inits])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def photo_calibration(num: int) -> np.ndarray:
    """`num` NCHW calibration arrays (3x16x16) from the bundled photos under the ImageNet contract a factory model
    gets by default: what a user saves as `calib.npy`, drawn from the distribution `validate`'s held-out photos come
    from (random-normal arrays would calibrate INT8 ranges for data the model is never checked on)."""
    from edgeport.calibration import Split, load_samples
    from edgeport.export.checkpoint import user_spec

    spec = user_spec("tiny", SHAPE_NCHW[1:])
    return load_samples("default", model_spec=spec, input_shape=SHAPE_NCHW[1:], split=Split.CALIBRATION, num=num,
                        seed=0).array().astype(np.float32)


def make_bench_dir(path: Path, *, factory: str = FACTORY) -> Path:
    """`edgeport export` of the tiny CNN (or another `factory` source with a `make()`, input 3x16x16) into `path`
    (fp32 + INT8). Raises AssertionError if the export fails."""
    from edgeport.cli import main

    path = Path(path)
    work = path.parent / (path.name + "-src")
    work.mkdir(parents=True, exist_ok=True)
    (work / "tiny.py").write_text(factory)
    np.save(work / "calib.npy", photo_calibration(16))
    rc = main(["--quiet", "export", f"{work / 'tiny.py'}:make", "--input-shape", "3,16,16", "--out", str(path),
               "--exporter", "legacy", "--precision", "fp32,int8", "--calibration", str(work / "calib.npy"),
               "--num-calibration", "16"])
    assert rc == 0, f"edgeport export of the tiny model failed with exit {rc}"
    return path


def cached_bench_dir(tmp_root: Path, *, name: str = "tiny-bench", factory: str = FACTORY) -> Path:
    """Export once per test session (TF + converter imports take seconds); callers copy it with `copy_bench_dir`."""
    done = Path(tmp_root) / name / ".complete"
    if not done.exists():
        shutil.rmtree(done.parent, ignore_errors=True)
        make_bench_dir(done.parent, factory=factory)
        done.write_text("ok")
    return done.parent


def cached_two_output_dir(tmp_root: Path) -> Path:
    """The export of TWO_OUTPUT_FACTORY (a map and logits), once per test session; copy it with `copy_bench_dir`."""
    return cached_bench_dir(tmp_root, name="two-output-bench", factory=TWO_OUTPUT_FACTORY)


def copy_bench_dir(src: Path, dst: Path) -> Path:
    """A private copy (bench appends to report.json)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".complete"))
    return dst
