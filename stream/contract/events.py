"""Event v1: parse and validate one Kafka message value.

`parse_event(raw)` is pure: it returns an `Event` or a `Rejection` (never raises), so a bad
message becomes data that the worker dead-letters, and the loop goes on.

Contract (see README): one UTF-8 JSON object per message, keyed by user.
  {"v":1,"event_id":"e17","user":"u42","ts":1700000000123,"type":"rec","item":"i9","click":1}
  {"v":1,"event_id":"e18","user":"u42","ts":1700000004000,"type":"search",
   "query":"red shoes","clicks":["i7","i8"]}
`query` is text (lower-cased, split on whitespace) or a list of word ids. Ids are strings or
integers. Raw ids are hashed to stable 64-bit ids here (stream.contract.ids), once.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

from stream.contract.ids import item_id, user_id, word_id

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
# An event nests at most one level (the clicks or query word list inside the object).
MAX_DEPTH = 2
_SURROGATE = re.compile("[\ud800-\udfff]")  # lone surrogates cannot be encoded as UTF-8

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
    """A bounded description of any value: never recurses, never builds a long string (a
    repr of a deeply nested list overflows the stack; of a 5,000-digit int, raises)."""
    if isinstance(value, (list, dict)):
        kind = "list" if isinstance(value, list) else "object"
        return f"a JSON {kind} of {len(value)} entries"
    if isinstance(value, str):
        text = repr(value[:limit])
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**18:
        text = f"an integer of {value.bit_length()} bits"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _too_deep(value: object, limit: int) -> bool:
    """Whether `value` nests lists or objects deeper than `limit`, found without recursion."""
    todo = [(value, 0)]
    while todo:
        node, depth = todo.pop()
        if isinstance(node, (list, dict)):
            if depth >= limit:
                return True
            todo.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return False


def _exact_int(value: object, allowed: tuple[int, ...]) -> bool:
    """`value` is an int (not a bool, not a float: True == 1.0 == 1) among `allowed`."""
    return type(value) is int and value in allowed


def bad(field: str, expected: str, value: object) -> Rejection:
    """The rejection of a field's value: what `field` was expected to be, what it was."""
    return Rejection("validate", f"{field} to be {expected}", _show(value))


def raw_id(field: str, value: object) -> str | int | Rejection:
    """An id as producers send it (text, or an integer within 64 bits), or why it is not one."""
    if type(value) is int:
        if not -(2**63) <= value < 2**64:
            return bad(field, "an integer id within 64 bits", value)
        return value
    if type(value) is not str:
        return bad(field, "a string or integer id", value)
    if not 0 < len(value.strip()) <= MAX_ID_CHARS:
        return bad(field, f"a non-empty id of at most {MAX_ID_CHARS} characters", value)
    if _SURROGATE.search(value):
        return bad(field, "an id of UTF-8 characters", value)
    return value


def query_words(value: object) -> tuple[int, ...] | Rejection:
    """The word ids of a query (text, or a list of words), or why it is not one."""
    if type(value) is str:
        if len(value) > MAX_QUERY_CHARS:
            return bad("query", f"text of at most {MAX_QUERY_CHARS} characters", f"{len(value)} characters")
        if _SURROGATE.search(value):
            return bad("query", "text of UTF-8 characters", value)
        words = value.lower().split()
    elif type(value) is list:
        words = value
        if len(words) > MAX_QUERY_WORDS:
            return bad("query", f"at most {MAX_QUERY_WORDS} words", f"{len(words)} words")
        for word in words:
            if isinstance(raw_id("query word", word), Rejection):
                return bad("query", "text or a list of word ids", value)
    else:
        return bad("query", "text or a list of word ids", value)
    if not words:
        return bad("query", "at least one word", value)
    if len(words) > MAX_QUERY_WORDS:
        return bad("query", f"at most {MAX_QUERY_WORDS} words", f"{len(words)} words")
    return tuple(word_id(w) for w in words)


def versioned_object(obj: object, version: int) -> Rejection | None:
    """What every JSON message of ours is before its own fields: an object, nested at most
    MAX_DEPTH levels, with text field names and `v` the integer `version`. None if it is."""
    if type(obj) is not dict:
        return Rejection("validate", "a JSON object", type(obj).__name__)
    if _too_deep(obj, MAX_DEPTH):
        return Rejection("validate", f"JSON nested at most {MAX_DEPTH} levels deep", "deeper nesting")
    if not all(type(k) is str for k in obj):
        return bad("fields", "text field names", sorted(map(str, obj))[:5])
    if not _exact_int(obj.get("v"), (version,)):
        return bad("v", f"the integer {version}", obj.get("v"))
    return None


def validate(obj: object) -> Event | Rejection:
    """Validate a decoded JSON value against event v1."""
    if (wrong := versioned_object(obj, VERSION)) is not None:
        return wrong
    kind = obj.get("type")
    if type(kind) is not str or kind not in _FIELDS:
        return bad("type", "'rec' or 'search'", kind)
    allowed = _FIELDS[kind]
    unknown = obj.keys() - allowed
    if unknown:
        return bad("fields", f"only {sorted(allowed)}", f"unknown {sorted(unknown)}")
    missing = (allowed - {"clicks"}) - obj.keys()
    if missing:
        return bad("fields", f"all of {sorted(allowed - {'clicks'})}", f"missing {sorted(missing)}")

    event_id = raw_id("event_id", obj["event_id"])
    if isinstance(event_id, Rejection):
        return event_id
    user = raw_id("user", obj["user"])
    if isinstance(user, Rejection):
        return user
    ts = obj["ts"]
    if type(ts) is not int:
        return bad("ts", "integer epoch milliseconds", ts)
    if not MIN_TS_MS <= ts < MAX_TS_MS:
        return bad("ts", "epoch milliseconds between 1990 and 2100", ts)

    if kind == "rec":
        item = raw_id("item", obj["item"])
        if isinstance(item, Rejection):
            return item
        click = obj["click"]
        if not _exact_int(click, (0, 1)):
            return bad("click", "the integer 0 or 1", click)
        return Event(str(event_id), user_id(user), ts, "rec", (item_id(item),), click, ())

    query = query_words(obj["query"])
    if isinstance(query, Rejection):
        return query
    clicks = obj.get("clicks", [])
    if type(clicks) is not list:
        return bad("clicks", "a list of item ids", clicks)
    if len(clicks) > MAX_CLICKS:
        return bad("clicks", f"at most {MAX_CLICKS} items", f"{len(clicks)} items")
    items = []
    for raw in clicks:
        item = raw_id("clicks item", raw)
        if isinstance(item, Rejection):
            return item
        items.append(item_id(item))
    return Event(str(event_id), user_id(user), ts, "search", tuple(items), int(bool(items)), query)


NO_KEY = object()  # parse_event(raw) alone: a file line, which has no Kafka key to check


def parse_event(raw: bytes | None, key: bytes | None | object = NO_KEY) -> Event | Rejection:
    """Decode and validate one message value. A Kafka message's `key` must name the event's
    user: partitioning is by key, so a missing key or one that disagrees with the body
    would put the user's history on two partitions. Never raises, whatever the input.
    """
    return parse_keyed(raw, key, validate, lambda obj: (str(obj["user"]), "the event's user"))


def parse_keyed(raw: bytes | None, key: bytes | None | object, check, key_of):
    """Decode a message value, `check` the decoded JSON, and check that its Kafka `key`
    (unless NO_KEY) is the one `key_of(obj)` expects, a (key, what it is) pair for the
    message of a valid `obj`. Never raises."""
    obj = decode(raw)
    if isinstance(obj, Rejection):
        return obj
    checked = check(obj)
    if key is NO_KEY or isinstance(checked, Rejection):
        return checked
    return wrong_key(key, *key_of(obj)) or checked


def decode(raw: bytes | None) -> object:
    """The JSON value of a message (bounded in size), or the Rejection saying why it has none."""
    if raw is None:
        return Rejection("decode", "a message value", "null (a tombstone)")
    if not raw:
        return Rejection("decode", "a message value", "an empty value")
    if len(raw) > MAX_EVENT_BYTES:
        return Rejection("decode", f"a message of at most {MAX_EVENT_BYTES} bytes", f"{len(raw)} bytes")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Rejection("decode", "UTF-8 JSON", f"{_show(bytes(raw[:40]))} ({exc.msg})")


def wrong_key(key: bytes | None, expected: str, naming: str) -> Rejection | None:
    """Why a Kafka message `key` is not `expected` (described as `naming`); None if it is."""
    if key is None:
        return Rejection("route", f"a message key naming {naming}", "no key")
    if key != expected.encode():
        return Rejection("route", f"the message key to be {naming}", _show(key))
    return None


def dead_letter_headers(why: Rejection, source: str) -> list[tuple[str, bytes]]:
    """The headers of a dead letter: why it was refused, and where it came from
    (topic/partition/offset). Any text fits: what cannot be encoded is escaped."""
    def text(value: str) -> bytes:
        return value.encode("utf-8", "backslashreplace")

    return [("reason", text(why.reason)), ("stage", text(why.stage)), ("expected", text(why.expected)),
            ("got", text(why.got)), ("source", text(source))]


def failed(stage: str, exc: Exception) -> Rejection:
    """The rejection of a record that raised while `stage` processed it: a dead letter that
    names the exception, instead of a worker stopped by one record."""
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - an exception whose message cannot be built
        message = "(no message)"
    return Rejection(stage, "a record the worker can process", _show(f"{type(exc).__name__}: {message}", 200))
