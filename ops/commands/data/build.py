"""`unisar data kuaisar | movielens | simulate | convert`: event files from data sets."""
from __future__ import annotations

import argparse
import time

from ops.commands._common import fail
from ops.commands.data._args import EPILOG, add_out, guarded, positive, say, share, written


def write_catalogue(target, items, profiles) -> None:
    """Write item records, then user profiles, to one catalogue file, and say how many of each."""
    from itertools import chain

    from stream.data.jsonl import write_items

    counts = {"item": 0, "user": 0}

    def counted(records, kind: str):
        for record in records:
            counts[kind] += 1
            yield record

    write_items(target, chain(counted(items, "item"), counted(profiles, "user")))
    say(f"wrote {counts['item']:,} item records and {counts['user']:,} user profiles to {target}")


def register(sub: argparse._SubParsersAction) -> None:
    _kuaisar(sub)
    _movielens(sub)
    _simulate(sub)
    _convert(sub)


# ---------------------------------------------------------------- kuaisar


def _kuaisar(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "kuaisar",
        help="KuaiSAR directory (rec_inter.csv, src_inter.csv, item_features.csv, user_features.csv) -> events",
        description="Convert the KuaiSAR release to event v1. Rec rows become rec events (click 0 rows are "
        "exposures); the rows of a search session become one search event clicking the items with "
        "click_cnt > 0. The catalogue (item_features.csv: category levels, caption word ids; user_features.csv: "
        "activity levels and two one-hot fields as user profiles) is written beside the events as X.items.jsonl.",
        epilog=EPILOG,
    )
    p.add_argument("directory", metavar="DIR", help="directory holding rec_inter.csv and src_inter.csv (and, "
                   "optionally, item_features.csv and user_features.csv)")
    add_out(p)
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
    p.set_defaults(func=guarded(_run_kuaisar))


def _run_kuaisar(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stream.data import catalogue_path, kuaisar, stem
    from stream.data.jsonl import write_events
    from stream.data.split import TimeCuts, write_splits

    base = kuaisar.Options.paper() if args.paper else kuaisar.Options()
    options = kuaisar.Options(
        both_behaviours=args.both_behaviours or base.both_behaviours,
        drop_last_days=base.drop_last_days if args.drop_last_days is None else args.drop_last_days,
        min_core=base.min_core if args.min_core is None else args.min_core,
        tz_hours=args.tz_hours,
        rec_clicks_only=args.rec_clicks_only,
        search_item_types=frozenset(args.search_item_types.split(",")) if args.search_item_types else None,
    )
    data = kuaisar.load(args.directory, options)
    say("read:      " + _sizes(data.sizes()))
    data = kuaisar.preprocess(data, options)
    say("kept:      " + _sizes(data.sizes()) + f"   ({_options(options)})")
    for note, value in data.notes.items():
        if note not in ("rec_rows", "search_sessions_read"):
            say(f"note:      {note.replace('_', ' ')}: {value:,}")
    count = write_events(kuaisar.events(data), args.out, total=data.rec_user.size + data.s_user.size)
    written("events", count, args.out)
    features, users = (Path(args.directory) / name for name in (kuaisar.ITEM_FILE, kuaisar.USER_FILE))
    for path in (features, users):
        if not path.is_file():
            say(f"no {path.name} in {args.directory}: no {'item records' if path == features else 'user profiles'}")
    if features.is_file() or users.is_file():
        write_catalogue(catalogue_path(args.out),
                        kuaisar.catalogue(features, kuaisar.items_of(data)) if features.is_file() else (),
                        kuaisar.profiles(users, kuaisar.users_of(data)) if users.is_file() else ())
    if (args.split or args.paper) and count:
        ts_max = int(max(data.rec_ts.max(initial=0), data.s_ts.max(initial=0)))
        cuts = TimeCuts.by_days(ts_max, options.tz_hours)
        suffix = ".jsonl.gz" if str(args.out).endswith(".gz") else ".jsonl"
        counts = write_splits(kuaisar.events(data), stem(args.out), cuts.assign,
                              {"by": "days", "tz_hours": options.tz_hours, "valid_from": cuts.valid_from,
                               "test_from": cuts.test_from, "source": str(args.out)}, suffix, total=count)
        say(f"split by day: train {counts['train']:,}  valid {counts['valid']:,}  test {counts['test']:,}"
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
        "rec clicks. The catalogue (X.items.jsonl: genres as category levels, title words as caption; users' age "
        "decade, gender, occupation and zip region as profiles) is "
        "written beside the events. The data set is read from the MIT-licensed recbole==1.2.1 wheel, downloaded "
        "once with pip.",
        epilog=EPILOG,
    )
    add_out(p)
    p.add_argument("--cache-dir", metavar="DIR",
                   help="where the wheel is kept (default ~/.cache/unisar or $UNISAR_CACHE)")
    p.add_argument("--wheel", metavar="PATH", help="use this recbole-1.2.1 wheel instead of downloading")
    p.add_argument("--search-share", type=share, default=0.3, help="share of clicks turned into searches (0.3)")
    p.add_argument("--title-words", type=int, default=0, metavar="N", help="add the first N title words to queries (0)")
    p.add_argument("--min-rating", type=float, default=None, metavar="R",
                   help="ratings below R become rec exposures without a click (default: every rating is a click)")
    p.add_argument("--seed", type=int, default=0, help="seed of the search draw (0)")
    p.set_defaults(func=guarded(_run_movielens))


def _run_movielens(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stream.data import catalogue_path, movielens
    from stream.data.jsonl import write_events

    wheel = Path(args.wheel) if args.wheel else movielens.fetch_wheel(args.cache_dir)
    movielens.check_wheel(wheel)
    data = movielens.read_ml100k(wheel)
    sizes = data.sizes()
    say(f"ml-100k: {sizes['users']:,} users, {sizes['items']:,} items, "
         f"{sizes['interactions']:,} interactions (before filtering)")
    kinds = {"rec": 0, "search": 0}

    def count_kind(event: dict) -> None:
        kinds[event["type"]] += 1

    events = movielens.events(data, args.search_share, args.seed, args.title_words, args.min_rating)
    count = write_events(events, args.out, on_event=count_kind, total=sizes["interactions"])
    written(f"events ({kinds['search']:,} searches, {kinds['rec']:,} rec)", count, args.out)
    write_catalogue(catalogue_path(args.out), movielens.catalogue(data), movielens.profiles(data))
    return 0


# ---------------------------------------------------------------- simulate


def _simulate(sub: argparse._SubParsersAction) -> None:
    from stream.data.simulator import DRIFT_PROFILE, SimConfig

    p = sub.add_parser(
        "simulate",
        help="a seeded synthetic search-and-browse stream calibrated to KuaiSAR",
        description="Generate a synthetic event stream: users with persistent, drifting interests over item "
        "categories; transition statistics calibrated to the UniSAR paper's KuaiSAR figures. Same seed, same "
        "events. Writes the item catalogue (X.items.jsonl: each item's category, every item) and the world "
        "(X.world.json: every simulator setting) beside the events and prints the realised statistics. "
        "The world is static unless --drift or a drift flag says otherwise.",
        epilog=EPILOG,
    )
    p.add_argument("--events", type=positive, required=True, metavar="N", help="number of events")
    p.add_argument("--users", type=positive, default=1000, metavar="U", help="number of users (1000)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (0)")
    add_out(p)
    p.add_argument("--items", type=positive, default=20_000, help="number of items (20000)")
    p.add_argument("--categories", type=positive, default=200, help="number of item categories (200)")
    p.add_argument("--check-all", action="store_true",
                   help="validate every event (default: the first 1,000, then every 100th)")
    p.add_argument("--no-stats", action="store_true", help="skip the realised statistics (faster)")
    g = p.add_argument_group(
        "drift", "A drifting world (stream.data.simulator): items released and users joining over time, "
        "popularity that decays with an item's age, interests that shift. Rates are per day of the event clock "
        "(1,000 users make about 53,000 events a day). Each flag overrides the static default, or the --drift "
        "profile's value.")
    g.add_argument("--drift", dest="drift_profile", action="store_true",
                   help="turn on the drift profile: " + ", ".join(f"{k} {v}" for k, v in DRIFT_PROFILE.items()))
    g.add_argument("--drift-rate", type=_positive_float, default=1.0, metavar="X",
                   help="multiply every drift speed: release and arrival rates, popularity decay, interest drift "
                        "(1.0)")
    static = SimConfig()
    for flag, field, kind, metavar, what in _DRIFT_FLAGS:
        g.add_argument(flag, dest=field, type=kind, default=None, metavar=metavar,
                       help=f"{what} (default {getattr(static, field)}; {DRIFT_PROFILE[field]} with --drift)")
    p.set_defaults(func=guarded(_run_simulate))


def _positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


# flag, SimConfig field, type, metavar, help
_DRIFT_FLAGS = (
    ("--items-at-start", "items_at_start", share, "SHARE", "share of the catalogue released at the start"),
    ("--item-release-rate", "item_release_rate", _rate, "SHARE",
     "share of the catalogue released per day after the start"),
    ("--half-life-days", "popularity_half_life_days", _rate, "DAYS",
     "days in which an item's popularity halves after its release; 0: no decay"),
    ("--interest-drift", "drift", share, "P", "probability that a behaviour replaces one favourite category"),
    ("--users-at-start", "users_at_start", share, "SHARE", "share of the users there at the start"),
    ("--user-arrival-rate", "user_arrival_rate", _rate, "SHARE",
     "share of the users joining per day after the start"),
)


def _run_simulate(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from stream.contract.files import world_path
    from stream.data import catalogue_path, simulator, stats
    from stream.data.jsonl import atomic_path, write_events, write_items

    fields = {"users": args.users, "items": args.items, "categories": args.categories, "seed": args.seed,
              "drift_rate": args.drift_rate}
    fields.update({field: getattr(args, field) for _flag, field, *_ in _DRIFT_FLAGS
                   if getattr(args, field) is not None})
    try:
        config = (simulator.SimConfig.drifting if args.drift_profile else simulator.SimConfig)(**fields)
    except ValueError as exc:
        fail(str(exc))
    say("world:     " + ", ".join(f"{k} {v}" for k, v in dataclasses.asdict(config).items()
                                  if k in fields or k in simulator.DRIFT_PROFILE))
    if config.drift_rate != 1:
        speeds = config.effective_drift()
        say(f"drift rate {config.drift_rate:g}: " + ", ".join(f"{k} {v:g}" for k, v in speeds.items()))
    world = simulator.World.build(config)
    target = catalogue_path(args.out)
    n_items = write_items(target, world.catalogue())
    described = world_path(args.out)
    with atomic_path(described) as tmp:
        tmp.write_text(json.dumps({"simulator": "stream.data.simulator", "events": args.events,
                                   "config": dataclasses.asdict(config),
                                   "effective_drift": config.effective_drift()}, indent=2) + "\n")
    accumulator = None
    if not args.no_stats:
        accumulator = stats.StreamStats(dict(world.categories()))
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
    written(f"events ({count / seconds:,.0f} events/s written)", count, args.out)
    written("item records", n_items, target)
    say(f"wrote the world (every simulator setting) to {described}")
    if accumulator is not None:
        targets = {k: (f"{v:.2f}" if k == "rec_clicks_per_search" else f"{100 * v:.0f}%")
                   for k, v in config.targets().items()}
        say(stats.format_report(accumulator.result(), targets))
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
    add_out(p)
    p.add_argument("--format", choices=("csv", "tsv", "jsonl", "parquet"), help="input format (default: from the name)")
    p.add_argument("--delimiter", help="CSV delimiter (default ',' or tab for .tsv)")
    p.add_argument("--ts-unit", choices=("s", "ms"), default="ms", help="unit of the ts column (ms)")
    p.add_argument("--type", dest="default_type", choices=("rec", "search", "infer"), default="infer",
                   help="type of rows without a type column (infer: search if the row has a query)")
    p.add_argument("--list-sep", default="|", help="separator of id lists in text cells, e.g. clicks (|)")
    p.add_argument("--id-prefix", help="event ids are PREFIX + line number (default: 'FILESTEM:')")
    p.add_argument("--no-sort", action="store_true",
                   help="keep file order and stream with flat memory (default: sort by time in memory)")
    p.set_defaults(func=guarded(_run_convert))


def _mapping(text: str) -> dict[str, str]:
    from stream.data.convert import parse_map

    try:
        return parse_map(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _run_convert(args: argparse.Namespace) -> int:
    from stream.data import convert
    from stream.data.jsonl import write_events

    mapping = convert.Mapping(args.map, args.ts_unit, args.default_type, args.list_sep)
    events = convert.convert(args.input, mapping, args.format, args.delimiter, not args.no_sort, args.id_prefix)
    # convert validated each event at its line already
    count = write_events(events, args.out, check=False)
    written("events", count, args.out)
    return 0
