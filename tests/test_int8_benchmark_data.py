"""The held-out data the INT8 benchmark (benchmarks/int8_techniques.py) judges the PP-OCR direction classifier on is
data the classifier is made for: printed text-line boxes as PaddleOCR's own detector cuts them, and rendered lines in
several fonts, half turned 180 degrees. Guards: the detector finds the lines of `page()`'s lower part; the trained
float model reads the held-out set's orientation (so top-1 agreement there measures INT8, not coin flips), while on
the `text()` probe (handwritten formulas at a slant) it is near chance, as docs/calibration.md says. The recognizer's
set (slow) guards the range-method defaults on a real trained checkpoint."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _bench():
    sys.path.insert(0, str(REPO / "benchmarks"))
    import int8_techniques

    return int8_techniques


def test_detector_cuts_the_printed_lines_of_the_lower_page():
    import skimage.data

    lines = _bench()._detected_lines(skimage.data.page(), min_row=95)
    assert len(lines) >= 6 and len(lines) % 3 == 0, len(lines)  # each line whole and halved
    whole = lines[::3]
    assert all(c.shape[0] >= 12 and c.shape[1] > 2 * c.shape[0] for c in whole), [c.shape for c in whole]
    assert all(c.mean() < 230 for c in whole)  # ink, not blank paper


def test_cls_held_out_set_is_readable_by_the_float_model_and_the_probe_is_not(tmp_path):
    from edgeport.metrics import accuracy

    b = _bench()
    cal, xv, ref, desc, labels, probes = b._ppocr_cls_model(tmp_path)
    assert len(cal) >= 80 and len(xv) >= 150, (len(cal), len(xv))
    assert abs(labels.mean() - 0.5) < 0.01  # half turned 180 degrees
    assert xv.shape[1:] == (3, 48, 192) and np.isfinite(xv).all()
    acc = accuracy(ref, labels)
    assert acc >= 0.85, f"float direction accuracy {acc:.3f} on the held-out printed lines"
    xp, refp, lp = probes["text() handwriting"]
    assert accuracy(refp, lp) <= 0.7  # the probe is out of the model's domain, hence not a target
    assert "held-out printed lines" in desc


@pytest.mark.slow
def test_default_ranges_read_the_recognizers_lines_as_the_float_model_does(tmp_path):
    """The trained PP-OCRv4 recognizer (rapidocr-onnxruntime's ONNX file) on its benchmark set: 201 held-out text
    lines, strings identical to the float model's after CTC decoding. The default range methods are what decided
    them (docs/calibration.md, *Which range method is the default*): TFLite per-tensor 91.5 % vs min/max 59.2 %, ORT
    percentile 69.2 % vs min/max 26.4 % (AMD EPYC, AVX-512 VNNI). Guards: the float model reads the rendered lines,
    the defaults stay well ahead of min/max, and validation judges this output as a sequence, not a detection."""
    from edgeport.export.ort_int8 import quantize_onnx_int8
    from edgeport.export.tflite import convert
    from edgeport.validation import run_artifact
    from edgeport.validation.outputs import output_metrics

    b = _bench()
    cal, xv, ref, desc, labels, _ = b._ppocr_rec_model(tmp_path)
    alphabet = b._rec_alphabet(tmp_path / "model.onnx")
    assert b.rec_figures(ref, ref, labels, alphabet)["reference_accuracy"] >= 0.85
    strings = {}
    for method in (None, "minmax"):  # None: the converter's default
        res = convert(tmp_path / "model.onnx", out_dir=tmp_path / f"tfl_{method}", precisions=["int8"],
                      calibration=cal, calibration_method=method)
        y = run_artifact(res.artifacts["int8"], xv)
        strings[f"tflite {method or 'default'}"] = b.rec_figures(ref, y, labels, alphabet)["strings_identical"]
        if method is None:
            assert res.calibration["tflite_method"] == "per-tensor"
            m = output_metrics(ref, y, name="probs", reference_name="onnx")
            assert m["kind"] == "sequence" and m["ctc_agreement"] == strings["tflite default"], m
    for method in ("percentile", "minmax"):
        out = tmp_path / f"ort_{method}.onnx"
        quantize_onnx_int8(onnx_path=tmp_path / "model.onnx", out_path=out, calibration=cal, method=method,
                           bias_correction=True)
        strings[f"ort {method}"] = b.rec_figures(ref, run_artifact(out, xv), labels, alphabet)["strings_identical"]
    assert strings["tflite default"] >= 0.88 and strings["tflite default"] > strings["tflite minmax"] + 0.2, strings
    assert strings["ort percentile"] > strings["ort minmax"] + 0.2, strings
