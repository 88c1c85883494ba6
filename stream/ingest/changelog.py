"""The histories changelog: a compacted topic, co-partitioned with the events, keyed by the
64-bit user id, valued by the user's latest history. Both engines write it and read it back
when a partition moves to them; its records and this merge are the same for both, so a
state folder and a changelog written by one engine serve the other."""
from __future__ import annotations

from collections.abc import Iterable

from state.store import HistoryStore
from stream.contract import history as hist


def changelog_key(user: int) -> bytes:
    """A history's key on the changelog (and the samples topic): the 64-bit user id."""
    return user.to_bytes(8, "big")


def position_name(partition: int) -> str:
    """The store's meta entry for the next changelog offset not yet applied to it, less one."""
    return f"changelog/{partition}"


def merge(store: HistoryStore, partition: int, records: Iterable[tuple[bytes | None, bytes | None, int]]) -> int:
    """Apply one changelog partition's (key, value, offset) records to `store`: a history
    replaces the stored one when it has applied a later event (higher last offset), and
    the store remembers the last offset read, in the same atomic write. A foreign record
    (no 8-byte key, a tombstone, too short a value) is skipped: it must not stop a worker.
    Returns how many histories changed."""
    newest: dict[int, bytes] = {}
    last = None
    for key, value, offset in records:
        last = offset if last is None else max(last, offset)
        if key and len(key) == 8 and value and len(value) >= hist.MIN_BYTES:
            newest[int.from_bytes(key, "big")] = value
    if last is None:
        return 0
    users = list(newest)
    updates = {user: newest[user] for user, local in zip(users, store.get_many(users))
               if local is None or hist.last_offset(newest[user]) > hist.last_offset(local)}
    store.apply(updates, {position_name(partition): last})
    return len(updates)
