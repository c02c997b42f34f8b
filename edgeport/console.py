"""The CLI's leaf module: exit codes, the output policy (`Console`), argument parsers shared by every command and the
step progress printer. It imports nothing of edgeport but `errors`, so every command module may import it and the
dispatcher (`edgeport.cli`) imports only command modules: no import cycle.

Exit codes (documented in the README): 0 ok; 1 a check failed (parity threshold, device disagreement); 2 bad input;
3 a target failed; 4 an internal error (a bug: the traceback is behind --verbose); 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from rich.markup import escape

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_TARGET_FAILED, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130


class Console:
    """Output policy shared by all commands: rich tables unless --quiet; machine output with --json."""

    def __init__(self, *, quiet: bool = False, verbose: bool = False, json_mode: bool = False):
        from rich.console import Console as RichConsole

        self.quiet, self.verbose, self.json_mode = quiet, verbose, json_mode
        # Human output goes to stderr in --json mode so stdout stays parseable.
        width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "200"))
        self.rich = RichConsole(stderr=json_mode, highlight=False, soft_wrap=False, width=width)

    def print(self, *args, **kwargs) -> None:
        if not self.quiet:
            self.rich.print(*args, **kwargs)

    def log(self, msg: str) -> None:
        if self.verbose:
            self.rich.print(f"[dim]{escape(msg)}[/dim]")

    def emit_json(self, obj) -> None:
        if self.json_mode:
            sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def plain(value) -> str:
    """A user-given string (a path, a model name) made safe to print through rich: `[x]` stays `[x]`."""
    return escape(str(value))


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """`--help` shows each option's default: "(default: 1,2)" after its help, unless the help already names its
    default or there is none to show (None, False, an empty list)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        shown = ",".join(map(str, default)) if isinstance(default, (tuple, list)) else str(default)
        shown = shown.replace("%", "%%")
        if "%(default)s" in text:  # a list default reads as typed on the command line: fp32,int8
            return text.replace("%(default)s", shown)
        if ("default" in text.lower() or default in (None, False, argparse.SUPPRESS) or default == ()
                or not action.option_strings or default == []):
            return text
        return f"{text} (default: {shown})"


class OneLineParser(argparse.ArgumentParser):
    """argparse with usage errors on one line (`edgeport: error: ...`, exit 2) instead of usage + message, and
    `--help` that shows every option's default (DefaultsHelpFormatter)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        command = self.prog.removeprefix("edgeport").strip()
        where = f"{command}: " if command else ""
        self.exit(EXIT_BAD_INPUT, f"edgeport: error: {where}{message} (see `{self.prog} --help`)\n")


def random_weights_line(models) -> str:
    """The one sentence every command prints (once) when zoo models run without trained weights."""
    names = ", ".join(models)
    return (f"RANDOM weights: {names} (zoo, no --checkpoint): outputs, top-1 agreement, accuracy and INT8 numbers say "
            f"nothing about a trained model; `edgeport models` lists the trained weights edgeport has")


# ---- argument values: one comma-list parser, the typed lists built on it ----------------------------------------
def parse_csv(text: str) -> tuple[str, ...]:
    """'a, b,,c' -> ('a', 'b', 'c'): the one comma-list parser of the CLI."""
    return tuple(p.strip() for p in (text or "").split(",") if p.strip())


def parse_ints(text: str) -> tuple[int, ...]:
    """A comma list of integers (argparse type): raises ArgumentTypeError, which argparse turns into exit 2."""
    try:
        return tuple(int(p) for p in parse_csv(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def parse_thread_counts(text: str) -> tuple[int, ...]:
    """A non-empty comma list of thread counts >= 1 (argparse type)."""
    vals = parse_ints(text)
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: thread counts must be >= 1")
    return vals


def parse_shape(text: str) -> tuple[int, ...]:
    """'3,224,224' or '3x224x224' -> (3, 224, 224) (argparse type: a bad value is a usage error, exit 2)."""
    try:
        return tuple(int(p) for p in parse_csv(text.replace("x", ",")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected integers like 3,224,224") from None


# ---- progress ---------------------------------------------------------------------------------------------------
def step_progress(con: Console, total: int | None = None):
    """An `on_event(step, status, detail)` callback: a spinner while a step runs (terminals only), then one line per
    step with its status and time, numbered [i/total]. `.close()` stops a spinner left running by an exception.
    `.stage(stage, status, detail)` reports a stage inside the running step (status "start" / "done"): the spinner
    names it, and each finished stage gets an indented line with its time, so a long step is never silent."""
    state = {"status": None, "i": 0, "t0": None, "step": ""}

    def on_stage(stage: str, status: str, detail: str) -> None:
        if con.quiet:
            return
        n = f"[{state['i']}/{total}]" if total else ""
        if status == "start":
            if state["status"] is not None:
                state["status"].update(f"{n} [bold]{escape(state['step'])}[/bold] · {escape(stage)} ...")
            return
        con.print(f"{' ' * len(n)}   · {escape(f'{stage:<48}')} {escape(detail)}")

    def on_event(step: str, status: str, detail: str) -> None:
        if con.quiet:
            return
        if status == "key":
            con.log(f"{step}: key {detail}")
            return
        state["step"] = step
        if status == "start":
            state["i"] += 1
            n = f"[{state['i']}/{total}]" if total else ""
            state["t0"] = time.perf_counter()
            if con.rich.is_terminal:
                state["status"] = con.rich.status(f"{n} [bold]{escape(step)}[/bold] ...", spinner="dots")
                state["status"].start()
            else:
                con.print(f"{escape(n)} {escape(step)} ...")
            return
        if status == "reused":
            state["i"] += 1
        if state["status"] is not None:
            state["status"].stop()
            state["status"] = None
        n = f"[{state['i']}/{total}]" if total else ""
        mark = {"done": "[green]done[/green]", "reused": "[cyan]reused[/cyan]", "failed": "[red]failed[/red]"}[status]
        con.print(f"{escape(n)} {escape(f'{step:<30}')} {mark} {escape(detail)}")

    def close() -> None:
        if state["status"] is not None:
            state["status"].stop()
            state["status"] = None

    on_event.close = close
    on_event.stage = on_stage
    return on_event
