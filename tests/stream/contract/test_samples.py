from hypothesis import given
from hypothesis import strategies as st

from stream.contract import history as hist
from stream.contract import samples
from stream.contract.events import Event

ids = st.integers(min_value=1, max_value=2**63 - 1)


@given(st.text(min_size=1, max_size=40), ids, st.integers(631_152_000_000, 4_102_444_799_999),
       st.lists(ids, min_size=1, max_size=100), st.lists(ids, min_size=1, max_size=32), st.integers(0, 2**40))
def test_search_sample_round_trip(event_id, user, ts, clicks, query, ingest):
    before = hist.apply(hist.EMPTY, Event("x", user, ts, "rec", (7,), 1, ()), 0)
    event = Event(event_id, user, ts, "search", tuple(clicks), 1, tuple(query))
    s = samples.decode(samples.encode(event, before, ingest))
    assert (s.event_id, s.user, s.ts, s.task, s.items, s.label, s.query, s.ingest_ms) == (
        event_id, user, ts, "search", tuple(clicks), 1, tuple(query), ingest)
    assert s.history == hist.decode(before)


def test_step_emits_samples_for_rec_and_clicked_search_only():
    limits = hist.Limits()
    rec_neg = Event("a", 1, 1_700_000_000_000, "rec", (5,), 0, ())
    after, sample = samples.step(hist.EMPTY, rec_neg, 0, limits, 1)
    assert samples.decode(sample).label == 0 and hist.decode(after).rec == ()
    no_click = Event("b", 1, 1_700_000_000_001, "search", (), 0, (3,))
    after, sample = samples.step(after, no_click, 1, limits, 1)
    assert sample is None and len(hist.decode(after).search) == 1
    clicked = Event("c", 1, 1_700_000_000_002, "search", (4,), 1, (3,))
    after2, sample = samples.step(after, clicked, 2, limits, 1)
    decoded = samples.decode(sample)
    assert decoded.task == "search" and decoded.items == (4,) and decoded.history == hist.decode(after)
    assert samples.step(after2, clicked, 2, limits, 1) == (None, None)  # redelivery


def test_truncated_sample_is_a_clear_error():
    import pytest

    with pytest.raises(ValueError, match="sample: expected"):
        samples.decode(b"\x01\x00")
