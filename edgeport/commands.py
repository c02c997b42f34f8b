"""Where subsystem subcommands are wired into the CLI: each entry is `add_<name>_parser(subparsers)`, which must
set `func(args, console) -> int` as the parser default. Imports are cheap (parsers import their heavy modules
only when the command runs)."""
from __future__ import annotations

from edgeport.calibration.validate_cli import add_validate_parser
from edgeport.compare import add_compare_parser
from edgeport.guidelines import add_guidelines_parser
from edgeport.run_cli import add_run_parser
from edgeport.runtime.cli import add_bench_parser

PARSERS: list = [add_validate_parser, add_bench_parser, add_run_parser, add_compare_parser, add_guidelines_parser]
