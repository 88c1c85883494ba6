"""Model quality, the zoo side by side: UniSAR against popularity, SASRec, USER and
UnifiedSSR and against its 'without mask' and 'without features' (ids only: no item features
nor user profiles from the catalogue) ablations ('without user features' on request), on
simulated worlds or on MovieLens-100K (`--source movielens`: one fixed data set with derived
searches, so its seeds replicate the training only), each trained
by `unisar fit` (its defaults: validation split, reduce-on-plateau, early stopping, best
checkpoint) and scored by `unisar eval` on the latest 10% of all samples in event time
(sampled ranking: the true item among 99 items the user never touched; ties count against
the model).

Every seed is a fresh simulated world (items, users, events) and a fresh training seed, so
`--seeds 3` replicates the comparison three times and reports each model's mean and
standard deviation over seeds, and on how many seeds UniSAR wins each metric (with the
paired t over seeds). `--train-seeds N` trains each UniSAR variant N times per world and
scores the mean, and prints how far one training run's luck moves each figure.

Beside them, a reference that is handed the item categories (category_reference.py) shows
the headroom: how far above popularity a model could get on this data.

Every model trains with `unisar fit`'s and the model's own defaults, as a new user would
(those defaults were chosen on validation worlds no reported table uses: README, "Training
defaults"); `--unisar-set FIELD=VALUE` and `--unisar-fit ARGS` add settings to every UniSAR
variant for experiments, and `--epochs`/`--batch-size` override fit's.
The models train as parallel processes, `--jobs` at a time, with the cores split between them.

    python benchmarks/quality_simulator.py [--events 100000 --users 1000 --items 20000 --seeds 3 --min-core 5]
    python benchmarks/quality_simulator.py --source movielens --seeds 3 [--models popularity,unisar]
Last line: a JSON list, one object per model, task and metric (means over seeds).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from category_reference import evaluate_reference
from model.metrics import NAMES as COLUMNS
from ops.cli import main as unisar


TASKS = ("rec", "search")
DETERMINISTIC = {"popularity"}  # trained once per world whatever --train-seeds says
REFERENCE = "category reference"  # headroom, not a rival: see category_reference.py
DEFAULT_SET: list[str] = []  # the model's own defaults (chosen on validation worlds: README)
DEFAULT_FIT = ""
ALL_MODELS = ("popularity", "sasrec", "user", "unifiedssr", "unisar", "unisar without mask", "unisar without features")


def models(unisar_set: list[str], unisar_fit: list[str]) -> dict[str, list[str]]:
    """Every model this benchmark knows -> its `unisar fit` flags (each at its own defaults)."""
    tuned = [a for kv in unisar_set for a in ("--set", kv)] + unisar_fit
    return {
        "popularity": ["--model", "popularity"],
        "sasrec": ["--model", "sasrec"],
        "user": ["--model", "user"],
        "unifiedssr": ["--model", "unifiedssr"],
        "unisar": tuned,
        "unisar without mask": [*tuned, "--set", "use_mask=false"],
        "unisar without features": [*tuned, "--set", "use_item_features=false",  # ids only: the ablation
                                    "--set", "use_user_features=false"],
        "unisar without user features": [*tuned, "--set", "use_user_features=false"],  # item features, no profiles
        "unisar with exposures": [*tuned, "--exposures"],  # rec exposures as labelled negatives (not by default)
        # fit's default precision is auto (bf16 where the CPU has it): these force one
        "unisar in bf16": [*tuned, "--precision", "bf16"],
        "unisar in fp32": [*tuned, "--precision", "fp32"],
    }


def make_data(source: str, seed: int, root: Path, args) -> Path:
    """The events file of one world: a fresh simulated world per seed, or MovieLens-100K
    (the same data for every seed), k-cored when asked."""
    events = root / f"{source}.jsonl"
    if source == "movielens":
        rating = ["--min-rating", str(args.min_rating)] if args.min_rating else []
        assert unisar(["data", "movielens", "--out", str(events), *rating]) == 0
    else:
        assert unisar(["data", "simulate", "--events", str(args.events), "--users", str(args.users),
                       "--items", str(args.items), "--seed", str(seed), "--out", str(events)]) == 0
    if args.min_core:  # the paper's k-core preprocessing, as for KuaiSAR
        core = root / f"{source}.core.jsonl"
        assert unisar(["data", "core", str(events), "--min-core", str(args.min_core), "--out", str(core)]) == 0
        events = core
    assert unisar(["data", "stats", str(events)]) == 0
    return events


def stem(name: str) -> str:
    return name.replace(" ", "_")


def fit_and_eval(run: str, extra: list[str], events: Path, root: Path, args, seed: int,
                 threads: int) -> subprocess.Popen:
    ckpt, report, log = (root / f"{run}{suffix}" for suffix in (".pt", ".json", ".log"))
    cli = [sys.executable, "-m", "ops.cli"]
    schedule = [a for flag, v in (("--epochs", args.epochs), ("--batch-size", args.batch_size)) if v
                for a in (flag, str(v))]
    fit = [*cli, "fit", "--events", str(events), "--out", str(ckpt), *schedule, "--seed", str(seed), *extra]
    evaluate = [*cli, "eval", "--checkpoint", str(ckpt), "--events", str(events), "--json", str(report)]
    script = " && ".join(" ".join(f"'{a}'" for a in cmd) for cmd in (fit, evaluate))
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    with open(log, "w") as out:
        return subprocess.Popen(["bash", "-c", script], stdout=out, stderr=subprocess.STDOUT, env=env)


def training_seeds(name: str, seed: int, n: int) -> list[int]:
    """The world's own seed first (so --train-seeds 1 is the single-seed run), then seed + 1000 t.
    Popularity has no randomness in training: once is enough."""
    return [seed] if name in DETERMINISTIC else [seed + 1000 * t for t in range(n)]


def run_seed(seed: int, zoo: dict[str, list[str]], args, started: float) -> tuple[dict, dict]:
    """Simulate one world and train and score every model on it. Returns the metrics per model
    (mean over training seeds) and their standard deviation over training seeds (when several):
    {model: {task: {metric: value}}} each."""
    root = Path(tempfile.mkdtemp(prefix=f"unisar-quality-{args.source}-s{seed}-"))
    events = make_data(args.source, seed, root, args)
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    runs = {f"{stem(name)}-t{t}": (name, t) for name in zoo for t in training_seeds(name, seed, args.train_seeds)}
    print(f"seed {seed}: {len(runs)} trainings, {args.jobs} at a time ({threads} thread(s) each); "
          f"logs in {root}", flush=True)
    pending, running = list(runs), {}
    while pending or running:
        while pending and len(running) < args.jobs:
            run = pending.pop(0)
            name, t = runs[run]
            running[run] = fit_and_eval(run, zoo[name], events, root, args, t, threads)
        time.sleep(2)
        for run, proc in list(running.items()):
            if proc.poll() is not None:
                del running[run]
                if proc.returncode:
                    log = (root / f"{run}.log").read_text()[-2000:]
                    raise SystemExit(f"seed {seed}, {run}: fit or eval failed ({proc.returncode}):\n{log}")
                print(f"seed {seed}, {run}: fit + eval done at {time.time() - started:.0f} s", flush=True)
    scores = {run: json.loads((root / f"{run}.json").read_text())["tasks"] for run in runs}
    first = scores[next(iter(runs))]
    print(f"seed {seed}: cold targets (never seen in training) " + ", ".join(
        f"{task} {first[task]['cold_share']:.1%}" for task in TASKS), flush=True)
    means, spreads = {}, {}
    for name in zoo:
        mine = [scores[run] for run, (model, _t) in runs.items() if model == name]
        means[name] = {task: {c: statistics.fmean(r[task][c] for r in mine) for c in COLUMNS} for task in TASKS}
        if len(mine) > 1:
            spreads[name] = {task: {c: statistics.stdev(r[task][c] for r in mine) for c in COLUMNS} for task in TASKS}
    means[REFERENCE] = evaluate_reference(events, events.with_suffix(".items.jsonl"), seed=seed)
    return means, spreads


def paired_t(gaps: list[float]) -> str:
    """', t X' for the paired t statistic of per-seed gaps (n - 1 degrees of freedom), or ''."""
    if len(gaps) < 2 or statistics.stdev(gaps) == 0:
        return ""
    return f", t {statistics.fmean(gaps) / (statistics.stdev(gaps) / len(gaps) ** 0.5):.1f}"


def print_table(title: str, results: dict) -> None:
    print(f"\n{title}")
    print(f"{'model':<26}{'task':<8}" + "".join(f"{c:>9}" for c in COLUMNS))
    for name, tasks in results.items():
        for task in TASKS:
            print(f"{name:<26}{task:<8}" + "".join(f"{tasks[task][c]:>9.4f}" for c in COLUMNS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=("simulator", "movielens"), default="simulator",
                        help="a fresh simulated world per seed, or MovieLens-100K with derived searches (default "
                        "simulator)")
    parser.add_argument("--models", default=",".join(ALL_MODELS), metavar="A,B",
                        help=f"models to train, comma-separated, unisar always among them (default {','.join(ALL_MODELS)})")
    parser.add_argument("--min-rating", type=int, default=0, metavar="R",
                        help="MovieLens: ratings below R become rec exposures without a click (default 0: none)")
    parser.add_argument("--events", type=int, default=100_000, help="simulated events per world (default 100,000)")
    parser.add_argument("--users", type=int, default=1_000, help="simulated users per world (default 1,000)")
    parser.add_argument("--items", type=int, default=20_000, help="simulated catalogue size (default 20,000)")
    parser.add_argument("--min-core", type=int, default=0, metavar="K",
                        help="k-core filter each simulated file before training, as the paper does KuaiSAR "
                        "(e.g. 5; default 0: off)")
    parser.add_argument("--epochs", type=int, help="fit's --epochs (default: fit's, with early stopping)")
    parser.add_argument("--batch-size", type=int, help="fit's --batch-size: rec samples per step (default: fit's)")
    parser.add_argument("--unisar-set", action="append", metavar="FIELD=VALUE",
                        help=f"model setting for both UniSAR variants (repeatable; default {' '.join(DEFAULT_SET)})")
    parser.add_argument("--unisar-fit", default=DEFAULT_FIT, metavar="ARGS",
                        help=f"`unisar fit` learner flags for both UniSAR variants (default {DEFAULT_FIT!r})")
    parser.add_argument("--jobs", type=int, default=2, help="models trained at once (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds to replicate over: seed, seed+1, ... (default 1)")
    parser.add_argument("--train-seeds", type=int, default=1, metavar="N",
                        help="train each UniSAR variant N times per world (training seeds seed, seed+1000, ...) and "
                        "score the mean, so a world's comparison is not one training run's luck (default 1)")
    args = parser.parse_args()
    if min(args.seeds, args.jobs, args.train_seeds) < 1:
        parser.error(f"--seeds, --jobs and --train-seeds: expected at least 1, got {args.seeds}, {args.jobs} "
                     f"and {args.train_seeds}")
    if args.min_core == 1 or args.min_core < 0:
        parser.error(f"--min-core: expected 0 (off) or at least 2, got {args.min_core}")
    unisar_set = args.unisar_set or DEFAULT_SET
    known = models(unisar_set, args.unisar_fit.split())
    wanted = ["unisar", *(m.strip() for m in args.models.split(",") if m.strip() and m.strip() != "unisar")]
    if unknown := [m for m in wanted if m not in known]:
        parser.error(f"--models: expected names among {', '.join(known)}, got {', '.join(unknown)}")
    zoo = {name: known[name] for name in known if name in wanted}
    seeds = list(range(args.seed, args.seed + args.seeds))

    started = time.time()
    runs = {seed: run_seed(seed, zoo, args, started) for seed in seeds}
    per_seed = {seed: means for seed, (means, _spread) in runs.items()}
    core = f", {args.min_core}-core" if args.min_core else ""
    default = "fit's default"
    data = ("MovieLens-100K (derived searches), training seeds" if args.source == "movielens" else
            f"{args.events:,} events, {args.users:,} users, {args.items:,} items")
    print(f"\n{data}{core}; UniSAR settings: "
          f"{' '.join(unisar_set) or 'defaults'} {args.unisar_fit}; epochs {args.epochs or default}, batch {args.batch_size or default}; seeds {seeds}"
          + (f"; {args.train_seeds} trainings per UniSAR variant and world" if args.train_seeds > 1 else ""))
    trainings = f" (UniSAR rows: mean of {args.train_seeds} trainings)" if args.train_seeds > 1 else ""
    for seed, results in per_seed.items():
        print_table(f"seed {seed}{trainings}", results)
    if args.train_seeds > 1:  # how much one training run's luck moves a figure, on average over worlds
        noisy = [name for name in zoo if name not in DETERMINISTIC]
        print_table(f"standard deviation over {args.train_seeds} trainings, mean over worlds",
                    {name: {task: {c: statistics.fmean(runs[s][1][name][task][c] for s in seeds) for c in COLUMNS}
                            for task in TASKS} for name in noisy})

    def over_seeds(reduce) -> dict:
        return {name: {task: {c: reduce([per_seed[s][name][task][c] for s in seeds]) for c in COLUMNS}
                       for task in TASKS} for name in [*zoo, REFERENCE]}

    means = over_seeds(statistics.fmean)
    if len(seeds) > 1:
        print_table(f"mean over {len(seeds)} seeds", means)
        print_table(f"standard deviation over {len(seeds)} seeds", over_seeds(statistics.stdev))
    print()
    for task in TASKS:
        for rival in (name for name in zoo if name != "unisar"):
            wins = {c: sum(per_seed[s]["unisar"][task][c] > per_seed[s][rival][task][c] for s in seeds)
                    for c in COLUMNS}
            gap = {c: means["unisar"][task][c] - means[rival][task][c] for c in COLUMNS}
            t = {c: paired_t([per_seed[s]["unisar"][task][c] - per_seed[s][rival][task][c] for s in seeds])
                 for c in COLUMNS}
            print(f"{task}: unisar vs {rival}: seeds won per metric (mean gap, paired t over seeds) "
                  + ", ".join(f"{c} {wins[c]}/{len(seeds)} ({gap[c]:+.4f}{t[c]})" for c in COLUMNS))
    rows = [{"metric": f"{c.lower().replace('@', '')}_{task}_{stem(name)}", "value": round(means[name][task][c], 4),
             "unit": f"{c} (sampled, 99 negatives), mean of {len(seeds)} seed(s)", "target": None}
            for name in [*zoo, REFERENCE] for task in TASKS for c in ("HR@10", "NDCG@10")]
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
