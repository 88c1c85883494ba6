"""Stable 64-bit ids for raw user, item and word ids.

Every raw id (string or integer) is hashed with BLAKE2b to 8 bytes, then the top bit is
cleared so it fits a signed int64 (torch, numpy, RocksDB keys) as a positive number.
0 is reserved for padding and never returned. Namespaces keep "u42" the user apart
from "u42" the item. The mapping never changes between releases: it is part of the
sample and history contracts.
"""
from __future__ import annotations

from functools import lru_cache
from hashlib import blake2b

PAD = 0
_MASK = (1 << 63) - 1


@lru_cache(maxsize=1 << 18)
def stable_id(namespace: str, raw: str | int) -> int:
    digest = blake2b(f"{namespace}\x1f{raw}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & _MASK or 1


def user_id(raw: str | int) -> int:
    return stable_id("user", raw)


def item_id(raw: str | int) -> int:
    return stable_id("item", raw)


def word_id(raw: str | int) -> int:
    return stable_id("word", raw)
