import numpy as np
import pytest

from model.prequential import SlidingWindow


def test_window_weights_rows_and_forgets_old_batches():
    w = SlidingWindow(size=100)
    perfect = np.tile(np.arange(100, 0, -1.0), (60, 1))  # true item strictly best
    flat = np.ones((60, 100))  # every candidate tied: ties count against the model
    w.add("rec", perfect)
    assert w.result()["rec"]["HR@1"] == 1.0
    w.add("rec", flat)
    assert w.result()["rec"]["HR@1"] == pytest.approx((60 * 1.0 + 60 * 0.01) / 120)
    w.add("rec", flat)  # the perfect batch leaves the window
    assert w.result()["rec"]["HR@1"] == pytest.approx(0.01) and w.result()["rec"]["rows"] == 120
    assert "search" not in w.result()


def test_the_scored_share_is_chosen_by_event_id_alone():
    from model.prequential import scored

    ids = [f"e{i}" for i in range(20_000)]
    picked = [i for i in ids if scored(i, 0.25)]
    assert abs(len(picked) / len(ids) - 0.25) < 0.01
    assert picked == [i for i in ids if scored(i, 0.25)]  # the same choice every time, in any batch
    assert set(i for i in ids if scored(i, 0.1)) <= set(picked)  # a smaller share scores a subset
    assert all(scored(i, 1.0) for i in ids[:100])
    assert isinstance(scored("\ud800odd", 0.5), bool)  # any text id, lone surrogates included
