"""Item catalogue files (`X.items.jsonl`): every source writes records every reader accepts."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest
from data_helpers import DAY0, rec_row, src_row, write_csv, write_kuaisar

from stream.contract.events import Rejection
from stream.contract.files import read_items
from stream.contract.ids import item_id
from stream.data import DataError, kuaisar, movielens, simulator
from stream.data.jsonl import read_catalogue, write_items


def _read_back(path) -> dict:
    records = {}
    for line, record in read_items(path):
        assert not isinstance(record, Rejection), f"{path}:{line}: {record.reason}"
        records[record.item] = record
    return records


def _movielens(tmp_path):
    wheel = tmp_path / "w.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(f"{movielens.INNER}.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                                 "1\t1\t5\t881250949\n")
        zf.writestr(f"{movielens.INNER}.item", "item_id:token\tmovie_title:token_seq\trelease_year:token\t"
                                                 "class:token_seq\n1\tToy Story\t1995\tAnimation Comedy\n"
                                                 "2\tL'Amour (1990)\t\tA B C D E F\n3\t!!!\t1990\t\n")
    return movielens.catalogue(movielens.read_ml100k(wheel))


def _kuaisar(tmp_path):
    header = ["item_id", "caption", "first_level_category_id", "second_level_category_id",
              "third_level_category_id", "fourth_level_category_id"]
    rows = [[10, "[1, 2]", 9, 136, 0, 0], [11, str(list(range(50))), -1, 5, "", 7], [12, "[]", "", "", "", ""]]
    path = write_csv(tmp_path / "item_features.csv", header, rows)
    return kuaisar.catalogue(path, np.array([10, 11, 12]))


@pytest.mark.parametrize("source", ["simulator", "movielens", "kuaisar"])
def test_every_source_writes_a_catalogue_read_items_accepts(source, tmp_path):
    if source == "simulator":
        records = simulator.World.build(simulator.SimConfig(users=2, items=500, categories=20, seed=1)).catalogue()
    elif source == "movielens":
        records = _movielens(tmp_path)
    else:
        records = _kuaisar(tmp_path)
    records = list(records)
    path = tmp_path / "x.items.jsonl"
    assert write_items(path, records) == len(records) > 2
    read = _read_back(path)
    assert set(read) == {item_id(r["item"]) for r in records}
    assert any(r.categories for r in read.values())
    assert [obj for _line, obj, _record in read_catalogue(path)] == records  # as written, in order


def test_kuaisar_cli_catalogue_reads_back(tmp_path, run_cli):
    directory = write_kuaisar(tmp_path / "d", [rec_row(1, 10, DAY0)], [src_row(1, 1, DAY0 + 1, "[1]", 11, 1)],
                              [[10, "[1, 2]", 5, 3, 4], [11, "[]", 5, -1, 4]])
    out = tmp_path / "k.jsonl"
    code, _, stderr = run_cli("data", "kuaisar", str(directory), "--out", str(out))
    assert code == 0, stderr
    read = _read_back(tmp_path / "k.items.jsonl")
    assert len(read) == 2 and len(read[item_id(10)].words) == 2 and read[item_id(11)].words == ()


def test_write_items_refuses_a_record_readers_would_refuse_and_leaves_no_file(tmp_path):
    path = tmp_path / "bad.items.jsonl"
    good = {"v": 1, "item": "a", "categories": ["x"]}
    for bad, expected in [({"v": 1, "item": "b", "categories": ["1", "2", "3", "4", "5"]}, "categories to be"),
                          ({"v": 1, "item": "b", "caption": "w " * 40}, "caption"),
                          ({"v": 1, "categories": ["x"]}, "an item or a user field"),
                          ({"v": 2, "item": "b"}, "v to be")]:
        with pytest.raises(DataError, match=f"item record #2 \\((?:'b'|None)\\) for .*{expected}"):
            write_items(path, [good, bad])
        assert not path.exists() and not list(tmp_path.iterdir())  # atomic: nothing half-written


def test_gzip_catalogue_round_trip(tmp_path):
    path = tmp_path / "x.items.jsonl.gz"
    records = [{"v": 1, "item": 3, "categories": [1, None, 2], "caption": [5, 6]}]
    assert write_items(path, records) == 1
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    assert [obj for _line, obj, _record in read_catalogue(path)] == records
    assert _read_back(path)[item_id(3)].categories[1] == 0  # an unknown level


def test_read_catalogue_names_file_and_line(tmp_path):
    path = tmp_path / "x.items.jsonl"
    path.write_text('{"v": 1, "item": "a"}\n\n{"v": 1, "item": "b", "colour": "red"}\n')
    with pytest.raises(DataError, match=f"{path}:3: expected a catalogue v1 record \\(fields to be only"):
        list(read_catalogue(path))


def test_write_items_names_a_bad_user_profile(tmp_path):
    path = tmp_path / "bad.items.jsonl"
    good = [{"v": 1, "item": "a"}, {"v": 1, "user": "u", "profile": {"age": "20s"}}]
    with pytest.raises(DataError, match="user record #3 \\('v'\\) for .*profile field 'age' to be a string"):
        write_items(path, [*good, {"v": 1, "user": "v", "profile": {"age": 2.5}}])
    assert write_items(path, good) == 2
    assert [type(r).__name__ for _line, r in read_items(path)] == ["ItemRecord", "ProfileRecord"]
