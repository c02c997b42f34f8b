"""`edgeport guidelines`: build every micro-network's artifacts, time all of them in ONE interleaved
`edgeport.runtime.bench` job (every round runs every configuration once, in a rotated order, so drift and other load
hit all of them alike), then print the tables and write guidelines.md, guidelines.json and img/ into --out.

    edgeport guidelines --out out/guidelines                      # G1-G4, XNNPACK fp32+INT8, ORT fp32+INT8
    edgeport guidelines --guideline G2 --engine tflite --precision int8 --runs 20
"""
from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import tempfile
import time
from pathlib import Path

from edgeport.console import EXIT_CHECK_FAILED, EXIT_OK, Console, parse_csv
from edgeport.errors import EdgeportError
from edgeport.files import atomic_write_text, prepare_out_dir
from edgeport.guidelines.analysis import (COLUMNS, NOISE, STATS, Built, analyse, build_artifacts, check_equal_flops,
                                          columns_for)
from edgeport.guidelines.nets import DEFAULT_SIZE, GUIDELINES, PAPER_NOTE, MicroNet, micro_networks
from edgeport.guidelines.render import plot, print_tables, write_markdown
from edgeport.native import captured_native_output
from edgeport.runtime.bench import BenchOutcome, BenchSettings, bench_artifacts
from edgeport.runtime.targets import Target, TargetOptions, parse_target


def _choice_list(allowed: tuple[str, ...], what: str, *, upper: bool = False):
    """An argparse type: a non-empty comma list of `allowed` values (upper-cased first with `upper`)."""

    def parse(text: str) -> tuple[str, ...]:
        text = text.upper() if upper else text
        vals = parse_csv(text)
        bad = [v for v in vals if v not in allowed]
        if bad or not vals:
            raise argparse.ArgumentTypeError(f"{text!r}: {what} must be a comma list of {', '.join(allowed)}")
        return vals

    return parse


# The command's options, in the order of `--help` and of the command line recorded in the report.
OPTIONS: tuple[tuple[str, dict], ...] = (
    ("--target", dict(default="local", help="local | ssh://user@host[:port] | adb://SERIAL")),
    ("--engine", dict(default="tflite,onnxruntime", type=_choice_list(("tflite", "onnxruntime"), "--engine"),
                      help="tflite,onnxruntime")),
    ("--precision", dict(default="fp32,int8", type=_choice_list(("fp32", "int8"), "--precision"), help="fp32,int8")),
    ("--guideline", dict(default="G1,G2,G3,G4", type=_choice_list(GUIDELINES, "--guideline", upper=True),
                         help="comma list of G1,G2,G3,G4")),
    ("--stat", dict(choices=sorted(STATS), default="min",
                    help="per-configuration statistic for ratios and verdicts: min (least-disturbed round; default, "
                         "robust on a shared machine) or p50")),
    ("--runs", dict(type=int, default=100, help="timed rounds (each runs every configuration once)")),
    ("--warmup", dict(type=int, default=5, help="untimed rounds first")),
    ("--threads", dict(type=int, default=1, help="interpreter threads (the paper's ARM runs used 1)")),
    ("--size", dict(type=int, default=DEFAULT_SIZE, help="feature-map height = width")),
    ("--scale", dict(type=float, default=1.0, help="channel multiplier (the paper's x1, x2, x4)")),
    ("--out", dict(default="guidelines-report", help="folder for guidelines.md, guidelines.json, img/")),
    ("--artifacts", dict(default=None, metavar="DIR",
                         help="keep the ONNX/TFLite files in DIR (default: a temporary folder, removed)")),
    ("--timeout", dict(type=float, default=1800.0, metavar="S", help="limit for the timing job")),
    ("--ssh-config", dict(default=None, help="ssh -F file for ssh:// targets (default: ~/.ssh/config)")),
    ("--device-python", dict(default=None, help="Python on the device (default: python3 / python)")),
)


def add_guidelines_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("guidelines", help="re-measure ShuffleNetV2's design guidelines G1-G4 on a target")
    for flag, kwargs in OPTIONS:
        p.add_argument(flag, **kwargs)
    p.set_defaults(func=cmd_guidelines)
    return p


def _dest(flag: str) -> str:
    return flag[2:].replace("-", "_")


def _flag_value(value) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def command_line(args: argparse.Namespace) -> str:
    """`edgeport guidelines` and the options of `args` that differ from their defaults, in OPTIONS order and shell
    quoted: the command the report records, the same whether the CLI or a library caller ran it."""
    parser = argparse.ArgumentParser(add_help=False)
    for flag, kwargs in OPTIONS:
        parser.add_argument(flag, **kwargs)
    defaults = vars(parser.parse_args([]))
    words = ["edgeport", "guidelines"]
    for flag, _ in OPTIONS:
        value = getattr(args, _dest(flag), defaults[_dest(flag)])
        if value != defaults[_dest(flag)]:
            words += [flag, _flag_value(value)]
    return " ".join(shlex.quote(w) for w in words)


@contextlib.contextmanager
def _artifact_dir(path: str | None):
    """--artifacts DIR (kept), or a temporary folder removed afterwards."""
    if path:
        yield prepare_out_dir(path)
        return
    with tempfile.TemporaryDirectory(prefix="edgeport-guidelines-") as tmp:
        yield Path(tmp)


def _build_all(nets: list[MicroNet], *, size: int, art_dir: Path, columns: list[str], con: Console) -> list[Built]:
    built = []
    for i, net in enumerate(nets, 1):
        with captured_native_output():
            b = build_artifacts(net, size=size, art_dir=art_dir, columns=columns)
        built.append(b)
        con.print(f"[{i}/{len(nets)}] {net.guideline} {net.label}: {b.macs / 1e6:.1f} MMACs, "
                  f"{len(b.files)} artifacts in {b.seconds:.1f} s")
    return built


def _time_all(args, con: Console, *, built: list[Built], columns: list[str], target: Target,
              art_dir: Path) -> BenchOutcome:
    """Every artifact of `built` timed in one interleaved bench job on `target` (named `<key>_<column>`)."""
    artifacts = {f"{b.net.key}_{c}": art_dir / f for b in built for c, f in b.files.items()}
    engines = tuple(dict.fromkeys(COLUMNS[c][0] for c in columns))
    n_cfg = len(artifacts)
    con.print(f"timing {n_cfg} configurations on {target.url}, interleaved: {args.warmup} warm-up + {args.runs} "
              f"timed rounds, {args.threads} thread(s) ...")
    settings = BenchSettings(engines=engines, threads=(args.threads,), warmup=args.warmup, runs=args.runs,
                             parity=target.url != "local", rss=False)
    status = con.rich.status("timing (one job; no per-round progress from the runner)") \
        if not con.quiet and not con.json_mode else None
    if status:
        status.start()
    try:
        return bench_artifacts(artifacts=artifacts, target=target, settings=settings,
                               options=TargetOptions(timeout_s=args.timeout, ssh_config=args.ssh_config,
                                                     python=args.device_python))
    finally:
        if status:
            status.stop()


def _write_outputs(args, con: Console, *, out: Path, results: dict, columns: list[str], target: Target,
                   outcome: BenchOutcome) -> None:
    """guidelines.md, guidelines.json and img/ in `out`."""
    settings_doc = {"command": command_line(args), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "target": target.url, "threads": args.threads, "size": args.size, "scale": args.scale,
                    "runs": args.runs, "warmup": args.warmup, "columns": columns, "stat": args.stat,
                    "guidelines": list(args.guideline)}
    plots = plot(results, columns, out / "img", "img/")
    write_markdown(out / "guidelines.md", results=results, columns=columns, settings=settings_doc,
                   machine=outcome.machine, plots=plots)
    atomic_write_text(out / "guidelines.json", json.dumps(
        {"settings": settings_doc, "machine": outcome.machine, "results": results, "latency": outcome.entries,
         "device_parity": [p.to_json() for p in outcome.device_parity], "noise_band": NOISE, "paper_note": PAPER_NOTE},
        indent=1, default=str) + "\n")
    con.print(f"wrote {out / 'guidelines.md'}, {out / 'guidelines.json'}, {len(plots)} plots in {out / 'img'}")


def cmd_guidelines(args: argparse.Namespace, con: Console | None = None) -> int:
    """Run the command for parsed `args` (the options of OPTIONS); `con` defaults to a plain Console."""
    con = Console() if con is None else con
    if args.runs < 1 or args.warmup < 0 or args.threads < 1 or args.size < 4 or args.scale <= 0:
        raise EdgeportError("--runs, --threads must be >= 1, --warmup >= 0, --size >= 4, --scale > 0")
    target = parse_target(args.target)
    columns = columns_for(args.engine, args.precision)
    out = prepare_out_dir(args.out)
    nets = micro_networks(args.guideline, scale=args.scale)
    with _artifact_dir(args.artifacts) as art_dir:
        t_start = time.perf_counter()
        built = _build_all(nets, size=args.size, art_dir=art_dir, columns=columns, con=con)
        check_equal_flops(built, args.guideline)
        t0 = time.perf_counter()
        outcome = _time_all(args, con, built=built, columns=columns, target=target, art_dir=art_dir)
        con.print(f"timed in {time.perf_counter() - t0:.0f} s (total {time.perf_counter() - t_start:.0f} s)\n")
        bad_parity = [p for p in outcome.device_parity if not p.ok]
        results = analyse(built, outcome.entries, columns, stat=args.stat)
        print_tables(con, results, columns)
        _write_outputs(args, con, out=out, results=results, columns=columns, target=target, outcome=outcome)
        if getattr(con, "json_mode", False):
            con.emit_json({"results": results, "machine": outcome.machine})
        if bad_parity:
            con.print(f"[red]{len(bad_parity)} artifacts disagree between {target.url} and this machine[/red]")
            return EXIT_CHECK_FAILED
        return EXIT_OK
