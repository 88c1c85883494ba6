"""Training samples: what the worker emits to `sar.samples`, one per rec event and one per
search with clicks, and what trainers and `unisar fit` learn from.

Binary layout v1 (little-endian), one sample per Kafka message:
  u8 version=1 | u8 task (0 rec, 1 search) | u8 label | i64 user | i64 ts_ms |
  i64 ingest_ms | u16 len(event_id) | event_id utf-8 |
  u8 n_items | n_items x i64 item | u8 n_query | n_query x i64 word |
  history (the user's history *before* this event, stream.contract.history layout, to the end)
`items` is the target: the one rec item, or a search's clicked items. `label` is 1 for a
click, 0 for a rec exposure without a click (a real negative). `ingest_ms` is the
event's Kafka timestamp, when it entered the stream (freshness counts from there). Ids are the stable 64-bit hashes of stream.contract.ids.
Delivery is at least once: after a crash a sample can repeat; `event_id` identifies it.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from stream.contract import history as hist
from stream.contract.events import Event

VERSION = 1
TASKS = ("rec", "search")
_HEAD = struct.Struct("<BBBqqqH")
_INGEST = struct.Struct("<q")  # at byte 19 of _HEAD: after version, task, label, user, ts


@dataclass(frozen=True, slots=True)
class Sample:
    event_id: str
    user: int
    ts: int
    task: str  # "rec" | "search"
    items: tuple[int, ...]
    label: int
    query: tuple[int, ...]
    history: hist.History
    ingest_ms: int = 0


def _ids(ids: tuple[int, ...]) -> bytes:
    return bytes((len(ids),)) + struct.pack(f"<{len(ids)}q", *ids)


def encode(event: Event, history_before: bytes, ingest_ms: int) -> bytes:
    event_id = event.event_id.encode()
    head = _HEAD.pack(
        VERSION, TASKS.index(event.kind), event.click, event.user, event.ts, ingest_ms, len(event_id)
    )
    return b"".join((head, event_id, _ids(event.items[:255]), _ids(event.query[:255]), history_before))


def ingest_ms_of(buf: bytes) -> int | None:
    """A v1 sample's `ingest_ms` from its fixed header, without decoding the rest (None if
    the bytes are too short to hold one): lets a trainer shed stale samples cheaply."""
    if len(buf) < _HEAD.size or buf[0] != VERSION:
        return None
    return _INGEST.unpack_from(buf, 19)[0]


def decode(buf: bytes) -> Sample:
    """Decode one sample. Raises ValueError on any bytes that are not a v1 sample a model can
    learn from (a trainer skips those with the reason)."""
    if not isinstance(buf, (bytes, bytearray, memoryview)):
        raise ValueError(f"sample: expected bytes, got {type(buf).__name__}")
    try:
        sample = _decode(buf)
    except struct.error as exc:  # a count that runs past the end
        raise ValueError(f"sample: truncated ({exc})") from None
    _check(sample)
    return sample


def _check(sample: Sample) -> None:
    """What the worker always writes: one rec item, at least one search click, a label of
    0 or 1 (1 for a search), ids that are stable ids (positive)."""
    if sample.task == "rec" and len(sample.items) != 1:
        raise ValueError(f"sample: expected one rec item, got {len(sample.items)}")
    if sample.task == "search" and (not sample.items or sample.label != 1):
        raise ValueError("sample: expected a search with clicks and label 1")
    if sample.label not in (0, 1):
        raise ValueError(f"sample: expected label 0 or 1, got {sample.label}")
    h = sample.history
    ids = [sample.user, *sample.items, *sample.query, *(b.item for b in h.rec),
           *(i for b in h.search for i in (*b.query, *b.clicks))]
    if min(ids) < 1:
        raise ValueError("sample: expected positive ids")


def _decode(buf: bytes) -> Sample:
    if len(buf) < _HEAD.size:
        raise ValueError(f"sample: expected at least {_HEAD.size} bytes, got {len(buf)}")
    version, task, label, user, ts, ingest_ms, n_id = _HEAD.unpack_from(buf)
    if version != VERSION:
        raise ValueError(f"sample: expected version {VERSION}, got {version}")
    if task >= len(TASKS):
        raise ValueError(f"sample: expected task 0 or 1, got {task}")
    pos = _HEAD.size
    event_id = bytes(buf[pos : pos + n_id]).decode()
    pos += n_id
    groups = []
    for _ in range(2):
        if pos >= len(buf):
            raise ValueError("sample: truncated id list")
        n = buf[pos]
        groups.append(struct.unpack_from(f"<{n}q", buf, pos + 1))
        pos += 1 + 8 * n
    history = hist.decode(bytes(buf[pos:]))
    return Sample(event_id, user, ts, TASKS[task], groups[0], label, groups[1], history, ingest_ms)


def wants_sample(event: Event) -> bool:
    """Every rec event (click or exposure) and every search with clicks trains the model."""
    return event.kind == "rec" or bool(event.items)


def step(
    history: bytes, event: Event, offset: int, limits: hist.Limits, ingest_ms: int,
    source: tuple[int, int] | None = None,
) -> tuple[bytes | None, bytes | None]:
    """The pure per-event step of the stream: (history after or None if already applied,
    encoded sample or None). `source`: see stream.contract.history.apply."""
    after = hist.apply(history, event, offset, limits, source)
    if after is None:
        return None, None
    return after, (encode(event, history, ingest_ms) if wants_sample(event) else None)
