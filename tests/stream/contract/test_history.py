"""Property tests for the history codec and the pure history step."""
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.contract import history as hist
from stream.contract.events import Event

ids = st.integers(min_value=1, max_value=2**63 - 1)
ts = st.integers(min_value=631_152_000_000, max_value=4_102_444_799_999)
rec_b = st.builds(hist.RecBehaviour, ts, ids)
search_b = st.builds(hist.SearchBehaviour, ts, st.tuples(ids) | st.lists(ids, min_size=1, max_size=32).map(tuple),
                     st.lists(ids, max_size=5).map(tuple))
histories = st.builds(
    hist.History, st.integers(min_value=-1, max_value=2**62),
    st.lists(rec_b, max_size=30).map(lambda xs: tuple(sorted(xs, key=lambda b: b.ts))),
    st.lists(search_b, max_size=30).map(lambda xs: tuple(sorted(xs, key=lambda b: b.ts))))
events = st.one_of(
    st.builds(lambda t, i, c: Event("e", 1, t, "rec", (i,), c, ()), ts, ids, st.integers(0, 1)),
    st.builds(lambda t, q, c: Event("e", 1, t, "search", c, int(bool(c)), q), ts,
              st.lists(ids, min_size=1, max_size=32).map(tuple), st.lists(ids, max_size=12).map(tuple)),
)


@given(histories)
def test_codec_round_trip(history):
    assert hist.decode(hist.encode(history)) == history


def reference_step(history: hist.History, event: Event, offset: int, limits: hist.Limits) -> hist.History:
    """The step spelled out on decoded values: what apply() must match byte for byte."""
    if event.kind == "rec" and event.click == 0:
        return hist.History(offset, history.rec, history.search)
    if event.kind == "rec":
        rec = sorted([*history.rec, hist.RecBehaviour(event.ts, event.items[0])], key=lambda b: b.ts)
        return hist.History(offset, tuple(rec[-limits.max_rec:]), history.search)
    new = hist.SearchBehaviour(event.ts, event.query[:limits.max_words], event.items[:limits.max_clicks])
    search = sorted([*history.search, new], key=lambda b: b.ts)
    return hist.History(offset, history.rec, tuple(search[-limits.max_search:]))


@settings(max_examples=300)
@given(st.lists(events, max_size=80), st.integers(1, 8), st.integers(1, 8))
def test_step_matches_reference_and_respects_bounds(stream, max_rec, max_search):
    limits = hist.Limits(max_rec=max_rec, max_search=max_search)
    buf, expected = hist.EMPTY, hist.History()
    for offset, event in enumerate(stream):
        buf = hist.apply(buf, event, offset, limits)
        expected = reference_step(expected, event, offset, limits)
        decoded = hist.decode(buf)
        assert decoded == expected
        assert len(decoded.rec) <= max_rec and len(decoded.search) <= max_search
        assert all(len(b.clicks) <= limits.max_clicks for b in decoded.search)
        assert [b.ts for b in decoded.rec] == sorted(b.ts for b in decoded.rec)
        assert [b.ts for b in decoded.search] == sorted(b.ts for b in decoded.search)


@given(st.lists(events, min_size=1, max_size=30), st.data())
def test_redelivered_events_are_never_applied_twice(stream, data):
    buf = hist.EMPTY
    for offset, event in enumerate(stream):
        buf = hist.apply(buf, event, offset)
    replay_from = data.draw(st.integers(0, len(stream) - 1))
    for offset in range(replay_from, len(stream)):
        assert hist.apply(buf, stream[offset], offset) is None


def test_full_history_is_bounded_in_bytes():
    limits = hist.Limits()
    buf = hist.EMPTY
    for i in range(100):
        buf = hist.apply(buf, Event("e", 1, 1_700_000_000_000 + i, "rec", (i + 1,), 1, ()), 2 * i, limits)
        buf = hist.apply(buf, Event("e", 1, 1_700_000_000_000 + i, "search", (1, 2, 3, 4, 5, 6, 7), 1, (9, 8)),
                         2 * i + 1, limits)
    decoded = hist.decode(buf)
    assert len(decoded.rec) == 30 and len(decoded.search) == 30
    assert all(len(b.clicks) == 5 for b in decoded.search)
    assert len(buf) == hist.HEADER_BYTES + 30 * 14 + 30 * (8 + 8 * (2 + 5))


def test_mixed_sequence_is_in_time_order_with_rec_first_on_ties():
    h = hist.History(3, (hist.RecBehaviour(5, 1), hist.RecBehaviour(9, 2)), (hist.SearchBehaviour(5, (1,), ()),))
    assert [type(b).__name__ for b in h.mixed()] == ["RecBehaviour", "SearchBehaviour", "RecBehaviour"]


def test_a_v1_history_is_read_and_upgraded_on_its_next_change():
    v1 = bytes((1, 1, 0)) + (7).to_bytes(8, "little", signed=True) + (1_700_000_000_000).to_bytes(6, "little") \
        + (5).to_bytes(8, "little")
    assert hist.decode(v1) == hist.History(7, (hist.RecBehaviour(1_700_000_000_000, 5),), ())
    assert hist.last_offset(v1) == 7
    assert hist.apply(v1, Event("e", 1, 1_700_000_000_001, "rec", (6,), 1, ()), 7) is None  # a redelivery
    after = hist.apply(v1, Event("e", 1, 1_700_000_000_001, "rec", (6,), 1, ()), 8)
    assert after[0] == hist.VERSION
    assert hist.decode(after).rec == (hist.RecBehaviour(1_700_000_000_000, 5), hist.RecBehaviour(1_700_000_000_001, 6))


@given(st.lists(events, min_size=1, max_size=40), st.data())
def test_forwarded_events_apply_once_whatever_copies_arrive(stream, data):
    """Events of one user arrive home (offsets of the home partition) and forwarded from
    partition 3 (their offsets there); a forwarder that crashed sends some copies again.
    The history equals the one built from each event once, in any arrival order of copies."""
    origin = [data.draw(st.sampled_from(["home", "other"])) for _ in stream]
    arrivals, other_offset = [], 100
    for event, where in zip(stream, origin):
        if where == "home":
            arrivals.append((event, None))
        else:
            other_offset += data.draw(st.integers(1, 3))
            copies = data.draw(st.integers(1, 3))  # a re-forward after a crash repeats the copy
            arrivals.extend([(event, (3, other_offset))] * copies)
    buf, expected, offset = hist.EMPTY, hist.EMPTY, 0
    for event in stream:
        expected = hist.apply(expected, event, offset := offset + 1)
    last = NO = hist.NO_OFFSET
    for offset, (event, source) in enumerate(arrivals):
        after = hist.apply(buf, event, offset, source=source)
        buf, last = (buf, last) if after is None else (after, offset)
    got, want = hist.decode(buf), hist.decode(expected)
    assert (got.rec, got.search) == (want.rec, want.search)
    assert last == NO or hist.apply(buf, stream[-1], last) is None  # the home offset guards redeliveries
