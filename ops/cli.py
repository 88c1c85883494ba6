"""`unisar`: the command-line entry point. Each sub-command lives in ops/commands/<name>.py
(`data`, which has sub-commands of its own, in the package ops/commands/data/)."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ops.commands import COMMANDS
from ops.commands._common import CommandError, Parser


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("unisar-stream")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(  # sub-parsers are Parsers too: one-line errors, defaults in --help
        prog="unisar",
        description="Continual training of UniSAR from a live stream of search and browse events. "
                    "Settings come from flags, else from UNISAR_* environment variables, else defaults.",
    )
    parser.add_argument("--version", action="version", version=f"unisar {version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"ops.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"ops.commands.{name}":
                raise
            continue  # not built yet
        module.register(sub)
    _name_commands(parser)
    return parser


def _name_commands(parser: argparse.ArgumentParser) -> None:
    """Each (sub-)command's parser records its name (`unisar data split`) in the parsed
    args, for its error lines; the innermost command's name wins."""
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for child in action.choices.values():
                child.set_defaults(command_prog=child.prog)
                _name_commands(child)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # the Kafka clients narrate every connection at INFO
        for noisy in ("kafka", "aiokafka"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"{getattr(args, 'command_prog', 'unisar')}: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
