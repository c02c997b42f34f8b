"""`edgeport bench DIR --target local|ssh://user@host[:port]|adb://SERIAL`: latency + device parity."""
from __future__ import annotations

import argparse
import re
import sys

from rich.markup import escape

from edgeport.console import parse_csv, parse_thread_counts
from edgeport.errors import EdgeportError
from edgeport.options import BenchOptions
from edgeport.recommend import refresh_recommendation
from edgeport.report import DeviceParity
from edgeport.runtime.bench import PARITY_SAMPLES, BenchSettings, bench
from edgeport.runtime.engines import ENGINES
from edgeport.runtime.results import conditions_lines, latency_table, noisy_lines
from edgeport.runtime.targets import TARGETS, TargetOptions, parse_target
from edgeport.runtime.transports import check_remote_dir

TARGET_USAGE = " | ".join(scheme.usage for _, scheme in TARGETS.items())


def _pin_syntax(text: str) -> str:
    """--pin's syntax is checked here (bad input, exit 2); which CPUs exist is the target's business."""
    if text == "big" or re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", text):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: expected CPU ids like 0,1 or 4-7, or big")


def _remote_dir(text: str) -> str:
    try:
        return check_remote_dir(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parity_numbers(m: dict) -> str:
    near = f", near-ties {m['near_ties']}" if m.get("near_ties") else ""
    return (f"cosine {m['cosine_min']:.7f}, SQNR {m['sqnr_db']:.1f} dB, max abs {m['max_abs']:.3g}, "
            f"top-1 {m['top1_agreement']:.0%}{near}")


def parity_samples_line(held) -> str:
    """What device parity fed the model: the held-out set of `edgeport validate` (a SampleSet), every input."""
    info = held.info()
    line = (f"parity samples: {len(held)} held-out samples of {info['source']} (seed {info['seed']}), the set "
            f"`edgeport validate` uses")
    if held.extras:
        line += f"; inputs {', '.join(held.extras)}: " + (
            "seeded random data of their shape and dtype (pass --samples FILE.npz keyed by input name for real "
            "data)" if held.extras_source == "random" else f"from {held.extras_source}")
    return line


def parity_lines(entries: list[DeviceParity]) -> list[str]:
    """Rich-markup lines: per artifact x engine its verdict and worst numbers over its outputs; for a model with
    several outputs, then one line per output (the verdict is `agrees` only when every output agrees)."""
    lines = []
    for p in entries:
        verdict = "[green]agrees[/green]" if p.ok else "[red]DISAGREES[/red]"
        who = ("runner process vs this process (same machine: a check of the runner, not of a device)"
               if p.target == "local" else f"{p.device_arch} vs this machine")
        several = len(p.outputs) > 1
        what = f"worst of {len(p.outputs)} outputs: " if several else ""
        lines.append(f"parity {p.artifact} ({p.engine}) {escape(who)}: {verdict} ({what}"
                     f"{_parity_numbers(p.summary())}, {p.samples} samples)")
        for o in p.outputs if several else ():
            word = "[green]agrees[/green]" if o.ok else "[red]DISAGREES[/red]"
            lines.append(f"  output {escape(o.name)}: {word} ({_parity_numbers(o.metrics())})")
    return lines


def add_bench_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("bench", help="latency of DIR's artifacts on local / ssh:// / adb:// targets, "
                                            "with the target's outputs checked against this machine")
    p.add_argument("dir", help="output directory of `edgeport export` (holds report.json)")
    p.add_argument("--target", "--targets", dest="target", default="local", help=TARGET_USAGE + " (one target; --targets is the same flag, the spelling `run` uses)")
    p.add_argument("--engine", default="onnxruntime,tflite",
                   help=f"comma list of engines: {', '.join(n for n in ENGINES.names() if n != 'torch')}")
    p.add_argument("--artifact", default=None, help="comma list of report.json artifact names (default: all)")
    p.add_argument("--threads", type=parse_thread_counts, default=(1,), help="comma list, e.g. 1,2,4")
    p.add_argument("--runs", type=int, default=50, help="timed inferences per configuration")
    p.add_argument("--warmup", type=int, default=5, help="untimed inferences per configuration first")
    p.add_argument("--time-budget", type=float, default=None, metavar="S",
                   help="time rounds until S seconds have passed (overrides --runs; at least 3 rounds)")
    p.add_argument("--pin", default=None, metavar="CPUS", type=_pin_syntax,
                   help="pin to CPUs: 0,1 | 4-7 | big (default: big cores when the cores differ in max frequency)")
    BenchOptions.add_arguments(p, only=BenchOptions.HYGIENE)
    p.add_argument("--benchmark-binary", default=None, metavar="PATH",
                   help="adb: TFLite benchmark_model binary to push and run instead of the Python runner")
    p.add_argument("--timeout", type=float, default=600.0, metavar="S", help="limit per remote step (seconds)")
    p.add_argument("--device-python", default=None, help="Python on the device (default: python3 / python)")
    p.add_argument("--ssh-config", default=None, help="ssh -F file (default: your ~/.ssh/config)")
    p.add_argument("--remote-dir", default=None, type=_remote_dir,
                   help="parent folder for the temp folder on the device (an absolute path; default: $TMPDIR or "
                        "/tmp over ssh, /data/local/tmp over adb)")
    p.add_argument("--no-parity", action="store_true", help="skip the device-vs-this-machine output check")
    p.add_argument("--samples", default=None,
                   help="parity samples: default, digits, a folder, or an .npz keyed by input name (several-input "
                        "models); default: the held-out set `edgeport validate` uses")
    p.add_argument("--trust-checkpoint", dest="trust", action="store_true",
                   help="allow checkpoints that carry code (pickled modules, TorchScript) when the model's input "
                        "contract is rebuilt for the parity samples")
    p.add_argument("--no-rss", action="store_true", help="skip the per-configuration peak-RSS processes")
    p.set_defaults(func=cmd_bench)
    return p


def cmd_bench(args, con=None) -> int:
    """Returns 0, or 1 when the device's outputs disagree with this machine's. Raises EdgeportError subclasses."""
    from rich.console import Console

    target = parse_target(args.target)
    engines = parse_csv(args.engine)
    for e in engines:
        ENGINES.get(e)
    if args.runs < 1 or args.warmup < 0:
        raise EdgeportError("--runs must be >= 1 and --warmup >= 0")
    settings = BenchSettings(engines=engines, threads=tuple(args.threads), warmup=args.warmup, runs=args.runs,
                             time_budget_s=args.time_budget, pin=args.pin, min_seconds=args.min_seconds,
                             cooldown_s=args.cooldown, max_temp_c=args.max_temp,
                             artifacts=parse_csv(args.artifact) or None,
                             parity=not args.no_parity, rss=not args.no_rss)
    options = TargetOptions(timeout_s=args.timeout, python=args.device_python, ssh_config=args.ssh_config,
                            remote_tmp=args.remote_dir, benchmark_binary=args.benchmark_binary)
    held = None
    if settings.parity:
        from edgeport.validation.validate import held_out_samples  # torch: only when the command runs

        held = held_out_samples(args.dir, num=PARITY_SAMPLES, samples=args.samples, trust=args.trust)
    outcome = bench(out_dir=args.dir, target=target, settings=settings, options=options,
                    parity_inputs=held.arrays() if held is not None else None)
    rich = getattr(con, "rich", None) or Console(width=None if sys.stdout.isatty() else 200, highlight=False)
    quiet = getattr(con, "quiet", False)
    m = outcome.machine
    if not quiet:
        rich.print(f"[bold]{target.url}[/bold]: {m.get('arch')} {m.get('cpu_model')}, {m.get('cores')} cores; "
                   f"{', '.join(f'{k}: {v}' for k, v in m.get('runtimes', {}).items())}")
        for line in conditions_lines(outcome.entries):
            rich.print(line, markup=False)
        device = f" ({outcome.entries[0]['device']})" if outcome.entries else ""
        rich.print(latency_table(outcome.entries, title=f"latency on {target.url}{device} (ms)"))
        for line in noisy_lines(outcome.entries):
            rich.print(line, markup=False, style="yellow")
        for sk in outcome.skipped:  # the device has no runtime for these: say so, and why
            rich.print(f"skipped {sk['artifact']} ({sk['engine']}, {sk['threads']} thr) on {target.url}: "
                       f"{sk['reason']}", markup=False, style="yellow")
        if held is not None and outcome.device_parity:
            rich.print(parity_samples_line(held), markup=False)
        for line in parity_lines(outcome.device_parity):
            rich.print(line)
    decision = refresh_recommendation(args.dir)  # `run`'s recommendation, redone with these latencies
    if decision is not None and not quiet:
        rich.print("[bold]recommendation[/bold] (report.json's, updated with these latencies)")
        for line in decision.lines():
            rich.print(line, markup=False)
    if con is not None and getattr(con, "json_mode", False):
        con.emit_json({"latency": outcome.entries, "device_parity": [p.to_json() for p in outcome.device_parity],
                       "skipped": outcome.skipped, "parity_samples": held.info() if held is not None else None})
    return 0 if outcome.parity_ok else 1
