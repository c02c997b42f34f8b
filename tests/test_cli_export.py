"""`edgeport export` and `edgeport models` end to end through the console entry point (real subprocesses)."""
import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from edgeport.models import build_model

NAME = "shufflenet_v2_cifar_x0_5"


def run(*args, cwd=None):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "edgeport.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def test_export_zoo_model_with_checkpoint(tmp_path):
    torch.save({"state_dict": build_model(NAME).state_dict()}, tmp_path / "ck.pth")
    out = tmp_path / "out"
    r = run("export", NAME, "--checkpoint", tmp_path / "ck.pth", "--out", out, "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / "report.json").read_text())
    assert json.loads(r.stdout)["model"]["name"] == NAME
    assert rep["artifacts"]["onnx"]["file"] == "model.onnx" and (out / "model.onnx").is_file()
    assert rep["artifacts"]["onnx"]["sha256"] == hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest()
    assert rep["artifacts"]["onnx"]["size"] == (out / "model.onnx").stat().st_size
    assert rep["source"]["kind"] == "zoo" and len(rep["source"]["checkpoint_sha256"]) == 64
    assert rep["model"]["params"] == 352_042 and rep["model"]["macs"] > 10e6
    assert rep["parity"]["onnx"]["cosine_mean"] > 0.99999
    assert rep["ops"]["onnx"]["Conv"] > 10
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temp files left behind"


def test_export_factory_and_onnx_file(tmp_path):
    f = tmp_path / "net.py"
    f.write_text(textwrap.dedent("""
        import torch.nn as nn
        def make():
            return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
        def not_a_module():
            return 42
    """))
    r = run("export", f"{f}:make", "--input-shape", "3,32,32", "--out", tmp_path / "a")
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "a" / "report.json").read_text())
    assert rep["source"]["kind"] == "factory" and rep["model"]["input_shape"] == [1, 3, 32, 32]
    r = run("export", tmp_path / "a" / "model.onnx", "--out", tmp_path / "b")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "b" / "report.json").read_text())["source"]["kind"] == "onnx"
    r = run("export", f"{f}:not_a_module", "--input-shape", "3,32,32", "--out", tmp_path / "c")
    assert r.returncode == 2 and "not a torch.nn.Module" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "c" / "model.onnx").exists()


@pytest.mark.parametrize("case", ["unknown_model", "bad_checkpoint", "not_checkpoint", "rank", "out_is_file", "bad_arg",
                                  "bad_precision", "empty_calibration", "missing_calibration", "percentile_float_io"])
def test_bad_input_one_line_exit_2(tmp_path, case):
    out = tmp_path / "out"
    (tmp_path / "junk.pth").write_bytes(b"\x00" * 100)
    torch.save(build_model("augshufflenet_x0_5").state_dict(), tmp_path / "other.pth")
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    args = {
        "unknown_model": ["export", "shufflenet_v7", "--out", out],
        "bad_checkpoint": ["export", NAME, "--checkpoint", tmp_path / "other.pth", "--out", out],
        "not_checkpoint": ["export", NAME, "--checkpoint", tmp_path / "junk.pth", "--out", out],
        "rank": ["export", NAME, "--input-shape", "32,32", "--out", out],
        "out_is_file": ["export", NAME, "--out", tmp_path / "file"],
        "bad_arg": ["export", NAME, "--arg", "split_ratio=0.3", "--out", out],
        # conversion inputs are checked before model.onnx is written
        "bad_precision": ["export", NAME, "--precision", "fp32,int4", "--out", out],
        "empty_calibration": ["export", NAME, "--precision", "int8", "--calibration", tmp_path / "empty", "--out", out],
        "missing_calibration": ["export", NAME, "--precision", "int8", "--calibration", tmp_path / "nope.npz",
                                "--out", out],
        "percentile_float_io": ["export", NAME, "--precision", "int8", "--io", "float", "--calibration-method",
                                "percentile", "--out", out],
    }[case]
    r = run(*args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgeport: error:"), r.stderr
    assert "Traceback" not in r.stderr
    assert not (out / "model.onnx").exists() and not (out / "report.json").exists()
    if case == "unknown_model":
        assert "shufflenet_v2_x1_0" in r.stderr


def test_models_json_lists_published_numbers():
    r = run("models", "--json", "--family", "shufflenet_v2")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["shufflenet_v2_x1_0"]["params"] == 2_278_604
    for row in rows.values():
        if row["published_macs"]:
            assert abs(row["macs"] / row["published_macs"] - 1) <= 0.03


def test_export_int8_with_percentile_calibration_method(tmp_path):
    """--calibration-method reaches both quantizers and the report; a method that cannot keep float I/O says so."""
    from edgeport.cli import main

    ck = "calibration/checkpoints/shufflenet_v2_cifar_x0_5_digits.pt"
    out = tmp_path / "out"
    assert main(["--quiet", "export", NAME, "--checkpoint", ck, "--out", str(out), "--precision", "int8",
                 "--calibration", "digits", "--num-calibration", "16", "--calibration-method", "percentile"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["calibration"]["tflite_method"] == "percentile" and rep["calibration"]["onnx_int8_method"] == "percentile"
    assert (out / "model_int8.tflite").is_file() and (out / "model_int8.onnx").is_file()
    # every artifact gets the mode a plain open() gives under this umask (no 0600 left over from a temp file)
    (tmp_path / "plain").write_bytes(b"")
    want = (tmp_path / "plain").stat().st_mode & 0o777
    assert {f.name: f.stat().st_mode & 0o777 for f in out.iterdir()} == {f.name: want for f in out.iterdir()}
    bad = tmp_path / "bad"
    assert main(["--quiet", "export", NAME, "--checkpoint", ck, "--out", str(bad), "--precision", "int8",
                 "--calibration", "digits", "--num-calibration", "8", "--calibration-method", "percentile",
                 "--io", "float"]) == 2


@pytest.mark.parametrize("pieces", [None, pytest.param("convs", marks=pytest.mark.slow)])
def test_export_says_what_the_shuffle_pass_did(tmp_path, pieces, capsys, monkeypatch):
    """In-process (the worker has TensorFlow loaded already): the report and the printed summary agree."""
    from edgeport.cli import main

    monkeypatch.setenv("COLUMNS", "200")
    out = tmp_path / "out"
    assert main(["export", NAME, "--out", str(out), "--precision", "fp32",
                 *(["--shuffle-pieces", pieces] if pieces else [])]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    rep = json.loads((out / "report.json").read_text())
    st = rep["artifact_info"]["tflite_fp32"]["shuffle_pass_stats"]
    assert st["found"] == st["absorbed"] > 0 and st["kept"] == 0 and st["piece_form"] == (pieces or "slices")
    if pieces == "convs":  # every piece computed by its own conv: no Slice left
        assert st["convs_split"] > 0 and st["slices"] == 0 and rep["ops"]["tflite_fp32"].get("SLICE", 0) == 0
    else:
        assert st["convs_split"] == 0 and st["slices"] == rep["ops"]["tflite_fp32"]["SLICE"] > 0
    assert f"shuffle pass (TFLite): {st['found']} channel shuffles: {st['absorbed']} absorbed" in printed
    assert f"pieces as {st['piece_form']}" in printed
