"""The learner's local catalogue: bounded, latest record wins, checkpointed."""
import numpy as np
import pytest

from model.catalogue import Catalogue


def test_latest_record_wins_absent_items_read_zero_and_capacity_bounds_it():
    c = Catalogue(capacity=4, widths=(2, 3))  # 3 items
    c.update(np.array([10, 11, 10]), [(1, 2), (3,), (5, 6)], [(7,), (8, 9, 9, 9), ()])
    cats, words = c.lookup(np.array([10, 11, 12, 0]))
    assert cats.tolist() == [[5, 6], [3, 0], [0, 0], [0, 0]]
    assert words.tolist() == [[0, 0, 0], [8, 9, 9], [0, 0, 0], [0, 0, 0]]
    c.update(np.array([20, 21, 22, 23, 24]), [(k,) for k in range(5)], [()] * 5)  # more than fits
    assert len(c) == 3 and c.lookup(np.array([24]))[0].tolist() == [[4, 0]]
    assert c.lookup(np.array([10]))[0].tolist() == [[0, 0]]  # forgotten, reads as absent
    assert set(c.tokens().tolist()) == {2, 3, 4}


def test_state_round_trip():
    c = Catalogue(capacity=8, widths=(2, 2))
    c.update(np.array([5, 6]), [(1, 2), (3,)], [(4,), ()])
    d = Catalogue(capacity=8, widths=(2, 2))
    d.load_state_dict(c.state_dict())
    for items in ([5], [6], [7]):
        assert all((a == b).all() for a, b in zip(c.lookup(np.array(items)), d.lookup(np.array(items))))


def test_a_one_part_catalogue_holds_profiles_and_refuses_other_widths():
    profiles = Catalogue(capacity=8, widths=(3,))
    profiles.update(np.array([5, 6]), [(1, 2, 3, 4), ()])  # cut to the width
    (block,) = profiles.lookup(np.array([5, 6, 7]))
    assert block.tolist() == [[1, 2, 3], [0, 0, 0], [0, 0, 0]]
    with pytest.raises(ValueError, match="expected token widths \\[2, 2\\], got \\[3\\]"):
        Catalogue(capacity=8, widths=(2, 2)).load_state_dict(profiles.state_dict())
