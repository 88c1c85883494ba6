"""Property tests: no message, whatever its bytes, can raise anywhere on the worker's path.

Every value, with or without a key, must become an event or a rejection; an event must go
through the history step, the sample codec and the history codec without an exception; a
rejection's reason must be a short string that can go into a Kafka header. The same for
the trainer's side: any bytes either decode to a sample a model can learn from, or raise
ValueError (which the trainer skips and counts).
"""
from __future__ import annotations

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.batch import collate
from stream.contract import history as hist
from stream.contract import samples
from stream.contract.events import Event, Rejection, parse_event

LIMITS = hist.Limits()
SOME_HISTORY = hist.apply(hist.EMPTY, Event("x", 1, 1_700_000_000_000, "rec", (7,), 1, ()), 3)

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) \
    | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
keys = st.none() | st.binary(max_size=12) | st.sampled_from([b"u1", b"42"])

# Objects shaped like events: a valid rec or search event with up to three fields replaced
# by a plausible value (good or subtly bad), now and then by any JSON value, or removed, or
# one unknown field added; so that every check is reached, not only the first.
def field(*plausible) -> st.SearchStrategy:
    likely = st.one_of(*plausible) if isinstance(plausible[0], st.SearchStrategy) else st.sampled_from(plausible)
    return st.integers(0, 11).flatmap(lambda i: json_values if i == 0 else likely)  # 1 in 12: anything


DROP = object()
ids_ = st.sampled_from(["i9", 9, "", " ", "\u00e9", 2**63, 2**64 - 1, -1, True, 1.5, None, "x" * 129])
fields = {
    "v": field(1, 1.0, True, 2, "1"),
    "event_id": field("e1", 7, "", True),
    "user": field("u1", 42, "\u00e9", " ", True, -(2**63)),
    "ts": field(st.sampled_from([1_700_000_000_000, 1.7e12, 1_700_000_000, -5, 4_102_444_800_000]),
                st.integers(0, 2**50)),
    "type": field("rec", "search", ["rec"], "REC"),
    "item": field(ids_),
    "click": field(0, 1, 1.0, True, 2, -1),
    "query": field(st.text(max_size=60), st.lists(st.integers(-5, 2**64 - 1) | st.text(max_size=5), max_size=40)),
    "clicks": field(st.lists(ids_, max_size=8), st.lists(st.sampled_from(["i1", 3]), max_size=120)),
    "colour": field("red"),
}
TEMPLATES = (
    {"v": 1, "event_id": "e1", "user": "u1", "ts": 1_700_000_000_000, "type": "rec", "item": "i9", "click": 1},
    {"v": 1, "event_id": "e2", "user": 42, "ts": 1_700_000_000_000, "type": "search", "query": "red shoes",
     "clicks": ["i7", 8]},
)


@st.composite
def event_like(draw) -> dict:
    obj = dict(draw(st.sampled_from(TEMPLATES)))
    for name in draw(st.lists(st.sampled_from(sorted(fields)), max_size=3, unique=True)):
        value = draw(st.just(DROP) | fields[name])
        if value is DROP:
            obj.pop(name, None)
        else:
            obj[name] = value
    return obj


def through_the_worker(raw, key) -> Event | Rejection:
    """What the worker does with one message, minus Kafka."""
    result = parse_event(raw, key)
    assert isinstance(result, (Event, Rejection))
    if isinstance(result, Rejection):
        for text in (result.reason, result.stage, result.expected, result.got):
            assert isinstance(text, str) and len(text) < 1000
            text.encode("utf-8", "backslashreplace")
        return result
    for before in (hist.EMPTY, SOME_HISTORY):
        after, sample = samples.step(before, result, 5, LIMITS, 1_700_000_000_000)
        assert after is not None
        hist.decode(after)
        if sample is not None:
            decoded = samples.decode(sample)
            collate([decoded])
    return result


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300) | st.none(), keys)
def test_any_bytes_become_an_event_or_a_rejection(raw, key):
    through_the_worker(raw, key)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(json_values, keys)
def test_any_json_value_becomes_an_event_or_a_rejection(value, key):
    through_the_worker(orjson.dumps(value), key)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(event_like(), st.booleans())
def test_any_event_shaped_object_becomes_an_event_or_a_rejection(obj, keyed):
    try:
        raw = orjson.dumps(obj)
    except orjson.JSONEncodeError:  # e.g. an integer past 64 bits: no producer can send it
        return
    key = str(obj.get("user", "")).encode() if keyed else None
    result = through_the_worker(raw, key)
    if isinstance(result, Event):  # what was accepted is exactly event v1
        assert type(obj["v"]) is int and obj["v"] == 1
        assert type(obj["ts"]) is int
        assert obj["type"] in ("rec", "search")
        if obj["type"] == "rec":
            assert type(obj["click"]) is int and obj["click"] in (0, 1)


@settings(max_examples=400)
@given(st.binary(max_size=200))
def test_any_bytes_decode_to_a_learnable_sample_or_raise_value_error(raw):
    for buf in (raw, b"\x01" + raw, b"\x02" + raw):
        try:
            sample = samples.decode(buf)
        except ValueError:
            continue
        collate([sample])


@settings(max_examples=400)
@given(st.binary(max_size=200))
def test_any_bytes_decode_to_a_history_or_raise_value_error(raw):
    for buf in (raw, b"\x02" + raw, b"\x01" + raw):
        try:
            hist.decode(buf)
        except ValueError:
            pass


def test_a_null_sample_is_a_value_error():
    try:
        samples.decode(None)
    except ValueError as exc:
        assert "bytes" in str(exc)
    else:
        raise AssertionError("a null sample decoded")
