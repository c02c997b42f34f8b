"""The distribution: every package folder is listed in pyproject, imports live under `edgeport`, CLI entry point."""
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_folder_is_listed():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    mapping = cfg["package-dir"]
    found = set()
    for pkg, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([pkg, *rel.parts]) if rel.parts else pkg)
    assert found <= listed, f"package folders missing from pyproject packages: {sorted(found - listed)}"
    assert listed <= found, f"listed packages without a folder: {sorted(listed - found)}"


def test_no_generic_top_level_imports():
    bad = []
    for py in ROOT.glob("*/**/*.py"):
        if py.parts[len(ROOT.parts)] in ("tests", "benchmarks", ".ci", "docs"):
            continue
        for line in py.read_text().splitlines():
            if re.match(r"\s*(from|import)\s+(models|export|calibration|runtime)(\.|\s)", line):
                bad.append(f"{py.relative_to(ROOT)}: {line.strip()}")
    assert not bad, "use edgeport.<pkg> or relative imports:\n" + "\n".join(bad)


def test_console_script_runs():
    r = subprocess.run([sys.executable, "-m", "edgeport.cli", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("edgeport ")


def test_cli_help_imports_neither_torch_nor_tensorflow():
    # building every subcommand's parser must stay light: `edgeport --help` or a typo answers at once
    code = ("import sys; from edgeport.cli import build_parser; build_parser(); "
            "heavy = sorted(m for m in ('torch', 'tensorflow', 'onnxruntime', 'ai_edge_litert') if m in sys.modules); "
            "print(','.join(heavy))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"building the CLI parser imported {r.stdout.strip()}"
    from edgeport.calibration import Split, load_samples  # the package's names still resolve (lazily)

    assert callable(load_samples) and Split("validation")


def test_cli_choice_lists_spell_the_enums_exactly():
    """edgeport/options.py keeps the closed choices as strings so that parsing and the option checks import no
    TensorFlow; each list must be exactly its enum's values (a new enum member without a CLI spelling, or a stale
    spelling, fails here)."""
    from edgeport import options
    from edgeport.calibration import CalibrationMethod
    from edgeport.export.tflite import IODtype, Precision
    from edgeport.export.tflite.bias_correction import BiasCorrection
    from edgeport.export.tflite.weight_rounding import WeightRounding

    for choices, enum_cls in [(options.PRECISIONS, Precision), (options.IO_DTYPES, IODtype),
                              (options.CALIBRATION_METHODS, CalibrationMethod),
                              (options.BIAS_CORRECTIONS, BiasCorrection), (options.WEIGHT_ROUNDINGS, WeightRounding)]:
        assert sorted(choices) == sorted(m.value for m in enum_cls), enum_cls


def test_bad_option_values_fail_without_loading_torch_or_tensorflow():
    """A bad --precision or a calibration method that cannot keep the asked I/O type is refused by the option check
    alone: one line, exit 2, before the model (torch) or the converter (TensorFlow) is imported."""
    code = ("import sys\nfrom edgeport.cli import main\n"
            "rc = [main(['export', 'augshufflenet_x0_5', '--precision', 'fp32,int4', '--out', sys.argv[1]]),\n"
            "      main(['export', 'augshufflenet_x0_5', '--precision', 'int8', '--io', 'float',\n"
            "            '--calibration-method', 'percentile', '--out', sys.argv[1]])]\n"
            "heavy = [m for m in ('torch', 'tensorflow') if m in sys.modules]\n"
            "print(rc, heavy)\n")
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run([sys.executable, "-c", code, f"{d}/out"], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip().splitlines()[-1] == "[2, 2] []", (r.stdout, r.stderr)
    assert "unknown precision 'int4'" in r.stderr and "writes int8 model I/O only, not float" in r.stderr
