"""Model quality on simulator data: UniSAR against a popularity baseline and against its
'without mask' ablation, each trained by `unisar fit` and scored by `unisar eval` on the
latest 10% of every user's samples (sampled ranking: the true item among 99 items the user
never touched; ties count against the model).

    python benchmarks/quality_simulator.py [--events 150000 --users 2000 --epochs 2]
Last line: a JSON list, one object per model and task.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from ops.cli import main as unisar

MODELS = {
    "popularity": ["--model", "popularity"],
    "unisar": [],
    "unisar without mask": ["--set", "use_mask=false"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=150_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="unisar-quality-"))
    events = root / "sim.jsonl"
    assert unisar(["data", "simulate", "--events", str(args.events), "--users", str(args.users),
                   "--seed", str(args.seed), "--out", str(events)]) == 0
    results = {}
    for name, extra in MODELS.items():
        ckpt, report = root / f"{name.replace(' ', '_')}.pt", root / f"{name.replace(' ', '_')}.json"
        started = time.time()
        assert unisar(["fit", "--events", str(events), "--out", str(ckpt), "--epochs", str(args.epochs),
                       "--seed", str(args.seed), *extra]) == 0
        assert unisar(["eval", "--checkpoint", str(ckpt), "--events", str(events), "--json", str(report)]) == 0
        results[name] = json.loads(report.read_text())["tasks"]
        print(f"{name}: fit + eval in {time.time() - started:.0f} s", flush=True)

    columns = ("HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10")
    print(f"\n{'model':<22}{'task':<8}" + "".join(f"{c:>9}" for c in columns))
    rows = []
    for name, tasks in results.items():
        for task, m in tasks.items():
            print(f"{name:<22}{task:<8}" + "".join(f"{m[c]:>9.4f}" for c in columns))
            rows.append({"metric": f"hr10_{task}_{name.replace(' ', '_')}", "value": round(m["HR@10"], 4),
                         "unit": "HR@10 (sampled, 99 negatives)", "target": None})
    for task in ("rec", "search"):
        u, p, nm = (results[k][task]["HR@10"] for k in ("unisar", "popularity", "unisar without mask"))
        print(f"{task}: unisar beats popularity: {u > p} ({u:.4f} vs {p:.4f}); "
              f"beats its without-mask ablation: {u > nm} ({u:.4f} vs {nm:.4f})")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
