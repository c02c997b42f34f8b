"""The recommendation (edgeport/recommend.py) on synthetic report sections: the fastest passing configuration wins,
failing and below-the-bar ones are excluded and said so, ties are broken deterministically, no latency gives no
recommendation, each target gets its own, and an unenforced (random-weights) winner is never called validated."""
from __future__ import annotations

import pytest

from edgeport.recommend import AccuracyBar, Check, candidates, decide, missed_thresholds, recommend
from edgeport.report import DeviceParity, OutputParity


def par(passed=True, enforced=True, agreement=1.0, **extra):
    return {"passed": passed, "thresholds_enforced": enforced, "top1_agreement": agreement, **extra}


def lat(artifact, p50, *, target="local", threads=1, engine=None):
    return {"target": target, "artifact": artifact, "threads": threads, "p50_ms": p50, "p90_ms": p50 * 1.1,
            "engine": engine or ("tflite" if artifact.startswith("tflite") else "onnxruntime")}


def test_fastest_passing_wins_with_runner_up_and_ratio():
    rec = recommend({"parity": {"tflite_fp32": par(), "tflite_int8": par(), "onnx": par()},
                     "latency": [lat("tflite_fp32", 2.0), lat("tflite_int8", 1.0), lat("onnx", 3.0)]})
    t = rec.target("local")
    assert (t.best.artifact, t.runner_up.artifact, t.ratio) == ("tflite_int8", "tflite_fp32", 2.0)
    assert t.validated and t.best.check is Check.VALIDATED
    assert [c.artifact for c in t.ranking] == ["tflite_int8", "tflite_fp32", "onnx"]
    doc = rec.report_sections()["recommendation"]
    assert doc["statistic"] == "p50_ms"
    assert doc["targets"]["local"]["best"]["artifact"] == "tflite_int8" and doc["targets"]["local"]["ratio"] == 2.0
    assert rec.lines()[0] == "local: ship tflite_int8 on tflite, 1 thread, p50 1 ms (accuracy checks passed)"
    assert "2.00x slower" in rec.lines()[1]


def test_failing_artifact_is_excluded_and_named():
    parity = {"tflite_int8": par(passed=False, sqnr_db=12.0, thresholds={"sqnr_db": 25.0}), "tflite_fp32": par()}
    rec = recommend({"parity": parity, "latency": [lat("tflite_int8", 0.5), lat("tflite_fp32", 2.0)]})
    t = rec.target("local")
    assert t.best.artifact == "tflite_fp32" and t.runner_up is None and t.ratio is None
    assert [c.artifact for c in t.excluded] == ["tflite_int8"] and t.excluded[0].check is Check.FAILED
    assert "sqnr_db 12 (needs 25)" in t.excluded[0].why
    text = "\n".join(rec.lines())
    assert "excluded tflite_int8" in text and "no runner-up" in text
    assert missed_thresholds(parity) == {"tflite_int8": "sqnr_db 12 (needs 25)"}


def test_unvalidated_and_unenforced_are_said_so():
    # an INT8 artifact of a random-init model: thresholds reported, not enforced -> ranked, never "validated"
    rec = recommend({"parity": {"tflite_int8": par(enforced=False), "tflite_fp32": par()},
                     "latency": [lat("tflite_int8", 1.0), lat("tflite_fp32", 2.0), lat("onnx_int8", 0.1)]})
    t = rec.target("local")
    assert t.best.artifact == "tflite_int8" and t.best.check is Check.NOT_ENFORCED and not t.validated
    assert "NOT validated" in rec.lines()[0]
    # onnx_int8 has no parity entry: not validated, excluded however fast
    assert [(c.artifact, c.check) for c in t.excluded] == [("onnx_int8", Check.NOT_VALIDATED)]
    assert rec.to_json()["targets"]["local"]["validated"] is False


def test_ties_are_broken_deterministically():
    parity = {"tflite_int8": par(), "onnx_int8": par(), "tflite_fp32": par(enforced=False)}
    latency = [lat("tflite_int8", 1.0, threads=2), lat("onnx_int8", 1.0), lat("tflite_fp32", 1.0),
               lat("tflite_int8", 1.0)]
    for order in (latency, latency[::-1]):
        t = recommend({"parity": parity, "latency": order}).target("local")
        # same p50: validated before unenforced, then fewer threads, then the artifact name
        assert [(c.artifact, c.threads) for c in t.ranking] == [("onnx_int8", 1), ("tflite_int8", 1),
                                                                 ("tflite_int8", 2), ("tflite_fp32", 1)]
        assert t.ratio == 1.0
    assert "(a tie)" in recommend({"parity": parity, "latency": latency}).lines()[1]


def test_no_latency_gives_no_recommendation():
    rec = recommend({"parity": {"tflite_int8": par()}, "latency": [{**lat("tflite_int8", 1.0), "p50_ms": None}]})
    assert rec.targets == () and rec.lines() == ["no latency was measured: nothing to recommend"]
    assert recommend({}).to_json()["targets"] == {}
    only_failing = recommend({"parity": {"tflite_int8": par(passed=False)}, "latency": [lat("tflite_int8", 1.0)]})
    t = only_failing.target("local")
    assert t.best is None and not t.validated and only_failing.to_json()["targets"]["local"]["best"] is None
    assert "no configuration to recommend" in only_failing.lines()[0]


def test_each_target_gets_its_own_decision():
    parity = {"tflite_int8": par(), "onnx_int8": par()}
    rec = recommend({"parity": parity, "latency": [
        lat("tflite_int8", 1.0), lat("onnx_int8", 2.0),
        lat("tflite_int8", 9.0, target="ssh://pi@h"), lat("onnx_int8", 3.0, target="ssh://pi@h"),
        lat("onnx_int8", 2.5, target="ssh://pi@h", threads=4)]})
    assert [t.target for t in rec.targets] == ["local", "ssh://pi@h"]
    assert rec.target("local").best.artifact == "tflite_int8"
    pi = rec.target("ssh://pi@h")
    assert (pi.best.artifact, pi.best.threads, pi.runner_up.threads) == ("onnx_int8", 4, 1)
    assert pi.ratio == pytest.approx(3.0 / 2.5)


def on_device(artifact, *, target="ssh://pi@h", failing=(), engine=None):
    """A device_parity entry as bench writes it: two outputs, those named in `failing` disagreeing."""
    outputs = tuple(OutputParity(index=i, name=n, ok=n not in failing, cosine_min=0.5 if n in failing else 1.0,
                                 sqnr_db=3.0 if n in failing else 90.0, max_abs=0.0, max_abs_rel=0.0,
                                 top1_agreement=1.0, near_ties=0, top1_decisive=1.0)
                    for i, n in enumerate(("seg", "logits")))
    return DeviceParity(target=target, artifact=artifact, outputs=outputs, engine=engine or (
        "tflite" if artifact.startswith("tflite") else "onnxruntime"), device="pi", device_arch="aarch64",
        samples=8).to_json()


def test_an_output_that_disagrees_on_a_device_excludes_the_configuration_there():
    """Device parity fails when any output fails (here the second), and the recommendation for that target then
    excludes the configuration, naming the output; other targets and a later passing measurement are unaffected."""
    parity = {"tflite_int8": par(), "tflite_fp32": par()}
    latency = [lat("tflite_int8", 1.0, target="ssh://pi@h"), lat("tflite_fp32", 2.0, target="ssh://pi@h"),
               lat("tflite_int8", 1.0), lat("tflite_fp32", 2.0)]
    bad = on_device("tflite_int8", failing=("logits",))
    assert bad["ok"] is False and bad["worst_output"] == "logits" and bad["cosine_min"] == 0.5
    assert [o["ok"] for o in bad["outputs"]] == [True, False]
    sections = {"parity": parity, "latency": latency, "device_parity": [bad, on_device("tflite_fp32")]}
    pi = recommend(sections).target("ssh://pi@h")
    assert pi.best.artifact == "tflite_fp32" and pi.runner_up is None
    [excluded] = pi.excluded
    assert excluded.artifact == "tflite_int8" and excluded.check is Check.DEVICE_MISMATCH
    assert excluded.why == "outputs on ssh://pi@h disagree with this machine's: logits (cosine_min 0.5)"
    assert recommend(sections).target("local").best.artifact == "tflite_int8"  # local has no mismatch
    later = {**sections, "device_parity": sections["device_parity"] + [on_device("tflite_int8")]}
    assert recommend(later).target("ssh://pi@h").best.artifact == "tflite_int8"  # the newest entry counts


def test_accuracy_bar_and_reference():
    sections = {"parity": {"tflite_int8": par(agreement=0.95), "tflite_fp32": par(agreement=1.0)},
                "accuracy": {"artifacts": {"tflite_int8": {"accuracy": 0.90}, "tflite_fp32": {"accuracy": 0.97}}},
                "latency": [lat("tflite_int8", 1.0), lat("tflite_fp32", 2.0)]}
    assert recommend(sections).target("local").best.artifact == "tflite_int8"
    for bar in (AccuracyBar(min_agreement=0.99), AccuracyBar(min_accuracy=0.95)):
        t = recommend(sections, bar=bar).target("local")
        assert t.best.artifact == "tflite_fp32" and t.excluded[0].check is Check.BELOW_BAR, bar
    # a user ONNX is its own reference: its latency entry is eligible, with agreement 1
    ref = candidates({"parity": {"tflite_fp32": par(reference="onnx")}, "latency": [lat("onnx", 1.0)]})
    assert ref[0].check is Check.REFERENCE and ref[0].top1_agreement == 1.0


def test_several_models_rank_by_model():
    a = candidates({"parity": {"tflite_int8": par()}, "latency": [lat("tflite_int8", 2.0), lat("tflite_int8", 1.5,
                                                                                                threads=2)]}, model="a")
    b = candidates({"parity": {"tflite_int8": par()}, "latency": [lat("tflite_int8", 1.0)]}, model="b")
    t = decide(a + b).target("local")
    assert [(c.model, c.p50_ms) for c in t.models_ranked()] == [("b", 1.0), ("a", 1.5)]
    assert t.best.label == "b tflite_int8 on tflite, 1 thread"


def test_noisy_latency_is_said_so():
    noisy = {**lat("tflite_int8", 1.0), "noisy": True, "noisy_reasons": ["load: 3.1 runnable threads per core (> 1.0)"]}
    rec = recommend({"parity": {"tflite_int8": par(), "tflite_fp32": par()},
                     "latency": [noisy, {**lat("tflite_fp32", 2.0), "noisy": False, "noisy_reasons": []}]})
    assert rec.lines()[1] == ("  measured on a noisy machine (load: 3.1 runnable threads per core (> 1.0)): "
                              "re-measure before trusting the ratio")
    assert rec.to_json()["targets"]["local"]["best"]["noisy"] is True
    quiet = recommend({"parity": {"tflite_int8": par()}, "latency": [{**lat("tflite_int8", 1.0), "noisy": None}]})
    assert "noisy" not in "\n".join(quiet.lines())


def test_a_later_measurement_of_a_configuration_replaces_the_earlier_one():
    """report.json `latency` is appended in time order: a re-bench of the same configuration supersedes the old
    number instead of competing with it (issue 19: a stale recommendation after a standalone `bench`)."""
    parity = {"tflite_int8": par(), "tflite_fp32": par()}
    latency = [lat("tflite_int8", 1.0), lat("tflite_fp32", 2.0), lat("tflite_int8", 3.0)]
    t = recommend({"parity": parity, "latency": latency}).target("local")
    assert (t.best.artifact, t.best.p50_ms, t.runner_up.artifact) == ("tflite_fp32", 2.0, "tflite_int8")
    assert len(t.ranking) == 2


def test_bench_and_validate_refresh_a_stale_recommendation(tmp_path):
    """A standalone `bench` (or `validate`) after `run` recomputes report.json's `recommendation` with the accuracy
    bar it was made with; a report without one (no `run`) gets none."""
    import json

    from edgeport.recommend import AccuracyBar, refresh_recommendation

    parity = {"tflite_int8": par(agreement=0.95), "tflite_fp32": par()}
    sections = {"schema_version": 1, "parity": parity, "latency": [lat("tflite_int8", 1.0), lat("tflite_fp32", 2.0)]}
    bar = AccuracyBar(min_agreement=0.9)
    stale = recommend(sections, bar=bar).to_json()
    sections["latency"].append(lat("tflite_int8", 5.0))  # what a later `bench` appends
    (tmp_path / "report.json").write_text(json.dumps({**sections, "recommendation": stale}))
    decision = refresh_recommendation(tmp_path)
    doc = json.loads((tmp_path / "report.json").read_text())["recommendation"]
    assert doc == decision.to_json() and doc["bar"] == {"min_agreement": 0.9, "min_accuracy": None}
    assert doc["targets"]["local"]["best"]["artifact"] == "tflite_fp32"
    assert stale["targets"]["local"]["best"]["artifact"] == "tflite_int8"
    (tmp_path / "report.json").write_text(json.dumps(sections))
    assert refresh_recommendation(tmp_path) is None
    assert "recommendation" not in json.loads((tmp_path / "report.json").read_text())


def test_int8_slower_than_fp32_is_said_and_fp32_recommended():
    # a typed result: every check passes, INT8 measured 1.2x slower than fp32 on the same engine and threads
    rec = recommend({"parity": {"tflite_fp32": par(), "tflite_int8": par(), "onnx": par(), "onnx_int8": par()},
                     "latency": [lat("tflite_fp32", 5.0), lat("tflite_int8", 6.0), lat("onnx", 7.0),
                                 lat("onnx_int8", 3.0), lat("tflite_int8", 4.0, threads=2)]})
    t = rec.target("local")
    assert t.best.artifact == "onnx_int8"  # the fastest passing entry still wins
    [gap] = t.int8_slower  # onnx_int8 is faster than onnx; the 2-thread INT8 has no 2-thread fp32 to compare with
    assert (gap.int8.artifact, gap.float_.artifact, gap.ratio) == ("tflite_int8", "tflite_fp32", 1.2)
    text = "\n".join(rec.lines())
    assert "int8 is 1.20x slower than fp32 here: tflite_int8 p50 6 ms vs tflite_fp32 5 ms on tflite, 1 thread" in text
    assert rec.to_json()["targets"]["local"]["int8_slower"] == [
        {"model": None, "int8": "tflite_int8", "float": "tflite_fp32", "engine": "tflite", "threads": 1,
         "ratio": 1.2}]
    # only TFLite measured: fp32 is recommended, and the reason INT8 is not is on the screen
    only = recommend({"parity": {"tflite_fp32": par(), "tflite_int8": par()},
                      "latency": [lat("tflite_fp32", 5.0), lat("tflite_int8", 6.0)]})
    assert only.target("local").best.artifact == "tflite_fp32"
    assert any(ln.strip().startswith("int8 is 1.20x slower than fp32 here") and "faster one to ship" in ln
               for ln in only.lines())
    # INT8 faster: nothing said
    fine = recommend({"parity": {"tflite_fp32": par(), "tflite_int8": par()},
                      "latency": [lat("tflite_fp32", 5.0), lat("tflite_int8", 4.0)]})
    assert fine.target("local").int8_slower == [] and not any("slower than fp32" in ln for ln in fine.lines())
