"""`unisar produce`: send an event file (JSONL, .jsonl.gz, parquet; or JSONL on stdin) to the
events topic, and a catalogue file (item records and user profiles) to the catalogue topic.

Each line is validated against event v1 (catalogue v1 for `--items`) and the valid ones are
sent (key = user; key = item, or "user:" and the user for a profile). Invalid lines are
reported with their line numbers and not sent. With both `--items` and `--file`, the catalogue
goes first, so the trainers know the items' features and users' profiles before their first
events.

Time order: the worker builds each user's history in the order events arrive, and the
trainer learns in that order. A file with events after a later one (a log sorted by user,
say) is refused with their count, before anything is sent; `--sort` sends it in time order (sorted by ts, ties in file order; the file
is held in memory) and `--keep-order` as it is. Standard input is read once: it is sent as it
comes (or sorted with `--sort`, after reading it all) and the count is reported at the end.
"""
from __future__ import annotations

import argparse

from ops.commands._common import RawDescriptionHelpFormatter, add_settings_flags
from ops.settings import KafkaSettings, TopicSettings


def register(sub) -> None:
    p = sub.add_parser("produce", help="send events from a file (.jsonl, .jsonl.gz, .parquet) or stdin to Kafka",
                       description=__doc__, formatter_class=RawDescriptionHelpFormatter)
    p.add_argument("--file", help="events.jsonl, .jsonl.gz or .parquet, or - for JSONL on stdin")
    p.add_argument("--items", metavar="FILE", help="a catalogue of items and user profiles (X.items.jsonl, as `unisar "
                   "data` writes beside its events) to send to the catalogue topic (--items-topic, default sar.items)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=float, help="events per second (default: as fast as possible)")
    pace.add_argument("--speedup", type=float, help="replay at N times real time, following the events' ts")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--strict", action="store_true", help="exit 1 if any line was invalid")
    order = p.add_mutually_exclusive_group()
    order.add_argument("--sort", action="store_true",
                       help="send the events in time order (ts, ties in file order), holding them in memory "
                            "(default: refuse a file that is out of time order)")
    order.add_argument("--keep-order", action="store_true",
                       help="send a file out of time order as it is (default: refuse it)")
    add_settings_flags(p, KafkaSettings, TopicSettings)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ops.commands._common import fail, require_broker, settings_from
    from stream.kafka import ensure_topics_sync
    from stream.contract.files import STDIN, DataError, SourceUnavailable, open_events, read_values
    from stream.contract.timeorder import LateCounter, time_order
    from stream.ingest.producer import EventProducer, Pacer, produce_lines

    for flag in ("rate", "speedup"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            fail(f"--{flag}: expected a positive number, got {value}")
    if not args.file and not args.items:
        fail("expected --file (events), --items (a catalogue) or both")
    settings = settings_from(args)
    if args.items:
        code = _produce_items(args, settings)
        if code or not args.file:
            return code
    try:
        source = open_events(args.file)
    except (DataError, SourceUnavailable) as exc:
        fail(f"cannot read --file: {exc}")
    require_broker(settings)
    late: int | None = None  # events after a later one; None: counted on the way
    try:
        if args.sort:  # read it all, then send in time order
            held = list(source.values())
            order, late = time_order(*_times(held))
            values, total = (held[i] for i in order.tolist()), len(held)
        elif args.keep_order or args.file == STDIN:  # sent as it comes
            values, total = source.values(), source.count()
        else:  # a first pass over the file: refused before anything is sent if out of time order
            ts, valid = _times(read_values(args.file))
            _, late = time_order(ts, valid)
            if late:
                fail(f"--file: expected events in time order, got {late:,} of {int(valid.sum()):,} events after a "
                     f"later one (a log sorted by user?); add --sort to send them in time order (held in memory) "
                     f"or --keep-order to send them as they are")
            values, total = source.values(), ts.size
    except (DataError, SourceUnavailable) as exc:
        fail(f"cannot read --file: {exc}")
    counter = LateCounter()
    if late is None:
        values = _counted(values, counter)
    ensure_topics_sync(settings)
    with source, EventProducer(settings) as producer, tqdm(total=total, unit="ev", disable=args.no_progress) as bar:
        try:
            summary = produce_lines(producer, values, Pacer(args.rate, args.speedup), bar)
        except KeyboardInterrupt:
            print("interrupted: flushed what was sent so far")
            return 130
        except DataError as exc:  # e.g. a truncated .gz: what came before it was sent and flushed
            fail(f"cannot read --file: {exc}", 1)
    print(summary.render())
    if args.sort and late:
        print(f"sorted by time: {late:,} events came after a later one in {args.file}")
    elif counter.late:
        print(f"sent out of time order: {counter.late:,} events came after a later one "
              f"(--sort sends them in time order)")
    return 1 if (args.strict and summary.invalid) else 0


def _produce_items(args: argparse.Namespace, settings) -> int:
    from tqdm import tqdm

    from ops.commands._common import fail, require_broker
    from stream.contract.files import DataError, SourceUnavailable, open_events
    from stream.ingest.producer import EventProducer, produce_items
    from stream.kafka import ensure_topics_sync

    try:
        source = open_events(args.items)
    except (DataError, SourceUnavailable) as exc:
        fail(f"cannot read --items: {exc}")
    require_broker(settings)
    ensure_topics_sync(settings)
    with source, EventProducer(settings, topic=settings.items_topic) as producer, \
            tqdm(total=source.count(), unit="item", disable=args.no_progress) as bar:
        try:
            summary = produce_items(producer, source.values(), bar)
        except KeyboardInterrupt:
            print("interrupted: flushed what was sent so far")
            return 130
        except DataError as exc:
            fail(f"cannot read --items: {exc}", 1)
    print(summary.render())
    return 1 if (args.strict and summary.invalid) else 0


def _times(values) -> tuple:
    """(ts, valid) arrays of (line, raw value) pairs; a value that is no valid event has no time."""
    import numpy as np

    from stream.contract.timeorder import event_ts

    ts = [event_ts(raw) for _line, raw in values]
    return (np.fromiter((t or 0 for t in ts), np.int64, len(ts)),
            np.fromiter((t is not None for t in ts), bool, len(ts)))


def _counted(values, counter):
    """`values` unchanged, each one's ts shown to `counter` on the way."""
    from stream.contract.timeorder import event_ts

    for line, raw in values:
        counter.see(event_ts(raw))
        yield line, raw
