"""`unisar data core | split | stats`: filter, split and describe event files."""
from __future__ import annotations

import argparse
import datetime as dt
import sys

from ops.commands._common import fail, out_problem
from ops.commands.data._args import EPILOG, add_out, count, guarded, positive, say, share, written


def register(sub: argparse._SubParsersAction) -> None:
    _core(sub)
    _split(sub)
    _stats(sub)


# ---------------------------------------------------------------- core


def _core(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "core",
        help="k-core filter an events file (the UniSAR paper's preprocessing, for any event file)",
        description="Keep users with at least K behaviours (rec clicks + searches) and items with at least K "
        "clicks (rec clicks + search clicks), repeated until nothing changes; optionally only users with both "
        "behaviours. A kept search loses only its dropped clicks. When the input has an item catalogue "
        "(X.items.jsonl beside it), the kept items' records are written beside the output.",
        epilog=EPILOG,
    )
    p.add_argument("file", metavar="FILE", help="events file: .jsonl, .jsonl.gz or .parquet")
    p.add_argument("--min-core", type=int, default=5, metavar="K", help="the k of k-core (the paper: 5; default 5)")
    p.add_argument("--both-behaviours", action="store_true", help="also drop users without a rec click and a search")
    add_out(p)
    p.set_defaults(func=guarded(_run_core))


def _run_core(args: argparse.Namespace) -> int:
    from stream.contract.files import read_events
    from stream.data import catalogue_path
    from stream.data.core import k_core, kept_records
    from stream.data.jsonl import read_catalogue, write_events, write_items

    if args.min_core < 2 and not args.both_behaviours:
        fail(f"nothing to filter: expected --min-core >= 2 or --both-behaviours, got --min-core {args.min_core}")
    source = catalogue_path(args.file)
    # read (and check) the catalogue first: a bad record fails the command before anything is written
    records = [obj for _line, obj, _record in read_catalogue(source)] if source.is_file() else None
    result = k_core((obj for _line, obj, _event in read_events(args.file)), args.min_core, args.both_behaviours)
    count = write_events(result.events, args.out, total=len(result.events))
    written(f"events ({result.dropped_events:,} dropped, {result.dropped_clicks:,} search clicks removed; "
            f"{result.users:,} users and {result.items:,} items kept after {result.rounds} rounds)", count, args.out)
    if records is not None:
        target = catalogue_path(args.out)
        written("catalogue records", write_items(target, kept_records(records, result.kept_items, result.kept_users)),
                target)
    return 0


# ---------------------------------------------------------------- split


def _split(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "split",
        help="train/valid/test files by time (global cut points) or per-user last N",
        description="Split an events file into PREFIX.train/valid/test.jsonl (and PREFIX.split.json with the "
        "rule and cut points). days: the last day is test, the day before validation. fraction: cuts at "
        "event-time quantiles. time: explicit cut points. user: each user's last behaviours (leave-one-out). "
        "The same input and arguments always give the same files. Every output is in time order: an input "
        "that is not (a log sorted by user, say) is sorted by time in memory, ties in file order.",
        epilog=EPILOG,
    )
    p.add_argument("file", metavar="FILE", help="events file: .jsonl, .jsonl.gz or .parquet")
    p.add_argument("--by", choices=("days", "fraction", "time", "user"), default="days", help="split rule (days)")
    p.add_argument("--out", metavar="PREFIX", help="prefix of the split files (default: FILE without .jsonl)")
    p.add_argument("--tz-hours", type=float, default=0.0, help="days: time zone, hours east of UTC (0; KuaiSAR: 8)")
    p.add_argument("--valid-days", type=positive, default=1, help="days: validation days (1)")
    p.add_argument("--test-days", type=positive, default=1, help="days: test days (1)")
    p.add_argument("--valid", type=share, default=0.1, help="fraction: share of events for validation (0.1)")
    p.add_argument("--test", type=share, default=0.1, help="fraction: share of events for test (0.1)")
    p.add_argument("--valid-from", type=_when, metavar="TIME",
                   help="time: validation from (epoch ms or ISO date/time, UTC)")
    p.add_argument("--test-from", type=_when, metavar="TIME", help="time: test from (epoch ms or ISO date/time, UTC)")
    p.add_argument("--valid-n", type=count, default=1, help="user: behaviours per user for validation (1)")
    p.add_argument("--test-n", type=count, default=1, help="user: behaviours per user for test (1)")
    p.set_defaults(func=guarded(_run_split))


def _when(text: str) -> int:
    if text.strip().lstrip("-").isdigit():
        return int(text)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected epoch ms or an ISO date/time, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def _run_split(args: argparse.Namespace) -> int:
    from stream.data import stem
    from stream.contract.files import read_events
    from stream.data.split import LastN, TimeCuts, TimeOrdered, write_splits

    if args.valid_from is not None and args.test_from is not None and args.valid_from > args.test_from:
        fail(f"--valid-from: expected a time no later than --test-from ({_shown(args.test_from)}), "
             f"got {_shown(args.valid_from)}")
    prefix = args.out or stem(args.file)
    problem = out_problem(f"{prefix}.train.jsonl")
    if problem:
        fail(f"--out: {problem}")
    events = TimeOrdered(lambda: (obj for _line, obj, _event in read_events(args.file)))
    manifest: dict = {"by": args.by, "source": str(args.file), "out_of_order": events.late}
    if args.by == "user":
        splitter = LastN(LastN.count(events()), args.valid_n, args.test_n)
        assign = splitter.assign
        manifest.update(valid_n=args.valid_n, test_n=args.test_n)
    else:
        if args.by == "time":
            if args.valid_from is None or args.test_from is None:
                fail("--by time needs --valid-from and --test-from")
            cuts = TimeCuts(args.valid_from, args.test_from)
        else:
            ts = events.ts
            if ts.size == 0:
                fail(f"{args.file} holds no events")
            if args.by == "days":
                cuts = TimeCuts.by_days(int(ts.max()), args.tz_hours, args.valid_days, args.test_days)
                manifest.update(tz_hours=args.tz_hours, valid_days=args.valid_days, test_days=args.test_days)
            else:
                cuts = TimeCuts.by_fractions(ts, args.valid, args.test)
                manifest.update(valid=args.valid, test=args.test)
        assign = cuts.assign
        manifest.update(valid_from=cuts.valid_from, test_from=cuts.test_from)
    suffix = ".jsonl.gz" if str(args.file).endswith(".gz") else ".jsonl"
    counts = write_splits(events(), prefix, assign, manifest, suffix)
    where = f"{prefix}.{{train,valid,test}}{suffix}"
    cut_text = ""
    if "test_from" in manifest:
        cut_text = f"   (valid from {_iso(manifest['valid_from'])}, test from {_iso(manifest['test_from'])})"
    say(f"split {args.by}: train {counts['train']:,}  valid {counts['valid']:,}  test {counts['test']:,}"
         f" -> {where}{cut_text}")
    if events.late:
        say(f"sorted by time: {events.late:,} events of {args.file} came after a later one")
    return 0


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _shown(ms: int) -> str:
    try:
        return _iso(ms)
    except (OverflowError, OSError, ValueError):  # beyond the calendar: the number as given
        return f"{ms} ms"


# ---------------------------------------------------------------- stats


def _stats(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stats",
        help="users, items, queries, events per type, transitions and same-category rates of an events file",
        description="Describe an events file (.jsonl, .jsonl.gz or .parquet): sizes, events per type, the four transitions between "
        "consecutive behaviours of a user (behaviour = rec click or search) and, with an item catalogue, how "
        "often consecutive behaviours share a level-1 category. Invalid lines are counted and shown (exit code 1).",
        epilog=EPILOG,
    )
    p.add_argument("file", metavar="FILE", help="events file: .jsonl, .jsonl.gz or .parquet")
    p.add_argument("--items", metavar="CATALOGUE",
                   help="item catalogue whose level-1 categories are compared (default: FILE's X.items.jsonl "
                        "when it exists; --categories is an old name of this option)")
    p.add_argument("--categories", dest="items", help=argparse.SUPPRESS)  # deprecated alias of --items
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=guarded(_run_stats))


def _run_stats(args: argparse.Namespace) -> int:
    import orjson

    from stream.data import catalogue_path, stats

    path = args.items
    if path is None and catalogue_path(args.file).is_file():
        path = catalogue_path(args.file)
    if path is not None and str(path).endswith(".csv"):
        fail(f"--items: expected an item catalogue (X.items.jsonl), got {path}; item,category CSV files are "
             "no longer read: rebuild it with the `unisar data` command that wrote the events")
    categories = stats.level1_categories(path) if path else None
    result = stats.file_stats(args.file, categories)
    if path:
        result["catalogue"] = str(path)
    if args.json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        if path:
            say(f"item catalogue        {path}")
        say(stats.format_report(result))
    return 1 if result["invalid"] else 0
