from __future__ import annotations

from serving import history_of

from state.store import MemoryHistoryStore
from stream.contract import history as hist
from stream.serve.view import HistoryView, newer_histories


def key(user: int) -> bytes:
    return user.to_bytes(8, "big")


def test_only_newer_histories_replace_the_stored_ones():
    store = MemoryHistoryStore()
    old, new = (hist.encode(history_of(n).__class__(last_offset=o, rec=history_of(n).rec)) for n, o in ((2, 10), (3, 20)))
    store.apply({1: new, 2: old})
    records = [(key(1), old), (key(2), new), (key(3), old), (key(3), new),  # the last of a key counts
               (None, new), (key(4), None), (key(5), b"xx"), (b"short", new)]  # not histories: skipped
    assert newer_histories(records, store.get_many) == {2: new, 3: new}


def test_an_unknown_user_has_an_empty_history():
    store = MemoryHistoryStore()
    store.apply({1: hist.encode(history_of(4))})
    view = HistoryView(store)
    assert view.get(2) == hist.History()
    assert len(view.get(1).rec) == 4
    assert [len(h.rec) for h in view.get_many([1, 2])] == [4, 0]
