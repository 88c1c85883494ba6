"""Event v1: parse and validate one Kafka message value.

`parse_event(raw)` is pure: it returns an `Event` or a `Rejection` (never raises), so a bad
message becomes data that the worker dead-letters, and the loop goes on.

Contract (see README): one UTF-8 JSON object per message, keyed by user.
  {"v":1,"event_id":"e17","user":"u42","ts":1700000000123,"type":"rec","item":"i9","click":1}
  {"v":1,"event_id":"e18","user":"u42","ts":1700000004000,"type":"search",
   "query":"red shoes","clicks":["i7","i8"]}
`query` is text (lower-cased, split on whitespace) or a list of word ids. Ids are strings or
integers. Raw ids are hashed to stable 64-bit ids here (stream.ids), once.
"""
from __future__ import annotations

from dataclasses import dataclass

import orjson

from stream.ids import item_id, user_id, word_id

VERSION = 1
MAX_EVENT_BYTES = 16 * 1024
MAX_ID_CHARS = 128
MAX_QUERY_CHARS = 512
MAX_QUERY_WORDS = 32
MAX_CLICKS = 100
# Epoch milliseconds. The lower bound admits 1990s logs (MovieLens); a value in seconds
# (~1.7e9) lands in January 1970 and is rejected as absurd.
MIN_TS_MS = 631_152_000_000  # 1990-01-01
MAX_TS_MS = 4_102_444_800_000  # 2100-01-01

_COMMON = frozenset({"v", "event_id", "user", "ts", "type"})
_FIELDS = {
    "rec": _COMMON | {"item", "click"},
    "search": _COMMON | {"query", "clicks"},
}


@dataclass(frozen=True, slots=True)
class Event:
    """A validated event with hashed ids. `items` is (item,) for rec, the clicks for search."""

    event_id: str
    user: int
    ts: int
    kind: str  # "rec" | "search"
    items: tuple[int, ...]
    click: int  # rec: 0 or 1; search: 1 if it has clicks
    query: tuple[int, ...]  # hashed word ids; () for rec


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message was refused: the stage, what was expected and what arrived."""

    stage: str
    expected: str
    got: str

    @property
    def reason(self) -> str:
        return f"{self.stage}: expected {self.expected}, got {self.got}"


def _show(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bad(field: str, expected: str, value: object) -> Rejection:
    return Rejection("validate", f"{field} to be {expected}", _show(value))


def _raw_id(field: str, value: object) -> str | int | Rejection:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return _bad(field, "a string or integer id", value)
    if isinstance(value, str) and not (0 < len(value.strip()) <= MAX_ID_CHARS):
        return _bad(field, f"a non-empty id of at most {MAX_ID_CHARS} characters", value)
    return value


def _query_words(value: object) -> tuple[int, ...] | Rejection:
    if isinstance(value, str):
        if len(value) > MAX_QUERY_CHARS:
            return _bad("query", f"text of at most {MAX_QUERY_CHARS} characters", f"{len(value)} characters")
        words = value.lower().split()
    elif isinstance(value, list):
        words = value
        for word in words:
            if isinstance(_raw_id("query word", word), Rejection):
                return _bad("query", "text or a list of word ids", value)
    else:
        return _bad("query", "text or a list of word ids", value)
    if not words:
        return _bad("query", "at least one word", value)
    if len(words) > MAX_QUERY_WORDS:
        return _bad("query", f"at most {MAX_QUERY_WORDS} words", f"{len(words)} words")
    return tuple(word_id(w) for w in words)


def validate(obj: object) -> Event | Rejection:
    """Validate a decoded JSON value against event v1."""
    if not isinstance(obj, dict):
        return Rejection("validate", "a JSON object", type(obj).__name__)
    if obj.get("v") != VERSION:
        return _bad("v", str(VERSION), obj.get("v"))
    kind = obj.get("type")
    if kind not in _FIELDS:
        return _bad("type", "'rec' or 'search'", kind)
    allowed = _FIELDS[kind]
    unknown = obj.keys() - allowed
    if unknown:
        return _bad("fields", f"only {sorted(allowed)}", f"unknown {sorted(unknown)}")
    missing = (allowed - {"clicks"}) - obj.keys()
    if missing:
        return _bad("fields", f"all of {sorted(allowed - {'clicks'})}", f"missing {sorted(missing)}")

    event_id = _raw_id("event_id", obj["event_id"])
    if isinstance(event_id, Rejection):
        return event_id
    user = _raw_id("user", obj["user"])
    if isinstance(user, Rejection):
        return user
    ts = obj["ts"]
    if isinstance(ts, bool) or not isinstance(ts, int):
        return _bad("ts", "integer epoch milliseconds", ts)
    if not MIN_TS_MS <= ts < MAX_TS_MS:
        return _bad("ts", "epoch milliseconds between 1990 and 2100", ts)

    if kind == "rec":
        item = _raw_id("item", obj["item"])
        if isinstance(item, Rejection):
            return item
        click = obj["click"]
        if isinstance(click, bool) or click not in (0, 1):
            return _bad("click", "0 or 1", click)
        return Event(str(event_id), user_id(user), ts, "rec", (item_id(item),), click, ())

    query = _query_words(obj["query"])
    if isinstance(query, Rejection):
        return query
    clicks = obj.get("clicks", [])
    if not isinstance(clicks, list):
        return _bad("clicks", "a list of item ids", clicks)
    if len(clicks) > MAX_CLICKS:
        return _bad("clicks", f"at most {MAX_CLICKS} items", f"{len(clicks)} items")
    items = []
    for raw in clicks:
        item = _raw_id("clicks item", raw)
        if isinstance(item, Rejection):
            return item
        items.append(item_id(item))
    return Event(str(event_id), user_id(user), ts, "search", tuple(items), int(bool(items)), query)


def parse_event(raw: bytes, key: bytes | None = None) -> Event | Rejection:
    """Decode and validate one message value; `key`, when given, must name the same user.

    Partitioning is by key, so a key that disagrees with the body would put the user's
    history on two partitions.
    """
    if len(raw) > MAX_EVENT_BYTES:
        return Rejection("decode", f"a message of at most {MAX_EVENT_BYTES} bytes", f"{len(raw)} bytes")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Rejection("decode", "UTF-8 JSON", f"{_show(bytes(raw[:40]))} ({exc.msg})")
    event = validate(obj)
    if key is not None and isinstance(event, Event) and key != str(obj["user"]).encode():
        return Rejection("route", "the message key to be the event's user", _show(key))
    return event
