"""Regenerate the comparison table in docs/models.md from the model registry.

Every registered model: parameters and multiply-adds counted by edgeport (MACs exactly, from the exported ONNX graph
with static shapes: Conv incl. groups, ConvTranspose, Gemm/MatMul) next to the published numbers in its spec, the
relative difference and the spec's note explaining it. Only the section between <!-- zoo-table:start --> and
<!-- zoo-table:end --> is rewritten.

    python benchmarks/zoo_table.py           # rewrites docs/models.md
    python benchmarks/zoo_table.py --check   # exit 1 when docs/models.md is out of date
    python benchmarks/zoo_table.py --print   # print the table only
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "models.md"
START, END = "<!-- zoo-table:start -->", "<!-- zoo-table:end -->"


def _pct(ours: float, pub: float | None) -> str:
    return f"{(ours / pub - 1) * 100:+.1f}%" if pub else "-"


def _params(pp: int | None) -> str:
    """An exact published count with all digits; a rounded one ("1.9M") as the paper prints it."""
    if not pp:
        return "-"
    return f"{pp:,}" if pp % 1000 else f"{pp / 1e6:g}M"


def table() -> str:
    from edgeport.export.zoo_stats import zoo_stats
    from edgeport.models import get_spec, model_names

    lines = [
        "| model | input | params | published params | MACs | published MACs | MACs diff | tolerance | notes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in model_names():
        spec, s = get_spec(name), zoo_stats(name)
        pp, pm = spec.published_params, spec.published_macs
        lines.append(
            f"| `{name}` | {'x'.join(map(str, spec.input_shape[1:]))} | {s['params']:,} | "
            f"{_params(pp)} | {s['macs'] / 1e6:,.1f}M | {f'{pm / 1e6:,.1f}M' if pm else '-'} | "
            f"{_pct(s['macs'], pm)} | {f'{spec.macs_tolerance:.0%}' if pm else '-'} | "
            f"{spec.notes.replace('|', '/') or '-'} |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if docs/models.md is out of date")
    mode.add_argument("--print", action="store_true", help="print the table and exit")
    args = ap.parse_args()
    body = table()
    if args.print:
        print(body)
        return 0
    old = DOC.read_text()
    pat = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pat.search(old):
        print(f"{DOC} has no {START} / {END} markers", file=sys.stderr)
        return 2
    new = pat.sub(lambda _m: f"{START}\n{body}\n{END}", old)
    if args.check:
        if new != old:
            print("docs/models.md is out of date: run python benchmarks/zoo_table.py")
            return 1
        return 0
    DOC.write_text(new)
    print(f"{DOC} updated ({body.count(chr(10)) - 1} models)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
