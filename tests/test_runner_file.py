"""The one file a target runs (`device_runner.py`), assembled from the modules of edgeport.runtime.device: valid
Python 3.7 syntax, stdlib + numpy at top level, deterministic with a header that maps its lines back to the modules,
the file every target writes into its job folder, and a program that runs a job end to end with edgeport and torch
out of reach. An assembly rule that a module breaks stops the assembly with one line (RunnerBuildError)."""
from __future__ import annotations

import ast
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgeport.errors import RunnerBuildError
from edgeport.runtime import device
from edgeport.runtime.runner_file import (HEADER_HASH_PREFIX, MIN_DEVICE_PYTHON, PACKAGE_DIR, RUNNER_NAME,
                                          assemble_runner)
from edgeport.runtime.targets import LocalTarget, TargetOptions


def _module_level_imports(tree: ast.Module) -> list[ast.stmt]:
    """Imports outside any function or class body."""
    out, todo = [], list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            todo.extend(n for n in ast.iter_child_nodes(node) if isinstance(n, ast.stmt))
    return out


def test_the_runner_is_python_37_with_stdlib_and_numpy_imports_only():
    text = assemble_runner().text
    tree = ast.parse(text, feature_version=MIN_DEVICE_PYTHON)
    imports = _module_level_imports(tree)
    assert not [n.lineno for n in imports if isinstance(n, ast.ImportFrom) and n.level], "a sibling import is left"
    roots = {a.name.split(".")[0] for n in imports if isinstance(n, ast.Import) for a in n.names}
    roots |= {n.module.split(".")[0] for n in imports if isinstance(n, ast.ImportFrom)}
    assert roots - set(sys.stdlib_module_names) == {"numpy"}, roots
    assert "edgeport" not in {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert text.count("from __future__ import annotations") - text.count("# from __future__") == 1


def test_the_header_names_each_module_its_lines_and_the_body_hash():
    runner = assemble_runner()
    assert runner.text == assemble_runner().text  # deterministic
    lines = runner.text.splitlines()
    head = [ln for ln in lines if ln.startswith(HEADER_HASH_PREFIX)]
    body = runner.text.split(head[0] + "\n", 1)[1]
    assert head == [HEADER_HASH_PREFIX + runner.body_sha256] == [
        HEADER_HASH_PREFIX + hashlib.sha256(body.encode()).hexdigest()]
    assert [p.module for p in runner.parts] == list(device.MODULES)
    for part in runner.parts:
        assert f"{part.file}" in runner.text.split(HEADER_HASH_PREFIX)[0] and f"lines {part.first_line}-" in runner.text
        source = (PACKAGE_DIR / part.file).read_text().splitlines()
        shipped = lines[part.first_line - 1:part.last_line]
        assert len(shipped) == len(source), part
        for k, (a, b) in enumerate(zip(source, shipped)):  # line k+1 of the module is line first_line+k here
            assert b == a or b == "# " + a and (a.startswith(("from .", "from __future__")) or a.startswith(" ")), \
                (part.file, k + 1, a, b)


def test_every_module_of_the_package_is_in_the_runner_and_fits_in_a_head():
    on_disk = {p.stem for p in PACKAGE_DIR.glob("*.py")} - {"__init__"}
    assert on_disk == set(device.MODULES), "a module of edgeport/runtime/device is missing from MODULES"
    for name in device.MODULES:
        assert (PACKAGE_DIR / f"{name}.py").read_text().count("\n") < 300, name


@pytest.fixture()
def package_copy(tmp_path) -> Path:
    dst = tmp_path / "device"
    shutil.copytree(PACKAGE_DIR, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path.name, old)
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize("file, old, new, says", [
    ("timing.py", "def summarize(", "def stage(", "binds 'stage', which an earlier module binds too"),
    ("job.py", "import os\n", "import os\nimport edgeport\n", "imports 'edgeport' at top level"),
    ("job.py", "from .protocol import RunnerError, RuntimeMissing, stage",
     "from .protocol import RunnerError, RuntimeMissing\nfrom .protocol import stage as say", "another name"),
    ("machine.py", "from .interpreters import", "from .job import", "a module before it in MODULES"),
    ("timing.py", "from __future__ import annotations\n", "", "needs `from __future__ import annotations`"),
    ("job.py", "    configs = []\n", "    configs = []\n    if (n := 0):\n        pass\n", "not Python 3.7 syntax"),
    ("machine.py", "def peak_rss_mb", "if __name__ == '__main__':\n    pass\n\n\ndef peak_rss_mb",
     "only the last module of MODULES may run as __main__"),
], ids=["clash", "edgeport", "alias", "order", "future", "walrus", "main"])
def test_a_module_that_breaks_an_assembly_rule_stops_the_assembly(package_copy, file, old, new, says):
    assert assemble_runner(package_copy).text == assemble_runner().text  # the copy as it is assembles
    _edit(package_copy / file, old, new)
    with pytest.raises(RunnerBuildError, match=says) as info:
        assemble_runner(package_copy)
    assert "\n" not in str(info.value) and info.value.exit_code == 4


def two_output_onnx(path: Path) -> Path:
    """x (1, 4) -> y = 2x (1, 4) and z = x + 1 (1, 4): one input, two outputs."""
    g = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"]), helper.make_node("Add", ["x", "one"], ["z"])], "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in ("y", "z")],
        [helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
         helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


# Runs the runner file as __main__ with edgeport, torch and tensorflow made unimportable: what a device has.
BLOCKED_RUN = """
import runpy, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('edgeport', 'torch', 'tensorflow'):
            raise ImportError('blocked on a device: ' + name)
sys.meta_path.insert(0, Block())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def test_the_runner_file_runs_a_job_end_to_end_without_edgeport(tmp_path):
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    two_output_onnx(job_dir / "m.onnx")
    samples = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    np.savez(job_dir / "parity.npz", **{"onnx:0": samples})
    (job_dir / "job.json").write_text(json.dumps({
        "artifacts": [{"name": "onnx", "file": "m.onnx"}], "engines": ["onnxruntime"], "threads": [1],
        "warmup": 1, "runs": 3, "parity_inputs": "parity.npz", "rss": True, "seed": 0}))
    runner = assemble_runner().write(job_dir)
    assert runner.name == RUNNER_NAME
    proc = subprocess.run([sys.executable, "-c", BLOCKED_RUN, runner.name, "job.json", "--deadline", "120"],
                          cwd=job_dir, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [line] = [ln for ln in proc.stdout.splitlines() if ln.startswith("EDGEPORT-RESULT ")]
    data = json.loads(line[len("EDGEPORT-RESULT "):])
    [entry] = data["results"]
    assert entry["runs"] == 3 and entry["p50_ms"] > 0 and entry["peak_rss_mb"] > 1  # the --probe child ran too
    y, z = (np.asarray(o, np.float32) for o in data["outputs"]["onnx|onnxruntime"])  # every output comes back
    np.testing.assert_array_equal(y, 2 * samples[:, None])
    np.testing.assert_array_equal(z, samples[:, None] + 1)
    assert not (job_dir / "runner.pid").exists()


class _Inspecting(LocalTarget):
    """The local target, keeping a copy of the runner file it ran."""

    seen: list[str] = []

    def run_job(self, job_dir, *, options):
        data = super().run_job(job_dir, options=options)
        self.seen.append((Path(job_dir) / RUNNER_NAME).read_text())
        return data


def test_the_local_target_runs_the_assembled_file(tmp_path):
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    two_output_onnx(job_dir / "m.onnx")
    (job_dir / "job.json").write_text(json.dumps({
        "artifacts": [{"name": "onnx", "file": "m.onnx"}], "engines": ["onnxruntime"], "threads": [1],
        "warmup": 0, "runs": 2, "parity_inputs": None, "rss": False}))
    _Inspecting.seen = []
    data = _Inspecting().run_job(job_dir, options=TargetOptions(timeout_s=120))
    assert data["results"][0]["runs"] == 2
    assert _Inspecting.seen == [assemble_runner().text]
