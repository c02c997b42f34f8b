"""`edgeport guidelines`: the micro-networks have the FLOPs their guideline requires, export and convert through the
project's path, and the CLI runs end to end. Timings are never asserted (only that they exist)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgeport import guidelines as gl

# its module-scoped fixtures build once: pytest-xdist (--dist loadgroup) keeps the module on one worker
pytestmark = pytest.mark.xdist_group("test_guidelines")


@pytest.fixture(scope="module")
def nets():
    return gl.micro_networks()


def test_variants_and_baselines(nets):
    by_g = {g: [n for n in nets if n.guideline == g] for g in gl.GUIDELINES}
    assert [len(by_g[g]) for g in gl.GUIDELINES] == [4, 4, 5, 4]
    for g, group in by_g.items():
        assert sum(n.baseline for n in group) == 1, g
        assert all(n.claim in ("slower", "faster") for n in group if not n.baseline)
    assert {n.label.split(" ")[0] for n in by_g["G1"]} == {"1:1", "1:2", "1:6", "1:12"}
    assert [n.convs[0][2] for n in by_g["G2"]] == [1, 2, 4, 8]
    assert len({n.key for n in nets}) == len(nets)


@pytest.mark.parametrize("g", gl.GUIDELINES)
def test_equal_flops_by_design(nets, g):
    """Every variant's multiply-adds equal its baseline's within the design tolerance (2 %)."""
    group = [n for n in nets if n.guideline == g]
    base = next(n for n in group if n.baseline).design_macs(gl.DEFAULT_SIZE)
    for n in group:
        assert abs(n.design_macs(gl.DEFAULT_SIZE) / base - 1) <= gl.FLOPS_TOLERANCE, n.label


def test_g1_channel_ratios(nets):
    for n in (n for n in nets if n.guideline == "G1"):
        c1, c2 = n.convs[0][:2]
        k = int(n.label.split(" ")[0].split(":")[1])
        assert c2 == k * c1 and len(n.convs) == 20  # 10 blocks of two 1x1 convs
        assert n.convs[1][:2] == (c2, c1)


def test_memory_access_theory_orders_like_the_paper(nets):
    """The paper's memory-access cost grows away from 1:1 (G1) and with groups (G2) at equal FLOPs."""
    for g in ("G1", "G2"):
        mac = [n.memory_access(gl.DEFAULT_SIZE) for n in nets if n.guideline == g]
        assert mac == sorted(mac) and mac[0] < mac[-1]


@pytest.mark.parametrize("key", ["g1_1to6", "g2_g4", "g3_4parallel", "g3_4series", "g4_norelu_sc"])
def test_graph_macs_and_torch_forward(nets, key):
    """The torch module computes what the design says: MACs counted on its ONNX export equal the design MACs."""
    import torch

    from edgeport.export.analysis import count_macs
    from edgeport.export.onnx_export import export_onnx

    net = next(n for n in nets if n.key == key)
    model = net.build().eval()
    size = 8
    with torch.no_grad():
        y = model(torch.randn(1, net.in_channels, size, size))
    assert y.shape[1] == net.in_channels and torch.isfinite(y).all()
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        onnx_model = export_onnx(model, input_shape=(net.in_channels, size, size), path=Path(d) / "m.onnx")
    assert count_macs(onnx_model) == net.design_macs(size)


def test_photo_crops_are_deterministic_real_images():
    a = gl.photo_crops(3, channels=37, size=12, seed=0)
    b = gl.photo_crops(3, channels=37, size=12, seed=0)
    assert len(a) == 3 and a[0]["input"].shape == (1, 37, 12, 12) and a[0]["input"].dtype == np.float32
    assert all(np.array_equal(x["input"], y["input"]) for x, y in zip(a, b))
    assert not np.array_equal(a[0]["input"], a[1]["input"])
    assert a[0]["input"].std() > 0.1  # photographs, not constants


def test_export_and_convert_all_columns(tmp_path, nets):
    """One micro-network through the whole path: ONNX, TFLite fp32 + INT8 (photo crops), ORT INT8; the TFLite
    fp32 artifact computes what ORT computes."""
    from edgeport.runtime import open_engine

    net = next(n for n in nets if n.key == "g2_g2")
    built = gl.build_artifacts(net, size=8, art_dir=tmp_path, columns=list(gl.COLUMNS))
    assert set(built.files) == set(gl.COLUMNS)
    assert all((tmp_path / f).is_file() for f in built.files.values())
    assert built.macs == net.design_macs(8)
    x = gl.photo_crops(1, channels=net.in_channels, size=8)[0]["input"]
    ref = open_engine("onnxruntime", tmp_path / built.files["ort_fp32"]).run([x])[0]
    got = open_engine("tflite", tmp_path / built.files["tflite_fp32"]).run([x.transpose(0, 2, 3, 1)])[0]
    np.testing.assert_allclose(got.transpose(0, 3, 1, 2), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    q = open_engine("tflite", tmp_path / built.files["tflite_int8"]).run([x.transpose(0, 2, 3, 1)])[0]
    assert q.shape == got.shape and np.isfinite(q).all()


def test_int8_micro_network_close_to_fp32(tmp_path, nets):
    """The INT8 artifact of a stacked 1x1 network (bias-free convs) stays close to the fp32 one on held-out crops.
    (Regression: bias correction once wrote into the one zero-bias buffer TFLite shares between such convs.)"""
    from edgeport.runtime import open_engine

    net = next(n for n in nets if n.key == "g3_1frag")
    built = gl.build_artifacts(net, size=8, art_dir=tmp_path, columns=["tflite_fp32", "tflite_int8"])
    f = open_engine("tflite", tmp_path / built.files["tflite_fp32"])
    q = open_engine("tflite", tmp_path / built.files["tflite_int8"])
    for s in gl.photo_crops(3, channels=net.in_channels, size=8, seed=1):
        x = s["input"].transpose(0, 2, 3, 1)
        a, b = f.run([x])[0].ravel(), q.run([x])[0].ravel()
        assert float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))) > 0.99


def test_classify_and_verdict():
    assert gl.classify(1.2, "slower") == "holds"
    assert gl.classify(1.01, "slower") == "no effect"
    assert gl.classify(0.8, "slower") == "reversed"
    assert gl.classify(0.8, "faster") == "holds"
    assert gl.verdict(["holds", "holds"]).startswith("HOLDS")
    assert gl.verdict(["no effect", "no effect"]).startswith("DOES NOT HOLD")
    assert gl.verdict(["holds", "reversed"]).startswith("PARTLY")


def test_cli_end_to_end(tmp_path, capsys):
    from edgeport.cli import main

    out = tmp_path / "report"
    rc = main(["guidelines", "--guideline", "G2", "--engine", "tflite", "--precision", "fp32", "--runs", "2",
               "--warmup", "0", "--size", "8", "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "G2 on XNNPACK fp32:" in printed
    assert any(v in printed for v in ("HOLDS", "PARTLY", "DOES NOT HOLD"))
    md = (out / "guidelines.md").read_text()
    # the command line comes from the parsed arguments (not sys.argv), options in the parser's order
    assert (f"Generated by `edgeport guidelines --engine tflite --precision fp32 --guideline G2 --runs 2 --warmup 0 "
            f"--size 8 --out {out}` on ") in md
    assert "## Machine" in md and "G2: excessive group convolution" in md and "img/guidelines_g2.png" in md
    assert (out / "img" / "guidelines_g2.png").stat().st_size > 1000
    data = json.loads((out / "guidelines.json").read_text())
    rows = data["results"]["G2"]["rows"]
    assert len(rows) == 4 and all(r["ms"]["tflite_fp32"] > 0 for r in rows)
    assert data["machine"]["runtimes"]


def test_cli_rejects_unknown_guideline(capsys):
    from edgeport.cli import main

    with pytest.raises(SystemExit):
        main(["guidelines", "--guideline", "G5"])


def test_command_line_is_rebuilt_from_parsed_args():
    """The recorded command lists the options that differ from their defaults, in the parser's order, shell-quoted;
    a library caller's Namespace gives the same result as the CLI."""
    import argparse

    from edgeport.guidelines.command import add_guidelines_parser, command_line

    parser = argparse.ArgumentParser()
    add_guidelines_parser(parser.add_subparsers())
    args = parser.parse_args(["guidelines", "--out", "docs", "--warmup", "10", "--runs", "200"])
    assert command_line(args) == "edgeport guidelines --runs 200 --warmup 10 --out docs"
    args = parser.parse_args(["guidelines", "--guideline", "g4,G1", "--scale", "0.75", "--engine", "tflite",
                              "--timeout", "60", "--out", "my dir", "--runs", "100"])
    assert command_line(args) == ("edgeport guidelines --engine tflite --guideline G4,G1 --scale 0.75 --out 'my dir' "
                                  "--timeout 60")
    assert command_line(argparse.Namespace()) == "edgeport guidelines"
    assert command_line(argparse.Namespace(runs=20, guideline=("G2",))) == "edgeport guidelines --guideline G2 --runs 20"


def test_package_import_is_light_and_does_not_import_the_cli():
    import subprocess
    import sys

    code = ("import sys, edgeport.guidelines; "
            "print(','.join(sorted(m for m in ('edgeport.cli', 'torch', 'tensorflow', 'onnxruntime', 'onnx', "
            "'ai_edge_litert', 'matplotlib') if m in sys.modules)))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"importing edgeport.guidelines imported {r.stdout.strip()}"
