"""Every `unisar data` command that reads events reads JSONL, .jsonl.gz and parquet alike
(the one reader, stream.contract.files)."""
from __future__ import annotations

import importlib.util

import orjson
import pytest

from stream.contract.files import read_dicts
from stream.data.jsonl import write_events

T = 1_700_006_400_000
DAY = 86_400_000

FORMATS = ["jsonl", "jsonl.gz", pytest.param("parquet", marks=pytest.mark.skipif(
    importlib.util.find_spec("pyarrow") is None, reason="pyarrow is not installed (pip install 'unisar-stream[parquet]')"))]


def events() -> list[dict]:
    out = []
    for day in range(3):
        for u in range(4):
            for k in range(3):
                n = len(out)
                ts = T + day * DAY + 1000 * n
                if k == 2:
                    out.append({"v": 1, "event_id": f"s{n}", "user": f"u{u}", "ts": ts, "type": "search",
                                "query": "red shoes", "clicks": [f"i{(u + day) % 5}"]})
                else:
                    out.append({"v": 1, "event_id": f"r{n}", "user": f"u{u}", "ts": ts, "type": "rec",
                                "item": f"i{(u + k + day) % 5}", "click": 1})
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_stats_core_and_split_read_every_format(tmp_path, run_cli, fmt):
    source = tmp_path / f"ev.{fmt}"
    write_events(events(), source)
    code, stdout, stderr = run_cli("data", "stats", str(source), "--json")
    assert code == 0, stderr
    result = orjson.loads(stdout)
    assert result["invalid"] == 0 and result["users"] == 4 and result["rec_click"] == 24
    code, _, stderr = run_cli("data", "core", str(source), "--min-core", "2", "--out", str(tmp_path / "core.jsonl"))
    assert code == 0, stderr
    assert len(list(read_dicts(tmp_path / "core.jsonl"))) == 36
    code, stdout, stderr = run_cli("data", "split", str(source), "--by", "days", "--out", str(tmp_path / "sp"))
    assert code == 0, stderr
    assert "train 12  valid 12  test 12" in stdout  # one day each


def test_a_bad_line_in_a_gzipped_file_is_named(tmp_path, run_cli):
    import gzip

    path = tmp_path / "bad.jsonl.gz"
    path.write_bytes(gzip.compress(b"".join(orjson.dumps(e) + b"\n" for e in events()[:2]) + b"{oops\n"))
    code, _, stderr = run_cli("data", "core", str(path), "--out", str(tmp_path / "o.jsonl"))
    assert code == 2 and "bad.jsonl.gz:3: expected one JSON object per line" in stderr and "Traceback" not in stderr
    code, _, stderr = run_cli("data", "stats", str(tmp_path / "missing.parquet"))
    assert code == 2 and "missing.parquet" in stderr and "Traceback" not in stderr
