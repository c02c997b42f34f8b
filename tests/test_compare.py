"""`edgeport compare MODEL...` with two tiny digits-trained zoo models: one folder per model, a table, compare.json,
compare.md and a MACs/accuracy-vs-latency scatter (compare.png)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CKPTS = ROOT / "calibration" / "checkpoints"
MODELS = ("shufflenet_v2_cifar_x0_5", "augshufflenet_x0_5")
# the two-model compare (module fixture) is made once: pytest-xdist (--dist loadgroup) keeps the module on one worker
pytestmark = pytest.mark.xdist_group("test_compare")


def cli(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "edgeport.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "220", "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=timeout)


# the options every compare here uses (a model's finished steps are reused only under the same options)
FAST = ["--precision", "int8", "--calibration", "digits", "--num-validation", "64", "--runs", "5", "--warmup", "1"]


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """`compare` of the two digits-trained zoo models (two full pipelines, ~2-4 min on 2 busy cores), made once."""
    out = tmp_path_factory.mktemp("compare") / "cmp"
    r = cli("--json", "compare", *MODELS, *[f"--checkpoint={m}={CKPTS / f'{m}_digits.pt'}" for m in MODELS], *FAST,
            "--out", out)
    assert r.returncode == 0, r.stdout + r.stderr
    return out, r


@pytest.mark.slow  # CI runs it
def test_compare_two_models_table_and_scatter(two_models):
    out, r = two_models
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
    r = cli("compare", *MODELS, *[f"--checkpoint={m}={CKPTS / f'{m}_digits.pt'}" for m in MODELS], *FAST,
            "--out", out)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count(" reused") == 2 * 5 and " done" not in r.stdout


def test_compare_unknown_model_fails_before_any_work(tmp_path):
    r = cli("compare", MODELS[0], "shufflenet_v9", "--out", tmp_path / "cmp", timeout=300)
    assert r.returncode == 2 and "unknown model 'shufflenet_v9'" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "cmp").exists()


@pytest.mark.slow  # one new pipeline (the zoo model's steps are reused from the two-model compare); CI runs it
def test_compare_any_source_ranks_models_at_an_accuracy_bar(two_models, tmp_path):
    """A zoo name and a user ONNX file side by side: models ranked per target by measured p50 at the bar, the
    decision in compare.md, compare_recommendation.json and --json."""
    zoo = MODELS[0]
    out = tmp_path / "cmp"
    shutil.copytree(two_models[0] / zoo, out / zoo)  # finished steps: reused (their keys do not name the folder)
    user_onnx = tmp_path / "mine.onnx"
    user_onnx.write_bytes((out / zoo / "model.onnx").read_bytes())
    r = cli("--json", "compare", zoo, user_onnx, f"--checkpoint={zoo}={CKPTS / f'{zoo}_digits.pt'}", *FAST,
            "--min-agreement", "99%", "--out", out)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr.count(" reused") >= 5, r.stderr
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
