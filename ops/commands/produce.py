"""`unisar produce`: send a JSONL event file (or stdin) to the events topic."""
from __future__ import annotations

import argparse

from ops.commands._common import add_kafka_flags


def register(sub) -> None:
    p = sub.add_parser("produce", help="send events from a JSONL file or stdin to Kafka",
                       description="Validate each line against event v1 and send the valid ones (key = user). "
                                   "Invalid lines are reported with their line numbers and not sent.")
    p.add_argument("--file", required=True, help="events.jsonl, or - for stdin")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=float, help="events per second (default: as fast as possible)")
    pace.add_argument("--speedup", type=float, help="replay at N times real time, following the events' ts")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--strict", action="store_true", help="exit 1 if any line was invalid")
    add_kafka_flags(p)
    p.set_defaults(func=run)


def _count_lines(path: str) -> int | None:
    if path == "-":
        return None
    with open(path, "rb") as fh:
        return sum(buf.count(b"\n") for buf in iter(lambda: fh.read(1 << 20), b""))


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ops.commands._common import fail, settings_from
    from stream.kafka import ensure_topics_sync
    from stream.ingest.producer import EventProducer, Pacer, open_source, produce_lines

    for flag in ("rate", "speedup"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            fail(f"--{flag} must be a positive number, got {value}")
    try:
        source = open_source(args.file)
        total = _count_lines(args.file)
    except OSError as exc:
        fail(f"cannot read --file {args.file!r}: {exc.strerror}")
    settings = settings_from(args)
    ensure_topics_sync(settings)
    with EventProducer(settings) as producer, tqdm(total=total, unit="ev", disable=args.no_progress) as bar:
        try:
            summary = produce_lines(producer, source, Pacer(args.rate, args.speedup), bar)
        except KeyboardInterrupt:
            print("interrupted: flushed what was sent so far")
            return 130
    print(summary.render())
    return 1 if (args.strict and summary.invalid) else 0
