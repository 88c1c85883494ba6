"""Item catalogue v1: what is known of an item besides its id.

One record per item, the value of a message on the compacted topic `sar.items` (key = the
item id as text, like an event's user key) and one line of a catalogue file (`X.items.jsonl`
beside an event file `X.jsonl`):

    {"v": 1, "item": "i42", "categories": ["sports", "running"], "caption": "light trail shoe"}

- `item`: the item id, as in events (text or integer).
- `categories`: category ids by level, coarsest first (at most MAX_LEVELS); a level may be
  null when unknown. Each level is its own vocabulary: "7" at level 1 and "7" at level 2
  are different categories.
- `caption`: title or caption words, as an event's query: text (lower-cased, split on
  white space) or a list of word ids. The same words as queries: a caption word and a query
  word with the same text are one token, so an item and a query that share words start close.
Both feature fields are optional; a record with neither says the item has no features.
A later record of an item replaces the earlier one.

Categories and caption words become tokens of one vocabulary (stable 64-bit ids): a word is
`word_id(w)`, a category `stable_id("category<level>", c)`. The model embeds them through
its word table (model.batch), so the catalogue adds no id table of its own.
"""
from __future__ import annotations

from dataclasses import dataclass

from stream.contract.events import NO_KEY, Rejection, bad, parse_keyed, query_words, raw_id, versioned_object
from stream.contract.ids import item_id, stable_id

VERSION = 1
MAX_LEVELS = 4
_FIELDS = frozenset({"v", "item", "categories", "caption"})


@dataclass(frozen=True, slots=True)
class ItemRecord:
    """A validated catalogue record: hashed item id, category tokens by level (0 = level
    unknown) and caption word tokens."""

    item: int
    categories: tuple[int, ...]
    words: tuple[int, ...]


def category_token(level: int, raw: str | int) -> int:
    """The token of category `raw` at `level` (1 = coarsest)."""
    return stable_id(f"category{level}", raw)


def validate_item(obj: object) -> ItemRecord | Rejection:
    """Validate a decoded JSON value against catalogue v1."""
    if (wrong := versioned_object(obj, VERSION)) is not None:
        return wrong
    unknown = obj.keys() - _FIELDS
    if unknown:
        return bad("fields", f"only {sorted(_FIELDS)}", f"unknown {sorted(unknown)}")
    if "item" not in obj:
        return bad("fields", "an item field", "none")
    item = raw_id("item", obj["item"])
    if isinstance(item, Rejection):
        return item
    levels = obj.get("categories", [])
    if type(levels) is not list or len(levels) > MAX_LEVELS:
        return bad("categories", f"a list of at most {MAX_LEVELS} category ids (null: unknown)", levels)
    categories = []
    for level, raw in enumerate(levels, 1):
        if raw is None:
            categories.append(0)
            continue
        category = raw_id("categories", raw)
        if isinstance(category, Rejection):
            return category
        categories.append(category_token(level, category))
    words: tuple[int, ...] = ()
    caption = obj.get("caption")
    if caption is not None and caption != "" and caption != []:
        words = query_words(caption)
        if isinstance(words, Rejection):  # reported under this record's field name
            return Rejection(words.stage, words.expected.replace("query", "caption", 1), words.got)
    return ItemRecord(item_id(item), tuple(categories), words)


def parse_item(raw: bytes | None, key: bytes | None | object = NO_KEY) -> ItemRecord | Rejection:
    """Decode and validate one catalogue message value; a Kafka message's `key` must name the
    record's item (compaction keeps the latest record per key). Never raises."""
    return parse_keyed(raw, key, validate_item, "item", "record")
