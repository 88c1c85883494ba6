"""Seeded event files for tests and benchmarks: valid v1 events and every kind of bad one."""
from __future__ import annotations

import random

import orjson

T0 = 1_700_000_000_000


def valid_events(n: int, users: int, seed: int = 0, items: int = 5000, words: int = 300) -> list[dict]:
    """Users interleaved in time; ~1 search per 2.9 rec actions; some exposures without click,
    some searches without clicks, a few events out of time order."""
    rng = random.Random(seed)
    out = []
    ts = T0
    for i in range(n):
        ts += rng.randint(1, 50)
        user = f"u{rng.randrange(users)}"
        event_ts = ts - (rng.randint(1, 5000) if rng.random() < 0.02 else 0)  # late arrivals
        if rng.random() < 0.745:
            out.append({"v": 1, "event_id": f"e{i}", "user": user, "ts": event_ts, "type": "rec",
                        "item": f"i{int(rng.paretovariate(1.2)) % items}", "click": int(rng.random() < 0.8)})
        else:
            n_clicks = rng.choice([0, 0, 1, 1, 1, 2, 3, 7])
            query = " ".join(f"w{rng.randrange(words)}" for _ in range(rng.randint(1, 4)))
            if rng.random() < 0.3:  # KuaiSAR-style anonymised word-id lists
                query = [rng.randrange(words) for _ in range(rng.randint(1, 4))]
            out.append({"v": 1, "event_id": f"e{i}", "user": user, "ts": event_ts, "type": "search",
                        "query": query, "clicks": [f"i{rng.randrange(items)}" for _ in range(n_clicks)]})
    return out


def malformed_values(n: int, seed: int = 1) -> list[tuple[bytes, bytes | None, str]]:
    """(value, key, what is wrong) for n bad messages, cycling over every kind of fault."""
    rng = random.Random(seed)
    ok = {"v": 1, "event_id": "bad", "user": "u1", "ts": T0, "type": "rec", "item": "i1", "click": 1}

    def with_(**changes):
        event = {**ok, **changes}
        return orjson.dumps({k: v for k, v in event.items() if v is not _DROP})

    makers = [
        lambda: (b"this is not json", "not JSON"),
        lambda: (b"\xff\xfe\x00garbage", "not UTF-8"),
        lambda: (orjson.dumps([1, 2, 3]), "not an object"),
        lambda: (with_(item=_DROP), "missing field"),
        lambda: (with_(colour="red"), "unknown field"),
        lambda: (with_(ts="yesterday"), "wrong type"),
        lambda: (with_(click=2), "bad click"),
        lambda: (with_(type="purchase"), "unknown event type"),
        lambda: (with_(user=""), "empty user"),
        lambda: (with_(ts=-5), "negative timestamp"),
        lambda: (with_(ts=1_700_000_000), "timestamp in seconds"),
        lambda: (with_(ts=99_999_999_999_999), "absurd timestamp"),
        lambda: (with_(type="search", item=_DROP, click=_DROP, query=" ".join(["w"] * 40), clicks=[]), "oversized query"),
        lambda: (with_(type="search", item=_DROP, click=_DROP, query="a", clicks=["i"] * 101), "oversized clicks"),
        lambda: (with_(type="search", item=_DROP, click=_DROP, query="", clicks=[]), "empty query"),
        lambda: (with_(item="x" * 20000), "oversized message"),
        lambda: (with_(v=2), "wrong version"),
        lambda: (with_(v=True), "version true"),
        lambda: (with_(v=1.0), "version 1.0"),
        lambda: (with_(click=1.0), "click 1.0"),
        lambda: (with_(type=["rec"]), "type as a list"),
        lambda: (with_(item=[[["i1"]]]), "nested list as an id"),
    ]
    out = []
    for i in range(n):
        value, why = makers[i % len(makers)]()
        out.append((value, f"u{rng.randrange(50)}".encode(), why))
    return out


class _Drop:
    pass


_DROP = _Drop()


def write_jsonl(path, events: list[dict], bad: list[bytes] = (), seed: int = 2) -> list[bytes]:
    """Write events with bad lines mixed in at random places; returns the lines written."""
    rng = random.Random(seed)
    lines = [orjson.dumps(e) for e in events]
    for value in bad:
        lines.insert(rng.randrange(len(lines) + 1), value)
    with open(path, "wb") as fh:
        for line in lines:
            fh.write(line.replace(b"\n", b" ") + b"\n")
    return lines
