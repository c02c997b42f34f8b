"""Where subsystem subcommands are wired into the CLI: each entry is `add_<name>_parser(subparsers)`, which must
set `func(args, console) -> int` as the parser default."""
from __future__ import annotations

PARSERS: list = []
