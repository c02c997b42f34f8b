"""The held-out data the INT8 benchmark (benchmarks/int8_techniques.py) judges the PP-OCR direction classifier on is
data the classifier is made for: printed text-line boxes as PaddleOCR's own detector cuts them, and rendered lines in
several fonts, half turned 180 degrees. Guards: the detector finds the lines of `page()`'s lower part; the trained
float model reads the held-out set's orientation (so top-1 agreement there measures INT8, not coin flips), while on
the `text()` probe (handwritten formulas at a slant) it is near chance, as docs/calibration.md says."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

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
