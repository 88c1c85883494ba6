"""Which fetched samples a trainer learns from: pure decisions, no I/O.

  - duplicate: delivery is at least once, so after a worker crash a sample can repeat
    (same `event_id`, new offset). The ids of the last `capacity` admitted samples are
    remembered, as 64-bit hashes, and a repeat among them is dropped. The memory is part of
    the trainer's checkpoint, so a restarted trainer keeps dropping the same repeats.
  - stale (opt-in): with `max_staleness_s` set, a sample ingested longer ago than that is
    shed. A trainer slower than the stream then learns from the freshest samples and
    counts what it skipped, instead of falling further behind without bound.
"""
from __future__ import annotations

from collections import OrderedDict
from hashlib import blake2b

import torch

from stream.contract.samples import Sample

ADMIT, DUPLICATE, STALE = "admit", "duplicate", "stale"
UNDECODABLE = "undecodable"  # bytes that are not a sample: skipped before admission


def event_hash(event_id: str) -> int:
    return int.from_bytes(blake2b(event_id.encode(), digest_size=8).digest(), "little", signed=True)


class Admission:
    def __init__(self, capacity: int = 1 << 20, max_staleness_s: float | None = None) -> None:
        self.capacity, self.max_staleness_s = capacity, max_staleness_s
        self._recent: OrderedDict[int, None] = OrderedDict()

    def is_stale(self, ingest_ms: int | None, now_s: float) -> bool:
        """Whether a sample ingested at `ingest_ms` is past `max_staleness_s` (never without one)."""
        return self.max_staleness_s is not None and bool(ingest_ms) and now_s - ingest_ms / 1000 > self.max_staleness_s

    def decide(self, sample: Sample, now_s: float) -> str:
        if self.is_stale(sample.ingest_ms, now_s):
            return STALE
        key = event_hash(sample.event_id)
        if key in self._recent:
            return DUPLICATE
        self._recent[key] = None
        if len(self._recent) > self.capacity:
            self._recent.popitem(last=False)
        return ADMIT

    def state_dict(self) -> dict:
        return {"recent": torch.tensor(list(self._recent), dtype=torch.int64)}

    def load_state_dict(self, state: dict) -> None:
        self._recent = OrderedDict.fromkeys(state["recent"].tolist()[-self.capacity :])
