"""The `oscar-batch` command line: one sub-command per job, each a thin wrapper over a module."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from oscar_batch.cli import plan, run, status
from oscar_batch.cli.usage import UsageError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oscar-batch", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for module in (run, plan, status):
        module.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args) or 0
    except UsageError as error:
        print(f"oscar-batch: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
