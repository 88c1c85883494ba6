"""Catalogue v1 (items and user profiles): valid records become tokens, anything else a
rejection, never an exception (property tests over any bytes and over record-shaped objects)."""
from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.contract.events import Rejection
from stream.contract.ids import item_id, user_id, word_id
from stream.contract.items import (MAX_FIELDS, MAX_LEVELS, ItemRecord, ProfileRecord, category_token,
                                   parse_record, profile_token, record_key)

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) \
    | st.text(max_size=30)
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=6) | st.dictionaries(
    st.text(max_size=8), c, max_size=4), max_leaves=12)


def test_a_record_becomes_category_tokens_by_level_and_caption_words():
    record = parse_record(b'{"v":1,"item":"i9","categories":["7",null,"7"],"caption":"Red  shoe"}', b"i9")
    assert record == ItemRecord(item_id("i9"), (category_token(1, "7"), 0, category_token(3, "7")),
                                (word_id("red"), word_id("shoe")))
    assert category_token(1, "7") != category_token(3, "7")  # each level its own vocabulary
    assert parse_record(b'{"v":1,"item":5,"caption":[3, "w"]}').words == (word_id(3), word_id("w"))
    assert parse_record(b'{"v":1,"item":5}') == ItemRecord(item_id(5), (), ())  # no features: allowed


def test_bad_records_are_rejected_with_the_field():
    cases = {
        b'{"v":1,"item":"i9","categories":"shoes"}': "categories",
        b'{"v":1,"item":"i9","categories":[[1]]}': "nested",
        b'{"v":1,"item":"i9","categories":[1,2,3,4,5]}': "categories",
        b'{"v":1,"item":"i9","caption":7}': "caption",
        b'{"v":1,"item":"i9","price":3}': "fields",
        b'{"v":2,"item":"i9"}': "v",
        b'{"v":1,"categories":["a"]}': "item",
        b'{"v":1,"item":true}': "item",
        b"": "empty",
        b"not json": "JSON",
    }
    for raw, field in cases.items():
        why = parse_record(raw)
        assert isinstance(why, Rejection) and field in why.reason, (raw, why)
    assert isinstance(parse_record(None), Rejection)
    assert "key" in parse_record(b'{"v":1,"item":"i9"}', b"i8").reason
    assert "key" in parse_record(b'{"v":1,"item":"i9"}', None).reason
    assert len(parse_record(b'{"v":1,"item":"i9","categories":[' + b'"a",' * MAX_LEVELS + b'"a"]}').reason) < 300


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.none() | st.binary(max_size=8))
def test_any_bytes_become_a_record_or_a_rejection(raw, key):
    assert isinstance(parse_record(raw, key), (ItemRecord, ProfileRecord, Rejection))


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({"v": st.sampled_from([1, 1, 1, True, 1.0, "1"]),
                              "item": st.sampled_from(["i1", 7, "", None]) | json_values},
                             optional={"categories": st.lists(st.sampled_from(["a", 3, None, 2**70]) | json_values,
                                                              max_size=6) | json_values,
                                       "caption": st.text(max_size=40) | st.lists(json_scalars, max_size=40)
                                       | json_values}))
def test_record_shaped_objects_never_raise(obj):
    result = parse_record(orjson.dumps(obj, option=orjson.OPT_PASSTHROUGH_SUBCLASS) if _dumpable(obj) else b"{}")
    assert isinstance(result, (ItemRecord, Rejection))
    if isinstance(result, Rejection):
        assert len(result.reason) < 400


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({"v": st.sampled_from([1, 1, 1, True, "1"]),
                              "user": st.sampled_from(["u1", 7, "", None]) | json_values},
                             optional={"profile": st.dictionaries(
                                           st.sampled_from(["age", "", " ", "g" * 200]) | st.text(),
                                           st.sampled_from(["F", 25, None, 2.5, True, []]) | json_scalars,
                                           max_size=10) | json_values,
                                       "item": json_scalars}))
def test_profile_shaped_objects_never_raise(obj):
    raw = orjson.dumps(obj) if _dumpable(obj) else b"{}"
    result = parse_record(raw)
    assert isinstance(result, (ProfileRecord, Rejection))
    if isinstance(result, Rejection):
        assert len(result.reason) < 400
    else:  # a valid profile routes under its own key, and no other
        assert parse_record(raw, record_key(orjson.loads(raw)).encode()) == result
        assert isinstance(parse_record(raw, str(obj["user"]).encode()), Rejection)


def _dumpable(obj) -> bool:
    try:
        orjson.dumps(obj)
        return True
    except TypeError:  # an integer beyond 64 bits: not JSON orjson writes; the raw test covers bytes
        return False


def test_a_profile_becomes_one_token_per_known_field_in_field_order():
    raw = b'{"v":1,"user":"u7","profile":{"occupation":"writer","gender":"F","age":25,"zip":null}}'
    record = parse_record(raw, b"user:u7")
    assert record == ProfileRecord(user_id("u7"), (profile_token("age", 25), profile_token("gender", "F"),
                                                   profile_token("occupation", "writer")))
    assert profile_token("age", 25) == profile_token("age", "25")  # ids are hashed as text, as everywhere
    assert profile_token("gender", "F") != profile_token("sex", "F")  # each field its own vocabulary
    assert profile_token("gender", "F") != category_token(1, "F")
    assert parse_record(b'{"v":1,"user":3}') == ProfileRecord(user_id(3), ())  # no profile: allowed
    assert parse_record(b'{"v":1,"user":3,"profile":{}}') == ProfileRecord(user_id(3), ())


def test_bad_profiles_are_rejected_with_the_reason():
    many = ",".join(f'"f{k}":1' for k in range(MAX_FIELDS + 1)).encode()
    cases = {
        b'{"v":1,"user":"u7","profile":["F"]}': "profile to be an object of at most 8 fields",
        b'{"v":1,"user":"u7","profile":{' + many + b"}}": "profile to be an object of at most 8 fields",
        b'{"v":1,"user":"u7","profile":{"age":2.5}}': "profile field 'age' to be a string or integer id",
        b'{"v":1,"user":"u7","profile":{"age":true}}': "profile field 'age' to be a string or integer id",
        b'{"v":1,"user":"u7","profile":{"age":""}}': "profile field 'age' to be a non-empty id",
        b'{"v":1,"user":"u7","profile":{" ":"x"}}': "profile to be field names of text",
        b'{"v":1,"user":"u7","profile":{"a":{"b":1}}}': "nested",
        b'{"v":1,"user":"u7","categories":["a"]}': "fields to be only ['profile', 'user', 'v']",
        b'{"v":1,"user":"u7","item":"i1"}': "an item or a user field (a record describes one), got 'both'",
        b'{"v":1,"profile":{"age":1}}': "an item or a user field (a record describes one), got 'none'",
        b'{"v":1,"user":""}': "user to be a non-empty id",
        b'{"v":1,"item":"user:7"}': "item to be an id not starting with 'user:'",
    }
    for raw, reason in cases.items():
        why = parse_record(raw)
        assert isinstance(why, Rejection) and reason in why.reason, (raw, why)


def test_a_user_and_an_item_of_the_same_id_have_different_keys():
    """The topic is compacted by key: an item and a user of the same id must not share one."""
    item, user = {"v": 1, "item": 7}, {"v": 1, "user": 7, "profile": {"age": "20s"}}
    assert (record_key(item), record_key(user)) == ("7", "user:7")
    assert "key to be 'user:' and the profile's user" in parse_record(orjson.dumps(user), b"7").reason
    assert "naming 'user:' and the profile's user" in parse_record(orjson.dumps(user), None).reason
    assert isinstance(parse_record(orjson.dumps(item), b"7"), ItemRecord)
