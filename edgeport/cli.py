"""`edgeport` command line: the dispatcher. It imports only the command modules (each registers its parser and sets
`func(args, console) -> int`); they share the leaf module `edgeport.console` (exit codes, output, argument parsers).

Exit codes: 0 ok; 1 a check failed (parity threshold); 2 bad input (or an I/O error such as a full disk); 3 a target
failed; 4 an internal error (a bug); 130 interrupted. Every error prints one line `edgeport: ...` on stderr, never a
traceback (`--verbose` adds it)."""
from __future__ import annotations

import argparse
import re
import sys
import traceback
from pathlib import Path

from edgeport import __version__, compare, export_cli, run_cli
from edgeport.console import (EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_INTERNAL, EXIT_INTERRUPTED,  # noqa: F401
                              EXIT_OK, EXIT_TARGET_FAILED, Console, OneLineParser)
from edgeport.errors import EdgeportError
from edgeport.guidelines import command as guidelines_command
from edgeport.runtime import cli as bench_cli
from edgeport.validation import validate_cli

DESCRIPTION = ("PyTorch checkpoint -> ONNX -> TFLite fp32 / full INT8, validated against torch and timed on x86 and "
               "ARM (Raspberry Pi over ssh, Android over adb).")
# Each adds its subcommand(s) to the parser; the order is the order of `edgeport --help`.
PARSERS = (export_cli.add_models_parser, export_cli.add_export_parser, validate_cli.add_validate_parser,
           bench_cli.add_bench_parser, run_cli.add_run_parser, compare.add_compare_parser,
           guidelines_command.add_guidelines_parser)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="edgeport", description=DESCRIPTION)
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="more detail; tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"edgeport {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in PARSERS:
        add(sub)
    for choice in sub._choices_actions:  # `edgeport CMD --help` opens with the line `edgeport --help` lists
        sp = sub.choices[choice.dest]
        sp.description = sp.description or (choice.help[:1].upper() + choice.help[1:] + "." if choice.help else None)
    for sp in sub.choices.values():  # global flags are accepted after the subcommand too
        sp.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sp.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sp.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse, run one command, and turn every way it can end into one line and a documented exit code."""
    verbose, new_dirs, rc = False, [], EXIT_INTERNAL
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        verbose = args.verbose
        con = Console(quiet=args.quiet, verbose=args.verbose, json_mode=args.json)
        new_dirs = missing_dirs(getattr(args, "out", None))
        rc = args.func(args, con)
        return rc
    except EdgeportError as exc:
        return _fail(f"edgeport: error: {exc}", exc.exit_code, verbose)
    except KeyboardInterrupt:
        return _fail("edgeport: interrupted; finished artifacts are kept, the next run resumes", EXIT_INTERRUPTED,
                     verbose=False)
    except MemoryError:
        return _fail("edgeport: error: out of memory (a very large --input-shape or too many samples?)",
                     EXIT_BAD_INPUT, verbose)
    except OSError as exc:  # e.g. a full disk while writing: an I/O problem of this machine, not a bug
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        return _fail(f"edgeport: error: I/O error{where}: {exc.strerror or exc}", EXIT_BAD_INPUT, verbose)
    except Exception as exc:  # a bug: still one line, the traceback behind --verbose
        command = (argv if argv is not None else sys.argv[1:])[:1]
        return _fail(f"edgeport: internal error{' in ' + command[0] if command else ''}: {type(exc).__name__}: "
                     f"{str(exc).splitlines()[0][:200] if str(exc) else ''} (a bug: please report it with the "
                     f"output of --verbose)", EXIT_INTERNAL, verbose)
    finally:
        if rc != EXIT_OK:  # a failed command leaves no empty folder it created (--out and its new parents)
            remove_empty(new_dirs)


def missing_dirs(out) -> list[Path]:
    """The folders of `out` (a path or None) that do not exist yet, deepest first."""
    if not out:
        return []
    missing, p = [], Path(out).absolute()
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    return missing


def remove_empty(dirs: list[Path]) -> None:
    """rmdir each folder (deepest first) that exists and is empty; anything with a file in it stays."""
    for d in dirs:
        try:
            d.rmdir()
        except OSError:  # not empty, or already gone
            pass


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _fail(line: str, code: int, verbose: bool) -> int:
    if verbose:
        traceback.print_exc()
    print(ANSI_ESCAPE.sub("", line), file=sys.stderr)  # torch's messages carry terminal colours
    return code


if __name__ == "__main__":
    sys.exit(main())
