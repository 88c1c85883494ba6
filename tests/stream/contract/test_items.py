"""Item catalogue v1: valid records become tokens, anything else a rejection, never an
exception (property tests over any bytes and over record-shaped objects)."""
from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.contract.events import Rejection
from stream.contract.ids import item_id, word_id
from stream.contract.items import MAX_LEVELS, ItemRecord, category_token, parse_item

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) \
    | st.text(max_size=30)
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=6) | st.dictionaries(
    st.text(max_size=8), c, max_size=4), max_leaves=12)


def test_a_record_becomes_category_tokens_by_level_and_caption_words():
    record = parse_item(b'{"v":1,"item":"i9","categories":["7",null,"7"],"caption":"Red  shoe"}', b"i9")
    assert record == ItemRecord(item_id("i9"), (category_token(1, "7"), 0, category_token(3, "7")),
                                (word_id("red"), word_id("shoe")))
    assert category_token(1, "7") != category_token(3, "7")  # each level its own vocabulary
    assert parse_item(b'{"v":1,"item":5,"caption":[3, "w"]}').words == (word_id(3), word_id("w"))
    assert parse_item(b'{"v":1,"item":5}') == ItemRecord(item_id(5), (), ())  # no features: allowed


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
        why = parse_item(raw)
        assert isinstance(why, Rejection) and field in why.reason, (raw, why)
    assert isinstance(parse_item(None), Rejection)
    assert "key" in parse_item(b'{"v":1,"item":"i9"}', b"i8").reason
    assert "key" in parse_item(b'{"v":1,"item":"i9"}', None).reason
    assert len(parse_item(b'{"v":1,"item":"i9","categories":[' + b'"a",' * MAX_LEVELS + b'"a"]}').reason) < 300


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.none() | st.binary(max_size=8))
def test_any_bytes_become_a_record_or_a_rejection(raw, key):
    assert isinstance(parse_item(raw, key), (ItemRecord, Rejection))


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({"v": st.sampled_from([1, 1, 1, True, 1.0, "1"]),
                              "item": st.sampled_from(["i1", 7, "", None]) | json_values},
                             optional={"categories": st.lists(st.sampled_from(["a", 3, None, 2**70]) | json_values,
                                                              max_size=6) | json_values,
                                       "caption": st.text(max_size=40) | st.lists(json_scalars, max_size=40)
                                       | json_values}))
def test_record_shaped_objects_never_raise(obj):
    result = parse_item(orjson.dumps(obj, option=orjson.OPT_PASSTHROUGH_SUBCLASS) if _dumpable(obj) else b"{}")
    assert isinstance(result, (ItemRecord, Rejection))
    if isinstance(result, Rejection):
        assert len(result.reason) < 400


def _dumpable(obj) -> bool:
    try:
        orjson.dumps(obj)
        return True
    except TypeError:  # an integer beyond 64 bits: not JSON orjson writes; the raw test covers bytes
        return False
