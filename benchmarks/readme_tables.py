"""Regenerate the generated sections of README.md from the registries:
- the zoo table (between <!-- zoo:start --> and <!-- zoo:end -->): every registered model, params, MACs vs paper;
- the supported-op table (<!-- ops:start --> ... <!-- ops:end -->): every ONNX op the converter lowers, with the ONNX
  backend conformance counts from docs/conformance.json when present.

    python benchmarks/readme_tables.py          # rewrites README.md in place
    python benchmarks/readme_tables.py --check  # exit 1 if README.md is out of date
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def zoo_table() -> str:
    from edgeport.export.zoo_stats import zoo_stats
    from edgeport.models import get_spec, model_names

    lines = ["| model | family | input | params | MACs | paper MACs | paper |", "|---|---|---|---:|---:|---:|---|"]
    for name in model_names():
        s = zoo_stats(name)
        spec = get_spec(name)
        pub = s["published_macs"]
        lines.append(
            f"| `{name}` | {s['family']} | {'x'.join(map(str, s['input_shape']))} | {s['params']:,} | "
            f"{s['macs'] / 1e6:,.1f}M | {f'{pub / 1e6:,.1f}M' if pub else '-'} | {spec.paper.split(',')[0]} |"
        )
    return "\n".join(lines)


def ops_table() -> str:
    from edgeport.export.tflite import supported_ops

    conf_path = ROOT / "docs" / "conformance.json"
    conf = json.loads(conf_path.read_text()) if conf_path.exists() else {}
    per_op = conf.get("per_op", conf)
    lines = ["| ONNX op | ONNX backend node tests passed |", "|---|---:|"]
    for op in sorted(supported_ops()):
        c = per_op.get(op) if isinstance(per_op, dict) else None
        txt = f"{c['passed']}/{c['total']}" if isinstance(c, dict) and "passed" in c else "-"
        lines.append(f"| {op} | {txt} |")
    return "\n".join(lines)


def replace_section(text: str, tag: str, body: str) -> str:
    pat = re.compile(rf"(<!-- {tag}:start -->\n).*?(\n<!-- {tag}:end -->)", re.S)
    if not pat.search(text):
        raise SystemExit(f"README.md has no <!-- {tag}:start --> / <!-- {tag}:end --> markers")
    return pat.sub(lambda m: m.group(1) + body + m.group(2), text)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    readme = ROOT / "README.md"
    old = readme.read_text()
    new = replace_section(old, "zoo", zoo_table())
    new = replace_section(new, "ops", ops_table())
    if args.check:
        if new != old:
            print("README.md generated sections are out of date: run python benchmarks/readme_tables.py")
            return 1
        return 0
    readme.write_text(new)
    print("README.md updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
