"""Every output compared, several inputs fed, 4-D outputs in the layout the user asked for, calibration problems
caught before any work.

Fast: the output kinds and task-level metrics, the per-output summary, the .npz checks of the calibration sources,
and the CLI's refusals (they stop before the converter runs). Slow: real exports of user-style models written here
(a torch factory with a segmentation map and logits, an ONNX file with an image and a second / int64 input) and the
trained PP-OCR text detector of the rapidocr-onnxruntime wheel."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tiny_models import FACTORY, TWO_OUTPUT_FACTORY, two_input_model

from edgeport.calibration import InputSpec, MissingInputs, load_samples
from edgeport.cli import main
from edgeport.errors import CalibrationError
from edgeport.metrics import box_agreement, pixel_agreement
from edgeport.models import get_spec
from edgeport.validation import OutputKind, combine, compare_outputs, output_kind, validate_dir
from edgeport.validation.validate_cli import parity_rows

# its module-scoped fixtures build once: pytest-xdist (--dist loadgroup) keeps the module on one worker
pytestmark = pytest.mark.xdist_group("test_outputs")


def report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


# ---- output kinds, task metrics, the summary (fast) ------------------------------------------------------------

@pytest.mark.parametrize("shape, kind", [
    ((8, 10), OutputKind.CLASSES), ((8, 1), OutputKind.OTHER), ((8, 21, 32, 32), OutputKind.DENSE_MAP),
    ((8, 1, 64, 64), OutputKind.OTHER), ((8, 84, 8400), OutputKind.DETECTION), ((8, 8400, 84), OutputKind.OTHER),
    ((8, 3, 4), OutputKind.OTHER), ((8, 128), OutputKind.CLASSES)])
def test_output_kind_by_shape(shape, kind):
    assert output_kind(shape) is kind


def test_sequence_outputs_are_told_from_detections_by_their_values():
    """A text recognizer's (N, T, C) per-step probabilities (PP-OCR: (N, 40, 6625)) have a detection's shape; the
    reference's values (one distribution per step, or its logarithm) make it a `sequence`, judged by whether every
    step's best class agrees; YOLO-style predictions (pixel boxes, sigmoid scores) stay detections."""
    from edgeport.metrics import sequence_agreement
    from edgeport.validation.outputs import output_metrics, task_check

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4, 40, 97))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    assert output_kind(probs.shape) is OutputKind.DETECTION  # by shape alone
    assert output_kind(probs.shape, probs) is OutputKind.SEQUENCE
    assert output_kind(probs.shape, np.log(probs)) is OutputKind.SEQUENCE
    yolo = np.concatenate([rng.uniform(0, 640, (4, 4, 400)), rng.uniform(0, 1, (4, 80, 400))], axis=1)
    assert output_kind(yolo.shape, yolo) is OutputKind.DETECTION
    assert output_kind(logits.shape, logits) is OutputKind.DETECTION and output_kind((4, 40, 1), probs[..., :1]) \
        is OutputKind.OTHER
    # CTC: class 5 is the blank (best on most steps); samples read "7 7 9", "7 9", "8", "" (blank everywhere)
    steps = np.array([[5, 7, 5, 7, 9, 9, 5, 5], [7, 7, 5, 9, 5, 5, 5, 5], [5, 5, 8, 8, 5, 5, 5, 5], [5] * 8])
    ref = np.log(np.full((4, 8, 12), 0.01))
    np.put_along_axis(ref, steps[..., None], np.log(0.89), axis=-1)
    moved = steps.copy()
    moved[1] = [7, 5, 5, 5, 9, 9, 5, 5]  # same string "7 9", blanks elsewhere
    moved[2, 3] = 5                       # still "8"
    moved[3, 0] = 3                       # "3": a new character
    out = np.log(np.full((4, 8, 12), 0.01))
    np.put_along_axis(out, moved[..., None], np.log(0.89), axis=-1)
    assert output_kind(ref.shape, ref) is OutputKind.SEQUENCE
    got = sequence_agreement(ref, out)
    assert got == {"ctc_agreement": 0.75, "ctc_blank": 5, "sequence_agreement": 0.25, "step_agreement": 26 / 32}, got
    m = output_metrics(ref, out, name="softmax", reference_name="onnx")
    assert m["kind"] == "sequence" and m["ctc_agreement"] == 0.75 and "box_agreement" not in m
    assert task_check(m) == ("ctc", 0.75)


def test_pixel_agreement_counts_positions():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((2, 3, 4, 4))
    out = ref.copy()
    out[0, :, 0, 0] = -ref[0, :, 0, 0]  # flips that pixel's argmax (3 distinct values)
    assert pixel_agreement(ref, ref) == 1.0 and pixel_agreement(ref, out) == pytest.approx(31 / 32)


def test_box_agreement_anchor_aligned():
    # (S=1, 4 + 2 classes, A=6): anchors 0-2 above the threshold in the reference
    ref = np.zeros((1, 6, 6))
    ref[0, :4, :] = [[10], [10], [4], [4]]
    ref[0, 4, :3] = 0.9
    out = ref.copy()
    assert box_agreement(ref, out) == {"box_agreement": 1.0, "boxes_reference": 3, "boxes_output": 3}
    out[0, 0, 1] = 14            # anchor 1 moves by a box width: IoU 0 -> disagrees
    out[0, 4:, 2] = [0.1, 0.8]   # anchor 2 changes class
    out[0, 5, 4] = 0.5           # anchor 4 appears only in the output
    m = box_agreement(ref, out)
    assert m == {"box_agreement": 1 / 4, "boxes_reference": 3, "boxes_output": 4}
    assert box_agreement(np.zeros((1, 6, 6)), np.zeros((1, 6, 6)))["box_agreement"] == 1.0


def test_cosine_of_a_negligible_row_is_not_noise():
    """A map that is ~1e-7 everywhere (no text in the crop) next to one that is O(1): its direction is rounding
    noise; it counts as all-zero, in both models or in one."""
    from edgeport.metrics import cosine_per_sample

    ref = np.array([[1.0, 2.0, 0.5], [1e-8, 0.0, 0.0], [1e-8, 0.0, 0.0]])
    out = np.array([[1.0, 2.0, 0.5], [0.0, 1e-8, 0.0], [0.0, 0.3, 0.0]])
    assert cosine_per_sample(ref, out).tolist() == [pytest.approx(1.0), 1.0, 0.0]
    tiny = ref[1:2] * 1e-3  # a set whose only row is small is not negligible: the floor is relative
    assert cosine_per_sample(tiny, tiny[:, ::-1].copy())[0] == 0.0


@pytest.mark.parametrize("shapes, names", [
    ([(1, 1000)], ["logits"]), ([(1, 4, 16, 16), (1, 10)], ["map", "logits"]), ([(1, 1, 160, 160)], ["map"]),
    ([(1, 21, 8, 8), (1, 21, 4, 4)], ["map_0", "map_1"]), ([(1, 84, 8400)], ["output_0"]),
    ([(1, 10), (1, 1), (1, 32, 1, 1)], ["logits", "output_1", "output_2"]),
    ([(1, 10), (1, 5)], ["logits_0", "logits_1"]),
])
def test_outputs_are_named_by_what_they_are(shapes, names):
    from edgeport.export.onnx_export import output_names

    assert output_names(shapes) == names


@pytest.mark.parametrize("factory, args, names", [(FACTORY, {}, ["logits"]),
                                                  (TWO_OUTPUT_FACTORY, {}, ["map", "logits"]),
                                                  (TWO_OUTPUT_FACTORY, {"seg_only": True}, ["map"])],
                         ids=["classifier", "map_and_logits", "map_only"])
def test_exported_output_names_are_the_tflite_names_and_signature(tmp_path, factory, args, names):
    """The exporter names a torch model's outputs by what they are (a classifier keeps `logits`, a map is `map`);
    the TFLite models name their output tensors the same and carry a serving_default signature over those names."""
    from edgeport.export.onnx_export import export_onnx
    from edgeport.export.tflite import convert
    from edgeport.runtime.engines import open_engine

    ns: dict = {}
    exec(factory, ns)
    model = export_onnx(ns["make"](**args), input_shape=(3, 16, 16), path=tmp_path / "m.onnx", exporter="legacy")
    assert [o.name for o in model.graph.output] == names
    cal = [{"input": np.random.default_rng(i).standard_normal((1, 3, 16, 16)).astype(np.float32)} for i in range(4)]
    res = convert(tmp_path / "m.onnx", out_dir=tmp_path, precisions=("fp32", "int8"), calibration=cal,
                  bias_correction_samples=0)
    for precision, path in res.artifacts.items():
        eng = open_engine("tflite", path, threads=1)
        assert eng.output_names() == names, precision
        sig = eng.interpreter.get_signature_list()
        assert list(sig) == ["serving_default"] and sig["serving_default"]["inputs"] == ["input"], sig
        assert sorted(sig["serving_default"]["outputs"]) == sorted(names), sig


def test_summary_is_the_worst_output_and_names_it():
    rng = np.random.default_rng(1)
    seg, logits = rng.standard_normal((4, 3, 8, 8)), rng.standard_normal((4, 10))
    per = compare_outputs([seg, logits], [seg + 0.3 * rng.standard_normal(seg.shape), logits],
                          names=["seg", "logits"], reference_name="onnx")
    assert [o["kind"] for o in per] == ["dense_map", "classes"]
    assert "top1_agreement" not in per[0] and "pixel_agreement" in per[0] and per[1]["top1_agreement"] == 1.0
    s = combine(per)
    assert s["worst_output"] == "seg" and s["cosine_mean"] == per[0]["cosine_mean"]
    assert s["max_abs_err"] == per[0]["max_abs_err"] and s["top1_agreement"] == 1.0 and s["n_samples"] == 4
    assert [o["name"] for o in s["outputs"]] == ["seg", "logits"] and "n_samples" not in s["outputs"][0]
    with pytest.raises(ValueError, match="output 'seg'"):
        compare_outputs([seg], [seg[:, :, :4]], names=["seg"], reference_name="onnx")


# ---- several inputs from an .npz (fast) ---------------------------------------------------------------------

IDS = InputSpec("ids", (1, 4), "int64", high=10)


@pytest.mark.parametrize("arrays, message", [
    ({"images": np.zeros((3, 3, 16, 16), np.float32)}, "no array for model input 'ids'; expected (3, 4) int64"),
    ({"images": np.zeros((3, 3, 16, 16), np.float32), "ids": np.zeros((3, 5), np.int64)},
     "input 'ids' has shape (3, 5); expected (3, 4) int64"),
    ({"images": np.zeros((3, 3, 16, 16), np.float32), "ids": np.zeros((3, 4), np.float32)},
     "input 'ids' is float32; expected (3, 4) int64"),
    ({"images": np.zeros((3, 3, 16, 16), np.float32), "ids": np.zeros((2, 4), np.int64)},
     "input 'ids' has shape (2, 4); expected (3, 4) int64"),
])
def test_npz_other_inputs_are_checked_by_name(tmp_path, arrays, message):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    with pytest.raises(CalibrationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_samples(str(path), model_spec=get_spec("mobilenet_v2"), input_shape=(3, 16, 16), input_name="images",
                     other_inputs=[IDS])


def test_npz_binds_every_input_and_random_fills_only_for_validation(tmp_path):
    path = tmp_path / "d.npz"
    ids = np.arange(12).reshape(3, 4) % 10
    np.savez(path, images=np.ones((3, 16, 16, 3), np.float32), ids=ids.astype(np.int32))
    s = load_samples(str(path), model_spec=get_spec("mobilenet_v2"), input_shape=(3, 16, 16), input_name="images",
                     other_inputs=[IDS])
    first = next(iter(s))
    assert first["images"].shape == (1, 3, 16, 16) and first["ids"].dtype == np.int64
    assert (s.arrays()["ids"] == ids).all() and s.info()["other_inputs"]["ids"]["from"] == str(path)
    with pytest.raises(CalibrationError, match="gives the image input 'images' only; the model also takes ids"):
        load_samples("default", model_spec=get_spec("mobilenet_v2"), input_shape=(3, 16, 16), num=2,
                     input_name="images", other_inputs=[IDS])
    r = load_samples("default", model_spec=get_spec("mobilenet_v2"), input_shape=(3, 16, 16), num=50,
                     input_name="images", other_inputs=[IDS], missing_inputs=MissingInputs.RANDOM)
    a = r.arrays()["ids"]
    assert a.dtype == np.int64 and a.shape == (50, 4) and a.min() >= 0 and a.max() == 9  # within the table
    assert r.extras_source == "random"


# ---- calibration problems before any work (fast: nothing is converted) --------------------------------------

def _images(folder: Path, n: int) -> Path:
    from PIL import Image

    folder.mkdir()
    for i in range(n):
        Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.mark.parametrize("case", ["zero", "too_many", "two_inputs_npy", "two_inputs_default"])
def test_calibration_problems_stop_before_model_onnx(tmp_path, capsys, case):
    onnx_path = tmp_path / "two.onnx"
    onnx.save(two_input_model(), str(onnx_path))
    one = tmp_path / "one.npy"
    np.save(one, np.zeros((4, 3, 16, 16), np.float32))
    args = {"zero": ["--num-calibration", "0"],
            "too_many": ["--calibration", str(_images(tmp_path / "imgs", 3)), "--num-calibration", "5"],
            "two_inputs_npy": ["--calibration", str(one)], "two_inputs_default": []}[case]
    source = ["mobilenet_v2", "--input-shape", "3,32,32"] if case in ("zero", "too_many") else [str(onnx_path)]
    out = tmp_path / "out"
    assert main(["export", *source, "--precision", "fp32,int8", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    expected = {"zero": "--num-calibration 0", "too_many": "5 calibration samples asked, only 3 available",
                "two_inputs_npy": "the model also takes ids [1, 4] float32",
                "two_inputs_default": "gives the image input 'images' only"}[case]
    assert expected in err, err
    assert not out.exists()  # no model.onnx, no report.json


def test_small_folder_without_a_number_uses_what_it_has(tmp_path, capsys):
    path = tmp_path / "yolo.onnx"
    onnx.save(yolo_layout_model(), str(path))
    out = tmp_path / "out"
    folder = _images(tmp_path / "imgs", 3)
    assert main(["export", str(path), "--precision", "int8", "--calibration", str(folder), "--out", str(out)]) == 0
    printed = " ".join(capsys.readouterr().out.split())  # the console wraps long lines at the terminal width
    assert f"calibration: all 3 samples of {folder}" in printed
    assert report(out)["calibration"]["calibration"]["count"] == 3


# ---- several outputs, several inputs, int64 inputs: real exports (slow) -------------------------------------

@pytest.fixture(scope="module")
def factory_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("user") / "segnet.py"
    path.write_text(TWO_OUTPUT_FACTORY)
    return path


def _tflite_output_shapes(path: Path) -> list[list[int]]:
    from edgeport.runtime.engines import open_engine

    eng = open_engine("tflite", path, threads=1)
    return [list(map(int, d["shape"])) for d in eng.output_details]


@pytest.mark.slow
@pytest.mark.parametrize("seg_only", [False, True], ids=["seg_and_logits", "seg_only"])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_output_layout_and_every_output_compared(factory_file, tmp_path, capsys, layout, seg_only):
    out = tmp_path / "out"
    args = ["export", f"{factory_file}:make", "--input-shape", "3,16,16", "--precision", "fp32", "--out", str(out),
            "--output-layout", layout] + (["--arg", "seg_only=true"] if seg_only else [])
    assert main(args) == 0, capsys.readouterr().err
    rep = report(out)
    assert rep["artifact_info"]["tflite_fp32"]["output_layout"] == layout
    seg_shape = [1, 4, 16, 16] if layout == "nchw" else [1, 16, 16, 4]
    assert _tflite_output_shapes(out / "model_fp32.tflite") == [seg_shape] + ([] if seg_only else [[1, 10]])
    capsys.readouterr()
    assert main(["validate", str(out), "--num-validation", "8"]) == 0
    shown = capsys.readouterr().out
    p = report(out)["parity"]["tflite_fp32"]
    kinds = [o["kind"] for o in p["outputs"]]
    assert kinds == (["dense_map"] if seg_only else ["dense_map", "classes"])
    assert p["passed"] and p["reference"] == "torch" and all(o["passed"] for o in p["outputs"])
    assert all(o["cosine_mean"] > 0.99999 and o["pixel_agreement"] == 1.0 for o in p["outputs"][:1])
    assert ("top1_agreement" in p) is (not seg_only)
    assert "pixel 1.000" in shown and all(len(line) <= 80 for line in shown.splitlines())


@pytest.mark.parametrize("ids_type, gather", [(TensorProto.FLOAT, False), (TensorProto.INT64, False),
                                              (TensorProto.INT64, True)], ids=["float", "int64_cast", "int64_gather"])
def test_two_input_models_export_validate_and_int8_from_npz(tmp_path, capsys, ids_type, gather):
    """Issue 20 item 7: what export accepted, validate runs (no traceback); INT8 calibrates from an .npz keyed by
    input name; every output is compared."""
    path = tmp_path / "two.onnx"
    onnx.save(two_input_model(ids_type, gather=gather), str(path))
    out = tmp_path / "fp32"
    assert main(["export", str(path), "--precision", "fp32", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["validate", str(out), "--num-validation", "8"]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "seeded random data" in printed and "ids" in printed
    p = report(out)["parity"]["tflite_fp32"]
    assert [o["name"] for o in p["outputs"]] == ["y", "z"] and p["passed"] and p["cosine_mean"] > 0.99999
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 10, (16, 4)) if ids_type == TensorProto.INT64 else rng.standard_normal((16, 4))
    data = tmp_path / "calib.npz"
    np.savez(data, images=rng.standard_normal((16, 3, 16, 16)).astype(np.float32),
             ids=ids.astype(np.int64 if ids_type == TensorProto.INT64 else np.float32))
    out8 = tmp_path / "int8"
    assert main(["export", str(path), "--precision", "fp32,int8", "--calibration", str(data), "--out",
                 str(out8)]) == 0, capsys.readouterr().err
    rep = report(out8)
    assert rep["calibration"]["calibration"]["other_inputs"]["ids"]["from"] == str(data)
    res = validate_dir(out8, num=8, save=False, layers=True, layers_plot=False)
    assert set(res.parity) == {"tflite_fp32", "tflite_int8", "onnx_int8"}
    # per-layer attribution feeds both inputs to both models: the tensors of each input's branch are compared
    rows = {r["onnx_tensor"]: r for r in res.layers["layers"]}
    assert {"y", "z"} <= set(rows) and res.layers["n_samples"] == 8, sorted(rows)
    parity = {o["name"]: o["sqnr_db"] for o in res.parity["tflite_int8"]["outputs"]}  # the same samples, both inputs
    assert all(abs(rows[n]["sqnr_db"] - parity[n]) < 0.5 and rows[n]["sqnr_db"] > 10 for n in "yz"), (rows, parity)
    assert not any("--layers" in n for n in res.notes), res.notes
    for name in ("tflite_int8", "onnx_int8"):
        assert [o["name"] for o in res.parity[name]["outputs"]] == ["y", "z"]
        assert res.parity[name]["cosine_mean"] > 0.99, (name, res.parity[name])
    rows = parity_rows(res)
    assert len(rows) == 6 and [r[1] for r in rows[:2]] == ["y", "z"] and rows[1][0] == ""


def yolo_layout_model() -> onnx.ModelProto:
    """images (1, 3, 16, 16) -> a 1x1 conv to 4 box + 2 class channels -> (1, 6, 256) predictions: the
    (N, 4 + K, A) layout of YOLOv8-style heads (boxes ~ 16 * sigmoid, scores sigmoid)."""
    rng = np.random.default_rng(0)
    w = helper.make_tensor("w", TensorProto.FLOAT, [6, 3, 1, 1], rng.standard_normal(18).tolist())
    g = helper.make_graph(
        [helper.make_node("Conv", ["images", "w"], ["c"]), helper.make_node("Sigmoid", ["c"], ["s"]),
         helper.make_node("Reshape", ["s", "shape"], ["r"]), helper.make_node("Mul", ["r", "scale"], ["pred"])],
        "yolo", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("pred", TensorProto.FLOAT, [1, 6, 256])],
        [w, helper.make_tensor("shape", TensorProto.INT64, [3], [1, 6, 256]),
         helper.make_tensor("scale", TensorProto.FLOAT, [1, 6, 1], [16, 16, 8, 8, 1, 1])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_detection_layout_output_gets_box_agreement(tmp_path, capsys):
    path = tmp_path / "yolo.onnx"
    onnx.save(yolo_layout_model(), str(path))
    out = tmp_path / "out"
    assert main(["export", str(path), "--precision", "fp32", "--out", str(out)]) == 0, capsys.readouterr().err
    res = validate_dir(out, num=4, save=False)
    [o] = res.parity["tflite_fp32"]["outputs"]
    assert o["kind"] == "detection" and o["box_agreement"] == 1.0 and o["boxes_reference"] > 0, o
    assert "top1_agreement" not in o and parity_rows(res)[0][5] == "boxes 1.000"


def ppocr_det() -> Path:
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or spec.origin is None:
        pytest.skip("rapidocr-onnxruntime==1.4.4 is not installed (the test extra)")
    return Path(spec.origin).parent / "models" / "ch_PP-OCRv4_det_infer.onnx"


@pytest.mark.slow
def test_ppocr_det_probability_map_in_the_source_layout(tmp_path, capsys):
    """The trained PP-OCRv4 text detector: one (N, 1, H, W) probability map, kept NCHW by default and compared on
    scikit-image's text and page photos. The centre crop of text() holds no text: its map is ~1e-7 everywhere and
    counts as all-zero in cosine (edgeport.metrics.NEGLIGIBLE_NORM), so the fp32 thresholds hold."""
    import skimage.data
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("text", "page"):
        Image.fromarray(np.stack([getattr(skimage.data, name)()] * 3, -1)).save(photos / f"{name}.png")
    out = tmp_path / "det"
    assert main(["export", str(ppocr_det()), "--input-shape", "3,160,160", "--precision", "fp32", "--preprocess",
                 "imagenet", "--channel-order", "bgr", "--out", str(out)]) == 0, capsys.readouterr().err
    assert _tflite_output_shapes(out / "model_fp32.tflite") == [[1, 1, 160, 160]]
    res = validate_dir(out, samples=str(photos), save=False)
    [o] = res.parity["tflite_fp32"]["outputs"]
    assert o["kind"] == "other" and o["shape"] == [1, 160, 160] and res.samples["count"] == 2
    assert o["sqnr_db"] > 60 and o["max_abs_err"] < 1e-3 and o["cosine_min"] > 0.99999, o
    assert res.parity["tflite_fp32"]["passed"]
