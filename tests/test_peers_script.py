"""Cheap checks of benchmarks/peers' pure-Python orchestration (no venvs, no conversions): the model list, the
convert step's reuse and failure rows, and the rendered table / peer-win detection on a synthetic work dir."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

PEERS = Path(__file__).resolve().parents[1] / "benchmarks" / "peers"


@pytest.fixture(autouse=True)
def _peers_path(monkeypatch):
    monkeypatch.syspath_prepend(str(PEERS))
    yield
    for name in ("common", "convert", "envs", "render", "measure", "prepare", "run"):
        sys.modules.pop(name, None)


def test_model_list_has_the_brief_models():
    from common import available_models

    models, skipped = available_models()
    keys = {m.key for m in models} | {s.split(":")[0] for s in skipped}
    assert {"shufflenet_v2_x1_0", "augshufflenet_x1_0", "mobilenet_v2", "ghostnet_x1_0", "efficientnet_lite0"} <= keys
    assert any(k.endswith("_digits") for k in keys)
    sv2 = next(m for m in models if m.key == "shufflenet_v2_x1_0")
    assert sv2.bound_args == {"channel_shuffle": False}
    assert all(m.data == "digits" for m in models if m.key.endswith("_digits"))


def _result(work, key, route, prec, *, ok=True, bound=False, **kw):
    from common import model_dir, write_json

    d = model_dir(work, key) / ("bound" if bound else "") / route
    d.mkdir(parents=True, exist_ok=True)
    art = d / f"model_{prec}.tflite"
    art.write_bytes(b"x" * 2048)
    write_json(d / f"{prec}.json", {"ok": ok, "artifact": str(art), "convert_s": kw.get("convert_s", 1.0),
                                    **({} if ok else {"error": "Boom: it broke"})})


def test_convert_failed_install_and_reuse(tmp_path):
    from common import Precision, Route, read_json
    from convert import convert_one

    res = convert_one(Route.ONNX2TF, Precision.FP32, work=tmp_path, key="m", env_error="pip said no", log=lambda *_: 0)
    assert not res["ok"] and "could not be installed: pip said no" in res["error"]
    assert read_json(tmp_path / "models" / "m" / "onnx2tf" / "fp32.json")["ok"] is False
    _result(tmp_path, "m", "edgeport", "fp32", convert_s=3.0)
    again = convert_one(Route.EDGEPORT, Precision.FP32, work=tmp_path, key="m", reuse=True, log=lambda *_: 0)
    assert again["ok"] and again["convert_s"] == 3.0  # reused: no worker ran


def test_render_table_and_peer_wins(tmp_path):
    from common import write_json
    from render import peer_wins, render

    key = "net"
    for route in ("edgeport", "onnx2tf", "litert-torch"):
        for prec in ("fp32", "int8"):
            _result(tmp_path, key, route, prec, ok=not (route == "litert-torch" and prec == "int8"))
    for prec in ("fp32", "int8"):
        _result(tmp_path, key, "edgeport", prec, bound=True)
    write_json(tmp_path / "models" / key / "prepare.json", {"note": "synthetic"})

    def meas(p50, cos=0.99, transposes=0):
        return {"size_bytes": 2048, "ops": {"CONV_2D": 3, "TRANSPOSE": transposes}, "ops_total": 3 + transposes,
                "transposes": transposes, "parity": {"cos_mean": cos, "cos_min": cos, "max_abs": 0.1,
                                                     "top1_agree": 1.0, "n": 4},
                "latency": {"1": {"p50_ms": p50, "p90_ms": p50 * 1.2}, "2": {"p50_ms": p50, "p90_ms": p50 * 1.2}}}

    results = {
        f"{key}|edgeport|fp32|model": meas(2.0), f"{key}|edgeport|int8|model": meas(1.0),
        f"{key}|onnx2tf|fp32|model": meas(2.02, transposes=61),  # a tie: not a win
        f"{key}|onnx2tf|int8|model": meas(0.8, cos=0.999, transposes=61),  # faster and closer to torch
        f"{key}|litert-torch|fp32|model": meas(2.5),
        f"{key}|edgeport|fp32|bound": meas(1.6), f"{key}|edgeport|int8|bound": meas(0.5),
    }
    for v in (results[f"{key}|edgeport|fp32|bound"], results[f"{key}|edgeport|int8|bound"]):
        v.pop("parity")
    write_json(tmp_path / "measure.json", {"results": results, "protocol": {"rounds": 1}})
    doc = tmp_path / "peers.md"
    tbl = render(work=tmp_path, keys=[key], doc=doc)
    assert "FAILED: Boom: it broke" in tbl
    assert "| net | edgeport | int8 | ok |" in tbl and "2.00/2.00" in tbl  # int8 is 2x its bound at 1T/2T
    text = doc.read_text()
    assert "## Rows a peer wins" in text and "Boom" in text
    from render import collect

    wins = peer_wins(collect(tmp_path, [key]))
    got = {(w["peer"], w["precision"], w["metric"]) for w in wins}
    assert ("onnx2tf", "int8", "1-thread p50 latency") in got
    assert ("onnx2tf", "int8", "mean cosine vs torch") in got
    assert ("onnx2tf", "fp32", "1-thread p50 latency") not in got  # within the tie tolerance
    assert not any(w["peer"] == "litert-torch" and w["precision"] == "int8" for w in wins)  # failed rows never win
