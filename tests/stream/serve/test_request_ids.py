from __future__ import annotations

import orjson

from stream.contract.events import parse_event
from stream.contract.ids import item_id
from stream.serve.request_ids import Refusal, item_ids, user_and_query


def event(**fields) -> bytes:
    return orjson.dumps({"v": 1, "event_id": "e", "ts": 1_700_000_000_000, **fields})


def test_a_request_names_users_and_queries_as_the_stream_does():
    streamed = parse_event(event(user="u42", type="search", query="Red  Shoes", clicks=[]))
    assert user_and_query("u42", "Red  Shoes") == (streamed.user, streamed.query)
    assert user_and_query(42, None)[0] == parse_event(event(user="42", type="rec", item="i", click=1)).user
    words = parse_event(event(user="u", type="search", query=[7, "w"], clicks=[])).query
    assert user_and_query("u", [7, "w"])[1] == words
    assert user_and_query("u", None)[1] == ()
    assert item_ids(["i1", 5]).tolist() == [item_id("i1"), item_id("5")]


def test_refusals_name_the_field_and_the_contract_reason():
    assert user_and_query("   ", None) == Refusal("user", "expected user to be a non-empty id of at most 128 "
                                                          "characters, got '   '")
    assert user_and_query("u", " ".join(["w"] * 33)).field == "query"
    assert user_and_query("u", [[1]]).field == "query"
    assert user_and_query("u", []).field == "query"
