"""A seeded simulator of search and browse behaviour, calibrated to KuaiSAR.

The world: `items` items in `categories` categories. Item popularity is Zipf-like
(weight 1/rank^item_zipf over a random ranking), and each category owns a small vocabulary
of query words (Zipf-weighted) plus a pool of generic words shared by all categories.
`World.catalogue()` gives each item's category as an item catalogue record (one level);
it lists every item, whenever the item is released.

A user: 2-6 favourite categories with random weights (interests persist), an exploration
share that draws any category by popularity, an activity level, and a slow drift (after a
behaviour, with probability `drift`, one favourite is replaced by a new category).

Each step a user makes one event:
- with probability p_expo a rec exposure without a click (click 0) of a globally popular
  item: real negatives, `rec_exposure_share` (default 30%) of all rec events;
- otherwise a behaviour. Its type follows a two-state chain, search after a search with
  probability `search_after_search`, after a rec with the probability that makes the
  stationary ratio `rec_clicks_per_search` (2.9) rec clicks per search. Its category: with
  probability same[prev type -> this type] the previous behaviour's category, otherwise a
  draw from the user's interests that excludes the previous category, so the realised
  same-category rate equals the target exactly in expectation (r2r 8%, s2r 5%, s2s 17%,
  r2s 4%, the KuaiSAR figures of the UniSAR paper), whatever the interests look like.
  A rec behaviour clicks one item of that category (by popularity). A search issues 1-4
  words from that category's vocabulary (some generic) and, with probability
  `search_click_share` (60%), clicks 1-3 items of that category.

What a sequence model can learn: a user's clicks concentrate on a few persistent, slowly
drifting categories (popularity alone does not know which), and a query's words tell the
category of the items it clicks. Statistics are defined in stream.data.stats.

Time: users are interleaved on one clock (a heap of each user's next event time); gaps
are exponential within a session (30 s) with occasional breaks (10 h), divided by the
user's activity; when a long run would pass the year 2100 the clock is compressed.
A user makes about 53 events a simulated day, so 1,000 users make about 53,000 events a
day (a 100,000-event run spans about 2 days, a 1,000,000-event run about 19; longer when
users join over time).
Memory is O(users + items): events are generated one at a time, never stored.
Same config and seed -> the same events, byte for byte (Python's `random` only).

A drifting world. By default the world is static: every item and every user is there from
the start, popularity never changes and interests drift slowly (`drift` 0.002). Four
kinds of drift can be turned on, each measured in days of the event clock (`ts`; a day
holds more events when there are more users, or when the clock is compressed):
- new items: a share `items_at_start` of the catalogue is there from the start (at least
  one item of each category, so every category can always be clicked); the rest is
  released in a random order at `item_release_rate` of the catalogue per day, evenly spaced
  (with jitter), so the releases end after (1 - items_at_start) / item_release_rate days.
  No event shows or clicks an item before its release time (`World.item_release_ms`);
- popularity that decays: an item's popularity weight halves every
  `popularity_half_life_days` days after its release (0: never), so fresh items take the
  clicks over from old ones, within each category and among exposures. (Decay is exact and
  costs nothing per event: all released items decay at the same rate, so their relative
  weights are fixed by their release times, weight x 2^(release day / half-life). The
  release span may therefore be at most 1,000 half-lives.) Category popularity stays as
  it was;
- shifting interests: `drift`, the probability that a behaviour replaces one of the user's
  favourite categories, raised above the static 0.002;
- new users: a share `users_at_start` of the users is there from the start; the rest join
  in a random order at `user_arrival_rate` of the users per day (evenly spaced, with
  jitter), each making its first event at its arrival time (`World.user_arrival_ms`).
`drift_rate` multiplies every drift speed at once: the release and arrival rates, the decay
(the half-life is divided by it) and `drift` (capped at 1), so the same world (the same
items, categories, users and release order) can be generated at two drift rates.

`SimConfig.drifting(drift_rate=1.0, **fields)` is the documented drift profile
(DRIFT_PROFILE): half the items and half the users at the start, the rest released or
arriving at 5% a day (over 10 days), a popularity half-life of 1 day and interests that
drift 5 times faster than the static default (`drift` 0.01). With drift off (the field
defaults: items_at_start 1, item_release_rate 0, popularity_half_life_days 0,
users_at_start 1, user_arrival_rate 0, drift 0.002, drift_rate 1) the events are those of
the static world, byte for byte; a rate or half-life alone changes nothing while every item
and user is there from the start. `unisar data simulate` writes the
config beside the events (X.world.json) so a run can be told and repeated.
"""
from __future__ import annotations

import heapq
import math
import random
from bisect import bisect
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate

from stream.contract.events import MAX_TS_MS

DAY_MS = 86_400_000
KUAISAR_START_MS = 1_684_684_800_000  # 2023-05-22 00:00 Beijing time, KuaiSAR's first day
MAX_HALF_LIVES = 1_000  # release span / popularity half-life: 2^1000 still fits a float
# SimConfig.drifting(): the documented drift profile (the module's doc)
DRIFT_PROFILE = {
    "items_at_start": 0.5,
    "item_release_rate": 0.05,
    "popularity_half_life_days": 1.0,
    "drift": 0.01,
    "users_at_start": 0.5,
    "user_arrival_rate": 0.05,
}


@dataclass(frozen=True)
class SimConfig:
    users: int = 1_000
    items: int = 20_000
    categories: int = 200
    seed: int = 0
    start_ms: int = KUAISAR_START_MS
    # calibration targets: UniSAR paper, KuaiSAR
    same_r2r: float = 0.08
    same_s2r: float = 0.05
    same_s2s: float = 0.17
    same_r2s: float = 0.04
    rec_clicks_per_search: float = 2.9
    search_click_share: float = 0.6
    rec_exposure_share: float = 0.3  # rec events without a click, of all rec events
    search_after_search: float = 0.35
    # world and users
    item_zipf: float = 1.0
    category_zipf: float = 0.8
    favourites_min: int = 2
    favourites_max: int = 6
    explore: float = 0.1
    drift: float = 0.002  # per behaviour: P(one favourite category is replaced)
    words_per_category: int = 8
    generic_words: int = 50
    generic_word_share: float = 0.15
    # time
    session_gap_s: float = 30.0
    session_break: float = 0.05
    break_gap_s: float = 36_000.0
    # drift (the module's doc; the defaults keep the world static, DRIFT_PROFILE turns it on)
    items_at_start: float = 1.0  # share of the catalogue released at the start
    item_release_rate: float = 0.0  # share of the catalogue released per day after the start
    popularity_half_life_days: float = 0.0  # 0: popularity never decays
    users_at_start: float = 1.0  # share of the users there at the start
    user_arrival_rate: float = 0.0  # share of the users joining per day after the start
    drift_rate: float = 1.0  # multiplies every drift speed (rates, decay, `drift`)

    def __post_init__(self) -> None:
        if self.users < 1 or self.categories < 2 or self.items < self.categories:
            raise ValueError("need users >= 1, categories >= 2 and items >= categories")
        if not 1 <= self.favourites_min <= self.favourites_max:
            raise ValueError("need 1 <= favourites_min <= favourites_max")
        if not self.rec_clicks_per_search > 0:
            raise ValueError("rec_clicks_per_search must be > 0")
        for name in ("same_r2r", "same_s2r", "same_s2s", "same_r2s", "search_click_share",
                     "search_after_search", "explore", "drift", "generic_word_share", "session_break",
                     "items_at_start", "users_at_start"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be within [0, 1], got {getattr(self, name)}")
        if not 0 <= self.rec_exposure_share < 1:
            raise ValueError("rec_exposure_share must be within [0, 1)")
        for name in ("item_release_rate", "popularity_half_life_days", "user_arrival_rate"):
            if not 0 <= getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.drift_rate < math.inf:
            raise ValueError(f"drift_rate must be > 0, got {self.drift_rate}")
        for what, rate in (("items", "item_release"), ("users", "user_arrival")):
            if getattr(self, f"{what}_at_start") < 1 and not getattr(self, f"{rate}_rate") > 0:
                raise ValueError(f"{what}_at_start {getattr(self, f'{what}_at_start')} < 1 needs "
                                 f"{rate}_rate > 0 (the share of the {what} that join per day)")
        if self.items_at_start < 1 and self.popularity_half_life_days > 0:
            half_lives = (1 - self.items_at_start) / self.item_release_rate / self.popularity_half_life_days
            if half_lives > MAX_HALF_LIVES:
                raise ValueError(f"the releases would span {half_lives:,.0f} popularity half-lives, more than "
                                 f"{MAX_HALF_LIVES:,}: raise item_release_rate or popularity_half_life_days")

    @classmethod
    def drifting(cls, drift_rate: float = 1.0, **fields) -> SimConfig:
        """The drift profile (DRIFT_PROFILE) at `drift_rate`; `fields` override any field."""
        return cls(**{**DRIFT_PROFILE, "drift_rate": drift_rate, **fields})

    def effective_drift(self) -> dict[str, float]:
        """The drift speeds this config runs at: its drift fields after `drift_rate`."""
        return {
            "item_release_rate": self.item_release_rate * self.drift_rate,
            "popularity_half_life_days": self.popularity_half_life_days / self.drift_rate,
            "drift": min(1.0, self.drift * self.drift_rate),
            "user_arrival_rate": self.user_arrival_rate * self.drift_rate,
        }

    def targets(self) -> dict[str, float]:
        """The realised statistics this config aims at (keys as in stats.StreamStats.result)."""
        return {
            "same_r2r": self.same_r2r,
            "same_s2r": self.same_s2r,
            "same_s2s": self.same_s2s,
            "same_r2s": self.same_r2s,
            "rec_clicks_per_search": self.rec_clicks_per_search,
            "search_click_share": self.search_click_share,
            "rec_exposure_share": self.rec_exposure_share,
        }


def _zipf_cum(n: int, exponent: float) -> list[float]:
    return list(accumulate(1.0 / (rank + 1) ** exponent for rank in range(n)))


def _schedule(rng: random.Random, order: list[int], n_start: int, per_day: float, start_ms: int) -> list[int]:
    """When each of len(order) ids joins: the first n_start of `order` at start_ms, the rest in
    that order, evenly spaced (with jitter) at `per_day` ids a day."""
    at = [start_ms] * len(order)
    for j, i in enumerate(order[n_start:]):
        at[i] = start_ms + int((j + rng.random()) / per_day * DAY_MS)
    return at


@dataclass
class World:
    """Items, their categories, popularity and release times, when each user joins, and the
    query vocabulary (from the config seed). Items are kept in release order: the items
    released at a time are a prefix of `by_release` and of each category's `cat_items`."""

    config: SimConfig
    item_names: list[str]
    item_category: list[int]
    item_release_ms: list[int]  # when each item is released (start_ms: there from the start)
    user_arrival_ms: list[int]  # when each user joins (start_ms: there from the start)
    by_release: list[int]  # item ids in release order
    release_sorted: list[int]  # their release times
    item_cum: list[float]  # cumulative global popularity over by_release
    cat_items: list[list[int]]  # each category's items in release order
    cat_release: list[list[int]]  # their release times
    cat_item_cum: list[list[float]]
    cat_cum: list[float]  # cumulative category popularity
    word_cum: list[float]  # cumulative Zipf weights over a category's words

    @classmethod
    def build(cls, config: SimConfig) -> World:
        rng = random.Random(f"world-{config.seed}")
        n, c = config.items, config.categories
        popularity = [1.0 / (rank + 1) ** config.item_zipf for rank in range(n)]
        rng.shuffle(popularity)  # ids carry no popularity order
        cat_weight = [1.0 / (rank + 1) ** config.category_zipf for rank in range(c)]
        rng.shuffle(cat_weight)
        cat_cum_sizes = list(accumulate(cat_weight))
        item_category = list(range(c)) + [
            bisect(cat_cum_sizes, rng.random() * cat_cum_sizes[-1]) for _ in range(n - c)
        ]
        rng.shuffle(item_category)

        # drift: its own random stream, so the static world's draws stay as they were
        drift_rng = random.Random(f"drift-{config.seed}")
        speeds = config.effective_drift()
        start = config.start_ms
        item_release = [start] * n
        if config.items_at_start < 1:
            order = drift_rng.sample(range(n), n)
            first: dict[int, int] = {}  # one item of each category is there from the start
            for item in order:
                first.setdefault(item_category[item], item)
            anchors = set(first.values())
            order = list(first.values()) + [item for item in order if item not in anchors]
            n_start = max(c, round(config.items_at_start * n))
            item_release = _schedule(drift_rng, order, n_start, speeds["item_release_rate"] * n, start)
        user_arrival = [start] * config.users
        if config.users_at_start < 1:
            order = drift_rng.sample(range(config.users), config.users)
            user_arrival = _schedule(drift_rng, order, round(config.users_at_start * config.users),
                                     speeds["user_arrival_rate"] * config.users, start)
        weight = popularity
        half_life_ms = speeds["popularity_half_life_days"] * DAY_MS
        if half_life_ms > 0 and config.items_at_start < 1:
            # every released item decays alike: relative weights follow from release times
            weight = [p * 2.0 ** ((r - start) / half_life_ms) for p, r in zip(popularity, item_release)]
        by_release = sorted(range(n), key=item_release.__getitem__)  # stable: static keeps id order

        cat_items: list[list[int]] = [[] for _ in range(c)]
        for item in by_release:
            cat_items[item_category[item]].append(item)
        cat_item_cum = [list(accumulate(weight[i] for i in members)) for members in cat_items]
        cat_popularity = [list(accumulate(popularity[i] for i in members))[-1] for members in cat_items]
        return cls(
            config=config,
            item_names=[f"i{i}" for i in range(n)],
            item_category=item_category,
            item_release_ms=item_release,
            user_arrival_ms=user_arrival,
            by_release=by_release,
            release_sorted=[item_release[i] for i in by_release],
            item_cum=list(accumulate(weight[i] for i in by_release)),
            cat_items=cat_items,
            cat_release=[[item_release[i] for i in members] for members in cat_items],
            cat_item_cum=cat_item_cum,
            cat_cum=list(accumulate(cat_popularity)),
            word_cum=_zipf_cum(config.words_per_category, 1.0),
        )

    def categories(self) -> Iterator[tuple[str, str]]:
        """(item, category) pairs: the one level the simulated world has."""
        for name, cat in zip(self.item_names, self.item_category):
            yield name, f"c{cat}"

    def catalogue(self) -> Iterator[dict]:
        """The item catalogue (stream.contract.items): each item's category as level 1, every
        item, released later or not. No caption: simulated items have no titles (a query's
        words tell the category instead)."""
        for name, category in self.categories():
            yield {"v": 1, "item": name, "categories": [category]}


def _time_scale(config: SimConfig, n_events: int, activity_total: float) -> float:
    """Compress the clock when n_events would run past 2100 (1.0 otherwise)."""
    mean_gap_ms = 1000 * ((1 - config.session_break) * config.session_gap_s + config.session_break * config.break_gap_s)
    span_ms = n_events * mean_gap_ms / activity_total
    room_ms = 0.8 * (MAX_TS_MS - DAY_MS - config.start_ms)
    return min(1.0, room_ms / span_ms) if span_ms > 0 else 1.0


def generate(config: SimConfig, n_events: int, world: World | None = None) -> Iterator[dict]:
    """Yield `n_events` event v1 dicts in time order (users interleaved)."""
    world = world or World.build(config)
    rng = random.Random(f"events-{config.seed}")
    rnd = rng.random
    expo = rng.expovariate
    C = config.categories

    # behaviour-type chain: P(search | prev search) = a, P(search | prev rec) = b
    pi_s = 1.0 / (1.0 + config.rec_clicks_per_search)
    a = config.search_after_search
    b = min(1.0, pi_s * (1 - a) / (1 - pi_s))
    # exposures per step so that exposures / rec events = rec_exposure_share
    x = config.rec_exposure_share
    k = (1 - pi_s) * x / (1 - x)
    p_expo = k / (1 + k)
    # same[prev is search][this is search]
    same = ((config.same_r2r, config.same_r2s), (config.same_s2r, config.same_s2s))

    item_names, item_cum = world.item_names, world.item_cum
    by_release, release_sorted = world.by_release, world.release_sorted
    n_items = len(by_release)
    releasing = release_sorted[-1] > release_sorted[0]  # static worlds skip the release look-ups
    cat_items, cat_item_cum, cat_release = world.cat_items, world.cat_item_cum, world.cat_release
    cat_cum = world.cat_cum
    cat_total = cat_cum[-1]
    word_cum = world.word_cum
    word_total = word_cum[-1]
    W = config.words_per_category
    generic_base = 1 + C * W
    n_generic = config.generic_words
    generic_share = config.generic_word_share if n_generic else 0.0
    n_words_cum = (0.35, 0.70, 0.90, 1.0)  # 1-4 words
    n_clicks_cum = (0.75, 0.95, 1.0)  # 1-3 clicks
    click_share = config.search_click_share
    explore = config.explore
    drift = config.effective_drift()["drift"]

    def popular_category() -> int:
        return bisect(cat_cum, rnd() * cat_total)

    # users
    U = config.users
    user_names = [f"u{u}" for u in range(U)]
    fav_cats: list[list[int]] = []
    fav_cum: list[list[float]] = []
    for _ in range(U):
        n_fav = rng.randint(config.favourites_min, min(config.favourites_max, C))
        cats: list[int] = []
        while len(cats) < n_fav:
            cat = popular_category()
            if cat not in cats:
                cats.append(cat)
        fav_cats.append(cats)
        fav_cum.append(list(accumulate(expo(1.0) for _ in cats)))
    activity = [math.exp(rng.gauss(0.0, 0.5)) for _ in range(U)]
    scale = _time_scale(config, n_events, sum(activity))
    gap_ms = 1000 * config.session_gap_s * scale
    break_ms = 1000 * config.break_gap_s * scale
    session_break = config.session_break
    last_kind = [-1] * U  # -1 none, 0 rec, 1 search
    last_cat = [-1] * U
    start, arrival = config.start_ms, world.user_arrival_ms
    # a user there from the start makes its first event within the first day; a later one at its arrival
    heap = [(start + rnd() * DAY_MS * scale if arrival[u] <= start else arrival[u], u) for u in range(U)]
    heapq.heapify(heap)
    replace_top = heapq.heapreplace
    prefix = f"sim{config.seed}-"

    def interest(u: int) -> int:
        if rnd() < explore:
            return popular_category()
        cum = fav_cum[u]
        return fav_cats[u][bisect(cum, rnd() * cum[-1])]

    for n in range(n_events):
        t, u = heap[0]
        ts = int(t)
        if rnd() < p_expo:
            released = bisect(release_sorted, ts) if releasing else n_items
            item = by_release[bisect(item_cum, rnd() * item_cum[released - 1], 0, released)]
            event = {"v": 1, "event_id": f"{prefix}{n}", "user": user_names[u], "ts": ts, "type": "rec",
                     "item": item_names[item], "click": 0}
        else:
            prev = last_kind[u]
            is_search = int(rnd() < (a if prev == 1 else b if prev == 0 else pi_s))
            prev_cat = last_cat[u]
            if prev_cat < 0:
                cat = interest(u)
            elif rnd() < same[prev][is_search]:
                cat = prev_cat
            else:
                for _ in range(20):
                    cat = interest(u)
                    if cat != prev_cat:
                        break
                else:
                    cat = (prev_cat + 1 + int(rnd() * (C - 1))) % C
            members, cum = cat_items[cat], cat_item_cum[cat]
            released = bisect(cat_release[cat], ts) if releasing else len(members)
            total = cum[released - 1]
            if is_search:
                n_words = bisect(n_words_cum, rnd()) + 1
                base = 1 + cat * W
                words = [base + bisect(word_cum, rnd() * word_total)]
                for _ in range(n_words - 1):
                    if rnd() < generic_share:
                        word = generic_base + int(rnd() * n_generic)
                    else:
                        word = base + bisect(word_cum, rnd() * word_total)
                    if word not in words:
                        words.append(word)
                clicks: list[str] = []
                if rnd() < click_share:
                    for _ in range(bisect(n_clicks_cum, rnd()) + 1):
                        name = item_names[members[bisect(cum, rnd() * total, 0, released)]]
                        if name not in clicks:
                            clicks.append(name)
                event = {"v": 1, "event_id": f"{prefix}{n}", "user": user_names[u], "ts": ts, "type": "search",
                         "query": words, "clicks": clicks}
            else:
                event = {"v": 1, "event_id": f"{prefix}{n}", "user": user_names[u], "ts": ts, "type": "rec",
                         "item": item_names[members[bisect(cum, rnd() * total, 0, released)]], "click": 1}
            last_kind[u] = is_search
            last_cat[u] = cat
            if rnd() < drift:
                cats = fav_cats[u]
                new = popular_category()
                if new not in cats:
                    cats[int(rnd() * len(cats))] = new
                    fav_cum[u] = list(accumulate(expo(1.0) for _ in cats))
        gap = expo(1.0) * (break_ms if rnd() < session_break else gap_ms)
        replace_top(heap, (t + gap / activity[u], u))
        yield event
