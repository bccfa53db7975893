"""The `oscar-batch` command line: one sub-command per job, each a thin wrapper over a module."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


class UsageError(Exception):
    """Bad input from the command line: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oscar-batch", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    from oscar_batch import operator_cli, plan_cli, sandbox_cli  # they import UsageError from here

    for module in (operator_cli, plan_cli, sandbox_cli):
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
