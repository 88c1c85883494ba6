import orjson
import pytest
from eventgen import malformed_values, valid_events

from stream.events import Event, Rejection, parse_event
from stream.ids import item_id, user_id, word_id


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
