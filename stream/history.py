"""A user's transition history as compact bytes, and the pure step that advances it.

The stored value is what the worker keeps in RocksDB, sends to the changelog and embeds
in every training sample, so the hot path never re-encodes: appending a behaviour and
trimming the oldest one are byte slices. Rec and search behaviours are kept apart, each
in time order; `History.mixed()` merges them into the model's mixed sequence.

Layout v1 (little-endian):
  header   u8 version=1 | u8 n_rec | u8 n_search | i64 last_offset        (11 bytes)
  rec      n_rec    x ( u48 ts_ms | i64 item )                             (14 bytes each)
  search   n_search x ( u48 ts_ms | u8 n_words | u8 n_clicks |
                        n_words x i64 word | n_clicks x i64 item )
`last_offset` is the Kafka offset of the last event applied to this user (-1: none). A
user lives on one partition (key = user), so offsets rise per user and a redelivered
event, whose offset is not above it, is recognised and skipped: state updates are
idempotent under at-least-once delivery.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from stream.events import Event

VERSION = 1
_HEADER = struct.Struct("<BBBq")
_ITEM = struct.Struct("<q")
HEADER_BYTES = _HEADER.size  # 11
REC_BYTES = 14
NO_OFFSET = -1


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on a stored history (the paper keeps the last 30 of each type)."""

    max_rec: int = 30
    max_search: int = 30
    max_clicks: int = 5  # clicked items kept per search behaviour
    max_words: int = 32  # query words kept per search behaviour

    def __post_init__(self) -> None:
        for name in ("max_rec", "max_search", "max_clicks", "max_words"):
            if not 1 <= getattr(self, name) <= 255:
                raise ValueError(f"{name} must be between 1 and 255, got {getattr(self, name)}")


@dataclass(frozen=True, slots=True)
class RecBehaviour:
    ts: int
    item: int


@dataclass(frozen=True, slots=True)
class SearchBehaviour:
    ts: int
    query: tuple[int, ...]
    clicks: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class History:
    """Decoded history: for tests, inspection and the model's batch builder."""

    last_offset: int = NO_OFFSET
    rec: tuple[RecBehaviour, ...] = ()
    search: tuple[SearchBehaviour, ...] = field(default=())

    def mixed(self) -> list[RecBehaviour | SearchBehaviour]:
        """Both types merged in time order; on equal timestamps rec comes first."""
        return sorted([*self.rec, *self.search], key=lambda b: (b.ts, isinstance(b, SearchBehaviour)))


EMPTY = _HEADER.pack(VERSION, 0, 0, NO_OFFSET)


def _search_record(ts: int, query: tuple[int, ...], clicks: tuple[int, ...]) -> bytes:
    return b"".join(
        (ts.to_bytes(6, "little"), bytes((len(query), len(clicks))), *(_ITEM.pack(i) for i in query + clicks))
    )


def _search_len(buf: bytes, pos: int) -> int:
    return 8 + 8 * (buf[pos + 6] + buf[pos + 7])


def encode(history: History) -> bytes:
    rec = b"".join(b.ts.to_bytes(6, "little") + _ITEM.pack(b.item) for b in history.rec)
    search = b"".join(_search_record(b.ts, b.query, b.clicks) for b in history.search)
    head = _HEADER.pack(VERSION, len(history.rec), len(history.search), history.last_offset)
    return head + rec + search


def decode(buf: bytes) -> History:
    """Decode a stored history. Raises ValueError on bytes that are not a v1 history."""
    if len(buf) < HEADER_BYTES:
        raise ValueError(f"history: expected at least {HEADER_BYTES} bytes, got {len(buf)}")
    version, n_rec, n_search, last_offset = _HEADER.unpack_from(buf)
    if version != VERSION:
        raise ValueError(f"history: expected version {VERSION}, got {version}")
    pos = HEADER_BYTES
    rec = []
    for _ in range(n_rec):
        rec.append(RecBehaviour(int.from_bytes(buf[pos : pos + 6], "little"), _ITEM.unpack_from(buf, pos + 6)[0]))
        pos += REC_BYTES
    search = []
    for _ in range(n_search):
        if pos + 8 > len(buf):
            raise ValueError("history: truncated search behaviour")
        ts = int.from_bytes(buf[pos : pos + 6], "little")
        n_words, n_clicks = buf[pos + 6], buf[pos + 7]
        ids = struct.unpack_from(f"<{n_words + n_clicks}q", buf, pos + 8)
        search.append(SearchBehaviour(ts, tuple(ids[:n_words]), tuple(ids[n_words:])))
        pos += 8 + 8 * (n_words + n_clicks)
    if pos != len(buf):
        raise ValueError(f"history: expected {pos} bytes, got {len(buf)}")
    return History(last_offset, tuple(rec), tuple(search))


def last_offset(buf: bytes) -> int:
    return _HEADER.unpack_from(buf)[3]


def _insert_in_time_order(history: History, event: Event, limits: Limits) -> History:
    """Slow path for an event older than the newest behaviour of its type."""
    if event.kind == "rec":
        rec = sorted([*history.rec, RecBehaviour(event.ts, event.items[0])], key=lambda b: b.ts)
        return History(history.last_offset, tuple(rec[-limits.max_rec :]), history.search)
    new = SearchBehaviour(event.ts, event.query[: limits.max_words], event.items[: limits.max_clicks])
    search = sorted([*history.search, new], key=lambda b: b.ts)
    return History(history.last_offset, history.rec, tuple(search[-limits.max_search :]))


def changes_history(event: Event) -> bool:
    """Rec exposures without a click are negatives for training, not behaviours."""
    return event.kind == "search" or event.click == 1


def apply(buf: bytes, event: Event, offset: int, limits: Limits = Limits()) -> bytes | None:
    """The pure history step: the history after `event` (at Kafka `offset`), or None if the
    event was already applied (offset not above the stored one: a redelivery)."""
    _, n_rec, n_search, last = _HEADER.unpack_from(buf)
    if offset <= last:
        return None
    if not changes_history(event):
        return buf[:3] + _ITEM.pack(offset) + buf[HEADER_BYTES:]

    rec_end = HEADER_BYTES + REC_BYTES * n_rec
    if event.kind == "rec":
        newest = int.from_bytes(buf[rec_end - REC_BYTES : rec_end - 8], "little") if n_rec else -1
        if event.ts < newest:
            return _resplice(buf, event, offset, limits)
        start = HEADER_BYTES + REC_BYTES if n_rec == limits.max_rec else HEADER_BYTES
        n_rec = min(n_rec + 1, limits.max_rec)
        record = event.ts.to_bytes(6, "little") + _ITEM.pack(event.items[0])
        return _HEADER.pack(VERSION, n_rec, n_search, offset) + buf[start:rec_end] + record + buf[rec_end:]

    # search: find the newest behaviour's timestamp and, if full, the oldest record's length
    pos, newest = rec_end, -1
    for _ in range(n_search):
        newest = int.from_bytes(buf[pos : pos + 6], "little")
        pos += _search_len(buf, pos)
    if event.ts < newest:
        return _resplice(buf, event, offset, limits)
    start = rec_end
    if n_search == limits.max_search:
        start += _search_len(buf, rec_end)
    n_search = min(n_search + 1, limits.max_search)
    record = _search_record(event.ts, event.query[: limits.max_words], event.items[: limits.max_clicks])
    return _HEADER.pack(VERSION, n_rec, n_search, offset) + buf[HEADER_BYTES:rec_end] + buf[start:] + record


def _resplice(buf: bytes, event: Event, offset: int, limits: Limits) -> bytes:
    history = _insert_in_time_order(decode(buf), event, limits)
    return encode(History(offset, history.rec, history.search))
