"""The prequential ledger (`--ledger FILE`): one JSON line per scored batch, for comparing
models after a run (`unisar compare`) without a metrics store in between.

    {"t": 1733040000.1, "event_ms": 1700000123000, "samples": 512,
     "trained": {"unisar": 20480, "unisar-frozen": 20000}, "seconds": {"unisar": 1.2, ...},
     "swaps": {"unisar-periodic": 1},
     "scores": {"unisar": {"rec": [130, 0.41, 0.22], "search": [...]}, ...}}

- `scores[model][task]`: [rows, HR@10, NDCG@10] of that batch's scored rows (every model
  scored the same rows on the same candidates);
- `trained`: the samples each model has learnt from on the stream so far;
- `seconds`: each model's time on this batch (scoring and learning);
- `swaps`: the retrained models each periodic model has swapped in so far;
- `event_ms`: the median event time of the batch's samples (partitions are read unevenly,
  so a batch mixes times).

Lines are appended and flushed per batch, so a run stopped at any point leaves a readable
ledger.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from statistics import median


class Ledger:
    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by the trainer on stop

    def write(self, samples: list, figures: dict[tuple[str, str], tuple[int, float, float]],
              trained: dict[str, int], seconds: dict[str, float] | None = None,
              swaps: dict[str, int] | None = None) -> None:
        if not figures:
            return
        scores: dict[str, dict] = {}
        for (model, task), (rows, hr, ndcg) in figures.items():
            scores.setdefault(model, {})[task] = [rows, round(hr, 6), round(ndcg, 6)]
        line = {"t": round(time.time(), 3), "event_ms": int(median(s.ts for s in samples)), "samples": len(samples),
                "trained": trained, "seconds": {k: round(v, 4) for k, v in (seconds or {}).items()},
                "swaps": swaps or {}, "scores": scores}
        self.file.write(json.dumps(line, separators=(",", ":")) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def read_ledger(path: str | Path) -> list[dict]:
    """The ledger's lines; a torn last line (a run killed mid-write) is left out."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out
