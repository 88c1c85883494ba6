"""The one held-out rule (stream.contract.offline): the latest fraction of the samples in
event time for everyone, or per user when asked; by ts, ties by file order, never by file
order alone; the demo's replay and `train --heldout` hold out the same samples."""
from __future__ import annotations

import gzip

import orjson
import pytest

from stream.contract.offline import (
    GLOBAL,
    PER_USER,
    describe,
    heldout_replay,
    heldout_rule,
    heldout_samples,
    load_samples,
    split_heldout,
)

T = 1_700_000_000_000


def rec(n: int, user: str, ts: int) -> dict:
    return {"v": 1, "event_id": f"e{n}", "user": user, "ts": ts, "type": "rec", "item": f"i{n}", "click": 1}


def write(path, events, extra: bytes = b"") -> None:
    data = b"".join(orjson.dumps(e) + b"\n" for e in events) + extra
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)


def ids(samples) -> list[str]:
    return [s.event_id for s in samples]


def test_global_rule_takes_the_latest_slice_of_time_for_everyone(tmp_path):
    # u1 is active early, u2 late: the latest 25% of all samples in time are all u2's
    events = [rec(i, "u1", T + i) for i in range(6)] + [rec(10 + i, "u2", T + 100 + i) for i in range(2)]
    path = tmp_path / "e.jsonl"
    write(path, events)
    samples, rejected = load_samples(path)
    assert len(samples) == 8 and not rejected
    train, test = split_heldout(samples, 0.25)
    assert ids(test) == ["e10", "e11"] and len(train) == 6
    # per user: the latest 25% of each user's samples (floor): 1 of u1's 6, 0 of u2's 2
    _, test = split_heldout(samples, 0.25, per_user=True)
    assert ids(test) == ["e5"]
    assert split_heldout(samples, 0.0)[1] == [] and len(split_heldout(samples, 1.0)[1]) == 8
    with pytest.raises(ValueError):
        split_heldout(samples, 1.5)


def test_time_not_file_order_decides_and_ties_keep_file_order(tmp_path):
    # file order is not time order: the latest in time is the first line
    events = [rec(0, "u1", T + 50), rec(1, "u2", T + 1), rec(2, "u3", T + 2), rec(3, "u4", T + 2)]
    path = tmp_path / "e.jsonl.gz"
    write(path, events)
    samples, _ = load_samples(path)
    assert ids(split_heldout(samples, 0.25)[1]) == ["e0"]
    # e2 and e3 share a ts: the later line is the later sample
    assert ids(split_heldout(samples, 0.5)[1]) == ["e3", "e0"]  # each list in replay (time) order


def test_rejections_carry_file_line_numbers(tmp_path):
    path = tmp_path / "e.jsonl"
    write(path, [rec(0, "u1", T)], extra=b"\n{not json\n")
    samples, rejected = load_samples(path)
    assert len(samples) == 1 and [line for line, _ in rejected] == [3]


def test_the_demo_replays_exactly_what_train_does_not_hold_out(tmp_path):
    events = [rec(i, f"u{i % 3}", T + 1000 * i) for i in range(20)]
    late = {"v": 1, "event_id": "e99", "user": "u1", "ts": T + 999_999, "type": "search", "query": "q", "clicks": []}
    events.insert(5, late)  # late in time, early in the file, and a search without clicks: no sample
    path = tmp_path / "e.jsonl"
    write(path, events, extra=b"{not json\n")
    replay, held, _ = heldout_replay(path, 0.2)
    assert ids(held) == ids(heldout_samples(path, 0.2)) == [f"e{i}" for i in range(16, 20)]
    sent = [orjson.loads(v).get("event_id") for _, v in replay if v.startswith(b"{\"")]
    # events before the cut, in file order; the late search comes after the cut in time: not replayed
    assert sent == [f"e{i}" for i in range(16)]
    assert replay[-1] == (22, b"{not json")  # invalid lines stay, for the producer to report
    # nothing held out: the whole file
    all_values, none, _ = heldout_replay(path, 0.01)
    assert none == [] and len(all_values) == 22


def test_the_rule_recorded_in_a_checkpoint():
    assert heldout_rule({"heldout_last": 0.2, "heldout_rule": GLOBAL}) == (0.2, False)
    assert heldout_rule({"heldout_last": 0.2, "heldout_rule": PER_USER}) == (0.2, True)
    assert heldout_rule({"holdout_last": 0.1}) == (0.1, True)  # written before the global rule
    assert heldout_rule({}) == (None, False)
    assert describe(0.1) == "the latest 0.1 of all samples in event time"
    assert "per-user" in describe(0.1, per_user=True)


def test_the_demos_tables_are_sized_from_the_data_with_room_to_spare(tmp_path):
    """The demo used to size the user table from its simulator flag (3,000 rows for 6,593
    users of a file) and recycle rows silently; now every id of the file fits."""
    events = [rec(i, f"u{i}", T + 1000 * i) for i in range(300)]  # 300 users, 300 items
    events.append({"v": 1, "event_id": "s", "user": "u1", "ts": T + 999_000, "type": "search",
                   "query": "a b c", "clicks": ["i1"]})
    path = tmp_path / "e.jsonl"
    write(path, events)
    sizes = heldout_replay(path, 0.1).sizes
    assert sizes["users"] >= 300 * 1.25 and sizes["items"] >= 300 * 1.25 and sizes["words"] >= 3
