"""The CI slice of the coverage corpus (benchmarks/coverage.py): the same code path as the benchmark on models the
project's own environment can build, so the corpus code cannot rot while the whole corpus (upstream environment,
DEVELOPERS.md) runs as a benchmark.

- phase A (`coverage_corpus.build_one`) on the trained PP-OCR direction classifier shipped in rapidocr-onnxruntime
  (the test extra) and on a small conv + attention model exported here by the torch exporter path;
- phase B (`coverage.run_phase_b`) converts both to TFLite fp32 + INT8 through edgeport's ONNX source path and
  compares with ONNX Runtime; `write_doc` writes the table, the summary line and the JSON.
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str, module_name: str):
    """A benchmark script as a module, by path (benchmarks/coverage.py would otherwise clash with coverage.py, the
    test-coverage package, if that is installed)."""
    spec = importlib.util.spec_from_file_location(module_name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def corpus_modules():
    names = ("edgeport_bench_coverage", "edgeport_bench_coverage_corpus")
    yield _load("coverage", names[0]), _load("coverage_corpus", names[1])
    for name in names:
        sys.modules.pop(name, None)


def _tiny_hybrid():
    """A conv stem, one pre-norm attention block (LayerNorm, multi-head attention, GELU MLP) and a linear head:
    the op mix of the corpus's hybrid models at 32x32."""
    import torch
    import torch.nn as nn

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
                                      nn.Conv2d(16, 32, 3, 2, 1))
            self.norm1, self.norm2 = nn.LayerNorm(32), nn.LayerNorm(32)
            self.attn = nn.MultiheadAttention(32, 4, batch_first=True)
            self.mlp = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32))
            self.head = nn.Linear(32, 10)

        def forward(self, x):
            t = self.stem(x).flatten(2).transpose(1, 2)  # (N, 64, 32) tokens
            h = self.norm1(t)
            t = t + self.attn(h, h, h, need_weights=False)[0]
            t = t + self.mlp(self.norm2(t))
            return self.head(t.mean(1))

    torch.manual_seed(0)
    return Tiny().eval()


@pytest.mark.slow
def test_corpus_slice_through_the_benchmark_code(tmp_path, corpus_modules):
    coverage, coverage_corpus = corpus_modules
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    assert spec is not None and spec.origin, "rapidocr-onnxruntime==1.4.4 (the test extra) must be installed"
    coverage_corpus.PPOCR_DIR = str(Path(spec.origin).parent / "models")
    onnx_dir = tmp_path / "onnx"
    onnx_dir.mkdir()
    cls = next(e for e in coverage_corpus.corpus() if e.name == "ppocr_cls_mobile_v2")
    tiny = coverage_corpus.CorpusModel("tiny_hybrid", "torch", "classifier", (3, 32, 32), _tiny_hybrid,
                                       builder="tests/test_coverage_corpus.py _tiny_hybrid")
    for entry in (cls, tiny):
        manifest = coverage_corpus.build_one(entry, onnx_dir)
        assert "error" not in manifest, manifest.get("traceback")
    assert json.loads((onnx_dir / "tiny_hybrid.json").read_text())["exporter"].startswith("torch.onnx.export")

    rows = {r["name"]: r for r in coverage.run_phase_b(onnx_dir, work=tmp_path / "work", log=lambda *a, **k: None)}
    assert set(rows) == {"ppocr_cls_mobile_v2", "tiny_hybrid"}
    for name, row in rows.items():
        assert row["status"] == "pass", (name, row.get("error"), row.get("traceback"))
        assert row["fp32"]["cosine_min"] >= coverage.COSINE_BAR and row["int8"]["runs"]
        assert row["missing_ops"] == [] and row["layout_transposes"] >= 0
        assert isinstance(row["int8"]["builtin_ops"], dict) and row["int8"]["float_ops"] == []
    assert rows["ppocr_cls_mobile_v2"]["opset"] == 11  # an old-opset file through INT8
    assert rows["tiny_hybrid"]["int8"]["vs_onnx_fp32"]["cosine_min"] > 0.9

    doc = tmp_path / "coverage.md"
    coverage.write_doc(list(rows.values()), doc, cpu="test cpu")
    text = doc.read_text()
    assert "**2/2 convert with fp32 cosine ≥ 0.99999 and INT8 that runs (100 %)**" in text
    assert "| ppocr_cls_mobile_v2 | rapidocr-onnxruntime" in text and "CPU: test cpu" in text
    saved = json.loads(doc.with_suffix(".json").read_text())
    assert saved["summary"].startswith("2/2") and len(saved["rows"]) == 2
    # a saved row is reused when the model is not asked for again
    again = coverage.run_phase_b(onnx_dir, work=tmp_path / "work", only={"tiny_hybrid"}, log=lambda *a, **k: None)
    assert {r["name"] for r in again} == {"ppocr_cls_mobile_v2", "tiny_hybrid"}


def test_status_is_a_closed_set(corpus_modules):
    coverage, _ = corpus_modules
    ok = {"fp32": {"cosine_min": 1.0}, "int8": {"runs": True}}
    assert coverage.status(ok) == "pass"
    assert coverage.status({**ok, "fp32": {"cosine_min": 0.99}}) == "fp32-mismatch"
    assert coverage.status({"error": "x", "missing_ops": ["Foo"]}) == "unsupported-op"
    assert coverage.status({"error": "x", "failed_stage": "int8", "fp32": {"cosine_min": 1.0}}) == "int8-failed"
    assert coverage.status({"error": "x", "failed_stage": "convert", "missing_ops": []}) == "failed"


def _row(name: str, int8: dict) -> dict:
    return {"name": name, "library": "timm", "version": "1.0", "kind": "classifier", "status": "pass",
            "fp32": {"cosine_min": 1.0, "max_abs_err": 1e-6, "max_rel_err": 1e-7}, "int8": {"runs": True, **int8}}


def test_doc_names_the_int8_ops_outside_xnnpack_and_the_ones_kept_float(tmp_path, corpus_modules):
    coverage, _ = corpus_modules
    div = {"onnx_node": "/attn/Div_1", "onnx_op": "Div", "onnx_output": "d", "tflite_ops": ["DIV"],
           "reason": "computed-divisor", "why": "divides by a tensor computed at run time"}
    rows = [_row("vit", {"xnnpack_complete": False, "xnnpack_partitions": 11, "xnnpack": "11 partitions",
                         "builtin_ops": {"BATCH_MATMUL": 8, "RELU": 4}, "float_ops": [div, div]}),
            _row("cnn", {"xnnpack_complete": True, "xnnpack_partitions": 1, "xnnpack": "all", "builtin_ops": {},
                         "float_ops": []}),
            _row("v3", {"xnnpack_complete": False, "xnnpack_partitions": 2, "xnnpack": "2 partitions",
                        "builtin_ops": {"RELU": 1}, "float_ops": []})]
    doc = tmp_path / "coverage.md"
    coverage.write_doc(rows, doc, cpu="test cpu")
    text = doc.read_text()
    assert "| vit | timm 1.0 | classifier | pass | 1.0000000 | 1.0e-06 (1e-07 of max) | runs, XNNPACK 11 partitions | " \
           "BATCH_MATMUL x8, RELU x4 |" in text
    assert "| cnn | timm 1.0 | classifier | pass | 1.0000000 | 1.0e-06 (1e-07 of max) | runs, XNNPACK all | none |" in text
    assert "INT8 keeps float: Div x2 (computed-divisor; see below)" in text
    assert "| RELU | 2 | 5 | vit (4), v3 (1) |" in text and "| BATCH_MATMUL | 1 | 8 | vit (8) |" in text
    assert "| vit | Div | 2 | DIV | computed-divisor |" in text
    assert "- `computed-divisor`: divides by a tensor computed at run time." in text
