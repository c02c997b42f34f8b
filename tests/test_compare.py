"""`edgeport compare MODEL...` with two tiny digits-trained zoo models: one folder per model, a table, compare.json,
compare.md and a MACs/accuracy-vs-latency scatter (compare.png)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CKPTS = ROOT / "calibration" / "checkpoints"
MODELS = ("shufflenet_v2_cifar_x0_5", "augshufflenet_x0_5")


def cli(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "edgeport.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "220", "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=timeout)


@pytest.mark.slow  # two full pipelines (~2-4 min on 2 busy cores); CI runs it
def test_compare_two_models_table_and_scatter(tmp_path):
    out = tmp_path / "cmp"
    r = cli("--json", "compare", *MODELS, *[f"--checkpoint={m}={CKPTS / f'{m}_digits.pt'}" for m in MODELS],
            "--precision", "int8", "--calibration", "digits", "--num-validation", "64", "--runs", "5", "--warmup", "1",
            "--out", out)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    rows = doc["rows"]
    assert {row["model"] for row in rows} == set(MODELS)
    arts = {row["artifact"] for row in rows}
    assert arts == {"onnx", "tflite_int8", "onnx_int8"}
    for row in rows:
        assert row["macs"] > 5e6 and row["params"] > 1e5 and 0 < row["p50_ms"] <= row["p90_ms"]
        assert row["accuracy"] is not None and row["accuracy"] > 0.9  # trained on digits, validated on digits
        assert row["target"] == "local" and row["threads"] == 1
    assert json.loads((out / "compare.json").read_text()) == rows
    for m in MODELS:
        assert (out / m / "report.json").is_file() and (out / m / "report.html").is_file()
    md = (out / "compare.md").read_text()
    assert md.count("\n| ") == 1 + len(rows) and "![MACs and accuracy vs measured latency](compare.png)" in md
    import matplotlib.image

    img = matplotlib.image.imread(str(out / "compare.png"))
    assert img.shape[0] > 300 and img.shape[1] > 600 and img[..., :3].std() > 0.05
    # the human table went to stderr in --json mode
    assert "edgeport compare: 2 models" in r.stderr and "ms per 100M MACs" in r.stderr
    # a second compare reuses every model's finished steps
    r = cli("compare", *MODELS, *[f"--checkpoint={m}={CKPTS / f'{m}_digits.pt'}" for m in MODELS],
            "--precision", "int8", "--calibration", "digits", "--num-validation", "64", "--runs", "5", "--warmup", "1",
            "--out", out)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count(" reused") == 2 * 5 and " done" not in r.stdout


def test_compare_unknown_model_fails_before_any_work(tmp_path):
    r = cli("compare", MODELS[0], "shufflenet_v9", "--out", tmp_path / "cmp", timeout=300)
    assert r.returncode == 2 and "unknown model 'shufflenet_v9'" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "cmp").exists()


@pytest.mark.slow  # two pipelines (~1-2 min on 2 busy cores); CI runs it
def test_compare_any_source_ranks_models_at_an_accuracy_bar(tmp_path):
    """A zoo name and a user ONNX file side by side: models ranked per target by measured p50 at the bar, the
    decision in compare.md, compare_recommendation.json and --json."""
    zoo = MODELS[0]
    first = cli("run", zoo, "--checkpoint", CKPTS / f"{zoo}_digits.pt", "--precision", "int8", "--calibration",
                "digits", "--num-validation", "32", "--runs", "3", "--warmup", "1", "--out", tmp_path / "run")
    assert first.returncode == 0, first.stdout + first.stderr
    user_onnx = tmp_path / "mine.onnx"
    user_onnx.write_bytes((tmp_path / "run" / "model.onnx").read_bytes())
    out = tmp_path / "cmp"
    r = cli("--json", "compare", zoo, user_onnx, f"--checkpoint={zoo}={CKPTS / f'{zoo}_digits.pt'}",
            "--precision", "int8", "--calibration", "digits", "--num-validation", "32", "--runs", "3", "--warmup", "1",
            "--min-agreement", "99%", "--out", out)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert {row["model"] for row in doc["rows"]} == {zoo, "mine"}
    rec = doc["recommendation"]
    assert rec["bar"] == {"min_agreement": 0.99, "min_accuracy": None}
    local = rec["targets"]["local"]
    eligible = [row for row in doc["rows"] if row["top1_agreement"] is None or row["top1_agreement"] >= 0.99]
    assert local["best"]["p50_ms"] == min(row["p50_ms"] for row in eligible)
    assert local["best"]["model"] in (zoo, "mine") and local["ratio"] >= 1.0
    saved = json.loads((out / "compare_recommendation.json").read_text())
    ranked = saved["models_ranked"]["local"]
    assert sorted(m["model"] for m in ranked) == sorted([zoo, "mine"])
    assert [m["p50_ms"] for m in ranked] == sorted(m["p50_ms"] for m in ranked)
    assert "## Recommendation" in (out / "compare.md").read_text()
    assert "models by p50 at the bar" in r.stderr and "bar: top-1 agreement >= 99%" in r.stderr


def test_compare_bad_source_or_bar_fails_before_any_work(tmp_path):
    r = cli("compare", MODELS[0], tmp_path / "missing.onnx", "--out", tmp_path / "cmp", timeout=300)
    assert r.returncode == 2 and "missing.onnx does not exist" in r.stderr and "Traceback" not in r.stderr
    r = cli("compare", MODELS[0], "--min-agreement", "120%", "--out", tmp_path / "cmp", timeout=300)
    assert r.returncode == 2 and "between 0 and 1" in r.stderr
    assert not (tmp_path / "cmp").exists()
