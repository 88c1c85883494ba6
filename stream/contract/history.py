"""A user's transition history as compact bytes, and the pure step that advances it.

The stored value is what the worker keeps in RocksDB, sends to the changelog and embeds
in every training sample, so the hot path never re-encodes: appending a behaviour and
trimming the oldest one are byte slices. Rec and search behaviours are kept apart, each
in time order; `History.mixed()` merges them into the model's mixed sequence.

Layout v2 (little-endian):
  header   u8 version=2 | u8 n_rec | u8 n_search | i64 last_offset | u16 n_marks  (13 bytes)
  marks    n_marks  x ( u16 partition | i64 offset )                      (10 bytes each)
  rec      n_rec    x ( u48 ts_ms | i64 item )                             (14 bytes each)
  search   n_search x ( u48 ts_ms | u8 n_words | u8 n_clicks |
                        n_words x i64 word | n_clicks x i64 item )

Exactly once, whatever partition an event arrives on. A user's history lives on the user's
home partition (the one the key hashes to). `last_offset` is the home partition's offset of
the last record applied (-1: none); offsets rise within a partition, so a redelivered record,
whose offset is not above it, is skipped. An event that arrived on another partition is
forwarded home by the worker, and its copy names where it came from (`source`: partition and
offset there); `marks` keep, per such source partition, the highest source offset applied, so
a second copy of a forwarded event (the forwarder crashed before committing) is skipped too.
Marks are bounded by the partition count and usually absent.
A v1 history (11-byte header, no marks) is read and upgraded on its next change.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace

from stream.contract.events import Event

VERSION = 2
_HEADER = struct.Struct("<BBBqH")
_HEADER_V1 = struct.Struct("<BBBq")
_MARK = struct.Struct("<Hq")
_ITEM = struct.Struct("<q")
HEADER_BYTES = _HEADER.size  # 13
MIN_BYTES = _HEADER_V1.size  # the shortest history of any version
MARK_BYTES = _MARK.size  # 10
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
    marks: tuple[tuple[int, int], ...] = ()  # (source partition, highest source offset), sorted

    def mixed(self) -> list[RecBehaviour | SearchBehaviour]:
        """Both types merged in time order; on equal timestamps rec comes first."""
        return sorted([*self.rec, *self.search], key=lambda b: (b.ts, isinstance(b, SearchBehaviour)))


EMPTY = _HEADER.pack(VERSION, 0, 0, NO_OFFSET, 0)


def upgrade(buf: bytes) -> bytes:
    """A stored history in the current layout (v1 had no marks)."""
    if buf and buf[0] == 1 and len(buf) >= _HEADER_V1.size:
        return bytes((VERSION,)) + buf[1:_HEADER_V1.size] + b"\0\0" + buf[_HEADER_V1.size :]
    return buf


def _search_record(ts: int, query: tuple[int, ...], clicks: tuple[int, ...]) -> bytes:
    return b"".join(
        (ts.to_bytes(6, "little"), bytes((len(query), len(clicks))), *(_ITEM.pack(i) for i in query + clicks))
    )


def _search_len(buf: bytes, pos: int) -> int:
    return 8 + 8 * (buf[pos + 6] + buf[pos + 7])


def encode(history: History) -> bytes:
    marks = b"".join(_MARK.pack(p, o) for p, o in history.marks)
    rec = b"".join(b.ts.to_bytes(6, "little") + _ITEM.pack(b.item) for b in history.rec)
    search = b"".join(_search_record(b.ts, b.query, b.clicks) for b in history.search)
    head = _HEADER.pack(VERSION, len(history.rec), len(history.search), history.last_offset, len(history.marks))
    return head + marks + rec + search


def decode(buf: bytes) -> History:
    """Decode a stored history. Raises ValueError on any bytes that are not a history."""
    try:
        return _decode(upgrade(bytes(buf)))
    except struct.error as exc:  # a count that runs past the end
        raise ValueError(f"history: truncated ({exc})") from None


def _decode(buf: bytes) -> History:
    if len(buf) < HEADER_BYTES:
        raise ValueError(f"history: expected at least {HEADER_BYTES} bytes, got {len(buf)}")
    version, n_rec, n_search, last_offset, n_marks = _HEADER.unpack_from(buf)
    if version != VERSION:
        raise ValueError(f"history: expected version {VERSION}, got {version}")
    pos = HEADER_BYTES
    marks = tuple(_MARK.unpack_from(buf, pos + MARK_BYTES * i) for i in range(n_marks))
    pos += MARK_BYTES * n_marks
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
    return History(last_offset, tuple(rec), tuple(search), marks)


def last_offset(buf: bytes) -> int:
    return _HEADER_V1.unpack_from(buf)[3]  # the same place in v1 and v2


def _insert_in_time_order(history: History, event: Event, limits: Limits) -> History:
    """Slow path for an event older than the newest behaviour of its type."""
    if event.kind == "rec":
        rec = sorted([*history.rec, RecBehaviour(event.ts, event.items[0])], key=lambda b: b.ts)
        return replace(history, rec=tuple(rec[-limits.max_rec :]))
    new = SearchBehaviour(event.ts, event.query[: limits.max_words], event.items[: limits.max_clicks])
    search = sorted([*history.search, new], key=lambda b: b.ts)
    return replace(history, search=tuple(search[-limits.max_search :]))


def changes_history(event: Event) -> bool:
    """Rec exposures without a click are negatives for training, not behaviours."""
    return event.kind == "search" or event.click == 1


def apply(buf: bytes, event: Event, offset: int, limits: Limits = Limits(),
          source: tuple[int, int] | None = None) -> bytes | None:
    """The pure history step: the history after `event` (at Kafka `offset` of the home
    partition; `source`: the partition and offset it was forwarded from), or None if the
    event was already applied (a redelivery, or a second copy of a forwarded event)."""
    buf = upgrade(buf)
    _, n_rec, n_search, last, n_marks = _HEADER.unpack_from(buf)
    if offset <= last:
        return None
    if source is not None:
        return _apply_forwarded(decode(buf), event, offset, source, limits)
    if not changes_history(event):
        return _HEADER.pack(VERSION, n_rec, n_search, offset, n_marks) + buf[HEADER_BYTES:]

    base = HEADER_BYTES + MARK_BYTES * n_marks
    rec_end = base + REC_BYTES * n_rec
    if event.kind == "rec":
        newest = int.from_bytes(buf[rec_end - REC_BYTES : rec_end - 8], "little") if n_rec else -1
        if event.ts < newest:
            return _resplice(buf, event, offset, limits)
        start = base + REC_BYTES if n_rec == limits.max_rec else base
        n_rec = min(n_rec + 1, limits.max_rec)
        record = event.ts.to_bytes(6, "little") + _ITEM.pack(event.items[0])
        head = _HEADER.pack(VERSION, n_rec, n_search, offset, n_marks) + buf[HEADER_BYTES:base]
        return head + buf[start:rec_end] + record + buf[rec_end:]

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
    head = _HEADER.pack(VERSION, n_rec, n_search, offset, n_marks)
    return head + buf[HEADER_BYTES:rec_end] + buf[start:] + record


def _resplice(buf: bytes, event: Event, offset: int, limits: Limits) -> bytes:
    history = _insert_in_time_order(decode(buf), event, limits)
    return encode(replace(history, last_offset=offset))


def _apply_forwarded(history: History, event: Event, offset: int, source: tuple[int, int],
                     limits: Limits) -> bytes | None:
    marks = dict(history.marks)
    partition, source_offset = source
    if source_offset <= marks.get(partition, NO_OFFSET):
        return None
    marks[partition] = source_offset
    if changes_history(event):
        history = _insert_in_time_order(history, event, limits)
    return encode(replace(history, last_offset=offset, marks=tuple(sorted(marks.items()))))
