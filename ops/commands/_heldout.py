"""The held-out flags of `unisar fit` and `eval` (the rule itself: stream.contract.offline).

`--heldout-last F`: the latest F of the samples in event time, for everyone (the paper's
last-day split), the same flag and rule as `train --heldout-last` and `demo --heldout-last`.
`--heldout-per-user`: the latest F of each user's samples instead.
`--holdout-last F`: the old spelling, kept for one release; it warns (one line on stderr).
"""
from __future__ import annotations

import argparse
import sys

DEPRECATED = "--holdout-last"


class _DeprecatedAlias(argparse.Action):
    """Stores like the flag it stands for, after one line of warning on stderr."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"{parser.prog}: warning: {option_string} is deprecated and will be removed in the next release; "
              f"use --heldout-last (now the latest F of all samples in event time; add --heldout-per-user "
              f"for the per-user rule)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_heldout_flags(parser: argparse.ArgumentParser, *, default: float | None, last_help: str,
                      per_user_help: str, optional_switch: bool = False) -> None:
    """--heldout-last, --heldout-per-user (with --no-heldout-per-user when `optional_switch`:
    default None, the checkpoint's rule) and the hidden deprecated --holdout-last."""
    parser.add_argument("--heldout-last", type=float, default=default, metavar="F", help=last_help)
    parser.add_argument(DEPRECATED, type=float, dest="heldout_last", metavar="F", default=argparse.SUPPRESS,
                        action=_DeprecatedAlias, help=argparse.SUPPRESS)
    if optional_switch:
        parser.add_argument("--heldout-per-user", action=argparse.BooleanOptionalAction, default=None,
                            help=per_user_help)
    else:
        parser.add_argument("--heldout-per-user", action="store_true", help=per_user_help)
