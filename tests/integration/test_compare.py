"""`unisar compare` end to end on a small drifting world: broker, worker and one trainer of
three models; the report holds every model's figures, and a bad flag is one line, exit 2."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_compare_writes_a_report_of_every_model(tmp_path):
    out = tmp_path / "compare"
    done = subprocess.run(
        [sys.executable, "-m", "ops.cli", "compare", "--events", "5000", "--users", "60", "--items", "400",
         "--categories", "20", "--batch-size", "128", "--frozen-after", "1200", "--retrain-every", "1200",
         "--retrain-window", "1200", "--retrain-epochs", "1", "--retrain-lag", "300", "--windows", "4",
         "--score-share", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = next(out.glob("run-*"))
    summary = json.loads((run / "summary.json").read_text())
    names = ["unisar", "unisar-frozen", "unisar-periodic"]
    assert summary["models"] == names and summary["compared_windows"] >= 2
    assert set(summary["table"]) == set(names) and all(set(t) == {"rec", "search"} for t in summary["table"].values())
    rows = {name: summary["table"][name]["rec"]["rows"] for name in names}
    assert len(set(rows.values())) == 1 and rows["unisar"] > 0  # every model scored the same rows
    assert summary["throughput"]["unisar-frozen"]["trained"] < summary["throughput"]["unisar"]["trained"]
    assert summary["throughput"]["unisar-periodic"]["retrains_swapped_in"] >= 1
    assert (run / "quality.png").stat().st_size > 10_000 and "| unisar-frozen | rec |" in (run / "summary.md").read_text()
    assert summary["world"]["config"]["drift_rate"] == 1.0  # the drifting simulator's settings, beside the figures


def test_compare_refuses_bad_flags_in_one_line(tmp_path):
    for flags, complaint in ((["--models", "unisar,bert4rec"], "unknown model"), (["--windows", "1"], "--windows")):
        done = subprocess.run([sys.executable, "-m", "ops.cli", "compare", *flags, "--out", str(tmp_path)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and complaint in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
