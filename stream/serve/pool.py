"""The candidate pool of /v1/recommend: recently popular items, bounded.

This is the retrieval stage a larger system would replace (an approximate-nearest-neighbour
index over item vectors, a catalogue search): the service only keeps the items clicked most
in the recent past and lets the model rank them for the user. A click adds weight
2^((ts - t0) / half_life), so older clicks count exponentially less without touching every
item on each event; t0 moves forward (and the weights shrink) before the numbers grow large.
Memory is bounded: past twice the capacity, only the `capacity` heaviest items stay (and
the item just clicked, so a newcomer is not dropped on its first click). The raw
id of each item (what the events named it) is kept beside its stable id, for the answer.
"""
from __future__ import annotations

import heapq

from stream.contract.events import Event

RawId = str | int


class PopularPool:
    def __init__(self, capacity: int = 500, half_life_s: float = 3600.0) -> None:
        if capacity < 1 or half_life_s <= 0:
            raise ValueError(f"expected capacity >= 1 and half_life_s > 0, got {capacity} and {half_life_s}")
        self.capacity, self.half_life_ms = capacity, half_life_s * 1000
        self.weights: dict[int, float] = {}  # stable item id -> decayed clicks (times 2^(t0 / half-life))
        self.raw: dict[int, RawId] = {}
        self.t0: int | None = None  # ms

    def __len__(self) -> int:
        return len(self.weights)

    def add(self, item: int, raw: RawId, ts_ms: int) -> None:
        if self.t0 is None:
            self.t0 = ts_ms
        exponent = (ts_ms - self.t0) / self.half_life_ms
        if exponent > 60:  # rebase before the weights overflow a float's precise range
            scale = 2.0 ** -exponent
            self.weights = {k: w * scale for k, w in self.weights.items()}
            self.t0, exponent = ts_ms, 0.0
        self.weights[item] = self.weights.get(item, 0.0) + 2.0 ** max(exponent, -1000)
        self.raw[item] = raw
        if len(self.weights) > 2 * self.capacity:
            keep = dict(heapq.nlargest(self.capacity, self.weights.items(), key=lambda kv: kv[1]))
            keep.setdefault(item, self.weights[item])  # a newcomer gets the chance to gather clicks
            self.weights = keep
            self.raw = {k: self.raw[k] for k in self.weights}

    def add_event(self, event: Event, obj: dict) -> None:
        """Count a validated event's clicked items (`obj`: its decoded JSON, for the raw ids)."""
        if event.kind == "rec":
            if event.click:
                self.add(event.items[0], obj["item"], event.ts)
        else:
            for item, raw in zip(event.items, obj.get("clicks", ())):
                self.add(item, raw, event.ts)

    def top(self, n: int | None = None) -> list[int]:
        """The `n` (default: capacity) heaviest items, heaviest first."""
        n = self.capacity if n is None else n
        return [k for k, _ in heapq.nlargest(n, self.weights.items(), key=lambda kv: kv[1])]

    def name(self, item: int) -> RawId | None:
        return self.raw.get(item)
