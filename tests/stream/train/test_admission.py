"""The trainer's admission: at-least-once repeats dropped by event id, stale samples shed
only when asked, and the memory survives a checkpoint round trip."""
from __future__ import annotations

from stream.train.admission import ADMIT, DUPLICATE, STALE, Admission
from stream.contract.history import History
from stream.contract.samples import Sample


def sample(event_id: str, ingest_ms: int = 1_000_000) -> Sample:
    return Sample(event_id, 1, 1, "rec", (5,), 1, (), History(-1, (), ()), ingest_ms)


def test_a_repeat_is_dropped_and_a_new_event_admitted():
    a = Admission()
    assert a.decide(sample("e1"), 1_000) == ADMIT
    assert a.decide(sample("e1"), 1_000) == DUPLICATE
    assert a.decide(sample("e2"), 1_000) == ADMIT


def test_memory_is_bounded_oldest_first():
    a = Admission(capacity=2)
    for e in ("e1", "e2", "e3"):
        assert a.decide(sample(e), 1_000) == ADMIT
    assert a.decide(sample("e3"), 1_000) == DUPLICATE
    assert a.decide(sample("e1"), 1_000) == ADMIT  # forgotten: beyond the window


def test_staleness_is_opt_in():
    old = sample("e1", ingest_ms=1_000_000)  # ingested at t = 1,000 s
    assert Admission().decide(old, 5_000.0) == ADMIT
    shedding = Admission(max_staleness_s=5.0)
    assert shedding.decide(old, 1_004.0) == ADMIT
    assert shedding.decide(sample("e2", ingest_ms=1_000_000), 1_006.0) == STALE


def test_memory_survives_a_checkpoint_round_trip():
    a = Admission()
    for e in ("e1", "e2"):
        a.decide(sample(e), 1_000)
    b = Admission()
    b.load_state_dict(a.state_dict())
    assert b.decide(sample("e1"), 1_000) == DUPLICATE
    assert b.decide(sample("e3"), 1_000) == ADMIT


def test_staleness_is_read_from_the_encoded_header_without_decoding():
    from stream.contract import history
    from stream.contract import samples as codec
    from stream.contract.events import validate

    event = validate({"v": 1, "event_id": "e1", "user": "u1", "ts": 1_700_000_000_000, "type": "rec",
                      "item": "i1", "click": 1})
    buf = codec.encode(event, history.EMPTY, 1_234_567)
    assert codec.ingest_ms_of(buf) == codec.decode(buf).ingest_ms == 1_234_567
    assert codec.ingest_ms_of(buf[:10]) is None and codec.ingest_ms_of(b"\x09" + buf[1:]) is None
    a = Admission(max_staleness_s=2.0)
    assert a.is_stale(codec.ingest_ms_of(buf), 1_234.567 + 2.5)
    assert not a.is_stale(codec.ingest_ms_of(buf), 1_234.567 + 1.5)
    assert not Admission().is_stale(codec.ingest_ms_of(buf), 1e12)
