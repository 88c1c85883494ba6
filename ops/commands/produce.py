"""`unisar produce`: send an event file (JSONL, .jsonl.gz, parquet; or JSONL on stdin) to the events topic."""
from __future__ import annotations

import argparse

from ops.commands._common import add_settings_flags
from ops.settings import KafkaSettings, TopicSettings


def register(sub) -> None:
    p = sub.add_parser("produce", help="send events from a file (.jsonl, .jsonl.gz, .parquet) or stdin to Kafka",
                       description="Validate each line against event v1 and send the valid ones (key = user). "
                                   "Invalid lines are reported with their line numbers and not sent.")
    p.add_argument("--file", required=True, help="events.jsonl, .jsonl.gz or .parquet, or - for JSONL on stdin")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=float, help="events per second (default: as fast as possible)")
    pace.add_argument("--speedup", type=float, help="replay at N times real time, following the events' ts")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--strict", action="store_true", help="exit 1 if any line was invalid")
    add_settings_flags(p, KafkaSettings, TopicSettings)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ops.commands._common import fail, require_broker, settings_from
    from stream.kafka import ensure_topics_sync
    from stream.contract.files import DataError, SourceUnavailable, open_events
    from stream.ingest.producer import EventProducer, Pacer, produce_lines

    for flag in ("rate", "speedup"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            fail(f"--{flag}: expected a positive number, got {value}")
    try:
        source = open_events(args.file)
    except (DataError, SourceUnavailable) as exc:
        fail(f"cannot read --file: {exc}")
    total = source.count()
    settings = settings_from(args)
    require_broker(settings)
    ensure_topics_sync(settings)
    with source, EventProducer(settings) as producer, tqdm(total=total, unit="ev", disable=args.no_progress) as bar:
        try:
            summary = produce_lines(producer, source.values(), Pacer(args.rate, args.speedup), bar)
        except KeyboardInterrupt:
            print("interrupted: flushed what was sent so far")
            return 130
        except DataError as exc:  # e.g. a truncated .gz: what came before it was sent and flushed
            fail(f"cannot read --file: {exc}", 1)
    print(summary.render())
    return 1 if (args.strict and summary.invalid) else 0
