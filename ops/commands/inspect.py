"""`unisar inspect`: print one user's stored history."""
from __future__ import annotations

import argparse

from ops.commands._common import add_settings_flags
from ops.settings import StoreSettings


def register(sub) -> None:
    p = sub.add_parser("inspect", help="print one user's stored history",
                       description="Open a worker's RocksDB directory read-only (beside a running worker, "
                                   "as of the moment it opens) and print the user's history in time order.")
    p.add_argument("--user", required=True, help="the raw user id, as in the events (e.g. u42)")
    p.add_argument("--events", help="an event file (.jsonl, .jsonl.gz or .parquet) to translate hashed ids back to raw item ids "
                                     "and words")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_settings_flags(p, StoreSettings)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os
    from datetime import datetime, timezone

    import orjson

    from ops.commands._common import fail, settings_from
    from state.store import RocksHistoryStore, StoreOptions
    from stream.contract import history as hist
    from stream.contract.ids import user_id

    settings = settings_from(args)
    state_dir = settings.state_dir
    if not os.path.isdir(state_dir):
        fail(f"--state-dir: expected a RocksDB directory written by `unisar worker`, got {state_dir!r} "
             f"(nothing there)")
    try:  # read-only: never create or change a store, nor turn some other folder into one
        store = RocksHistoryStore(state_dir, StoreOptions(memory_budget_bytes=settings.state_memory_mb << 20),
                                  read_only=True)
    except FileNotFoundError:
        fail(f"--state-dir: expected a RocksDB directory written by `unisar worker`, got {state_dir!r} "
             f"(a folder without a store)")
    except Exception as exc:  # rocksdict raises a plain Exception, e.g. for a damaged store
        fail(f"--state-dir: cannot open the store in {state_dir!r}: {exc}")
    try:
        raw = store.get(user_id(args.user))
    finally:
        store.close()
    if raw is None:
        print(f"no history stored for user {args.user!r}")
        return 1
    history = hist.decode(raw)
    names = _raw_names(args.events, history) if args.events else {}

    def show(ids) -> list:
        return [names.get(i, i) for i in ids]

    rows = []
    for b in history.mixed():
        when = datetime.fromtimestamp(b.ts / 1000, timezone.utc).isoformat(timespec="milliseconds")
        if isinstance(b, hist.RecBehaviour):
            rows.append({"ts": b.ts, "time": when, "type": "rec", "item": show([b.item])[0]})
        else:
            rows.append({"ts": b.ts, "time": when, "type": "search", "query": show(b.query), "clicks": show(b.clicks)})
    if args.json:
        print(orjson.dumps({"user": args.user, "last_offset": history.last_offset, "behaviours": rows}).decode())
        return 0
    print(f"user {args.user} (id {user_id(args.user)}): {len(history.rec)} rec, {len(history.search)} search "
          f"behaviours; last applied offset {history.last_offset}")
    if not names:
        print("ids are the stable 64-bit hashes of the raw ids (stream.contract.ids); --events FILE shows raw ids")
    for r in rows:
        if r["type"] == "rec":
            print(f"  {r['time']}  rec     item {r['item']}")
        else:
            print(f"  {r['time']}  search  query {r['query']}  clicks {r['clicks']}")
    return 0


def _raw_names(path: str, history) -> dict[int, str]:
    """Map the hashed ids of `history` back to raw ids by hashing those found in `path`."""
    import orjson

    from ops.commands._common import fail
    from stream.contract.files import DataError, SourceUnavailable, read_values
    from stream.contract.ids import item_id, word_id

    wanted = {b.item for b in history.rec} | {i for b in history.search for i in (*b.query, *b.clicks)}
    names: dict[int, str] = {}
    try:
        for _line, value in read_values(path):
            try:
                event = orjson.loads(value)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(event, dict):
                continue
            query = event.get("query")
            words = query.lower().split() if isinstance(query, str) else query if isinstance(query, list) else []
            for raw in [event.get("item"), *(event.get("clicks") or [])]:
                if isinstance(raw, (str, int)) and item_id(raw) in wanted:
                    names[item_id(raw)] = str(raw)
            for raw in words:
                if isinstance(raw, (str, int)) and word_id(raw) in wanted:
                    names[word_id(raw)] = str(raw)
    except (DataError, SourceUnavailable) as exc:
        fail(f"cannot read --events: {exc}")
    return names
