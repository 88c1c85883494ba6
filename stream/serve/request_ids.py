"""What a request names, as the stream names it: raw user, query and item ids mapped to the
stable ids of event v1 by the contract's own validator, so "u42" typed in a request is the
user "u42" of the events topic, and a query obeys the same bounds (512 characters, 32 words).
Pure functions; a refusal is data (a field and a reason), never an exception."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from stream.contract.events import MIN_TS_MS, Rejection, validate
from stream.contract.ids import item_id

RawId = str | int
RawQuery = str | list[RawId] | None


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is refused: the field at fault and the reason (a 422)."""

    field: str
    reason: str


def user_and_query(user: RawId, query: RawQuery) -> tuple[int, tuple[int, ...]] | Refusal:
    """The stable user id and query word ids (() without a query), validated as event v1
    validates a search (or, without a query, a rec event)."""
    event = {"v": 1, "event_id": "request", "user": user, "ts": MIN_TS_MS}
    if query is None:
        event |= {"type": "rec", "item": "-", "click": 1}
    else:
        event |= {"type": "search", "query": query, "clicks": []}
    checked = validate(event)
    if isinstance(checked, Rejection):
        field = checked.expected.split(" ", 1)[0]  # "user to be ...", "query to be ..."
        if field not in ("user", "query"):  # nesting: only a query can nest
            field = "user" if query is None else "query"
        return Refusal(field, checked.reason.removeprefix("validate: "))
    return checked.user, checked.query


# Candidates repeat from request to request (popular items), unlike the stream's one-off
# user ids (stream.contract.ids): a hit costs a third of a BLAKE2b hash.
_item_id = functools.lru_cache(maxsize=1 << 16)(item_id)


def item_ids(raw: list[RawId]) -> np.ndarray:
    """Stable item ids of raw ids already type-checked (strings or 64-bit integers)."""
    return np.fromiter((_item_id(r) for r in raw), np.int64, len(raw))
