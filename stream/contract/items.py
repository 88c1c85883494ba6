"""Catalogue v1: what is known of an item or a user besides its id.

One record per item or user, the value of a message on the compacted topic `sar.items` and
one line of a catalogue file (`X.items.jsonl` beside an event file `X.jsonl`). The id field
present says which kind a record is:

    {"v": 1, "item": "i42", "categories": ["sports", "running"], "caption": "light trail shoe"}
    {"v": 1, "user": "u7", "profile": {"gender": "F", "age": "20s", "occupation": "writer"}}

Item records (key = the item id as text, like an event's user key):
- `item`: the item id, as in events (text or integer); text may not start with "user:".
- `categories`: category ids by level, coarsest first (at most MAX_LEVELS); a level may be
  null when unknown. Each level is its own vocabulary: "7" at level 1 and "7" at level 2
  are different categories.
- `caption`: title or caption words, as an event's query: text (lower-cased, split on
  white space) or a list of word ids. The same words as queries: a caption word and a query
  word with the same text are one token, so an item and a query that share words start close.
Both feature fields are optional; a record with neither says the item has no features.

User profile records (key = "user:" + the user id as text: the prefix keeps a user's record
and an item's of the same id apart on the compacted topic, which keeps one record per key):
- `user`: the user id, as in events.
- `profile`: at most MAX_FIELDS categorical fields, name -> value (text or integer id; null:
  unknown). Each field is its own vocabulary, as each category level is. Optional; a record
  without one says the user has no profile.

A later record of an item (a user) replaces the earlier one.

Categories, caption words and profile values become tokens of one vocabulary (stable 64-bit
ids): a word is `word_id(w)`, a category `stable_id("category<level>", c)`, a profile value
`stable_id("profile:<field>", value)`. The model embeds them through its word table
(model.tensors), so the catalogue adds no id table of its own.
"""
from __future__ import annotations

from dataclasses import dataclass

from stream.contract.events import NO_KEY, Rejection, bad, parse_keyed, query_words, raw_id, versioned_object
from stream.contract.ids import item_id, stable_id, user_id

VERSION = 1
MAX_LEVELS = 4
MAX_FIELDS = 8
PROFILE_KEY = "user:"  # a profile's message key: this, then the user id
_ITEM_FIELDS = frozenset({"v", "item", "categories", "caption"})
_PROFILE_FIELDS = frozenset({"v", "user", "profile"})


@dataclass(frozen=True, slots=True)
class ItemRecord:
    """A validated catalogue record: hashed item id, category tokens by level (0 = level
    unknown) and caption word tokens."""

    item: int
    categories: tuple[int, ...]
    words: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ProfileRecord:
    """A validated user profile: hashed user id and the tokens of its known fields, in field
    name order."""

    user: int
    fields: tuple[int, ...]


CatalogueRecord = ItemRecord | ProfileRecord


def category_token(level: int, raw: str | int) -> int:
    """The token of category `raw` at `level` (1 = coarsest)."""
    return stable_id(f"category{level}", raw)


def profile_token(field: str, raw: str | int) -> int:
    """The token of value `raw` of profile field `field`."""
    return stable_id(f"profile:{field}", raw)


def validate_record(obj: object) -> CatalogueRecord | Rejection:
    """Validate a decoded JSON value against catalogue v1 (an item or a user profile)."""
    if (wrong := versioned_object(obj, VERSION)) is not None:
        return wrong
    kinds = [kind for kind in ("item", "user") if kind in obj]
    if len(kinds) != 1:
        return bad("fields", "an item or a user field (a record describes one)", "both" if kinds else "none")
    return validate_item(obj) if kinds == ["item"] else validate_profile(obj)


def validate_item(obj: dict) -> ItemRecord | Rejection:
    """An item record's fields (`obj` is a versioned object with an `item` field)."""
    unknown = obj.keys() - _ITEM_FIELDS
    if unknown:
        return bad("fields", f"only {sorted(_ITEM_FIELDS)}", f"unknown {sorted(unknown)}")
    item = raw_id("item", obj["item"])
    if isinstance(item, Rejection):
        return item
    if isinstance(item, str) and item.startswith(PROFILE_KEY):  # its key would be a profile's
        return bad("item", f"an id not starting with {PROFILE_KEY!r}", item)
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


def validate_profile(obj: dict) -> ProfileRecord | Rejection:
    """A user profile's fields (`obj` is a versioned object with a `user` field)."""
    unknown = obj.keys() - _PROFILE_FIELDS
    if unknown:
        return bad("fields", f"only {sorted(_PROFILE_FIELDS)}", f"unknown {sorted(unknown)}")
    user = raw_id("user", obj["user"])
    if isinstance(user, Rejection):
        return user
    profile = obj.get("profile", {})
    if type(profile) is not dict or len(profile) > MAX_FIELDS:
        return bad("profile", f"an object of at most {MAX_FIELDS} fields, name: value", profile)
    tokens = []
    for name in sorted(profile):
        if isinstance(raw_id("profile field name", name), Rejection):
            return bad("profile", "field names of text (not blank)", name)
        if profile[name] is None:  # unknown: no token
            continue
        value = raw_id(f"profile field {name[:30]!r}", profile[name])
        if isinstance(value, Rejection):
            return value
        tokens.append(profile_token(name, value))
    return ProfileRecord(user_id(user), tuple(tokens))


def feature_tokens(record: CatalogueRecord) -> tuple[int, ...]:
    """Every token of a record (0 included: an unknown category level)."""
    return record.categories + record.words if isinstance(record, ItemRecord) else record.fields


def record_key(obj: dict) -> str:
    """The message key of a valid record: the item id, or PROFILE_KEY and the user id."""
    return str(obj["item"]) if "item" in obj else PROFILE_KEY + str(obj["user"])


def parse_record(raw: bytes | None, key: bytes | None | object = NO_KEY) -> CatalogueRecord | Rejection:
    """Decode and validate one catalogue message value; a Kafka message's `key` must be the
    record's key (record_key: compaction keeps the latest record per key). Never raises."""
    return parse_keyed(raw, key, validate_record, _named_key)


def _named_key(obj: dict) -> tuple[str, str]:
    naming = "the record's item" if "item" in obj else f"{PROFILE_KEY!r} and the profile's user"
    return record_key(obj), naming
