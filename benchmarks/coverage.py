"""The coverage corpus: models built with their maintainers' own code, converted by edgeport, compared with ONNX
Runtime. Writes docs/coverage.md and docs/coverage.json.

Two phases, two environments:
- A (`build`): benchmarks/coverage_corpus.py in the upstream environment (torch 2.14.1 + torchvision + timm +
  ultralytics, DEVELOPERS.md) exports every model to ONNX (opset 17, random weights, no downloads) into a cache.
- B (`convert`, this file, the project's Python): each ONNX goes through edgeport's ONNX source path
  (resolve_source -> export_step -> tflite_step, what `edgeport run model.onnx` runs) to TFLite fp32 and full INT8;
  fp32 is compared with ONNX Runtime on the original file, output by output.

    python benchmarks/coverage.py all                     # A (subprocess in /work/venv-upstream) then B
    python benchmarks/coverage.py convert --onnx-dir DIR  # B only, on an existing cache
    python benchmarks/coverage.py convert --only ppocr_v4_rec --doc -   # one model, print the row

A model "passes" when it converts, every fp32 output has cosine >= 0.99999 against ONNX Runtime on every input,
and the INT8 TFLite file loads and runs. Timings are single runs on a shared machine: noisy, recorded with the CPU.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "coverage.md"
CACHE = Path("/work/coverage-cache")
UPSTREAM_PYTHON = Path("/work/venv-upstream/bin/python")
COSINE_BAR = 0.99999
N_RANDOM, N_PHOTOS, N_CALIBRATION = 2, 2, 8
NEAR_ZERO = 1e-4


# Why a model fails, where the cause was traced (rendered under the table; a model not listed has no analysis yet)
KNOWN_CAUSES: dict[str, str] = {}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:300]}" if text else type(exc).__name__


def missing_ops(onnx_model) -> list[str]:
    """ONNX op types of the (simplified) graph that the converter has no lowering for."""
    from edgeport.export.tflite import supported_ops

    have = set(supported_ops())
    return sorted({n.op_type for n in onnx_model.graph.node} - have)


def measurement_inputs(spec, *, photos: str = "default", seed: int = 0) -> np.ndarray:
    """float32 (N, C, H, W): N_RANDOM standard-normal tensors and N_PHOTOS photographs (the calibration source
    `photos`, its validation split) preprocessed by the spec."""
    from edgeport.calibration import Split, load_samples

    rng = np.random.default_rng(seed)
    rand = rng.standard_normal((N_RANDOM, *spec.input_shape), dtype=np.float32)
    real = load_samples(photos, model_spec=spec, split=Split.VALIDATION, num=N_PHOTOS, seed=seed).array()
    return np.concatenate([rand, real.astype(np.float32)], axis=0)


def ort_outputs(onnx_model, x: np.ndarray) -> dict[str, np.ndarray]:
    """{output name: (N, ...)} of ONNX Runtime on the model (one sample per run)."""
    from edgeport.export.onnx_export import ort_session

    sess = ort_session(onnx_model.SerializeToString())
    name = sess.get_inputs()[0].name
    runs = [sess.run(None, {name: x[i:i + 1]}) for i in range(len(x))]
    return {o.name: np.concatenate([r[k] for r in runs]) for k, o in enumerate(sess.get_outputs())}


def tflite_outputs(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """{ONNX output name: (N, ...) in the ONNX layout and channel order} of a TFLite artifact, through its tensor
    map (which ONNX output each TFLite output holds, and the permutation between their layouts)."""
    from edgeport.export.tflite import load_tensor_map, tensor_map_path
    from edgeport.runtime import open_engine, run_batches
    from edgeport.runtime.layout import artifact_inputs

    engine = open_engine("tflite", path, threads=1)
    ys = run_batches(engine, [artifact_inputs(engine, x, artifact=path.name)])
    tmap = load_tensor_map(tensor_map_path(path)).tensors
    out = {}
    for d, y in zip(engine.output_details, ys):
        origin = tmap[d["name"]]
        back = np.transpose(y, np.argsort(origin.perm)) if len(origin.perm) == y.ndim else y
        if origin.channel_perm is not None:  # TFLite holds onnx[:, p]: undo it
            back = back[:, np.argsort(origin.channel_perm)]
        out[origin.onnx_name] = back
    return out


def compare(ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> dict:
    """Per output: the smallest per-sample cosine and the largest absolute error; the worst of each overall.

    A sample whose reference output is all below NEAR_ZERO in magnitude (a saturated sigmoid map on an input with
    nothing to find) has no meaningful direction: it is left out of the cosine (counted in `near_zero`) and judged
    by its absolute error, which stays in `max_abs_err`."""
    from edgeport.metrics import cosine_per_sample, max_abs_err

    per = {}
    for name, r in ref.items():
        g = got.get(name)
        if g is None or g.shape != r.shape:
            per[name] = {"error": f"shape {None if g is None else list(g.shape)} vs ONNX {list(r.shape)}"}
            continue
        live = np.abs(r.reshape(len(r), -1)).max(axis=1) >= NEAR_ZERO
        cos = cosine_per_sample(r[live], g[live]) if live.any() else np.ones(1)
        err = float(max_abs_err(r, g))
        per[name] = {"cosine_min": float(cos.min()), "max_abs_err": err,
                     "max_rel_err": err / max(float(np.abs(r).max()), 1e-30), "shape": list(r.shape),
                     "near_zero": int((~live).sum())}
    cos = [v.get("cosine_min", -1.0) for v in per.values()]
    err = [v.get("max_abs_err", float("inf")) for v in per.values()]
    rel = [v.get("max_rel_err", float("inf")) for v in per.values()]
    return {"cosine_min": min(cos), "max_abs_err": max(err), "max_rel_err": max(rel), "outputs": per}


def text_photos(folder: Path, *, n: int = 12) -> Path:
    """PNG crops of scikit-image's text() and page() scans in `folder`: real inputs for the OCR models (the
    default photographs hold no text, so a text detector's map is flat zero on them)."""
    import skimage.data
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k, img in enumerate((skimage.data.text(), skimage.data.page())):
        h, w = img.shape[:2]
        for i in range(n // 2):
            ch, cw = int(h * rng.uniform(0.3, 0.6)), int(w * rng.uniform(0.5, 0.9))
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            Image.fromarray(img[y:y + ch, x:x + cw]).convert("RGB").save(folder / f"text{k}_{i}.png")
    return folder


def convert_both(onnx_path: Path, src, calibration, *, out: Path):
    """edgeport's converter on the export step's model.onnx: fp32 and full INT8 (its defaults: int8 I/O, NHWC input,
    min/max ranges) in one call, so both share one lowering. INT8 bias correction is off: it moves biases only (the
    ops and their delegation stay the same) and took ~90 % of the conversion time. Returns (ConversionResult, the
    INT8 error or None): when INT8 fails, fp32 is converted alone so it is still measured."""
    from edgeport.export.tflite import convert

    quiet = contextlib.ExitStack()
    quiet.enter_context(contextlib.redirect_stdout(io.StringIO()))
    quiet.enter_context(contextlib.redirect_stderr(io.StringIO()))
    with quiet:
        try:
            return convert(onnx_path, out_dir=out, precisions=("fp32", "int8"), calibration=calibration,
                           bias_correction_samples=0), None
        except Exception as exc:  # noqa: BLE001  (an INT8-only failure: measure fp32 alone)
            int8_error = _first_line(exc)
        return convert(onnx_path, out_dir=out, precisions=("fp32",)), int8_error


def measure_model(onnx_file: Path, manifest: dict, *, work: Path, photos: str = "default") -> dict:
    """One corpus model through edgeport's ONNX source path: the row of docs/coverage.json."""
    import onnx

    from edgeport.calibration import Split, load_samples
    from edgeport.export.checkpoint import resolve_source
    from edgeport.export.onnx_step import export_step

    row = {k: manifest.get(k) for k in ("name", "library", "version", "kind", "builder", "exporter")}
    shutil.rmtree(work, ignore_errors=True)
    stage = "resolve"
    try:
        t0 = time.perf_counter()
        src = resolve_source(str(onnx_file), input_shape=(1, *manifest["input_shape"]),
                             contract=manifest.get("contract") or {})
        original = src.onnx_model()
        row["opset"] = max(o.version for o in original.opset_import if o.domain in ("", "ai.onnx"))
        stage = "simplify"
        with contextlib.redirect_stdout(io.StringIO()):
            exported = export_step(source=src, out_dir=work)
        simplified = onnx.load(str(exported.onnx_path))
        row["onnx_nodes"] = len(simplified.graph.node)
        row["missing_ops"] = missing_ops(simplified)
        stage = "convert"
        calib = load_samples(photos, model_spec=src.spec, split=Split.CALIBRATION, num=N_CALIBRATION,
                             input_name=src.input_names[0])
        result, int8_error = convert_both(exported.onnx_path, src, calib, out=work)
        row["convert_s"] = {k: round(v, 2) for k, v in result.timings.items()}
        row["layout_transposes"] = result.layout_transposes
        stage = "fp32"
        x = measurement_inputs(src.spec, photos=photos)
        ref = ort_outputs(original, x)
        row["fp32"] = compare(ref, tflite_outputs(result.artifacts["fp32"], x))
        stage = "int8"
        if int8_error is not None:
            raise RuntimeError(int8_error)
        row["int8"] = int8_facts(result.artifacts["int8"], result.float_tensors.get("int8") or [], ref, x,
                                 float_ops=result.int8_float_ops)
    except Exception as exc:  # noqa: BLE001  (recorded per model; the corpus goes on)
        row["failed_stage"] = stage
        row["error"] = _first_line(exc)
        row["traceback"] = traceback.format_exc()[-1500:]
    row["status"] = status(row)
    return row


def int8_facts(path: Path, float_tensors: list, ref: dict, x: np.ndarray, *, float_ops=()) -> dict:
    """Does the INT8 file run (XNNPACK delegate), does one XNNPACK delegate take the whole graph, which TFLite ops
    it leaves to the builtin kernels, which ops the converter kept float and why (float_ops.py), which float tensors
    stay, and (for information) how close it is to ONNX Runtime fp32."""
    from edgeport.export.tflite import xnnpack_coverage

    cov = xnnpack_coverage(path)
    facts = {"float_tensors": len(float_tensors), "xnnpack": str(cov), "xnnpack_complete": cov.complete,
             "xnnpack_partitions": cov.partitions, "builtin_ops": cov.builtin_ops,
             "float_ops": [f.to_json() for f in float_ops]}
    got = tflite_outputs(path, x)
    facts["runs"] = True
    facts["vs_onnx_fp32"] = {k: v for k, v in compare(ref, got).items() if k != "outputs"}
    return facts


def status(row: dict) -> str:
    """pass | fp32-mismatch | int8-failed | unsupported-op | failed (a closed set, used by the table and summary)."""
    if "error" in row:
        if row.get("missing_ops"):
            return "unsupported-op"
        return "int8-failed" if row.get("failed_stage") == "int8" else "failed"
    if row["fp32"]["cosine_min"] < COSINE_BAR:
        return "fp32-mismatch"
    return "pass" if row.get("int8", {}).get("runs") else "int8-failed"


def run_phase_b(onnx_dir: Path, *, work: Path, only: set[str] | None = None, resume: bool = False,
                log=print) -> list[dict]:
    """Measure every `<name>.onnx` with its `<name>.json` manifest in `onnx_dir` (those in `only`, when given; the
    others keep the row saved by an earlier run, `work/<name>.row.json`, if there is one; so do all models with a
    saved row when `resume`: several `convert --resume` processes share one corpus). Manifests whose build
    failed in phase A become rows with status `build-failed`."""
    rows = []
    for manifest_path in sorted(onnx_dir.glob("*.json")):
        manifest = json.loads(manifest_path.read_text())
        saved = work / f"{manifest['name']}.row.json"
        if (only is not None and manifest["name"] not in only) or (resume and saved.is_file()):
            if saved.is_file():
                rows.append(json.loads(saved.read_text()))
            continue
        if resume and not _claim(work / f"{manifest['name']}.claim"):
            continue  # another `convert --resume` process measures it
        if manifest.get("error"):
            rows.append({**{k: manifest.get(k) for k in ("name", "library", "version", "kind", "builder")},
                         "status": "build-failed", "error": manifest["error"]})
            log(f"{manifest['name']}: build failed in phase A: {manifest['error']}")
            continue
        t0 = time.perf_counter()
        photos = str(text_photos(work / "_text_photos")) if manifest.get("kind") == "ocr" else "default"
        row = measure_model(onnx_dir / manifest["onnx"], manifest, work=work / manifest["name"], photos=photos)
        rows.append(row)
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(row, indent=1))
        cos = row.get("fp32", {}).get("cosine_min")
        log(f"{row['name']}: {row['status']} fp32 cosine {cos if cos is None else f'{cos:.7f}'} "
            f"{row.get('error', '')} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return rows


def _claim(path: Path) -> bool:
    """Create `path` exclusively: True for the one process that gets it."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def cpu_line() -> str:
    from edgeport.runtime.cpu_features import cpu_features

    f = cpu_features().to_dict()
    flags = [k for k in ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx", "asimddp", "i8mm")
             if f.get(k)]
    return f"{f['model_name']} ({f['arch']}; {', '.join(flags) or 'no SIMD int8 extensions'}), 2 cores shared"


def summary_line(rows: list[dict]) -> str:
    measured = [r for r in rows if r["status"] != "build-failed"]
    ok = sum(r["status"] == "pass" for r in measured)
    pct = 100.0 * ok / len(measured) if measured else 0.0
    return (f"{ok}/{len(measured)} convert with fp32 cosine ≥ {COSINE_BAR} and INT8 that runs ({pct:.0f} %)")


def _fmt_row(r: dict) -> str:
    fp32, int8 = r.get("fp32") or {}, r.get("int8") or {}
    cos = f"{fp32['cosine_min']:.7f}" if "cosine_min" in fp32 else "–"
    err = f"{fp32['max_abs_err']:.1e}" if "max_abs_err" in fp32 else "–"
    if "max_rel_err" in fp32:
        err += f" ({fp32['max_rel_err']:.0e} of max)"
    i8 = "–"
    if int8.get("runs"):
        parts = int8.get("xnnpack_partitions")
        i8 = "runs, XNNPACK " + ("all" if int8.get("xnnpack_complete") else
                                 f"{parts} partitions" if parts is not None else int8["xnnpack"])
    secs = r.get("convert_s") or {}
    t = " / ".join(f"{secs[k]:.1f}" for k in ("convert_fp32_s", "convert_int8_s", "total_s") if k in secs) or "–"
    note = _float_note(int8.get("float_ops") or [])
    if r.get("missing_ops"):
        note = "missing: " + ", ".join(r["missing_ops"])
    elif r.get("error"):
        note = r["error"].replace("|", "\\|")[:160]
    lt = r.get("layout_transposes")
    return (f"| {r['name']} | {r.get('library')} {r.get('version') or ''} | {r.get('kind')} | {r['status']} | {cos} | "
            f"{err} | {i8} | {_builtin_cell(int8)} | {'–' if lt is None else lt} | {t} | {note} |")


def _counts(ops: dict) -> str:
    return ", ".join(f"{op} x{n}" for op, n in sorted(ops.items()))


def _builtin_cell(int8: dict) -> str:
    """The TFLite ops of the INT8 model that XNNPACK leaves to TFLite's builtin kernels ("none" when one delegate
    runs the whole graph)."""
    if not int8.get("runs"):
        return "–"
    if int8.get("xnnpack_complete"):
        return "none"
    return _counts(int8["builtin_ops"]) if int8.get("builtin_ops") else "?"


def _float_note(float_ops: list[dict]) -> str:
    """"float: Div x4, Add x4 (computed-divisor, divisor-guard)": the ops the converter kept float in INT8."""
    if not float_ops:
        return ""
    ops: dict[str, int] = {}
    for f in float_ops:
        ops[f["onnx_op"]] = ops.get(f["onnx_op"], 0) + 1
    reasons = sorted({f["reason"] for f in float_ops})
    return f"INT8 keeps float: {_counts(ops)} ({', '.join(reasons)}; see below)"


def builtin_summary(rows: list[dict]) -> list[str]:
    """Markdown lines: per TFLite op type left to the builtin kernels, in how many INT8 models and which."""
    by_op: dict[str, list[tuple[str, int]]] = {}
    for r in rows:
        for op, n in ((r.get("int8") or {}).get("builtin_ops") or {}).items():
            by_op.setdefault(op, []).append((r["name"], n))
    if not by_op:
        return []
    lines = ["## INT8 ops XNNPACK leaves to TFLite's builtin kernels", "",
             "Per TFLite op type: the INT8 models in which ai-edge-litert's XNNPACK delegate did not take it "
             "(between or after its partitions; `builtin_ops` in the JSON). Counts are ops in that model.", "",
             "| TFLite op | models | ops | where |", "|---|---:|---:|---|"]
    for op, where in sorted(by_op.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        lines.append(f"| {op} | {len(where)} | {sum(n for _, n in where)} | "
                     f"{', '.join(f'{m} ({n})' for m, n in where)} |")
    return lines + [""]


def float_summary(rows: list[dict]) -> list[str]:
    """Markdown lines: the ops edgeport keeps float inside INT8 models, per model, with the converter's reason."""
    hits = [(r["name"], f) for r in rows for f in (r.get("int8") or {}).get("float_ops") or []]
    if not hits:
        return []
    why: dict[str, str] = {}
    per: dict[tuple[str, str, str], int] = {}
    for name, f in hits:
        why[f["reason"]] = f["why"]
        key = (name, f["onnx_op"], "+".join(f["tflite_ops"]), f["reason"])
        per[key] = per.get(key, 0) + 1
    lines = ["## Ops kept float inside INT8 models", "",
             "The converter leaves these ONNX ops float in the full-INT8 TFLite model (DEQUANTIZE / QUANTIZE around "
             "them; export/tflite/float_ops.py); report.json lists them under `artifact_info.tflite_int8.float_ops` "
             "and `edgeport export` / `run` print them.", "",
             "| model | ONNX op | count | TFLite ops | reason |", "|---|---|---:|---|---|"]
    lines += [f"| {m} | {op} | {n} | {tfl} | {reason} |" for (m, op, tfl, reason), n in per.items()]
    lines += [""] + [f"- `{reason}`: {text}." for reason, text in sorted(why.items())] + [""]
    return lines


def write_doc(rows: list[dict], path: Path, *, cpu: str) -> None:
    """docs/coverage.md (table + summary + CPU) and coverage.json beside it."""
    lines = [
        "# Coverage corpus: upstream models through edgeport", "",
        "Generated by `python benchmarks/coverage.py all` (phase A builds each model with its maintainers' code in "
        "the upstream environment, torch 2.14.1; phase B converts the ONNX file through edgeport's ONNX source path). "
        "Random weights except PP-OCR (trained files shipped in rapidocr-onnxruntime 1.4.4). fp32 cosine: the "
        f"smallest per-sample cosine over every output and {N_RANDOM} standard-normal + {N_PHOTOS} photo inputs, "
        "against ONNX Runtime on the original file; max err likewise. INT8: full-integer TFLite "
        f"({N_CALIBRATION} calibration photos, bias correction off), run on the XNNPACK delegate (`all` = one "
        "delegate runs the whole graph; otherwise the number of XNNPACK partitions, with builtin kernels between "
        "them; `INT8 ops outside XNNPACK` names the TFLite ops those builtin kernels run, summed per op type in the "
        "section under the table). OCR models are measured and calibrated on crops of scikit-image's text() and page() scans; a sample "
        f"whose reference output is all below {NEAR_ZERO} (a flat sigmoid map) is left out of the cosine and judged "
        "by its absolute error (`near_zero` in the JSON). ONNX files: torch.onnx.export (TorchScript exporter, "
        "opset 17; the dynamo exporter at opset 18 where that fails, see `exporter` in the JSON), Ultralytics' own "
        "exporter, or the shipped file. Transposes: layout TRANSPOSE ops the converter inserted (fp32). Times: "
        "TensorFlow conversion seconds fp32 / int8 / the converter's total incl. lowering (single runs on a shared, "
        "loaded machine: noisy).", "",
        f"**{summary_line(rows)}**", "",
        f"CPU: {cpu}", "",
        "| model | library | kind | status | fp32 cosine | fp32 max err | INT8 | INT8 ops outside XNNPACK | "
        "transposes | convert s (fp32 / int8 / total) | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_fmt_row(r) for r in rows]
    failing = sorted({op for r in rows for op in r.get("missing_ops") or []})
    lines += ["", f"Ops without a lowering in the corpus: {', '.join(failing) or 'none'}.", ""]
    lines += builtin_summary(rows) + float_summary(rows)
    bad = [r for r in rows if r["status"] != "pass"]
    if bad:
        lines += ["## Models that do not pass", ""]
        lines += [f"- **{r['name']}** ({r['status']}, stage {r.get('failed_stage', '–')}): "
                  f"{KNOWN_CAUSES.get(r['name'], r.get('error', ''))}" for r in bad]
        lines.append("")
    path.write_text("\n".join(lines))
    slim = [{k: v for k, v in r.items() if k != "traceback"} for r in rows]
    path.with_suffix(".json").write_text(json.dumps({"summary": summary_line(rows), "cpu": cpu, "rows": slim},
                                                    indent=1) + "\n")


def run_phase_a(*, python: Path, onnx_dir: Path, only: str | None) -> None:
    """The upstream build, as a subprocess in the upstream environment (it does not import edgeport)."""
    import importlib.util

    if not python.is_file():
        raise SystemExit(f"{python} does not exist: build the upstream environment first (DEVELOPERS.md)")
    cmd = [str(python), str(ROOT / "benchmarks" / "coverage_corpus.py"), "--out", str(onnx_dir)]
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec and spec.origin:
        cmd += ["--ppocr-dir", str(Path(spec.origin).parent / "models")]
    if only:
        cmd += ["--only", only]
    subprocess.run(cmd, check=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("phase", choices=("all", "build", "convert", "render"),
                    help="render: write the doc from the rows saved in --work")
    ap.add_argument("--onnx-dir", type=Path, default=CACHE / "onnx", help="phase A output / phase B input")
    ap.add_argument("--work", type=Path, default=CACHE / "work", help="phase B conversion folders")
    ap.add_argument("--upstream-python", type=Path, default=UPSTREAM_PYTHON)
    ap.add_argument("--only", default=None, help="comma list of corpus names")
    ap.add_argument("--resume", action="store_true", help="keep saved rows; measure only models without one")
    ap.add_argument("--doc", default=str(DOC), help="output markdown (its .json beside it); '-' prints rows only")
    args = ap.parse_args(argv)
    if args.phase in ("all", "build"):
        run_phase_a(python=args.upstream_python, onnx_dir=args.onnx_dir, only=args.only)
    if args.phase == "build":
        return 0
    only = set() if args.phase == "render" else set(args.only.split(",")) if args.only else None
    rows = run_phase_b(args.onnx_dir, work=args.work, only=only, resume=args.resume)
    print(summary_line(rows))
    if args.doc != "-":
        write_doc(rows, Path(args.doc), cpu=cpu_line())
        print(f"wrote {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
