"""`unisar data`: build event v1 files from data sets, filter and split them, and describe them.

    unisar data kuaisar DIR --out kuaisar.jsonl --paper
    unisar data movielens --out ml100k.jsonl
    unisar data simulate --events 1000000 --users 5000 --seed 7 --out sim.jsonl
    unisar data convert log.csv --map user=uid,item=iid,ts=time --ts-unit s --out log.jsonl
    unisar data core sim.jsonl --min-core 5 --out sim.core.jsonl
    unisar data split sim.jsonl --by days
    unisar data stats sim.jsonl

Output is JSONL (`.jsonl`, or `.jsonl.gz`), or parquet when --out ends in `.parquet` and
pyarrow is installed (pip install 'unisar-stream[parquet]'); `core`, `split` and `stats`
read any of the three (stream.contract.files). Each source writes a catalogue beside the
events (`X.items.jsonl`: items' category ids by level and caption words, users' profile
fields; stream.contract.items); `core` filters it to the kept items and users and `stats`
compares level-1 categories. Bad input ends
with one line naming file, line, what was expected and what arrived, and exit code 2.
"""
from __future__ import annotations

import argparse

from ops.commands.data import build, files
from ops.commands.data._args import EPILOG


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="build event files from data sets (KuaiSAR, MovieLens, simulator, CSV), filter, split, describe",
        description=__doc__.split("\n\n")[0],
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="data_command", metavar="SOURCE", required=True)
    build.register(sub)  # kuaisar, movielens, simulate, convert
    files.register(sub)  # core, split, stats
