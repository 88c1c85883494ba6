"""`unisar inspect`: print one user's stored history."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("inspect", help="print one user's stored history",
                       description="Read a worker's RocksDB directory (stop the worker first: one process "
                                   "owns it) and print the user's history in time order.")
    p.add_argument("--user", required=True, help="the raw user id, as in the events (e.g. u42)")
    p.add_argument("--state-dir", default=None, help="RocksDB directory (default ./state-data)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os
    from datetime import datetime, timezone

    import orjson

    from ops.commands._common import fail
    from ops.settings import Settings
    from state.store import RocksHistoryStore
    from stream import history as hist
    from stream.ids import user_id

    state_dir = args.state_dir or Settings().state_dir
    if not os.path.isdir(state_dir):
        fail(f"expected a RocksDB directory at --state-dir {state_dir!r}, found nothing there")
    try:
        store = RocksHistoryStore(state_dir)
    except Exception as exc:
        fail(f"cannot open {state_dir!r} (is a worker still running on it?): {exc}")
    try:
        raw = store.get(user_id(args.user))
    finally:
        store.close()
    if raw is None:
        print(f"no history stored for user {args.user!r}")
        return 1
    history = hist.decode(raw)
    rows = []
    for b in history.mixed():
        when = datetime.fromtimestamp(b.ts / 1000, timezone.utc).isoformat(timespec="milliseconds")
        if isinstance(b, hist.RecBehaviour):
            rows.append({"ts": b.ts, "time": when, "type": "rec", "item": b.item})
        else:
            rows.append({"ts": b.ts, "time": when, "type": "search", "query": list(b.query), "clicks": list(b.clicks)})
    if args.json:
        print(orjson.dumps({"user": args.user, "last_offset": history.last_offset, "behaviours": rows}).decode())
        return 0
    print(f"user {args.user} (id {user_id(args.user)}): {len(history.rec)} rec, {len(history.search)} search "
          f"behaviours; last applied offset {history.last_offset}")
    print("ids are the stable 64-bit hashes of the raw ids (stream.ids)")
    for r in rows:
        if r["type"] == "rec":
            print(f"  {r['time']}  rec     item {r['item']}")
        else:
            print(f"  {r['time']}  search  query {r['query']}  clicks {r['clicks']}")
    return 0
