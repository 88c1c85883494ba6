"""`unisar compare`: several models learn one stream side by side; does learning continually pay?

It simulates a drifting world (`unisar data simulate --drift`; or takes an event file),
starts the embedded broker, one stream worker and one trainer that runs every model of
--models on the same samples (the first is the champion), replays the events in time order
(whatever the file's order) as fast as possible and waits until the trainer has consumed
every sample. Every model scores the same
rows on the same 99 negatives (prequential: before it learns them). The default pits
continual UniSAR against the same model frozen after a warm-up and retrained from scratch
on a trailing window every --retrain-every samples.

The report in --out: quality.png (NDCG@10 and HR@10 over event time, per model and task),
summary.json (every figure, per window too) and summary.md (the table: each model's
figures after the warm-up, its difference to the champion with a 95% interval over the
windows, its throughput and the share of samples it trained on). Ctrl-C stops early and
still writes the report of what was scored.
"""
from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_MODELS = "unisar,unisar:frozen,unisar:periodic"


def register(sub) -> None:
    from ops.commands._common import RawDescriptionHelpFormatter

    p = sub.add_parser("compare", help="several models on one stream, side by side, with a report",
                       description=__doc__, formatter_class=RawDescriptionHelpFormatter)
    p.add_argument("--models", default=DEFAULT_MODELS, metavar="SPECS",
                   help=f"ARCH[:POLICY],... the first the champion; policies continual, frozen, periodic "
                        f"(default {DEFAULT_MODELS})")
    p.add_argument("--dataset", default="simulator",
                   help="simulator (default: the drifting world) or an event file (.jsonl, .jsonl.gz, .parquet)")
    p.add_argument("--events", type=int, default=60_000, help="simulated events (default 60000)")
    p.add_argument("--users", type=int, default=300,
                   help="simulated users (default 300: about 16,000 events a day, so the default run spans about "
                        "4 days of drift)")
    p.add_argument("--items", type=int, default=3_000, help="simulated items (default 3000)")
    p.add_argument("--categories", type=int, default=100, help="simulated item categories (default 100)")
    p.add_argument("--drift-rate", type=float, default=1.0,
                   help="multiplies every drift speed of the simulator's drift profile (default 1.0)")
    p.add_argument("--static", action="store_true", help="simulate a static world instead (no drift)")
    p.add_argument("--batch-size", type=int, default=512, help="trainer samples per step (default 512)")
    p.add_argument("--score-share", type=float, default=0.5,
                   help="share of samples scored before learning, the same for every model (default 0.5)")
    p.add_argument("--frozen-after", type=int, default=15_000,
                   help="samples of the warm-up: frozen stops learning there, periodic starts retraining (default 15000)")
    p.add_argument("--retrain-every", type=int, default=15_000,
                   help="samples between a periodic model's retrains from scratch (default 15000)")
    p.add_argument("--retrain-window", type=int, default=30_000,
                   help="trailing samples each retrain learns from (default 30000)")
    p.add_argument("--retrain-epochs", type=int, default=3, help="passes over the window per retrain (default 3)")
    p.add_argument("--retrain-lag", type=int, default=2_000,
                   help="samples after a retrain starts at which its model is swapped in, the trainer waiting for it "
                        "there (default 2000: a few hours of the default world's time, as a nightly job's model is "
                        "deployed the next morning)")
    p.add_argument("--windows", type=int, default=10, help="spans of event time the report cuts the run into (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulation and of every model (default 0)")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: when every sample is scored)")
    p.add_argument("--out", default="runs/compare", help="directory for data, logs and the report (default runs/compare)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    from model.registry import MODELS
    from ops.commands._common import fail, load_settings
    from stream.train.contenders import parse_models

    load_settings()
    try:
        specs = parse_models(args.models, frozenset(MODELS))
    except ValueError as exc:
        fail(f"--models: {exc}")
    if args.retrain_lag < 0:
        fail(f"--retrain-lag must be 0 or more, got {args.retrain_lag}")
    for flag in ("events", "users", "items", "categories", "batch_size", "frozen_after", "retrain_every",
                 "retrain_window", "retrain_epochs"):
        if getattr(args, flag) <= 0:
            fail(f"--{flag.replace('_', '-')} must be positive, got {getattr(args, flag)}")
    if args.windows < 2:
        fail(f"--windows: expected at least 2, got {args.windows}")
    if not 0 < args.score_share <= 1 or args.drift_rate <= 0 or (args.duration is not None and args.duration <= 0):
        fail("--score-share must be in (0, 1], --drift-rate and --duration positive")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    events = _dataset(args, out)
    run_dir = out / time.strftime("run-%Y%m%d-%H%M%S")
    run_dir.mkdir()
    return _compare(args, specs, events, run_dir)


def _dataset(args, out: Path) -> Path:
    from ops.cli import main as cli
    from ops.commands._common import fail

    if args.dataset != "simulator":
        path = Path(args.dataset)
        if not path.is_file():
            fail(f"--dataset: expected simulator or an event file, got {args.dataset!r}")
        return path
    path = out / "events.jsonl"
    drift = [] if args.static else ["--drift", "--drift-rate", str(args.drift_rate)]
    if cli(["data", "simulate", "--events", str(args.events), "--users", str(args.users), "--items", str(args.items),
            "--categories", str(args.categories), "--seed", str(args.seed), "--no-stats", *drift,
            "--out", str(path)]) != 0:
        fail("could not simulate the events (see the message above)", 1)
    return path


def _compare(args, specs: list, events_path: Path, run_dir: Path) -> int:
    import time

    from ops import comparison
    from ops.broker import EmbeddedBroker, free_port
    from ops.commands._common import fail, load_settings
    from ops.metrics import scrape_samples
    from ops.replay import Replay
    from ops.processes import Child
    from stream.contract.files import DataError, SourceUnavailable, catalogue_path
    from stream.contract.offline import in_time_order, load_catalogue, load_samples, table_sizes
    from stream.ingest.producer import Pacer
    from stream.kafka import ensure_topics_sync
    from stream.train.ledger import read_ledger

    names = [s.name for s in specs]
    catalogue = catalogue_path(events_path)
    try:
        samples, _ = load_samples(events_path)
        records = load_catalogue(catalogue)[0] if catalogue.is_file() else []
    except (DataError, SourceUnavailable) as exc:
        fail(f"--dataset: {exc}")
    sizes = table_sizes(samples, catalogue=records)
    print(f"{events_path}: {len(samples):,} samples; models {', '.join(names)} (champion {names[0]})", flush=True)
    ledger = run_dir / "ledger.jsonl"
    started = time.monotonic()
    replay = Replay()
    children: list[Child] = []
    with EmbeddedBroker(log_path=run_dir / "broker.log") as broker:
        settings = load_settings(
            brokers=broker.bootstrap, state_dir=str(run_dir / "state"), checkpoint_dir=str(run_dir / "checkpoints"),
            # one partition: the trainer reads the samples in event time order. With several, a
            # trainer behind the replay reads the partitions unevenly (one days ahead of another),
            # and "later" would no longer mean later in the world's time.
            partitions=1,
            metrics_port=free_port(), trainer_metrics_port=free_port(), batch_size=args.batch_size, max_wait_s=1.0,
            models=args.models, model=specs[0].arch, seed=args.seed, score_share=args.score_share,
            frozen_after=args.frozen_after, retrain_every=args.retrain_every, retrain_window=args.retrain_window,
            retrain_epochs=args.retrain_epochs, retrain_lag=args.retrain_lag, ledger=str(ledger),
            n_users=sizes["users"], n_items=sizes["items"], n_words=sizes["words"])
        ensure_topics_sync(settings)
        try:
            children.append(Child("worker", settings, run_dir / "worker.log"))
            children.append(Child("train", settings, run_dir / "trainer.log"))
            print(f"broker {broker.bootstrap} | trainer metrics :{settings.trainer_metrics_port}/metrics | "
                  f"logs in {run_dir}", flush=True)

            replay.start(settings, catalogue, in_time_order(events_path), Pacer(None))  # whatever the file's order
            deadline = started + args.duration if args.duration else None
            last_print, settled, last_steps = 0.0, 0, -1.0
            while True:
                time.sleep(1.0)
                if problem := replay.problem(children):
                    fail(problem, 1)
                emitted, lag, steps = _progress(settings, scrape_samples)
                if time.monotonic() - last_print >= 10:
                    print(f"t={time.monotonic() - started:5.0f}s  samples emitted {emitted:,.0f} of "
                          f"{len(samples):,}, not yet trained {lag:,.0f}, trainer steps {steps:,.0f}", flush=True)
                    last_print = time.monotonic()
                # done: every event sent and read, every sample consumed by the trainer, and no
                # step for 3 s in a row
                idle = replay.done and emitted > 0 and lag == 0 and steps > 0 and steps == last_steps
                settled, last_steps = settled + 1 if idle else 0, steps
                if settled >= 3 or (deadline and time.monotonic() > deadline):
                    break
        except KeyboardInterrupt:
            print("\ninterrupted: stopping and writing the report of what was scored")
        finally:
            replay.stop.set()
            for child in reversed(children):
                child.stop()
    lines = read_ledger(ledger) if ledger.is_file() else []
    if not lines:
        fail(f"the trainer scored no batch (see {run_dir / 'trainer.log'})", 1)
    summary = comparison.summarise(lines, names, args.windows, args.frozen_after)
    summary.update(events_file=str(events_path), seconds=round(time.monotonic() - started, 1), run_dir=str(run_dir),
                   settings={k: getattr(args, k) for k in ("models", "batch_size", "score_share", "frozen_after",
                                                          "retrain_every", "retrain_window", "retrain_epochs", "retrain_lag",
                                                          "drift_rate", "static", "seed")})
    world = events_path.with_suffix(".world.json")
    if world.is_file():
        import json

        summary["world"] = json.loads(world.read_text())
    plots = comparison.write(run_dir, summary)
    print(f"\nreport: {run_dir / 'summary.md'} ({len(plots)} plot{'s' * (len(plots) != 1)}; "
          f"{summary['seconds']:.0f} s)\n")
    print(comparison.markdown(summary))
    return 0


def _progress(settings, scrape_samples) -> tuple[float, float, float]:
    """Samples the worker emitted, events and samples not yet processed (the worker's unread
    events and the trainer's untrained samples; 1 until the trainer reports any), the
    trainer's steps."""
    emitted = lag = steps = 0.0
    reported = False
    try:
        for name, _labels, value in scrape_samples(settings.metrics_port):
            if name == "unisar_samples_total":
                emitted += value
            elif name == "unisar_consumer_lag":  # events the worker has not read
                lag += value
        for name, _labels, value in scrape_samples(settings.trainer_metrics_port):
            if name == "unisar_trainer_consumer_lag":
                lag, reported = lag + value, True
            elif name == "unisar_train_steps_total":
                steps = value
    except OSError:
        return 0.0, 1.0, 0.0
    return emitted, lag if reported else max(lag, 1.0), steps
