"""`unisar compare`'s report from a ledger: windows of equal samples in stream order, paired
differences to the champion with a t-interval over the windows after the warm-up."""
from __future__ import annotations

import json
import math

import pytest

from ops import comparison


def ledger(values: dict[str, list[float]], samples: int = 100, rows: int = 50) -> list[dict]:
    """One line per batch; each model's NDCG@10 (and HR@10 = 2 x NDCG@10) given per batch."""
    n = len(next(iter(values.values())))
    return [{"t": i, "event_ms": 1_000 * i, "samples": samples,
             "trained": {m: samples * (i + 1) for m in values},
             "seconds": {m: 0.5 for m in values},
             "scores": {m: {"rec": [rows, 2 * v[i], v[i]]} for m, v in values.items()}} for i in range(n)]


def test_windows_hold_equal_samples_in_stream_order_and_weight_by_rows():
    lines = ledger({"a": [0.1, 0.3, 0.2, 0.4]})
    lines[1]["scores"]["a"]["rec"][0] = 150  # a batch with more scored rows weighs more
    ws = comparison.windows(lines, 2)
    assert [(w["first_sample"], w["samples"]) for w in ws] == [(0, 200), (200, 200)]
    assert ws[0]["models"]["a"]["rec"]["NDCG@10"] == pytest.approx((0.1 * 50 + 0.3 * 150) / 200)
    assert ws[1]["models"]["a"]["rec"]["rows"] == 100


def test_a_model_better_in_every_window_wins_them_all_with_an_interval_above_zero():
    base = [0.10, 0.12, 0.11, 0.13, 0.12, 0.14, 0.10, 0.12, 0.11, 0.13]
    lines = ledger({"champ": base, "chall": [v + 0.02 + 0.002 * (i % 3) for i, v in enumerate(base)]})
    summary = comparison.summarise(lines, ["champ", "chall"], n_windows=5, warmup=200)
    assert summary["compared_windows"] == 4  # the first window is the warm-up
    diff = summary["table"]["chall"]["rec"]["NDCG@10 vs champ"]
    assert diff["windows"] == 4 and diff["wins"] == 4 and 0 < diff["low"] < diff["mean"] < diff["high"]
    assert "NDCG@10 vs champ" not in summary["table"]["champ"]["rec"]


def test_a_tie_gives_an_interval_around_zero_and_nothing_is_won():
    base = [0.10, 0.15, 0.12, 0.11]
    summary = comparison.summarise(ledger({"champ": base, "same": base}), ["champ", "same"], 4, warmup=0)
    diff = summary["table"]["same"]["rec"]["HR@10 vs champ"]
    assert diff["mean"] == 0 and diff["wins"] == 0 and diff["low"] == diff["high"] == 0


def test_throughput_counts_what_each_model_trained_and_its_step_time():
    lines = ledger({"a": [0.1] * 4, "b": [0.1] * 4})
    for line in lines:
        line["trained"]["b"] = 100  # frozen after its first batch
    t = comparison.throughput(lines, ["a", "b"])
    assert t["a"]["share_trained"] == 1.0 and t["b"]["share_trained"] == 0.25
    assert t["a"]["samples_per_s"] == pytest.approx(400 / 2.0)


def test_the_report_is_written_with_a_readable_plot_and_json_without_nan(tmp_path):
    lines = ledger({"champ": [0.1, 0.2, 0.3, 0.2], "chall": [0.1, 0.1, 0.1, 0.1]})
    summary = comparison.summarise(lines, ["champ", "chall", "absent"], 2, warmup=200)
    plots = comparison.write(tmp_path, summary)
    assert [p.name for p in plots] == ["quality.png"] and plots[0].stat().st_size > 10_000
    saved = json.loads((tmp_path / "summary.json").read_text())  # strict JSON: NaN became null
    assert saved["table"]["chall"]["rec"]["NDCG@10 vs champ"]["low"] is None  # one window: no interval
    assert "absent" not in saved["table"] and math.isnan(summary["throughput"]["absent"]["samples_per_s"])
    assert "| chall | rec |" in (tmp_path / "summary.md").read_text()
