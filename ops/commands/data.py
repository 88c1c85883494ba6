"""`unisar data`: build event v1 files from data sets, filter and split them, and describe them.

    unisar data kuaisar DIR --out kuaisar.jsonl --paper
    unisar data movielens --out ml100k.jsonl
    unisar data simulate --events 1000000 --users 5000 --seed 7 --out sim.jsonl
    unisar data convert log.csv --map user=uid,item=iid,ts=time --ts-unit s --out log.jsonl
    unisar data core sim.jsonl --min-core 5 --out sim.core.jsonl
    unisar data split sim.jsonl --by days
    unisar data stats sim.jsonl

Output is JSONL (`.jsonl`, or `.jsonl.gz`), or parquet when --out ends in `.parquet` and
pyarrow is installed. Item categories go beside the events (`X.categories.csv`). Bad input
ends with one line naming file, line, what was expected and what arrived, and exit code 2.
"""
from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import sys
import time

EPILOG = "Errors in input files are reported as FILE:LINE: expected ..., got ... (exit code 2)."


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="build event files from data sets (KuaiSAR, MovieLens, simulator, CSV), split, describe",
        description=__doc__.split("\n\n")[0],
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="data_command", metavar="SOURCE", required=True)
    _kuaisar(sub)
    _movielens(sub)
    _simulate(sub)
    _convert(sub)
    _core(sub)
    _split(sub)
    _stats(sub)


def _guarded(func):
    """Turn data errors into one line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        from stream.sources import DataError, SourceUnavailable

        try:
            return func(args)
        except (DataError, SourceUnavailable) as exc:
            print(f"unisar data {args.data_command}: error: {exc}", file=sys.stderr)
            return 2
        except BrokenPipeError:  # e.g. `unisar data stats x.jsonl | head`
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1

    return run


def _out(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--out", required=required, metavar="FILE",
                        help="events file to write: .jsonl, .jsonl.gz, or .parquet (needs pyarrow)")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a share within [0, 1], got {text}")
    return value


def _say(text: str) -> None:
    print(text, flush=True)


def _written(what: str, count: int, path: object) -> None:
    _say(f"wrote {count:,} {what} to {path}")


# ---------------------------------------------------------------- kuaisar


def _kuaisar(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "kuaisar",
        help="KuaiSAR directory (rec_inter.csv, src_inter.csv, item_features.csv) -> events",
        description="Convert the KuaiSAR release to event v1. Rec rows become rec events (click 0 rows are "
        "exposures); the rows of a search session become one search event clicking the items with "
        "click_cnt > 0. Item categories (item_features.csv) are written beside the events.",
        epilog=EPILOG,
    )
    p.add_argument("directory", metavar="DIR", help="directory holding rec_inter.csv and src_inter.csv")
    _out(p)
    p.add_argument("--paper", action="store_true",
                   help="the UniSAR paper's preprocessing: --both-behaviours --drop-last-days 2 --min-core 5 --split")
    p.add_argument("--both-behaviours", action="store_true", help="keep users with both rec clicks and searches")
    p.add_argument("--drop-last-days", type=int, default=None, metavar="N", help="drop the last N calendar days")
    p.add_argument("--min-core", type=int, default=None, metavar="K",
                   help="k-core: users need >= K behaviours, items >= K clicks (the paper: 5)")
    p.add_argument("--split", action="store_true",
                   help="also write X.train/valid/test.jsonl: last day test, the day before validation")
    p.add_argument("--tz-hours", type=float, default=8.0, help="time zone of calendar days, hours east of UTC (8)")
    p.add_argument("--rec-clicks-only", action="store_true", help="drop rec exposures without a click")
    p.add_argument("--search-item-types", metavar="T1,T2",
                   help="count only clicks on these item types, e.g. VIDEO,IMAGE_ATLAS (default: all)")
    p.add_argument("--category-level", type=int, choices=(1, 2, 3, 4), default=1,
                   help="which level of item_features.csv categories to use (1)")
    p.set_defaults(func=_guarded(_run_kuaisar))


def _run_kuaisar(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stream.sources import categories_path, kuaisar, stem
    from stream.sources.jsonl import write_categories, write_events
    from stream.sources.split import TimeCuts, write_splits

    base = kuaisar.Options.paper() if args.paper else kuaisar.Options()
    options = kuaisar.Options(
        both_behaviours=args.both_behaviours or base.both_behaviours,
        drop_last_days=base.drop_last_days if args.drop_last_days is None else args.drop_last_days,
        min_core=base.min_core if args.min_core is None else args.min_core,
        tz_hours=args.tz_hours,
        rec_clicks_only=args.rec_clicks_only,
        search_item_types=frozenset(args.search_item_types.split(",")) if args.search_item_types else None,
        category_level=args.category_level,
    )
    data = kuaisar.load(args.directory, options)
    _say("read:      " + _sizes(data.sizes()))
    data = kuaisar.preprocess(data, options)
    _say("kept:      " + _sizes(data.sizes()) + f"   ({_options(options)})")
    for note, value in data.notes.items():
        if note not in ("rec_rows", "search_sessions_read"):
            _say(f"note:      {note.replace('_', ' ')}: {value:,}")
    count = write_events(kuaisar.events(data), args.out, total=data.rec_user.size + data.s_user.size)
    _written("events", count, args.out)
    features = Path(args.directory) / kuaisar.ITEM_FILE
    if features.is_file():
        target = categories_path(args.out)
        n = write_categories(target, kuaisar.read_categories(features, kuaisar.items_of(data), options.category_level))
        _written("item categories", n, target)
    else:
        _say(f"no {kuaisar.ITEM_FILE} in {args.directory}: no categories file")
    if (args.split or args.paper) and count:
        ts_max = int(max(data.rec_ts.max(initial=0), data.s_ts.max(initial=0)))
        cuts = TimeCuts.by_days(ts_max, options.tz_hours)
        suffix = ".jsonl.gz" if str(args.out).endswith(".gz") else ".jsonl"
        counts = write_splits(kuaisar.events(data), stem(args.out), cuts.assign,
                              {"by": "days", "tz_hours": options.tz_hours, "valid_from": cuts.valid_from,
                               "test_from": cuts.test_from, "source": str(args.out)}, suffix, total=count)
        _say(f"split by day: train {counts['train']:,}  valid {counts['valid']:,}  test {counts['test']:,}"
             f"   (files {stem(args.out)}.{{train,valid,test}}{suffix})")
    return 0


def _sizes(sizes: dict) -> str:
    return ", ".join(f"{value:,} {name.replace('_', ' ')}" for name, value in sizes.items())


def _options(options: object) -> str:
    parts = [f"both behaviours {'on' if options.both_behaviours else 'off'}",
             f"last days dropped {options.drop_last_days}", f"min core {options.min_core}"]
    return ", ".join(parts)


# ---------------------------------------------------------------- movielens


def _movielens(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "movielens",
        help="MovieLens-100K (from the recbole==1.2.1 wheel) -> events with derived searches",
        description="Convert MovieLens-100K to event v1. A seeded share of clicks become searches whose query "
        "is the movie's genre words (and optionally title words) and which click that movie; the rest stay "
        "rec clicks. The data set is read from the MIT-licensed recbole==1.2.1 wheel, downloaded once with pip.",
        epilog=EPILOG,
    )
    _out(p)
    p.add_argument("--cache-dir", metavar="DIR",
                   help="where the wheel is kept (default ~/.cache/unisar or $UNISAR_CACHE)")
    p.add_argument("--wheel", metavar="PATH", help="use this recbole-1.2.1 wheel instead of downloading")
    p.add_argument("--search-share", type=_share, default=0.3, help="share of clicks turned into searches (0.3)")
    p.add_argument("--title-words", type=int, default=0, metavar="N", help="add the first N title words to queries (0)")
    p.add_argument("--min-rating", type=float, default=None, metavar="R",
                   help="ratings below R become rec exposures without a click (default: every rating is a click)")
    p.add_argument("--seed", type=int, default=0, help="seed of the search draw (0)")
    p.set_defaults(func=_guarded(_run_movielens))


def _run_movielens(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stream.sources import categories_path, movielens
    from stream.sources.jsonl import write_categories, write_events

    wheel = Path(args.wheel) if args.wheel else movielens.fetch_wheel(args.cache_dir)
    movielens.check_wheel(wheel)
    data = movielens.read_ml100k(wheel)
    sizes = data.sizes()
    _say(f"ml-100k: {sizes['users']:,} users, {sizes['items']:,} items, "
         f"{sizes['interactions']:,} interactions (before filtering)")
    kinds = {"rec": 0, "search": 0}

    def count_kind(event: dict) -> None:
        kinds[event["type"]] += 1

    events = movielens.events(data, args.search_share, args.seed, args.title_words, args.min_rating)
    count = write_events(events, args.out, on_event=count_kind, total=sizes["interactions"])
    _written(f"events ({kinds['search']:,} searches, {kinds['rec']:,} rec)", count, args.out)
    target = categories_path(args.out)
    _written("item categories", write_categories(target, movielens.categories(data)), target)
    return 0


# ---------------------------------------------------------------- simulate


def _simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="a seeded synthetic search-and-browse stream calibrated to KuaiSAR",
        description="Generate a synthetic event stream: users with persistent, drifting interests over item "
        "categories; transition statistics calibrated to the UniSAR paper's KuaiSAR figures. Same seed, same "
        "events. Writes item categories beside the events and prints the realised statistics.",
        epilog=EPILOG,
    )
    p.add_argument("--events", type=_positive, required=True, metavar="N", help="number of events")
    p.add_argument("--users", type=_positive, default=1000, metavar="U", help="number of users (1000)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (0)")
    _out(p)
    p.add_argument("--items", type=_positive, default=20_000, help="number of items (20000)")
    p.add_argument("--categories", type=_positive, default=200, help="number of item categories (200)")
    p.add_argument("--check-all", action="store_true",
                   help="validate every event (default: the first 1,000, then every 100th)")
    p.add_argument("--no-stats", action="store_true", help="skip the realised statistics (faster)")
    p.set_defaults(func=_guarded(_run_simulate))


def _run_simulate(args: argparse.Namespace) -> int:
    from stream.sources import categories_path, simulator, stats
    from stream.sources.jsonl import write_categories, write_events

    try:
        config = simulator.SimConfig(users=args.users, items=args.items, categories=args.categories, seed=args.seed)
    except ValueError as exc:
        print(f"unisar data simulate: error: {exc}", file=sys.stderr)
        return 2
    world = simulator.World.build(config)
    target = categories_path(args.out)
    n_items = write_categories(target, world.categories())
    accumulator = None
    if not args.no_stats:
        accumulator = stats.StreamStats({item: cat for item, cat in world.categories()})
    start = time.perf_counter()
    count = write_events(
        simulator.generate(config, args.events, world),
        args.out,
        check_every=1 if args.check_all else 100,
        on_event=accumulator.add if accumulator else None,
        total=args.events,
        desc="simulating",
    )
    seconds = time.perf_counter() - start
    _written(f"events ({count / seconds:,.0f} events/s written)", count, args.out)
    _written("item categories", n_items, target)
    if accumulator is not None:
        targets = {k: (f"{v:.2f}" if k == "rec_clicks_per_search" else f"{100 * v:.0f}%")
                   for k, v in config.targets().items()}
        _say(stats.format_report(accumulator.result(), targets))
    return 0


# ---------------------------------------------------------------- convert


def _convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="CSV/TSV, JSONL or parquet rows -> events, by a column map",
        description="Convert any table of interactions to event v1. --map names the source column of each "
        "event field: user, item, ts, type, click, query, clicks, event_id (user and ts required; item for "
        "rec rows, query for search rows). Without a type column a row with a query is a search.",
        epilog="Example: --map user=uid,item=iid,ts=time,type=kind,query=q,clicks=clicked --ts-unit s. " + EPILOG,
    )
    p.add_argument("input", metavar="INPUT", help="source file (.csv, .tsv, .jsonl, .parquet; .gz for text)")
    p.add_argument("--map", required=True, type=_mapping, metavar="FIELD=COLUMN,...", help="column mapping")
    _out(p)
    p.add_argument("--format", choices=("csv", "tsv", "jsonl", "parquet"), help="input format (default: from the name)")
    p.add_argument("--delimiter", help="CSV delimiter (default ',' or tab for .tsv)")
    p.add_argument("--ts-unit", choices=("s", "ms"), default="ms", help="unit of the ts column (ms)")
    p.add_argument("--type", dest="default_type", choices=("rec", "search", "infer"), default="infer",
                   help="type of rows without a type column (infer: search if the row has a query)")
    p.add_argument("--list-sep", default="|", help="separator of id lists in text cells, e.g. clicks (|)")
    p.add_argument("--id-prefix", help="event ids are PREFIX + line number (default: 'FILESTEM:')")
    p.add_argument("--no-sort", action="store_true",
                   help="keep file order and stream with flat memory (default: sort by time in memory)")
    p.set_defaults(func=_guarded(_run_convert))


def _mapping(text: str) -> dict[str, str]:
    from stream.sources.convert import parse_map

    try:
        return parse_map(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _run_convert(args: argparse.Namespace) -> int:
    from stream.sources import convert
    from stream.sources.jsonl import write_events

    mapping = convert.Mapping(args.map, args.ts_unit, args.default_type, args.list_sep)
    events = convert.convert(args.input, mapping, args.format, args.delimiter, not args.no_sort, args.id_prefix)
    # convert validated each event at its line already
    count = write_events(events, args.out, check=False)
    _written("events", count, args.out)
    return 0


# ---------------------------------------------------------------- core


def _core(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "core",
        help="k-core filter an events file (the UniSAR paper's preprocessing, for any event file)",
        description="Keep users with at least K behaviours (rec clicks + searches) and items with at least K "
        "clicks (rec clicks + search clicks), repeated until nothing changes; optionally only users with both "
        "behaviours. A kept search loses only its dropped clicks. Writes the kept items' categories beside "
        "the output when the input has a categories file.",
        epilog=EPILOG,
    )
    p.add_argument("file", metavar="FILE", help="JSONL events file")
    p.add_argument("--min-core", type=int, default=5, metavar="K", help="the k of k-core (the paper: 5; default 5)")
    p.add_argument("--both-behaviours", action="store_true", help="also drop users without a rec click and a search")
    _out(p)
    p.set_defaults(func=_guarded(_run_core))


def _run_core(args: argparse.Namespace) -> int:
    from stream.sources import categories_path
    from stream.sources.core import k_core
    from stream.sources.jsonl import read_categories, read_events, write_categories, write_events

    if args.min_core < 2 and not args.both_behaviours:
        print(f"unisar data core: error: nothing to filter: expected --min-core >= 2 or --both-behaviours, "
              f"got --min-core {args.min_core}", file=sys.stderr)
        return 2
    result = k_core((obj for _line, obj, _event in read_events(args.file)), args.min_core, args.both_behaviours)
    count = write_events(result.events, args.out, total=len(result.events))
    _written(f"events ({result.dropped_events:,} dropped, {result.dropped_clicks:,} search clicks removed; "
             f"{result.users:,} users and {result.items:,} items kept after {result.rounds} rounds)", count, args.out)
    source = categories_path(args.file)
    if source.is_file():
        kept = {str(e["item"]) for e in result.events if e["type"] == "rec"}
        kept.update(str(c) for e in result.events if e["type"] == "search" for c in e.get("clicks") or ())
        target = categories_path(args.out)
        pairs = ((item, cat) for item, cat in read_categories(source).items() if item in kept)
        _written("item categories", write_categories(target, pairs), target)
    return 0


# ---------------------------------------------------------------- split


def _split(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "split",
        help="train/valid/test files by time (global cut points) or per-user last N",
        description="Split an events file into PREFIX.train/valid/test.jsonl (and PREFIX.split.json with the "
        "rule and cut points). days: the last day is test, the day before validation. fraction: cuts at "
        "event-time quantiles. time: explicit cut points. user: each user's last behaviours (leave-one-out). "
        "The same input and arguments always give the same files.",
        epilog=EPILOG,
    )
    p.add_argument("file", metavar="FILE", help="JSONL events file (time ordered)")
    p.add_argument("--by", choices=("days", "fraction", "time", "user"), default="days", help="split rule (days)")
    p.add_argument("--out", metavar="PREFIX", help="prefix of the split files (default: FILE without .jsonl)")
    p.add_argument("--tz-hours", type=float, default=0.0, help="days: time zone, hours east of UTC (0; KuaiSAR: 8)")
    p.add_argument("--valid-days", type=_positive, default=1, help="days: validation days (1)")
    p.add_argument("--test-days", type=_positive, default=1, help="days: test days (1)")
    p.add_argument("--valid", type=_share, default=0.1, help="fraction: share of events for validation (0.1)")
    p.add_argument("--test", type=_share, default=0.1, help="fraction: share of events for test (0.1)")
    p.add_argument("--valid-from", type=_when, metavar="TIME",
                   help="time: validation from (epoch ms or ISO date/time, UTC)")
    p.add_argument("--test-from", type=_when, metavar="TIME", help="time: test from (epoch ms or ISO date/time, UTC)")
    p.add_argument("--valid-n", type=int, default=1, help="user: behaviours per user for validation (1)")
    p.add_argument("--test-n", type=int, default=1, help="user: behaviours per user for test (1)")
    p.set_defaults(func=_guarded(_run_split))


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
    import numpy as np

    from stream.sources import stem
    from stream.sources.jsonl import read_events
    from stream.sources.split import LastN, TimeCuts, write_splits

    def events():
        for _line, obj, _event in read_events(args.file):
            yield obj

    manifest: dict = {"by": args.by, "source": str(args.file)}
    if args.by == "user":
        splitter = LastN(LastN.count(events()), args.valid_n, args.test_n)
        assign = splitter.assign
        manifest.update(valid_n=args.valid_n, test_n=args.test_n)
    else:
        if args.by == "time":
            if args.valid_from is None or args.test_from is None:
                print("unisar data split: error: --by time needs --valid-from and --test-from", file=sys.stderr)
                return 2
            cuts = TimeCuts(args.valid_from, args.test_from)
        else:
            ts = np.fromiter((e["ts"] for e in events()), dtype=np.int64)
            if ts.size == 0:
                print(f"unisar data split: error: {args.file} holds no events", file=sys.stderr)
                return 2
            if args.by == "days":
                cuts = TimeCuts.by_days(int(ts.max()), args.tz_hours, args.valid_days, args.test_days)
                manifest.update(tz_hours=args.tz_hours, valid_days=args.valid_days, test_days=args.test_days)
            else:
                cuts = TimeCuts.by_fractions(ts, args.valid, args.test)
                manifest.update(valid=args.valid, test=args.test)
        assign = cuts.assign
        manifest.update(valid_from=cuts.valid_from, test_from=cuts.test_from)
    prefix = args.out or stem(args.file)
    suffix = ".jsonl.gz" if str(args.file).endswith(".gz") else ".jsonl"
    counts = write_splits(events(), prefix, assign, manifest, suffix)
    where = f"{prefix}.{{train,valid,test}}{suffix}"
    cut_text = ""
    if "test_from" in manifest:
        cut_text = f"   (valid from {_iso(manifest['valid_from'])}, test from {_iso(manifest['test_from'])})"
    _say(f"split {args.by}: train {counts['train']:,}  valid {counts['valid']:,}  test {counts['test']:,}"
         f" -> {where}{cut_text}")
    return 0


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# ---------------------------------------------------------------- stats


def _stats(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stats",
        help="users, items, queries, events per type, transitions and same-category rates of an events file",
        description="Describe a JSONL events file: sizes, events per type, the four transitions between "
        "consecutive behaviours of a user (behaviour = rec click or search) and, with categories, how often "
        "consecutive behaviours share a category. Invalid lines are counted and shown (exit code 1).",
        epilog=EPILOG,
    )
    p.add_argument("file", metavar="FILE", help="JSONL events file")
    p.add_argument("--categories", metavar="CSV",
                   help="item,category file (default: FILE's X.categories.csv when it exists)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_guarded(_run_stats))


def _run_stats(args: argparse.Namespace) -> int:
    import orjson

    from stream.sources import categories_path, stats
    from stream.sources.jsonl import read_categories

    path = args.categories
    if path is None and categories_path(args.file).is_file():
        path = categories_path(args.file)
    categories = read_categories(path) if path else None
    result = stats.file_stats(args.file, categories)
    if path:
        result["categories_file"] = str(path)
    if args.json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        if path:
            _say(f"categories            {path}")
        _say(stats.format_report(result))
    return 1 if result["invalid"] else 0
