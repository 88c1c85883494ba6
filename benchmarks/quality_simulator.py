"""Model quality on simulator data: UniSAR against a popularity baseline and against its
'without mask' ablation, each trained by `unisar fit` and scored by `unisar eval` on the
latest 10% of every user's samples (sampled ranking: the true item among 99 items the user
never touched; ties count against the model).

Both UniSAR variants get the same settings (`--unisar-set`, default init_std=0.1: id
embeddings start at N(0, 0.1^2), so rows the data rarely touches stay close to one another
instead of scattering candidate scores at random; N(0, 1) is the model's default). The
models train as parallel processes, `--jobs` at a time, with the cores split between them.

    python benchmarks/quality_simulator.py [--events 100000 --users 1000 --epochs 3]
Last line: a JSON list, one object per model, task and metric.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ops.cli import main as unisar

COLUMNS = ("HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10")


def models(unisar_set: list[str]) -> dict[str, list[str]]:
    tuned = [a for kv in unisar_set for a in ("--set", kv)]
    return {
        "popularity": ["--model", "popularity"],
        "unisar": tuned,
        "unisar without mask": [*tuned, "--set", "use_mask=false"],
    }


def fit_and_eval(name: str, extra: list[str], events: Path, root: Path, args, threads: int) -> subprocess.Popen:
    stem = name.replace(" ", "_")
    ckpt, report, log = root / f"{stem}.pt", root / f"{stem}.json", root / f"{stem}.log"
    cli = [sys.executable, "-m", "ops.cli"]
    fit = [*cli, "fit", "--events", str(events), "--out", str(ckpt), "--epochs", str(args.epochs),
           "--batch-size", str(args.batch_size), "--seed", str(args.seed), *extra]
    evaluate = [*cli, "eval", "--checkpoint", str(ckpt), "--events", str(events), "--json", str(report)]
    script = " && ".join(" ".join(f"'{a}'" for a in cmd) for cmd in (fit, evaluate))
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    with open(log, "w") as out:
        return subprocess.Popen(["bash", "-c", script], stdout=out, stderr=subprocess.STDOUT, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--items", type=int, default=20_000, help="simulated catalogue size (default 20,000)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256, help="rec samples per step (default 256)")
    parser.add_argument("--unisar-set", action="append", metavar="FIELD=VALUE",
                        help="model setting for both UniSAR variants (repeatable; default init_std=0.1)")
    parser.add_argument("--jobs", type=int, default=2, help="models trained at once (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    unisar_set = args.unisar_set or ["init_std=0.1"]

    root = Path(tempfile.mkdtemp(prefix="unisar-quality-"))
    events = root / "sim.jsonl"
    assert unisar(["data", "simulate", "--events", str(args.events), "--users", str(args.users),
                   "--items", str(args.items), "--seed", str(args.seed), "--out", str(events)]) == 0
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    pending, running, started = list(models(unisar_set).items()), {}, time.time()
    print(f"training {len(pending)} models, {args.jobs} at a time ({threads} thread(s) each); logs in {root}",
          flush=True)
    while pending or running:
        while pending and len(running) < args.jobs:
            name, extra = pending.pop(0)
            running[name] = fit_and_eval(name, extra, events, root, args, threads)
        time.sleep(2)
        for name, proc in list(running.items()):
            if proc.poll() is not None:
                del running[name]
                log = root / f"{name.replace(' ', '_')}.log"
                if proc.returncode:
                    raise SystemExit(f"{name}: fit or eval failed ({proc.returncode}):\n{log.read_text()[-2000:]}")
                print(f"{name}: fit + eval done at {time.time() - started:.0f} s", flush=True)

    results = {name: json.loads((root / f"{name.replace(' ', '_')}.json").read_text())["tasks"]
               for name in models(unisar_set)}
    print(f"\n{args.events:,} events, {args.users:,} users, {args.items:,} items; UniSAR settings: "
          f"{' '.join(unisar_set)}; {args.epochs} epochs, batch {args.batch_size}")
    print(f"{'model':<22}{'task':<8}" + "".join(f"{c:>9}" for c in COLUMNS))
    rows = []
    for name, tasks in results.items():
        for task, m in tasks.items():
            print(f"{name:<22}{task:<8}" + "".join(f"{m[c]:>9.4f}" for c in COLUMNS))
            rows += [{"metric": f"{c.lower().replace('@', '')}_{task}_{name.replace(' ', '_')}",
                      "value": round(m[c], 4), "unit": f"{c} (sampled, 99 negatives)", "target": None}
                     for c in ("HR@10", "NDCG@10")]
    for task in ("rec", "search"):
        for rival in ("popularity", "unisar without mask"):
            wins = [c for c in COLUMNS if results["unisar"][task][c] > results[rival][task][c]]
            print(f"{task}: unisar beats {rival} on {len(wins)}/{len(COLUMNS)} metrics ({', '.join(wins) or 'none'})")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
