"""Bad input and faults end in one line and the documented exit code, and never cost the user a file: stale
artifacts, foreign or future report.json, files edgeport does not own, paths with rich markup, a factory that
calls sys.exit, an unexpected exception; and the first hour of a new user (progress, random weights, tables, the
report, help). Issue 20, one section per item number, in order (items 4, 7 and 10 are tested with their fixes:
tests/test_user_model.py, tests/test_validate.py, tests/test_calibration.py)."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from edgeport.cli import main
from edgeport.console import EXIT_BAD_INPUT, EXIT_INTERNAL

# its module-scoped fixtures build once: pytest-xdist (--dist loadgroup) keeps the module on one worker
pytestmark = pytest.mark.xdist_group("test_bad_inputs")


NAME = "shufflenet_v2_cifar_x0_5"


CKPT = "calibration/checkpoints/shufflenet_v2_cifar_x0_5_digits.pt"


def cli(*args, cwd=None, drop_env=()):
    env = {k: v for k, v in {**os.environ, "COLUMNS": "200"}.items() if k not in drop_env}
    return subprocess.run([sys.executable, "-m", "edgeport.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def one_line(r) -> str:
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A digits ShuffleNetV2 exported to fp32 + int8 (the artifacts every reader below is given)."""
    out = tmp_path_factory.mktemp("exported") / "out"
    assert main(["--quiet", "export", NAME, "--checkpoint", CKPT, "--out", str(out), "--precision", "fp32,int8",
                 "--calibration", "digits", "--num-calibration", "8"]) == 0
    return out


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


# ---- item 1: stale artifacts: an artifact in report.json is one this export wrote ----------------------------------
def test_a_new_export_leaves_no_artifact_of_the_previous_model(exported, tmp_path):
    """Export A (fp32, int8), then B (fp32 only) into the same folder: the report lists B's files only, and A's
    INT8 artifacts (edgeport's own, unchanged) are gone, so `bench` cannot time them under B's name."""
    d = _copy(exported, tmp_path / "d")
    (d / "notes.txt").write_text("the user's")
    assert main(["--quiet", "export", "augshufflenet_x0_5", "--out", str(d), "--precision", "fp32"]) == 0
    rep = json.loads((d / "report.json").read_text())
    assert rep["model"]["name"] == "augshufflenet_x0_5"
    assert set(rep["artifacts"]) == {"onnx", "tflite_fp32"}
    for entry in rep["artifacts"].values():
        assert hashlib.sha256((d / entry["file"]).read_bytes()).hexdigest() == entry["sha256"]
    assert not (d / "model_int8.tflite").exists() and not (d / "model_int8.onnx").exists()
    assert not (d / "model_int8.tensormap.json").exists()
    assert (d / "notes.txt").read_text() == "the user's"


# ---- item 2: one writer per --out ----------------------------------------------------------------------------------
def test_one_writer_per_output_folder(tmp_path):
    """A second edgeport writing into a folder another one is writing into is refused with one line; the lock is
    the kernel's (flock on the folder), so it leaves no file and dies with its process."""
    from edgeport.errors import OutputDirError
    from edgeport.files import out_dir_lock

    d = tmp_path / "d"
    d.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from edgeport.files import out_dir_lock
        with out_dir_lock({str(d)!r}):
            print("locked", flush=True)
            sys.stdin.readline()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputDirError, match="another edgeport command is writing into"):
            with out_dir_lock(d):
                pass
        r = cli("export", NAME, "--out", d)
        assert r.returncode == EXIT_BAD_INPUT and "another edgeport command is writing" in one_line(r)
        assert not (d / "model.onnx").exists()
    finally:
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(timeout=60)
    with out_dir_lock(d):  # released with its holder
        pass
    assert list(d.iterdir()) == []


# ---- item 3: a failed export deletes nothing of the user's; no empty --out -----------------------------------------
def test_a_failed_export_keeps_the_users_files(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    mine = {"notes.tmp": "a", ".notes.tmp": "b", "draft.stage": "c", ".stage-notes": "d"}
    for name, text in mine.items():
        (d / name).write_text(text)
    (d / "sub").mkdir()
    (d / "sub" / "x.tmp").write_text("e")
    r = cli("export", "nosuchmodel", "--out", d)
    assert r.returncode == EXIT_BAD_INPUT and "unknown model 'nosuchmodel'" in one_line(r)
    assert {n: (d / n).read_text() for n in mine} == mine and (d / "sub" / "x.tmp").read_text() == "e"


def test_leftovers_of_a_killed_run_are_recognised_by_name_only():
    from edgeport.files import is_leftover

    assert all(map(is_leftover, [".model_int8.tflite.ab12cd_3.tmp", ".report.json.abcdefgh.tmp", ".stage-abcd1234",
                                 ".model_int8.prepared.onnx", ".model_int8.tensormap.json.abcdefgh.tmp"]))
    assert not any(map(is_leftover, ["notes.tmp", ".notes.tmp", ".cache.abcdefgh.tmp", "model.onnx", ".stage-x"]))


# ---- item 5: validate / bench on a corrupt, truncated, missing or changed artifact ---------------------------------
def test_readers_refuse_a_changed_artifact(exported, tmp_path):
    d = _copy(exported, tmp_path / "d")
    data = bytearray((d / "model_fp32.tflite").read_bytes())
    data[-1] ^= 0xFF
    (d / "model_fp32.tflite").write_bytes(bytes(data))
    for args in (["bench", d, "--runs", "1", "--warmup", "0", "--no-rss"], ["validate", d]):
        r = cli(*args)
        assert r.returncode == EXIT_BAD_INPUT, (args, r.stderr)
        line = one_line(r)
        assert "model_fp32.tflite" in line and "changed since edgeport wrote it" in line
    (d / "model_fp32.tflite").unlink()
    r = cli("bench", d, "--runs", "1", "--warmup", "0", "--no-rss")
    assert r.returncode == EXIT_BAD_INPUT and "model_fp32.tflite is missing" in one_line(r)


# ---- item 6: one error boundary: bad values, huge shapes, unexpected exceptions ------------------------------------
@pytest.mark.parametrize("args, needle", [
    (["export", NAME, "--out", ""], "output directory is empty"),
    (["export", NAME, "--input-shape", "3,abc,16", "--out", "o"], "--input-shape: '3,abc,16'"),
    (["export", NAME, "--input-shape", "3,100000,100000", "--out", "o"], "more than edgeport handles"),
    (["run", "--threads", "0", "--out", "o"], "thread counts must be >= 1"),
    (["run", NAME, "--samples", "no_such_folder", "--out", "o"], "--samples 'no_such_folder' is neither a folder"),
    (["compare", NAME, NAME.replace("x0_5", "x1_0"), "--samples", "nope.npz", "--out", "o"], "--samples 'nope.npz'"),
    (["bench", "nowhere", "--target", "ssh://-oProxyCommand=x@host"], "must not start with '-'"),
    (["bench", "nowhere", "--pin", "abc"], "expected CPU ids like 0,1 or 4-7, or big"),
    (["bench", "nowhere", "--target", "ssh://pi@host", "--remote-dir", "/tmp/$(reboot)"], "expected an absolute"),
    (["bench", "nowhere", "--target", "adb://x", "--remote-dir", "~/tmp"], "expected an absolute folder"),
])


def test_bad_values_are_one_line_exit_2(tmp_path, args, needle):
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == EXIT_BAD_INPUT, r.stderr
    assert needle in one_line(r)
    assert not (tmp_path / "o").exists(), "a refused command leaves no folder"


def test_an_unexpected_exception_is_one_line_with_its_own_exit_code(monkeypatch, capsys):
    from edgeport import export_cli

    def boom(args, con):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(export_cli, "cmd_models", boom)
    assert main(["models"]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error in models: ZeroDivisionError: a bug" in err
    assert main(["--verbose", "models"]) == EXIT_INTERNAL
    assert "Traceback" in capsys.readouterr().err


# ---- item 8: a report.json of another shape ------------------------------------------------------------------------
@pytest.mark.parametrize("shape", ["artifacts_list", "top_level_list", "future_schema", "not_json"])
def test_a_report_of_another_shape_is_one_line(exported, tmp_path, shape):
    d = _copy(exported, tmp_path / "d")
    rep = json.loads((d / "report.json").read_text())
    text = {"artifacts_list": json.dumps({**rep, "artifacts": list(rep["artifacts"])}),
            "top_level_list": json.dumps([rep]),
            "future_schema": json.dumps({**rep, "schema_version": 99}),
            "not_json": "{"}[shape]
    (d / "report.json").write_text(text)
    for cmd in ("validate", "bench"):
        r = cli(cmd, d)
        assert r.returncode == EXIT_BAD_INPUT, (cmd, r.stderr)
        assert "report.json" in one_line(r)


# ---- item 9: bench on broken local artifacts fails the command and names the file ----------------------------------
def _rewritten(exported, dst, artifact, data: bytes):
    """A copy of `exported` whose `artifact` holds `data`, recorded in report.json as if edgeport wrote it (so the
    sha256 check passes and the runtime is what meets the broken file)."""
    d = _copy(exported, dst)
    rep = json.loads((d / "report.json").read_text())
    entry = rep["artifacts"][artifact]
    (d / entry["file"]).write_bytes(data)
    entry.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    (d / "report.json").write_text(json.dumps(rep))
    return d


@pytest.mark.parametrize("artifact, damage, parity", [("tflite_int8", "random", True),
                                                      ("tflite_int8", "truncated", False),
                                                      ("onnx_int8", "random", False)])
def test_bench_on_a_broken_artifact_fails_naming_it(exported, tmp_path, artifact, damage, parity):
    """A random-bytes or truncated artifact is never "skipped" with exit 0: with parity the host meets it first,
    with --no-parity the runner does; either way one line naming the file, exit 2, and no latency recorded."""
    file = json.loads((exported / "report.json").read_text())["artifacts"][artifact]["file"]
    data = (exported / file).read_bytes()
    data = os.urandom(len(data)) if damage == "random" else data[:len(data) // 2]
    d = _rewritten(exported, tmp_path / "d", artifact, data)
    r = cli("bench", d, "--artifact", artifact, "--runs", "1", "--warmup", "0", "--no-rss",
            *([] if parity else ["--no-parity"]))
    assert r.returncode == EXIT_BAD_INPUT, r.stderr
    line = one_line(r)
    assert f"{file} is not a valid model file" in line and "skipped" not in r.stdout
    assert "latency" not in json.loads((d / "report.json").read_text())


def test_a_runner_crash_is_blamed_on_the_file_it_was_loading(tmp_path):
    """A runtime that segfaults on a file (tf.lite does on some truncated flatbuffers) kills the runner without a
    result: the last stage line the runner wrote names the file, and the error is about the file (exit 2), not
    the device (exit 3). A real process is killed by SIGSEGV here, after the runner's own stage call."""
    from edgeport.errors import ArtifactError, TargetError
    from edgeport.runtime.runner_file import assemble_runner
    from edgeport.runtime.targets import parse_result

    script = ("import os, signal, sys; sys.path.insert(0, sys.argv[1]); import device_runner as r; "
              "r.stage(step='loading', file='model_int8.tflite', artifact='tflite_int8', engine='tflite'); "
              "os.kill(os.getpid(), signal.SIGSEGV)")
    runner_dir = assemble_runner().write(tmp_path).parent  # the file a target runs
    proc = subprocess.run([sys.executable, "-c", script, str(runner_dir)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == -11
    with pytest.raises(ArtifactError) as info:
        parse_result("local", proc.stdout, proc.stderr, proc.returncode)
    assert str(info.value).startswith("model_int8.tflite crashed the tflite interpreter while loading it (SIGSEGV)")
    assert info.value.exit_code == EXIT_BAD_INPUT
    # a remote shell reports 128 + N; the message then also names the device's runtime as a possible cause
    with pytest.raises(ArtifactError, match=r"on ssh://pi@board \(or the device's runtime"):
        parse_result("ssh://pi@board", "", proc.stderr, 139)
    # once every file loaded and ran (stage "timing"), a crash is the device's, as before
    timing = proc.stderr + "EDGEPORT-STAGE {\"step\": \"timing\"}\n"
    with pytest.raises(TargetError, match="the runner printed no result"):
        parse_result("local", "", timing, -11)


# ---- item 11: paths are printed as given (no rich markup); TensorFlow's log lines never reach the user (item 19) ---
@pytest.mark.slow  # 10-20 s: a full export; CI runs it
def test_a_path_with_rich_markup_is_printed_as_is(tmp_path):
    f = tmp_path / "net.py"
    f.write_text("import torch.nn as nn\ndef make():\n    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())\n")
    r = cli("export", f"{f}:make", "--input-shape", "3,8,8", "--out", "x[/y]/[bold]out", "--precision", "fp32",
            cwd=tmp_path, drop_env=TF_LOG_ENV)
    assert r.returncode == 0, r.stderr
    assert "x[/y]/[bold]out" in r.stdout and (tmp_path / "x[/y]" / "[bold]out" / "model.onnx").is_file()
    # item 19: the TFLite conversion imported TensorFlow, and none of its log lines reached the user
    assert (tmp_path / "x[/y]" / "[bold]out" / "model_fp32.tflite").is_file()
    assert not TF_LOG_LINE.search(r.stdout + r.stderr), r.stdout + r.stderr


TF_LOG_ENV = ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS", "GLOG_minloglevel")  # as a user's shell has them
TF_LOG_LINE = re.compile(r"^[IWE]\d{4} |oneDNN|cpu_feature_guard|absl::InitializeLog|INFO:tensorflow|"
                         r"Estimated count of arithmetic ops", re.M)


# ---- item 13: what reaches ssh and the device's shell; TorchScript needs trust -------------------------------------
@pytest.mark.parametrize("transport", ["ssh://pi@board", "adb://serial1"])
def test_remote_dir_is_quoted_for_the_device_shell(transport, tmp_path):
    """--remote-dir is checked at the command line (above) and quoted all the same: the temp-folder script, run by a
    real shell here, makes its folder inside the literal `$(...)` / `${...}` folder and runs nothing."""
    from edgeport.runtime import parse_target

    t = parse_target(transport).transport
    for value in ("${NOPE:-.}/$(touch ran)", "$(touch ran)", "a;touch ran", "a'b"):
        os.makedirs(tmp_path / value, exist_ok=True)
        script, _ = t.mkdir_script(value)
        made = subprocess.run(["sh", "-c", script + '; echo "$d"'], capture_output=True, text=True, timeout=30,
                              cwd=tmp_path)
        assert made.returncode == 0, made.stderr
        assert os.path.dirname(made.stdout.strip()) == value and (tmp_path / made.stdout.strip()).is_dir()
        assert not (tmp_path / "ran").exists()
    assert "${TMPDIR:-/tmp}/edgeport-" in parse_target("ssh://pi@board").transport.mkdir_script(None)[0]


def test_a_torchscript_source_needs_trust(tmp_path):
    """A TorchScript archive carries code: refused with one line (exit 2) unless --trust-checkpoint."""
    import torch

    path = tmp_path / "ts.pt"
    torch.jit.trace(torch.nn.Conv2d(3, 4, 3).eval(), torch.randn(1, 3, 8, 8)).save(str(path))
    r = cli("export", path, "--input-shape", "3,8,8", "--out", tmp_path / "o")
    assert r.returncode == EXIT_BAD_INPUT
    assert "is a TorchScript archive" in one_line(r) and "pass --trust-checkpoint" in one_line(r)
    assert not (tmp_path / "o").exists()


# ---- item 14: exit codes: a factory calling sys.exit ---------------------------------------------------------------
def test_a_factory_that_calls_sys_exit_is_bad_input(tmp_path):
    f = tmp_path / "script.py"
    f.write_text(textwrap.dedent("""
        import sys
        import torch.nn as nn
        def make():
            return nn.Conv2d(3, 4, 3)
        sys.exit(3)
    """))
    r = cli("export", f"{f}:make", "--input-shape", "3,8,8", "--out", tmp_path / "o")
    assert r.returncode == EXIT_BAD_INPUT
    assert "called sys.exit(3)" in one_line(r)


# ---- item 15: progress inside long steps ---------------------------------------------------------------------------
def test_step_progress_prints_each_stage_of_a_step_with_its_time(capsys):
    from edgeport.console import Console, step_progress

    con = Console()
    progress = step_progress(con, total=2)
    progress("convert", "start", "")
    progress.stage("tflite int8 (calibration: 64 samples, minmax)", "start", "")
    progress.stage("tflite int8 (calibration: 64 samples, minmax)", "done", "31.2s")
    progress("convert", "done", "40.0s")
    lines = [ln.rstrip() for ln in capsys.readouterr().out.splitlines()]
    assert lines[0] == "[1/2] convert ..." and lines[-1].startswith("[1/2] convert") and "done 40.0s" in lines[-1]
    assert lines[1].startswith("        · tflite int8 (calibration: 64 samples, minmax)")
    assert lines[1].endswith("31.2s")
    quiet = step_progress(Console(quiet=True), total=1)
    quiet.stage("x", "done", "1.0s")
    assert capsys.readouterr().out == ""


@pytest.mark.slow
def test_run_shows_the_stages_of_its_convert_step(tmp_path, capsys):
    """`edgeport run`'s export and convert steps name each stage as it finishes (export + simplify, verify;
    calibration, each precision, bias correction, the ORT INT8 model) with its time, instead of one silent spinner
    (a tiny CNN, end to end, ~15 s)."""
    import numpy as np

    from tiny_models import FACTORY, photo_calibration

    (tmp_path / "tiny.py").write_text(FACTORY)
    np.save(tmp_path / "calib.npy", photo_calibration(16))
    rc = main(["run", f"{tmp_path / 'tiny.py'}:make", "--input-shape", "3,16,16", "--exporter", "legacy",
               "--precision", "fp32,int8", "--calibration", str(tmp_path / "calib.npy"), "--num-calibration", "16",
               "--runs", "2", "--warmup", "0", "--num-validation", "4", "--no-layers", "--out", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert rc == 0, out
    convert = out[out.index("[2/5] convert ..."):out.index("[2/5] convert  ")]
    stages = [ln.split("·", 1)[1].strip() for ln in convert.splitlines() if "·" in ln]
    assert [re.sub(r"\s+[\d.]+s$", "", s) for s in stages] == [
        "calibration samples (16)", "shuffle pass + NHWC lowering", "tflite fp32",
        "tflite int8 (calibration: 16 samples, per-tensor)", "int8 bias correction (empirical, 8 samples)",
        "write + tensor maps",
        "onnx int8 (ORT, percentile)"]
    assert all(re.search(r"\d+\.\ds$", s) for s in stages)
    export = out[out.index("[1/5] export ..."):out.index("[2/5] convert ...")]
    assert "· torch -> ONNX (legacy exporter) + simplify" in export and "· verify ONNX Runtime vs torch" in export


@pytest.mark.slow
def test_run_validates_and_checks_device_parity_on_the_users_samples(tmp_path, capsys):
    """`edgeport run --samples FILE`: validation compares every artifact on the user's held-out arrays (all of them,
    recorded as the source in report.json) instead of the bundled photos; device parity takes its inputs from the
    same set, so a changed file re-runs both the validate and the bench step (the data is part of their keys)."""
    import numpy as np

    from tiny_models import FACTORY, photo_calibration

    (tmp_path / "tiny.py").write_text(FACTORY)
    np.save(tmp_path / "held.npy", photo_calibration(40)[-24:])  # 24 arrays the user keeps for validation
    # fp32 only: the subject is where validation and device parity take their samples from; the random tiny net's
    # logits are near-ties on photos, so its INT8 top-1 agreement (at 48 dB SQNR) is a coin flip per sample
    args = ["run", f"{tmp_path / 'tiny.py'}:make", "--input-shape", "3,16,16", "--exporter", "legacy",
            "--precision", "fp32", "--samples", str(tmp_path / "held.npy"),
            "--runs", "2", "--warmup", "0", "--no-layers", "--out", str(tmp_path / "o")]
    assert main(args) == 0, capsys.readouterr().out
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert {rep["parity"][a]["n_samples"] for a in rep["parity"]} == {24}
    assert str(tmp_path / "held.npy") in json.dumps(rep)
    np.save(tmp_path / "held.npy", photo_calibration(40)[-12:])
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert re.search(r"\[3/5\] validate\s+done", out) and re.search(r"\[4/5\] bench:local\s+done", out), out
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert {rep["parity"][a]["n_samples"] for a in rep["parity"]} == {12}


# ---- item 16: random weights are said, once, where they matter -----------------------------------------------------
def test_models_marks_the_models_with_trained_weights():
    r = cli("models", "--family", "shufflenet_v2")
    assert r.returncode == 0, r.stderr
    cells = [ln.split("│") for ln in r.stdout.splitlines() if ln.startswith("│")]
    rows = {c[1].strip(): c[-2].strip() for c in cells}
    assert rows["shufflenet_v2_cifar_x0_5"] == "digits 99.3%" and rows["shufflenet_v2_x1_0"] == "random"
    assert f"--checkpoint {os.path.abspath(CKPT)}" in " ".join(r.stdout.split())
    doc = json.loads(cli("--json", "models", "--family", "shufflenet_v2").stdout)
    weights = {row["name"]: row["trained_weights"] for row in doc}
    assert weights["shufflenet_v2_cifar_x1_0"] is None
    assert weights["shufflenet_v2_cifar_x0_5"]["data"] == "digits"
    assert os.path.samefile(weights["shufflenet_v2_cifar_x0_5"]["checkpoint"], CKPT)


def test_validate_says_first_that_the_weights_are_random(capsys):
    from edgeport.console import Console
    from edgeport.validation.validate import ValidationResult
    from edgeport.validation.validate_cli import print_result

    parity = {"tflite_fp32": {"reference": "onnx", "max_abs_err": 0.0, "mean_abs_err": 0.0, "cosine_mean": 1.0,
                              "sqnr_db": 120.0, "top1_agreement": 1.0, "top5_overlap": 1.0,
                              "thresholds_enforced": True}}
    samples = {"count": 4, "source": "digits", "seed": 0}
    for weights in (NAME, None):
        print_result(ValidationResult(parity=parity, thresholds={}, failures=[], samples=samples,
                                      random_weights=weights), Console())
        text = capsys.readouterr().out
        assert text.count("RANDOM weights") == (1 if weights else 0)
        assert not weights or text.index(f"RANDOM weights: {NAME}") < text.index("parity vs onnx")


def test_compare_knows_which_reports_have_random_weights(tmp_path):
    """`compare` prints the RANDOM weights line under its table for the models whose report says zoo, no
    checkpoint (the same line export, validate and run print)."""
    from edgeport.compare import has_random_weights
    from edgeport.console import random_weights_line

    for name, source, random in [("a", {"kind": "zoo", "name": NAME, "checkpoint": None}, True),
                                 ("b", {"kind": "zoo", "name": NAME, "checkpoint": CKPT}, False),
                                 ("c", {"kind": "factory", "name": "make", "checkpoint": None}, False)]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text(json.dumps({"schema_version": 1, "source": source}))
        assert has_random_weights(tmp_path / name) is random
    assert random_weights_line(["x", "y"]).startswith("RANDOM weights: x, y (zoo, no --checkpoint)")


# ---- item 17: tables fit the terminal, names never cut -------------------------------------------------------------
@pytest.mark.parametrize("width", [200, 120, 80])
def test_the_summary_table_fits_the_terminal_and_never_cuts_a_name(exported, width):
    from rich.console import Console as RichConsole

    from edgeport.report import load_report
    from edgeport.run_cli import summary_table

    table = summary_table(load_report(exported), "t", width=width)
    con = RichConsole(width=width, record=True)
    con.print(table)
    text = con.export_text()
    assert max(map(len, text.splitlines())) <= width
    assert "…" not in text
    for name in ("onnx", "tflite_fp32", "tflite_int8", "onnx_int8"):
        assert f" {name} " in text


# ---- item 18: report.html: labels beside their points, honest per-layer plot, module paths, no self-parity ---------
def _figures(monkeypatch):
    from edgeport import render

    figs = []
    monkeypatch.setattr(render, "png_bytes", lambda fig: figs.append(fig) or b"png")
    return render, figs


def _inside_and_apart(fig):
    from matplotlib.text import Text

    fig.canvas.draw()  # positions as in the saved PNG
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        frame = ax.get_window_extent(renderer)
        boxes = [Text.get_window_extent(t, renderer) for t in ax.texts]  # the text itself, not its leader line
        for b in boxes:
            assert frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1, (b, frame)
        for i, a in enumerate(boxes):
            assert not any(a.overlaps(b) for b in boxes[i + 1:]), [t.get_text() for t in ax.texts]
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_tradeoff_labels_sit_apart_inside_the_axes(monkeypatch):
    """Two artifacts at nearly the same latency and agreement (onnx and tflite_fp32 in every fp32 run) and the
    slowest point at the right: every label inside its axes, none overprinting another."""
    render, figs = _figures(monkeypatch)
    parity = {a: {"top1_agreement": t, "sqnr_db": q} for a, t, q in [
        ("onnx", 1.0, 116.0), ("tflite_fp32", 1.0, 113.0), ("tflite_int8", 0.94, 20.8), ("onnx_int8", 0.83, 14.1)]}
    latency = [{"target": "local", "threads": 1, "artifact": a, "p50_ms": p, "engine": "x"} for a, p in [
        ("onnx", 25.5), ("tflite_fp32", 25.7), ("tflite_int8", 12.4), ("onnx_int8", 23.8)]]
    render.plot_tradeoff(parity, latency)
    texts = _inside_and_apart(figs[0])
    assert sorted(texts) == sorted(list(parity) * 2)
    ax = figs[0].axes[0]
    assert ax.get_xlim()[1] > 25.7 * 1.1  # the slowest point is not on the frame


def test_the_per_layer_plot_says_what_it_shows_inside_its_axes(monkeypatch):
    render, figs = _figures(monkeypatch)
    rows = [{"depth": i, "sqnr_db": 30 - (i % 7) - (8 if i in (40, 41, 90) else 0), "op_type": "Conv",
             "node": f"node_Conv_{i}", "module": f"blocks.{i // 10}.conv"} for i in range(1, 93)]
    render.plot_layers({"layers": rows, "n_samples": 16, "n_validation_samples": 64, "artifact": "tflite_int8"},
                       threshold_db=18.0)
    fig = figs[0]
    title = fig.axes[0].get_title()
    assert "tflite_int8 vs the float ONNX model" in title and "the first 16 of the 64 validation samples" in title
    texts = _inside_and_apart(fig)
    assert any(t.startswith("blocks.4.conv (node_Conv_40)") for t in texts)


def test_worst_layers_are_named_by_their_torch_module():
    """The export records each node's torch module path (dynamo: its name scopes; legacy: the node name) and keeps
    it through simplification; validation and the report read it back."""
    import onnx
    from onnx import helper

    from edgeport.export.onnx_export import attach_modules, node_modules, tensor_modules

    dyn = helper.make_node("Conv", ["x", "w"], ["conv2d_1"], name="node_conv2d_1")
    dyn.metadata_props.add(key="pkg.torch.onnx.name_scopes", value="['', 'features', 'features.3', "
                                                                    "'features.3.conv', 'conv2d_1']")
    legacy = helper.make_node("Relu", ["conv2d_1"], ["r"], name="/layer1/layer1.0/relu/Relu")
    raw = helper.make_model(helper.make_graph([dyn, legacy], "g", [], []))
    modules = tensor_modules(raw)
    assert modules == {"conv2d_1": "features.3.conv", "r": "layer1.0.relu"}
    simplified = helper.make_model(helper.make_graph(  # what onnxsim leaves: other names, no metadata
        [helper.make_node("Conv", ["x", "w"], ["conv2d_1"], name="node_Conv_828"),
         helper.make_node("Relu", ["conv2d_1"], ["r"], name="n4_33")], "g", [], []))
    attach_modules(simplified, modules)
    assert node_modules(onnx.load_from_string(simplified.SerializeToString())) == {
        "node_Conv_828": "features.3.conv", "n4_33": "layer1.0.relu"}


def test_the_report_does_not_compare_this_machine_with_itself(tmp_path):
    from edgeport.render import render

    parity = [{"target": t, "device": "d", "artifact": "tflite_int8", "engine": "tflite", "cosine_min": 1.0,
               "max_abs": 0.0, "top1_agreement": 1.0, "ok": True} for t in ("local", "ssh://pi@board")]
    (tmp_path / "report.json").write_text(json.dumps({"schema_version": 1, "device_parity": parity}))
    html = (render(tmp_path)["html"]).read_text()
    table = html[html.index("id='table-device-parity"):]
    table = table[:table.index("</table>")]
    assert "ssh://pi@board" in table and ">local<" not in table


# ---- item 19: start-up and small things (did you mean, one spelling per flag, help, no empty folder, no reinstall)
def test_a_mistyped_family_or_model_gets_did_you_mean(tmp_path):
    r = cli("models", "--family", "mobilnet")
    assert r.returncode == EXIT_BAD_INPUT and "did you mean" in one_line(r)
    r = cli("export", "shufflenetv2_x1_0", "--out", tmp_path / "o")
    assert r.returncode == EXIT_BAD_INPUT and "did you mean 'shufflenet_v2_x1_0'" in one_line(r)


def test_one_spelling_per_flag_with_the_old_ones_kept():
    from edgeport.cli import build_parser

    parser = build_parser()
    a = parser.parse_args(["validate", "d", "--trust-checkpoint"])
    b = parser.parse_args(["validate", "d", "--trust"])
    assert a.trust is b.trust is True
    assert parser.parse_args(["bench", "d", "--targets", "adb://x"]).target == "adb://x"
    assert parser.parse_args(["run", "--trust-checkpoint"]).trust is True


def test_every_subcommand_help_has_a_description_and_its_defaults():
    from edgeport.cli import build_parser

    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, sp in sub.choices.items():
        assert sp.description and len(sp.description) > 20, name
        text = " ".join(sp.format_help().split())
        for action in sp._actions:
            shown = action.default not in (None, False, argparse.SUPPRESS, (), []) and action.option_strings
            if shown and action.help not in (None, argparse.SUPPRESS):
                assert "default" in " ".join(sp._get_formatter()._get_help_string(action).split()).lower(), \
                    (name, action.option_strings)
    bench = " ".join(sub.choices["bench"].format_help().split())
    assert "--runs RUNS timed inferences per configuration (default: 50)" in bench
    assert "(default: onnxruntime,tflite)" in bench


def test_a_failed_command_leaves_no_empty_folder_it_created(tmp_path, capsys):
    """The export fails after DIR was made (the model's forward raises): DIR and the parents it created are gone;
    a folder that existed before stays, and so does one the command wrote a file into."""
    f = tmp_path / "net.py"
    f.write_text("import torch.nn as nn\nclass Bad(nn.Module):\n    def forward(self, x):\n"
                 "        raise ValueError('broken forward')\ndef make():\n    return Bad()\n")
    rc = main(["export", f"{f}:make", "--input-shape", "3,8,8", "--out", str(tmp_path / "new" / "sub")])
    assert rc == EXIT_BAD_INPUT and "exporter failed" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()
    assert main(["export", f"{f}:make", "--input-shape", "3,8,8", "--out", str(tmp_path / "mine")]) == EXIT_BAD_INPUT
    assert (tmp_path / "mine").is_dir()


def test_the_install_is_skipped_when_nothing_changed(tmp_path):
    """`.ci/install.sh` (the demo's first step) runs pip once; a re-run with the same inputs only checks its stamp;
    a changed input (here: the stamp no longer matching) installs again. pip is a recording stand-in here."""
    import shutil

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    shim = tmp_path / "bin"
    shim.mkdir()
    log = tmp_path / "pip.log"
    (shim / "python").write_text(f"""#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then echo "$*" >> {log}; exit 0; fi
exec {sys.executable} "$@"
""")
    (shim / "python").chmod(0o755)
    env = {**os.environ, "PATH": f"{shim}:{os.environ['PATH']}", "EDGEPORT_INSTALL_STAMP_DIR": str(tmp_path)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))

    def install():
        r = subprocess.run(["bash", os.path.join(root, ".ci", "install.sh"), "demo"], capture_output=True, text=True,
                           env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        return r.stdout, (log.read_text().splitlines() if log.exists() else [])

    out, pips = install()
    assert len(pips) == 2 and "install [1/2]: torch" in out and (tmp_path / ".edgeport-install-demo").is_file()
    out, pips = install()
    assert len(pips) == 2 and "install: up to date" in out
    (tmp_path / ".edgeport-install-demo").write_text("an older pyproject.toml\n")
    out, pips = install()
    assert len(pips) == 4 and "install [2/2]" in out
    assert shutil.which("bash")
