import numpy as np
import pytest

from model.idtable import IdTable, TableFull


def test_ids_get_distinct_rows_and_padding_stays_zero():
    t = IdTable(10)
    rows, recycled = t.lookup(np.array([0, 7, 1 << 62, 7, 3]))
    assert rows[0] == 0 and rows[1] == rows[3]
    assert len(set(rows[1:].tolist())) == 3 and rows[1:].min() >= 1
    assert len(recycled) == 0
    np.testing.assert_array_equal(t.find(np.array([3, 7, 99, 0])), [rows[4], rows[1], 0, 0])


def test_full_table_recycles_least_recently_used_rows_not_those_in_the_batch():
    t = IdTable(4)  # rows 1..3
    t.lookup(np.array([10]))
    t.lookup(np.array([11]))
    t.lookup(np.array([12]))
    old = t.find(np.array([10, 11]))
    t.lookup(np.array([10]))  # 10 is fresh again; 11 is now the oldest
    rows, recycled = t.lookup(np.array([12, 13]))
    assert recycled.tolist() == [old[1]]
    assert t.find(np.array([11]))[0] == 0 and t.find(np.array([13]))[0] == old[1]
    assert t.find(np.array([10]))[0] == old[0]


def test_a_batch_larger_than_the_table_is_refused():
    t = IdTable(4)
    with pytest.raises(TableFull):
        t.lookup(np.array([1, 2, 3, 4]))


def test_state_round_trip_keeps_the_map():
    t = IdTable(100)
    ids = np.random.default_rng(0).integers(1, 1 << 62, 50)
    rows, _ = t.lookup(ids)
    u = IdTable(100)
    u.load_state_dict(t.state_dict())
    np.testing.assert_array_equal(u.find(ids), rows)
    assert u.lookup(np.array([5]))[0][0] == t.lookup(np.array([5]))[0][0]
