"""Seeded synthetic event logs with a planted transition signal, for the model's tests.

Items come in clusters, each with its own query words. Every user favours a few clusters.
The planted transitions: a rec click comes from the cluster of the user's previous
*search*, a search (its words and clicks) from the cluster of the previous *rec* click
(each with probability `follow`, else a random favourite cluster). A model that reads
cross-type transitions ranks the next item well; a random one gets HR@10 = 0.10.
"""
from __future__ import annotations

import json

import numpy as np

from stream.contract.offline import OfflineStream
from stream.contract.samples import decode

T0 = 1_700_000_000_000


def planted_events(
    seed: int = 0, n_users: int = 80, n_events: int = 30, n_clusters: int = 20, cluster_size: int = 25,
    follow: float = 0.9,
) -> list[dict]:
    rng = np.random.default_rng(seed)
    events = []
    for u in range(n_users):
        favourites = rng.choice(n_clusters, 3, replace=False)
        last = {"rec": int(rng.choice(favourites)), "search": int(rng.choice(favourites))}
        ts = T0 + int(rng.integers(0, 10**6))
        for e in range(n_events):
            ts += int(rng.integers(1_000, 100_000))
            kind = "rec" if rng.random() < 0.5 else "search"
            other = "search" if kind == "rec" else "rec"
            cluster = last[other] if rng.random() < follow else int(rng.choice(favourites))
            item = lambda: f"i{cluster}_{int(rng.integers(cluster_size))}"  # noqa: E731
            base = {"v": 1, "event_id": f"u{u}e{e}", "user": f"u{u}", "ts": ts, "type": kind}
            if kind == "rec":
                if rng.random() < 0.1:  # an exposure without a click: a real negative
                    events.append({**base, "item": f"i{int(rng.integers(n_clusters))}_{int(rng.integers(cluster_size))}", "click": 0})
                    continue
                events.append({**base, "item": item(), "click": 1})
            else:
                words = rng.choice(4, 2, replace=False)
                clicks = sorted({item() for _ in range(int(rng.integers(1, 3)))})
                events.append({**base, "query": " ".join(f"w{cluster}_{w}" for w in words), "clicks": clicks})
            last[kind] = cluster
    events.sort(key=lambda ev: ev["ts"])
    return events


def write_jsonl(path, events: list[dict]) -> None:
    with open(path, "w") as fh:
        for ev in events:
            fh.write(json.dumps(ev) + "\n")


def planted_samples(**kwargs) -> list:
    """The same events as stream samples (through the stream's own step)."""
    stream = OfflineStream()
    return [decode(raw) for raw in stream.feed(json.dumps(ev).encode() for ev in planted_events(**kwargs))]
