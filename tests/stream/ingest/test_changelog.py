"""The histories changelog merge both engines use on assignment and in faust's recovery."""
from __future__ import annotations

from state.store import MemoryHistoryStore
from stream.contract import history as hist
from stream.contract.events import validate
from stream.ingest import changelog


def history_after(offset: int, item: str = "i1") -> bytes:
    event = validate({"v": 1, "event_id": f"e{offset}", "user": "u1", "ts": 1_700_000_000_000 + offset,
                      "type": "rec", "item": item, "click": 1})
    return hist.apply(hist.EMPTY, event, offset)


def test_newer_histories_replace_older_ones_and_the_position_is_stored_with_them():
    store = MemoryHistoryStore()
    store.apply({1: history_after(10), 2: history_after(50)})
    records = [(changelog.changelog_key(1), history_after(20), 7),  # newer: taken
               (changelog.changelog_key(2), history_after(40), 8),  # older than the store's: kept out
               (changelog.changelog_key(3), history_after(5), 9)]   # unknown user: taken
    assert changelog.merge(store, 2, records) == 2
    assert hist.last_offset(store.get(1)) == 20 and hist.last_offset(store.get(2)) == 50
    assert store.get(3) is not None
    assert store.get_meta(changelog.position_name(2)) == 9


def test_the_latest_record_of_a_user_wins_within_one_batch():
    store = MemoryHistoryStore()
    changelog.merge(store, 0, [(changelog.changelog_key(1), history_after(3, "a"), 0),
                               (changelog.changelog_key(1), history_after(4, "b"), 1)])
    assert hist.last_offset(store.get(1)) == 4


def test_foreign_records_are_skipped_but_still_advance_the_position():
    store = MemoryHistoryStore()
    records = [(None, history_after(1), 0), (b"short", history_after(1), 1), (changelog.changelog_key(1), None, 2),
               (changelog.changelog_key(1), b"\x00", 3)]
    assert changelog.merge(store, 0, records) == 0
    assert store.histories == {} and store.get_meta(changelog.position_name(0)) == 3
    assert changelog.merge(store, 0, []) == 0  # nothing read: nothing written
