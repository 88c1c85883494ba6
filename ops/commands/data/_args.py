"""What every `unisar data` sub-command shares: argument types, the error guard, output lines."""
from __future__ import annotations

import argparse
import functools
import os
import sys

from ops.commands._common import fail, out_file

EPILOG = "Errors in input files are reported as FILE:LINE: expected ..., got ... (exit code 2)."


def guarded(func):
    """Turn data errors into the CLI's one error line (`fail`: exit code 2, no traceback)."""

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        from stream.data import DataError, SourceUnavailable

        try:
            return func(args)
        except (DataError, SourceUnavailable) as exc:
            fail(str(exc))
        except BrokenPipeError:  # e.g. `unisar data stats x.jsonl | head`
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1

    return run


def add_out(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--out", required=required, metavar="FILE", type=out_file,
                        help="events file to write: .jsonl, .jsonl.gz, or .parquet (needs pyarrow), in an "
                             "existing folder")


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a count >= 0, got {text}")
    return value


def share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a share within [0, 1], got {text}")
    return value


def say(text: str) -> None:
    print(text, flush=True)


def written(what: str, count: int, path: object) -> None:
    say(f"wrote {count:,} {what} to {path}")
