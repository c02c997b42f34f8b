"""The README's generated sections cover the registries (regenerate with `python benchmarks/readme_tables.py`), and
every doc the README links exists."""
from __future__ import annotations

import re
from pathlib import Path

from edgeport.export.tflite import supported_ops
from edgeport.models import model_names

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _section(tag: str) -> str:
    m = re.search(rf"<!-- {tag}:start -->\n(.*?)\n<!-- {tag}:end -->", README, re.S)
    assert m, f"README.md lacks the {tag} markers"
    return m.group(1)


def test_readme_zoo_table_lists_every_registered_model():
    rows = {m.group(1) for m in re.finditer(r"^\| `([^`]+)` \|", _section("zoo"), re.M)}
    assert rows == set(model_names()), "run python benchmarks/readme_tables.py"


def test_readme_ops_table_lists_every_lowered_op_with_conformance_counts():
    rows = dict(re.findall(r"^\| (\w+) \| ([^|]+) \|$", _section("ops"), re.M))
    assert set(rows) == set(supported_ops()), "run python benchmarks/readme_tables.py"
    assert all(re.fullmatch(r"\s*\d+/\d+\s*", v) for v in rows.values()), rows


def test_readme_quickstart_is_two_commands_and_links_exist():
    first_block = README.split("```bash\n", 1)[1].split("```", 1)[0]
    assert [ln.split()[:2] for ln in first_block.strip().splitlines()] == [["bash", ".ci/demo"], ["bash", ".ci/run"]]
    for link in re.findall(r"\]\(((?:docs/|DEVELOPERS|export/)[^)#]+)\)", README):
        assert (ROOT / link).exists(), link


def test_readme_says_what_the_demo_costs_and_what_a_failed_check_prints():
    """Issue 20 item 20: before the first command's output, the README gives the demo's time, memory and disk, and
    what it prints and returns when an accuracy check fails."""
    intro = README.split("edgeport takes a trained PyTorch checkpoint", 1)[0]
    assert re.search(r"\d+ s on a quiet machine", intro) and re.search(r"[\d.]+ GB of memory", intro)
    assert re.search(r"\d+ MB into `out/quickstart/`", intro)
    assert "exits 1" in intro and "`check` column" in intro
    assert "recommendation (fastest p50 whose accuracy checks pass)" in intro and ": ship " in intro
