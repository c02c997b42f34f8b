"""Small real artifacts for the runtime tests, built directly (torch -> ONNX; TF -> .tflite fp32 and full INT8).

`make_bench_dir(path)` writes model.onnx, model_fp32.tflite, model_int8.tflite (int8 input/output) and a report.json
that lists them, like `edgeport export` does. Input: NCHW (1, 3, 16, 16) for ONNX, NHWC (1, 16, 16, 3) for TFLite.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

SHAPE_NCHW = (1, 3, 16, 16)
NUM_CLASSES = 10


def make_onnx(path: Path) -> Path:
    import torch
    import torch.nn as nn

    from edgeport.export.onnx_export import export_onnx

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, NUM_CLASSES)).eval()
    export_onnx(model, input_shape=SHAPE_NCHW[1:], path=path, exporter="legacy")
    return path


def make_tflite(fp32_path: Path, int8_path: Path) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    inp = tf.keras.Input(shape=(16, 16, 3), batch_size=1)
    x = tf.keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = tf.keras.layers.DepthwiseConv2D(3, strides=2, padding="same", activation="relu")(x)
    x = tf.keras.layers.Conv2D(16, 1, activation="relu")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    out = tf.keras.layers.Dense(NUM_CLASSES)(x)
    model = tf.keras.Model(inp, out)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    fp32_path.write_bytes(conv.convert())
    rng = np.random.default_rng(1)

    def rep():
        for _ in range(16):
            yield [rng.standard_normal((1, 16, 16, 3)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    int8_path.write_bytes(conv.convert())


def make_bench_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    make_onnx(path / "model.onnx")
    make_tflite(path / "model_fp32.tflite", path / "model_int8.tflite")
    report = {"schema_version": 1,
              "model": {"name": "tiny_test_cnn", "input_shape": list(SHAPE_NCHW), "num_classes": NUM_CLASSES},
              "artifacts": {"onnx": "model.onnx", "tflite_fp32": "model_fp32.tflite",
                            "tflite_int8": "model_int8.tflite"}}
    (path / "report.json").write_text(json.dumps(report, indent=1))
    return path


def cached_bench_dir(tmp_root: Path) -> Path:
    """Build once per test session (TF import + conversion take ~10 s); copy per test."""
    marker = tmp_root / "tiny-bench" / "report.json"
    if not marker.exists():
        make_bench_dir(tmp_root / "tiny-bench")
    return marker.parent
