"""Time order (stream.contract.timeorder) and the offline replay of a file written out of it:
a log sorted by user, each user's events newest first, is replayed as the stream would have
seen it (histories hold only earlier events; the held-out slice is the latest in time)."""
from __future__ import annotations

import numpy as np
import orjson

from stream.contract.offline import (
    OfflineStream, heldout_replay, heldout_samples, in_time_order, load_samples, split_heldout,
)
from stream.contract.timeorder import LateCounter, late_events, time_order, event_ts

T = 1_700_000_000_000


def test_late_events_count_what_comes_after_a_later_one():
    assert late_events(np.array([], np.int64)) == 0
    assert late_events(np.array([1, 2, 2, 3])) == 0  # ties are in order
    assert late_events(np.array([5, 1, 2, 6, 3])) == 3  # 1, 2 after 5; 3 after 6
    order, late = time_order(np.array([5, 1, 2, 5, 3]))
    assert order.tolist() == [1, 2, 4, 0, 3] and late == 3  # stable: the two 5s keep file order


def test_invalid_lines_follow_the_event_before_them_and_are_not_late():
    ts = np.array([0, 30, 0, 10, 20, 0])
    valid = np.array([False, True, False, True, True, False])
    order, late = time_order(ts, valid)
    assert order.tolist() == [0, 3, 4, 5, 1, 2] and late == 2  # 5 follows 4 (ts 20), 2 follows 1


def test_only_valid_events_have_a_time_and_the_counter_counts_one_at_a_time():
    event = {"v": 1, "event_id": "e", "user": "u", "ts": T, "type": "rec", "item": "i", "click": 1}
    assert event_ts(orjson.dumps(event)) == T
    assert event_ts(orjson.dumps({**event, "click": 7})) is None  # has a ts, but is no event
    assert event_ts(b"not json") is None and event_ts(b"[1]") is None
    counter = LateCounter()
    for ts in (3, 5, None, 4, 5, 1, 9):
        counter.see(ts)
    assert counter.late == 2


def _by_user_newest_first(n_users=4, n_events=10):
    """Events spread over time for every user, written sorted by user and, within a user,
    newest first: nothing of the file is in time order."""
    events = []
    for u in range(n_users):
        for e in reversed(range(n_events)):
            events.append({"v": 1, "event_id": f"u{u}e{e}", "user": f"u{u}", "ts": T + 1000 * e + u,
                           "type": "rec", "item": f"i{e % 3}", "click": 1})
    return events


def _write(path, events, extra=b""):
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events) + extra)


def test_a_file_out_of_time_order_is_replayed_in_time_order(tmp_path):
    events = _by_user_newest_first()
    path = tmp_path / "by-user.jsonl"
    _write(path, events)
    samples, rejected = load_samples(path)
    assert not rejected and len(samples) == len(events)
    assert [s.ts for s in samples] == sorted(e["ts"] for e in events)
    for s in samples:  # a history holds only earlier events, all of them (up to its bound)
        assert all(b.ts < s.ts for b in s.history.rec)
        assert len(s.history.rec) == min(30, (s.ts - T) // 1000)
    # the same file written in time order builds the same samples
    ordered = tmp_path / "ordered.jsonl"
    _write(ordered, sorted(events, key=lambda e: e["ts"]))
    again, _ = load_samples(ordered)
    assert [(s.event_id, s.history.rec) for s in again] == [(s.event_id, s.history.rec) for s in samples]


def test_the_held_out_slice_is_the_latest_in_time_and_the_demo_replays_the_rest_in_time_order(tmp_path):
    events = _by_user_newest_first()
    path = tmp_path / "by-user.jsonl"
    _write(path, events, extra=b"{not json\n")
    samples, _ = load_samples(path)
    _, test = split_heldout(samples, 0.25)
    latest = [e["event_id"] for e in sorted(events, key=lambda e: e["ts"])[-10:]]
    assert [s.event_id for s in test] == latest  # not the last lines of the file (u3's oldest)
    replay, held, _ = heldout_replay(path, 0.25)
    assert [s.event_id for s in held] == [s.event_id for s in heldout_samples(path, 0.25)]
    sent = [orjson.loads(raw) for _, raw in replay if raw.startswith(b"{\"")]
    assert [e["ts"] for e in sent] == sorted(e["ts"] for e in sent)  # in time order
    assert len(sent) == 30 and max(e["ts"] for e in sent) < min(s.ts for s in held)
    bad = replay.index((41, b"{not json"))  # still sent, after the event before it in the file
    assert orjson.loads(replay[bad - 1][1])["event_id"] == "u3e0"


def test_a_later_file_with_events_before_its_users_history_is_counted_late(tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    rec = lambda n, u, ts: {"v": 1, "event_id": f"e{n}", "user": u, "ts": ts, "type": "rec",  # noqa: E731
                            "item": "i", "click": 1}
    _write(first, [rec(0, "u1", T + 10), rec(1, "u2", T + 50)])
    _write(second, [rec(2, "u1", T + 20), rec(3, "u2", T + 40), rec(4, "u3", T)])  # u2's is earlier
    stream = OfflineStream()
    load_samples(first, stream=stream)
    assert stream.late == 0
    later, _ = load_samples(second, stream=stream)
    assert stream.late == 1 and len(later) == 3


def test_a_replay_sends_a_file_in_time_order_whatever_its_order(tmp_path):
    event = {"v": 1, "event_id": "e", "user": "u", "type": "rec", "item": "i", "click": 1}
    lines = [{**event, "event_id": f"e{i}", "ts": T + ts} for i, ts in enumerate((30, 10, 20))]
    path = tmp_path / "late.jsonl"
    path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines) + b"not json\n")
    replayed = in_time_order(path)
    assert [line for line, _ in replayed] == [2, 3, 4, 1]  # ts 10, 20, then the invalid line after the
    assert replayed[2][1] == b"not json"                    # event before it in the file (ts 20), then 30
