"""Step 1 (edgeport's environment): everything every route starts from, per model, in WORK/models/<key>/.

- `state_dict.pt` + `model.json`: the exact weights (after edgeport's checkpoint loader) and how to rebuild the
  module; litert-torch converts from these.
- `model.onnx`: `edgeport.export.onnx_export.export_onnx` (dynamo exporter, simplified); edgeport and onnx2tf convert
  from this same file. `bound/model.onnx`: the same weights with the channel shuffles deleted (ShuffleNet family).
- `calib_nchw.npy` / `calib_nhwc.npy`: the calibration samples (real images, normalised per the spec), shared by
  every INT8 route. `heldout.npy` (+ `heldout_labels.npy` when the source has labels): held-out real images from the
  disjoint validation split; `ref_logits.npy`: torch fp32 logits on them.
Writes `prepare.json` per model: shapes, sources, export time, ORT-vs-torch check.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from common import BenchModel, model_dir, write_json

ONNX2TF_SAMPLE_NAME = "calibration_image_sample_data_20x128x128x3_float32.npy"


def prepare_model(m: BenchModel, *, work: Path, n_calib: int, n_heldout: int, seed: int) -> dict:
    from edgeport.calibration import load_samples
    from edgeport.export.checkpoint import resolve_source
    from edgeport.export.onnx_export import export_onnx, verify_onnx

    d = model_dir(work, m.key)
    d.mkdir(parents=True, exist_ok=True)
    src = resolve_source(m.zoo, checkpoint=m.checkpoint, builder_args=m.builder_args)
    module, spec = src.module.eval(), src.spec
    torch.save(module.state_dict(), d / "state_dict.pt")
    info = {"key": m.key, "zoo": m.zoo, "builder_args": m.builder_args, "checkpoint": m.checkpoint,
            "checkpoint_format": getattr(src, "checkpoint_format", None), "input_shape": list(spec.input_shape),
            "num_classes": spec.num_classes, "note": m.note, "data": m.data}
    write_json(d / "model.json", {"zoo": m.zoo, "builder_args": m.builder_args,
                                  "state_dict": str(d / "state_dict.pt"), "input_shape": list(spec.input_shape)})

    calib = load_samples(m.data, model_spec=spec, split="calibration", num=n_calib, seed=seed)
    held = load_samples(m.data, model_spec=spec, split="validation", num=n_heldout, seed=seed)
    c_arr, h_arr = calib.array(), held.array()
    if set(calib.ids) & set(held.ids):
        raise RuntimeError(f"{m.key}: calibration and held-out samples overlap")
    np.save(d / "calib_nchw.npy", c_arr)
    np.save(d / "calib_nhwc.npy", np.ascontiguousarray(c_arr.transpose(0, 2, 3, 1)))
    np.save(d / "heldout.npy", h_arr)
    if held.labels is not None:
        np.save(d / "heldout_labels.npy", np.asarray(held.labels, dtype=np.int64))
    with torch.no_grad():
        ref = torch.cat([module(torch.from_numpy(h_arr[i:i + 16])) for i in range(0, len(h_arr), 16)]).numpy()
    np.save(d / "ref_logits.npy", ref)
    info["calibration"] = calib.info() | {"description": calib.description}
    info["heldout"] = held.info() | {"description": held.description}
    if held.labels is not None:
        info["torch_label_accuracy"] = float((ref.argmax(1) == np.asarray(held.labels)).mean())

    t0 = time.perf_counter()
    export_onnx(module, input_shape=spec.input_shape, path=d / "model.onnx")
    info["onnx_export_s"] = round(time.perf_counter() - t0, 2)
    ver = verify_onnx(module, onnx_path=d / "model.onnx", inputs=[h_arr[i:i + 1] for i in range(4)])
    info["onnx_vs_torch"] = ver.as_dict()

    if m.bound_args is not None:
        from edgeport.models import build_model

        bound = build_model(m.zoo, **{**m.builder_args, **m.bound_args})
        bound.load_state_dict(module.state_dict())  # the shuffle has no parameters: same weights
        (d / "bound").mkdir(exist_ok=True)
        export_onnx(bound.eval(), input_shape=spec.input_shape, path=d / "bound" / "model.onnx")
        info["bound_args"] = m.bound_args
    write_json(d / "prepare.json", info)
    return info


def write_onnx2tf_sample_file(directory: Path, *, seed: int) -> Path:
    """onnx2tf reads `calibration_image_sample_data_20x128x128x3_float32.npy` from its working directory and downloads
    it from GitHub when absent, even for fp32 conversions. Write one from real photographs (skimage's calibration
    photos, random resized crops), RGB in [0, 1], NHWC float32 (20, 128, 128, 3): the layout onnx2tf expects."""
    from edgeport.calibration.photos import load_photo, photos_for

    rng = np.random.default_rng(seed)
    names = photos_for("calibration")
    out = np.empty((20, 128, 128, 3), np.float32)
    from skimage.transform import resize

    for i in range(20):
        img = load_photo(names[i % len(names)])
        h, w = img.shape[:2]
        s = int(min(h, w) * rng.uniform(0.5, 1.0))
        y, x = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
        out[i] = resize(img[y:y + s, x:x + s], (128, 128), anti_aliasing=True, preserve_range=True) / 255.0
    path = directory / ONNX2TF_SAMPLE_NAME
    directory.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return path
