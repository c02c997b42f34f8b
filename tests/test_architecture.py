"""The shape of the package, held by tests: no import cycle (imports inside functions count), the layering rule
(a module imports only from its own layer or the layers below), no private name imported across modules, and
files and functions a reader can hold in their head. docs/architecture.md draws the same layers."""
from __future__ import annotations

import ast
import tomllib
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest first. A module belongs to the first group whose prefix matches it (longest prefixes are listed before
# their parents where they sit in another layer).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("leaf", ("edgeport.errors", "edgeport.registry", "edgeport.native", "edgeport.files", "edgeport.metrics",
              "edgeport.console")),
    ("schema", ("edgeport.report", "edgeport.options")),
    ("models", ("edgeport.models",)),
    ("runtime", ("edgeport.runtime",)),
    ("calibration", ("edgeport.calibration",)),
    ("export", ("edgeport.export",)),
    ("validation", ("edgeport.validation",)),
    ("pipeline", ("edgeport.run", "edgeport.render", "edgeport.recommend", "edgeport.guidelines.nets",
                  "edgeport.guidelines.analysis", "edgeport.guidelines.render")),
    ("commands", ("edgeport.cli", "edgeport.export_cli", "edgeport.run_cli", "edgeport.compare",
                  "edgeport.guidelines", "edgeport.runtime.cli", "edgeport.validation.validate_cli")),
]
# Modules that live in a lower package but are command-line front ends (they sit in the commands layer).
COMMAND_MODULES = ("edgeport.runtime.cli", "edgeport.validation.validate_cli")

MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 100
MAX_LONG_FUNCTIONS = 3
MAX_PRIVATE_IMPORTS = 3


@lru_cache(maxsize=1)
def package_modules() -> dict[str, Path]:
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mods = {}
    for pkg, folder in conf["tool"]["setuptools"]["package-dir"].items():
        base = ROOT / folder
        for p in base.rglob("*.py"):
            rel = p.relative_to(base).with_suffix("")
            if any(part in ("tests", "__pycache__") for part in rel.parts) or p.name == "conftest.py":
                continue
            name = ".".join([pkg, *rel.parts]).removesuffix(".__init__")
            if pkg == "edgeport" and rel.parts[0] in {"models", "export", "calibration", "runtime"}:
                continue  # mapped from the top-level folders, not under edgeport/
            mods.setdefault(name, p)
    return mods


def _imports(mod: str, path: Path) -> list[tuple[str, str, int]]:
    """(imported module, imported name or '', line) for every import, at any depth of the file."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out += [(target, a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(a.name, "", node.lineno) for a in node.names]
    return out


@lru_cache(maxsize=1)
def import_graph() -> dict[str, set[str]]:
    mods = package_modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        for target, name, _ in _imports(mod, path):
            full = f"{target}.{name}" if name else target
            dst = full if full in mods else target if target in mods else None
            if dst and dst != mod:
                graph[mod].add(dst)
    return graph


def layer_of(mod: str) -> int:
    if mod in COMMAND_MODULES:
        return len(LAYERS) - 1
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if mod == p or mod.startswith(p + "."):
                if best is None or len(p) > best[1]:
                    best = (i, len(p))
    if best is None:
        raise AssertionError(f"{mod} is in no layer of tests/test_architecture.py LAYERS: add it")
    return best[0]


def test_every_module_has_a_layer():
    for mod in package_modules():
        if mod != "edgeport":
            layer_of(mod)


def test_no_import_cycle():
    graph = {m: d for m, d in import_graph().items() if package_modules()[m].name != "__init__.py"}
    index, low, on, stack, cycles, counter = {}, {}, set(), [], [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            strong(v)
    assert not cycles, f"import cycles (function-level imports included): {cycles}"


def test_layering():
    """A module imports only from its own layer or lower ones (package __init__ re-exports excluded)."""
    bad = []
    for mod, deps in import_graph().items():
        if mod == "edgeport" or package_modules()[mod].name == "__init__.py":
            continue
        for dst in deps:
            if dst == "edgeport" or package_modules()[dst].name == "__init__.py" and dst in (
                    "edgeport.models", "edgeport.calibration", "edgeport.runtime", "edgeport.export",
                    "edgeport.export.tflite", "edgeport.validation", "edgeport.guidelines"):
                dst_layer = layer_of(dst if dst != "edgeport" else "edgeport.errors")
            else:
                dst_layer = layer_of(dst)
            if dst_layer > layer_of(mod):
                bad.append(f"{mod} ({LAYERS[layer_of(mod)][0]}) imports {dst} ({LAYERS[dst_layer][0]})")
    assert not bad, "imports against the layering:\n" + "\n".join(sorted(bad))


def test_private_names_stay_in_their_module():
    mods = package_modules()
    private = []
    for mod, path in mods.items():
        for target, name, line in _imports(mod, path):
            if not target.startswith("edgeport"):
                continue
            if name.startswith("_") and not name.startswith("__") and f"{target}.{name}" not in mods:
                private.append(f"{path.relative_to(ROOT)}:{line} imports {target}.{name}")
            dst = f"{target}.{name}" if f"{target}.{name}" in mods else target
            last = dst.rsplit(".", 1)[-1]
            if dst in mods and last.startswith("_") and not last.startswith("__") \
                    and dst.rsplit(".", 1)[0] != mod.rsplit(".", 1)[0]:
                private.append(f"{path.relative_to(ROOT)}:{line} imports the private module {dst}")
    private = sorted(set(private))
    assert len(private) <= MAX_PRIVATE_IMPORTS, "private names imported across modules:\n" + "\n".join(private)


def test_files_and_functions_fit_in_a_head():
    big, long_funcs = [], []
    for mod, path in package_modules().items():
        rel = str(path.relative_to(ROOT))
        src = path.read_text()
        if src.count("\n") + 1 > MAX_FILE_LINES:
            big.append(f"{rel}: {src.count(chr(10)) + 1} lines")
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_funcs.append(f"{rel}:{node.name}: {n} lines")
    assert not big, f"files over {MAX_FILE_LINES} lines: {big}"
    assert len(long_funcs) <= MAX_LONG_FUNCTIONS, f"functions over {MAX_FUNCTION_LINES} lines: {long_funcs}"


@pytest.mark.parametrize("forbidden", ["sys.argv"])
def test_library_code_reads_no_process_state(forbidden):
    """Library code takes its inputs as arguments: argv is read by the dispatcher and by the two programs that run
    on devices (the runner and the benchmark_model stand-in), nowhere else."""
    hits = [f"{p.relative_to(ROOT)}" for m, p in package_modules().items()
            if forbidden in p.read_text() and m not in ("edgeport.cli", "edgeport.runtime.device.entry",
                                                         "edgeport.runtime.benchmark_model")]
    assert not hits, f"{forbidden} read in {hits}"
