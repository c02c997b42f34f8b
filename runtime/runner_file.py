"""The one file every target runs: `device_runner.py`, assembled from the modules of edgeport.runtime.device.

    >>> runner = assemble_runner()          # deterministic: the same modules give the same bytes
    >>> path = runner.write(job_dir)        # job_dir/device_runner.py; run there as `python3 device_runner.py ...`

The local target and the remote ones (ssh, adb) all write this file into the job folder and run it with a Python
of their own, so one artifact of edgeport is run one way, here as on a device.

Why a concatenated `.py` file and not a zipapp (`python3 runner.pyz`): a device has some Python 3.7+ (Raspberry
Pi OS, Debian, Termux, a vendor build) with numpy and an interpreter but nothing else we can count on. A plain
source file needs only that: no zipimport of a source archive (a Python built without zlib or with a trimmed
stdlib still runs it), no `__main__.py` convention, no path games for the RSS probes the runner starts of itself;
it can be read, copied and run by hand on the device (`python3 device_runner.py --discover`), and a traceback
there names a line of the file that is on the device. The price is a few rules the modules follow so that their
concatenation means what the package means (edgeport/runtime/device/__init__.py lists them); `assemble_runner`
checks every one of them and raises RunnerBuildError instead of shipping a file that would differ. Sibling imports
are commented out in place and each module keeps its own line numbering, so the header's table of line ranges
maps any line of the file back to its module.

The header names the source modules, the line range each occupies, and the sha256 of the text after the header
(`body_sha256`), so the file on a device says exactly which code it is.
"""
from __future__ import annotations

import ast
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

from edgeport.errors import RunnerBuildError
from edgeport.runtime import device

RUNNER_NAME = "device_runner.py"
PACKAGE_DIR = Path(device.__file__).parent
MIN_DEVICE_PYTHON = (3, 7)  # the oldest Python the assembled file must parse and run on
THIRD_PARTY = ("numpy",)  # the only top-level import that is not the stdlib (interpreters: inside functions)
HEADER_HASH_PREFIX = "# sha256 of the text after this header: "


@dataclass(frozen=True)
class RunnerPart:
    """One module of the runner: its file (relative to the package) and the lines of the assembled file it fills
    (line `first_line + k` of the file is line `k + 1` of the module)."""

    module: str
    file: str
    first_line: int
    last_line: int


@dataclass(frozen=True)
class AssembledRunner:
    """The assembled runner: its full `text` (header + body), the sha256 of the body, and its parts."""

    text: str
    body_sha256: str
    parts: tuple[RunnerPart, ...]

    def write(self, folder: str | Path) -> Path:
        """folder/device_runner.py with this text; returns its path."""
        path = Path(folder) / RUNNER_NAME
        path.write_text(self.text)
        return path


def _top_level_imports(tree: ast.Module) -> list[ast.stmt]:
    """Import statements at module level, including those inside a top-level try/if (not inside functions)."""
    out, todo = [], list(tree.body)
    while todo:
        node = todo.pop(0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        elif isinstance(node, (ast.Try, ast.If)):
            todo.extend(node.body + node.orelse + [s for h in getattr(node, "handlers", []) for s in h.body])
    return out


def _defined_names(tree: ast.Module) -> set[str]:
    """Names a module binds at top level by def, class or assignment (imports are checked separately)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


def _is_main_guard(node: ast.stmt) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators))


def _check_module(name: str, tree: ast.Module, *, earlier: dict[str, set[str]], last: bool) -> list[ast.stmt]:
    """The statements to comment out of module `name` (its sibling imports, and `from __future__` after the first
    module); raises RunnerBuildError when it breaks a rule of the assembly."""
    where = f"edgeport/runtime/device/{name}.py"
    drop: list[ast.stmt] = []
    future = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.module == "__future__"]
    if [a.name for n in future for a in n.names] != ["annotations"]:
        raise RunnerBuildError(f"{where}: needs `from __future__ import annotations` (and no other future import)")
    if earlier:
        drop += future
    for node in _top_level_imports(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            if node.level != 1 or node.module not in earlier or node not in tree.body:
                raise RunnerBuildError(f"{where}:{node.lineno}: a sibling import must be a top-level "
                                       f"`from .MODULE import NAME` of a module before it in MODULES")
            for alias in node.names:
                if alias.asname or alias.name not in earlier[node.module]:
                    raise RunnerBuildError(f"{where}:{node.lineno}: `{alias.name}` is not a top-level name of "
                                           f"{node.module}.py (or is imported under another name)")
            drop.append(node)
            continue
        roots = [a.name.split(".")[0] for a in node.names] if isinstance(node, ast.Import) else \
            [(node.module or "").split(".")[0]]
        bad = [r for r in roots if r not in sys.stdlib_module_names and r not in THIRD_PARTY]
        if bad:
            raise RunnerBuildError(f"{where}:{node.lineno}: imports {bad[0]!r} at top level; the runner may import "
                                   f"only the stdlib and {', '.join(THIRD_PARTY)} there (interpreters: in functions)")
    if not last and any(_is_main_guard(n) for n in tree.body):
        raise RunnerBuildError(f"{where}: only the last module of MODULES may run as __main__")
    return drop


def _commented(lines: list[str], drop: list[ast.stmt]) -> list[str]:
    """`lines` with the statements `drop` commented out in place (line numbers unchanged)."""
    out = list(lines)
    for node in drop:
        for i in range(node.lineno - 1, node.end_lineno):
            out[i] = "# " + out[i] if out[i].strip() else out[i]
    return out


def _header(parts: list[tuple[str, int, int]], body_sha256: str) -> list[str]:
    width = max(len(f"{m}.py") for m, _, _ in parts)
    return (["#!/usr/bin/env python3",
             "# edgeport device runner, assembled from the modules of edgeport.runtime.device "
             "(edgeport/runtime/device/*.py).",
             "# Generated when a job is shipped: edit those modules, not this file. Lines of this file per module:"]
            + [f"#   {m + '.py':<{width}}  lines {a}-{b}" for m, a, b in parts]
            + [HEADER_HASH_PREFIX + body_sha256])


def assemble_runner(package_dir: str | Path = PACKAGE_DIR) -> AssembledRunner:
    """The runner file from the modules of `package_dir` (edgeport.runtime.device, in its MODULES order).
    Raises RunnerBuildError when a module breaks a rule of the assembly or the result does not parse as Python
    MIN_DEVICE_PYTHON."""
    package_dir = Path(package_dir)
    sources: list[tuple[str, list[str]]] = []
    earlier: dict[str, set[str]] = {}  # module -> the names it defines (def, class, assignment)
    earlier_imports: dict[str, set[str]] = {}  # module -> the names its stdlib / numpy imports bind
    for k, name in enumerate(device.MODULES):
        path = package_dir / f"{name}.py"
        try:
            text = path.read_text()
            tree = ast.parse(text, filename=str(path))
        except (OSError, SyntaxError) as exc:
            raise RunnerBuildError(f"cannot read the runner module {path}: {exc}") from None
        drop = _check_module(name, tree, earlier=earlier, last=k == len(device.MODULES) - 1)
        defined = _defined_names(tree)
        imported = {(a.asname or a.name).split(".")[0] for n in _top_level_imports(tree)
                    if not (isinstance(n, ast.ImportFrom) and n.level) for a in n.names}
        taken = set().union(*earlier.values(), *earlier_imports.values()) if earlier else set()
        clash = sorted((defined & taken) | (imported & set().union(*earlier.values()) if earlier else set()))
        if clash:
            raise RunnerBuildError(f"edgeport/runtime/device/{name}.py binds {clash[0]!r}, which an earlier module "
                                   f"binds too: in one file the later one would replace it")
        sources.append((name, _commented(text.splitlines(), drop)))
        earlier[name], earlier_imports[name] = defined, imported
    body: list[str] = []
    spans = []
    for k, (name, lines) in enumerate(sources):
        if k:
            body += ["", "", f"# ==== {name}.py " + "=" * (100 - len(name))]
        spans.append((name, len(body) + 1, len(body) + len(lines)))
        body += lines
    body_text = "\n".join(body) + "\n"
    digest = hashlib.sha256(body_text.encode()).hexdigest()
    offset = len(_header(spans, digest))
    parts = tuple(RunnerPart(m, f"{m}.py", a + offset, b + offset) for m, a, b in spans)
    text = "\n".join(_header([(p.module, p.first_line, p.last_line) for p in parts], digest)) + "\n" + body_text
    try:
        ast.parse(text, filename=RUNNER_NAME, feature_version=MIN_DEVICE_PYTHON)
    except SyntaxError as exc:
        raise RunnerBuildError(f"the assembled {RUNNER_NAME} is not Python {'.'.join(map(str, MIN_DEVICE_PYTHON))} "
                               f"syntax (line {exc.lineno}: {exc.msg})") from None
    return AssembledRunner(text=text, body_sha256=digest, parts=parts)


__all__ = ["RUNNER_NAME", "MIN_DEVICE_PYTHON", "AssembledRunner", "RunnerPart", "assemble_runner"]
