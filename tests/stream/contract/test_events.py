import orjson
import pytest
from eventgen import malformed_values, valid_events

from stream.contract.events import Event, Rejection, parse_event, validate
from stream.contract.ids import item_id, user_id, word_id


def test_valid_rec_and_search_events_parse_with_hashed_ids():
    rec = parse_event(b'{"v":1,"event_id":"e17","user":"u42","ts":1700000000123,"type":"rec","item":"i9","click":0}')
    assert rec == Event("e17", user_id("u42"), 1700000000123, "rec", (item_id("i9"),), 0, ())
    search = parse_event(orjson.dumps({"v": 1, "event_id": 18, "user": 42, "ts": 1700000004000, "type": "search",
                                       "query": "Red  SHOES", "clicks": ["i7", 8]}))
    assert search.query == (word_id("red"), word_id("shoes"))
    assert search.items == (item_id("i7"), item_id(8)) and search.click == 1 and search.event_id == "18"


def test_word_id_lists_and_searches_without_clicks():
    event = parse_event(orjson.dumps({"v": 1, "event_id": "e", "user": "u", "ts": 1700000000000,
                                      "type": "search", "query": [12, 7]}))
    assert event.query == (word_id(12), word_id(7)) and event.items == () and event.click == 0


def test_ids_are_stable_positive_int64_and_namespaced():
    assert user_id("u1") == user_id("u1") != item_id("u1")
    assert 0 < user_id("u1") < 2**63
    assert user_id("u1") == 6055784861198406235  # part of the contract: must never change


@pytest.mark.parametrize("value,key,why", malformed_values(17))
def test_every_kind_of_malformed_event_is_rejected_with_a_reason(value, key, why):
    result = parse_event(value)
    assert isinstance(result, Rejection), why
    assert result.stage in {"decode", "validate"}
    assert "expected" in result.reason and result.got


def test_key_must_name_the_events_user():
    value = orjson.dumps(valid_events(1, users=3)[0])
    user = orjson.loads(value)["user"].encode()
    assert isinstance(parse_event(value, user), Event)
    rejection = parse_event(value, b"someone-else")
    assert isinstance(rejection, Rejection) and rejection.stage == "route"


def test_bool_is_not_an_integer():
    value = orjson.dumps({"v": 1, "event_id": "e", "user": "u", "ts": 1700000000000, "type": "rec",
                          "item": "i", "click": True})
    assert isinstance(parse_event(value), Rejection)


VALID_REC = {"v": 1, "event_id": "e", "user": "u", "ts": 1700000000000, "type": "rec", "item": "i", "click": 1}


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize("changes,field", [
    ({"click": 1.0}, "click"),  # 1.0 in (0, 1) is True in Python
    ({"click": True}, "click"),
    ({"v": True}, "v"),  # True == 1
    ({"v": 1.0}, "v"),
    ({"type": ["rec"]}, "type"),  # unhashable: a dict lookup would raise
    ({"type": {"rec": 1}}, "type"),
    ({"user": ["u"]}, "user"),
    ({"item": {"id": 1}}, "item"),
    ({"ts": 1700000000000.0}, "ts"),
    ({"item": 2**70}, "item"),
    ({"item": "\ud800"}, "item"),  # cannot be encoded as UTF-8
    ({"item": nested(1000)}, "nested"),  # under orjson's depth limit; a repr would recurse
])
def test_python_equalities_and_containers_do_not_fool_validation(changes, field):
    obj = {**VALID_REC, **changes}
    result = validate(obj)
    assert isinstance(result, Rejection), field
    assert len(result.reason) < 400
    if field != "nested":
        assert field in result.reason


def test_deep_nesting_under_the_parsers_limit_is_rejected_from_bytes():
    raw = b'{"v":1,"event_id":"e","user":"u","ts":1700000000000,"type":"rec","item":' + b"[" * 1000 \
          + b"]" * 1000 + b',"click":1}'
    result = parse_event(raw, b"u")
    assert isinstance(result, Rejection) and "nested" in result.reason


@pytest.mark.parametrize("raw,why", [(None, "tombstone"), (b"", "empty")])
def test_tombstones_and_empty_values_are_rejected(raw, why):
    result = parse_event(raw, b"u")
    assert isinstance(result, Rejection) and result.stage == "decode" and why in result.got


def test_a_message_without_a_key_is_rejected_but_a_file_line_needs_none():
    value = orjson.dumps(VALID_REC)
    result = parse_event(value, None)
    assert isinstance(result, Rejection) and result.stage == "route" and result.got == "no key"
    assert isinstance(parse_event(value), Event)  # a line of an event file has no key to check


def test_a_huge_integer_from_a_lenient_reader_is_described_not_printed():
    result = validate({**VALID_REC, "ts": 10**5000})
    assert isinstance(result, Rejection) and "bits" in result.got
