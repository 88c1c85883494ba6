"""`unisar demo`: the whole system on this machine, with nothing to install or start.

It starts the embedded broker and creates the topics; simulates events (or loads
ml-100k or an event file: .jsonl, .jsonl.gz or .parquet) and holds out the latest 10%
of the samples in event time (`--heldout-last`) for offline evaluation; runs a stream
worker and a continual trainer as their own processes; replays the events before the
held-out ones into Kafka, in time order (sorted by ts, ties in file order, whatever order
the file was written in); shows a live view (events/s, samples/s, losses, HR/NDCG per
task); stops on Ctrl-C, after --duration, or once the trainer has learned from
everything; and writes a report to --out: PNG plots of losses and HR/NDCG over time,
summary.json and summary.md. Everything it started stops on exit, errors included.
"""
from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_EVENTS = 80_000
OFFLINE_WAIT_S = 120  # once training is done, how long to wait for the final model's offline figures


def register(sub) -> None:
    from ops.commands._common import RawDescriptionHelpFormatter

    p = sub.add_parser("demo", help="run the whole system end to end on the embedded broker",
                       description=__doc__, formatter_class=RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="simulator",
                   help="simulator (default), ml-100k, or a path to an event file (.jsonl, .jsonl.gz or .parquet; "
                        "replayed in time order whatever its order)")
    p.add_argument("--events", type=int, default=DEFAULT_EVENTS, help=f"simulated events (default {DEFAULT_EVENTS})")
    p.add_argument("--users", type=int, default=1_500, help="simulated users (default 1500)")
    p.add_argument("--rate", type=float, help="events per second to replay at (default: as fast as possible)")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: when all is trained)")
    p.add_argument("--batch-size", type=int, default=512, help="trainer samples per step (default 512)")
    p.add_argument("--model", default="unisar", metavar="NAME",
                   help="model the trainer trains: unisar (default), unifiedssr, user, sasrec or popularity")
    p.add_argument("--heldout-last", type=float, default=0.1, metavar="F",
                   help="the latest F of the samples in event time, held out for the offline evaluation (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data preparation and of the trainer")
    p.add_argument("--offline-every", type=int, default=40, dest="offline_every_steps",
                   help="trainer steps between offline (held-out) evaluations (default 40)")
    p.add_argument("--worker-metrics-port", type=int, default=0,
                   help="the worker's /metrics port (default: a free one, printed at start)")
    p.add_argument("--trainer-metrics-port", type=int, default=0,
                   help="the trainer's /metrics port (default: a free one, printed at start)")
    p.add_argument("--out", default="runs/demo", help="directory for data, state, logs and the report")
    p.add_argument("--no-live", action="store_true", help="print a status line every 10 s instead of a live view")
    p.set_defaults(func=run)


def _dataset(args, out: Path) -> Path:
    from ops.commands._common import fail

    from ops.cli import main as cli

    if args.dataset == "simulator":  # with its item catalogue beside it, as `unisar data simulate` writes it
        path = out / "events.jsonl"
        if cli(["data", "simulate", "--events", str(args.events), "--users", str(args.users), "--seed",
                str(args.seed), "--no-stats", "--out", str(path)]) != 0:
            fail("could not simulate the events (see the message above)", 1)
        return path
    if args.dataset == "ml-100k":
        path = out / "ml-100k.jsonl"
        if cli(["data", "movielens", "--out", str(path), "--seed", str(args.seed)]) != 0:
            fail("could not prepare ml-100k (see the message above)", 1)
        return path
    path = Path(args.dataset)
    if not path.is_file():
        fail(f"--dataset: expected simulator, ml-100k or an event file, got {args.dataset!r}")
    return path


def run(args: argparse.Namespace) -> int:
    import time

    from ops.commands._common import fail, load_settings

    load_settings()  # a bad UNISAR_* variable (passed on to the worker and trainer) stops us before any work
    if args.events <= 0 or args.users <= 0 or args.batch_size <= 0 or args.offline_every_steps <= 0:
        fail("--events, --users, --batch-size and --offline-every must be positive")
    for flag in ("worker_metrics_port", "trainer_metrics_port"):
        if not 0 <= getattr(args, flag) <= 65535:
            fail(f"--{flag.replace('_', '-')} must be a port (0 = pick a free one), got {getattr(args, flag)}")
    for flag in ("rate", "duration"):
        if getattr(args, flag) is not None and getattr(args, flag) <= 0:
            fail(f"--{flag} must be positive, got {getattr(args, flag)}")
    if not 0.0 < args.heldout_last < 1.0:
        fail(f"--heldout-last: expected a fraction in (0, 1), got {args.heldout_last}")
    from ops.commands.train import check_model

    check_model(args.model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    events_path = _dataset(args, out)
    run_dir = out / time.strftime("run-%Y%m%d-%H%M%S")
    run_dir.mkdir()
    return _run_system(args, events_path, run_dir)


def _run_system(args, events_path, run_dir) -> int:
    import sys
    import time

    from ops.broker import EmbeddedBroker, free_port
    from ops.metrics import scrape_samples
    from ops.processes import Child
    from ops.commands._common import fail, load_settings
    from ops.replay import Replay
    from ops.report import RunRecord, flatten
    from stream.kafka import ensure_topics_sync
    from stream.contract.files import DataError, SourceUnavailable, catalogue_path
    from stream.contract.offline import describe, heldout_replay, load_catalogue, table_sizes
    from stream.ingest.producer import Pacer

    catalogue = catalogue_path(events_path)
    try:  # the trainer's --heldout holds out the same samples (stream.contract.offline)
        to_send, heldout, sizes = heldout_replay(events_path, args.heldout_last)
        if catalogue.is_file():  # the item features share the word table
            records, _ = load_catalogue(catalogue)
            sizes["words"] += table_sizes([], catalogue=records)["words"]
            print(f"{catalogue}: {len(records):,} item catalogue records, sent to {load_settings().items_topic} "
                  f"before the events")
    except (DataError, SourceUnavailable) as exc:
        fail(f"--dataset: {exc}")
    cutoff = len(to_send)
    print(f"{events_path}: replaying {cutoff:,} events; the samples of the rest ({len(heldout):,}, "
          f"{describe(args.heldout_last)}) are the offline evaluation set")
    record = RunRecord()
    replay = Replay()
    children: list[Child] = []
    with EmbeddedBroker(log_path=run_dir / "broker.log") as broker:
        settings = load_settings(
            brokers=broker.bootstrap, state_dir=str(run_dir / "state"), checkpoint_dir=str(run_dir / "checkpoints"),
            metrics_port=args.worker_metrics_port or free_port(),
            trainer_metrics_port=args.trainer_metrics_port or free_port(), batch_size=args.batch_size,
            max_wait_s=1.0, heldout=str(events_path), heldout_last=args.heldout_last,
            offline_every_steps=args.offline_every_steps, seed=args.seed, model=args.model,
            n_users=sizes["users"], n_items=sizes["items"], n_words=sizes["words"])  # from the data
        ensure_topics_sync(settings)
        try:
            children.append(Child("worker", settings, run_dir / "worker.log"))
            children.append(Child("train", settings, run_dir / "trainer.log"))
            serve_port = free_port()  # rankings from the newest checkpoint as the trainer writes them
            children.append(Child("serve", settings, run_dir / "serve.log", serve_port=serve_port,
                                  serve_state_dir=str(run_dir / "serve-state"), history_endpoint=True,
                                  inspect_page=True))
            print(f"rankings: http://127.0.0.1:{serve_port} (inspection page /, API /docs; ready after the "
                  f"trainer's first checkpoint)", flush=True)
            print(f"broker {broker.bootstrap} | worker metrics :{settings.metrics_port}/metrics | trainer metrics "
                  f":{settings.trainer_metrics_port}/metrics | logs in {run_dir}", flush=True)

            replay.start(settings, catalogue, to_send, Pacer(args.rate))
            live = _LiveView(sys.stdout.isatty() and not args.no_live)
            deadline = time.monotonic() + args.duration if args.duration else None
            idle_since = None
            while True:
                time.sleep(1.0)
                if problem := replay.problem(children):
                    fail(problem, 1)
                values = {}
                for port in (settings.metrics_port, settings.trainer_metrics_port):
                    try:
                        values.update(flatten(scrape_samples(port), settings.model))
                    except OSError:
                        pass
                record.add(values)
                live.show(record, replay, cutoff)
                if deadline and time.monotonic() > deadline:
                    break
                # done: replay finished, the trainer has stopped taking steps for a while, and
                # the final model has offline figures (or we waited long enough for them)
                if replay.done and record.rate("trained", 3.0) == 0 and record.last("trained"):
                    idle_since = idle_since or time.monotonic()
                    idle = time.monotonic() - idle_since
                    evaluated = record.last("offline_step", -1) >= record.last("step", 0)
                    if idle > 4 and (evaluated or idle > OFFLINE_WAIT_S):
                        break
                else:
                    idle_since = None
        except KeyboardInterrupt:
            print("\ninterrupted: stopping and writing the report")
        finally:
            replay.stop.set()
            for child in reversed(children):
                child.stop()
    return _finish(run_dir, record, replay, settings, events_path, len(heldout), [c.pid for c in children],
                   args.heldout_last)


def _finish(run_dir, record, replay, settings, events_path, n_heldout, pids, heldout_last) -> int:
    from model.metrics import NAMES
    from ops.report import write_report
    from stream.contract.offline import GLOBAL

    offline_step = int(record.last("offline_step", -1))
    quality = {}
    for task in ("rec", "search"):
        for mode in ("prequential", "offline"):
            metrics = {name: record.last(f"{name.split('@')[0].lower()}/{task}/{name.split('@')[1]}/{mode}")
                       for name in NAMES}
            if any(v is not None for v in metrics.values()):
                # how many true items the model had never seen, and HR@10 on them and on the rest
                metrics["cold_share"] = record.last(f"cold_share/{task}/{mode}")
                for targets in ("warm", "cold"):
                    metrics[f"HR@10 {targets}"] = record.last(f"hr/{task}/10/{mode}/{targets}")
                quality.setdefault(task, {})[mode] = metrics
    losses = {}
    for key in sorted({k for r in record.rows for k in r if k.startswith("loss/")}):
        _, values = record.series(key)
        if values:
            head, tail = values[: max(1, len(values) // 10)], values[-max(1, len(values) // 10):]
            losses[key[5:]] = {"first": sum(head) / len(head), "last": sum(tail) / len(tail)}
    summary = {
        "events_file": str(events_path), "events_replayed": replay.sent, "invalid_lines": replay.invalid,
        "heldout_samples": n_heldout, "heldout_last": heldout_last, "heldout_rule": GLOBAL,
        "seconds": round(record.rows[-1]["t"], 1) if record.rows else 0,
        "events_read": record.last("events", 0), "samples_trained": record.last("trained", 0),
        "model": settings.model, "model_step": record.last("step", 0), "offline_eval_step": offline_step,
        "dead_letters": record.last("dead_letters", 0), "catalogue_items": record.last("catalogue_items", 0),
        "mean_freshness_seconds": round(record.last("freshness_sum", 0) / max(1, record.last("freshness_count", 0)), 3),
        "quality": quality, "losses": losses, "broker": settings.brokers, "run_dir": str(run_dir), "pids": pids,
    }
    if offline_step < summary["model_step"]:
        summary["offline_note"] = (f"the offline figures are from step {offline_step} of {summary['model_step']:.0f}: "
                                   "the final model's evaluation had not finished when the demo stopped"
                                   if offline_step >= 0 else "no offline evaluation finished")
    plots = write_report(run_dir, record, summary)
    print(f"\nreport: {run_dir / 'summary.md'} ({len(plots)} plots; open summary.md first)")
    print(f"  offline figures from model step {offline_step} of {summary['model_step']:.0f}"
          + ("" if "offline_note" not in summary else f" ({summary['offline_note']})"))
    for task, modes in quality.items():
        for mode, m in modes.items():
            shown = "  ".join(f"{k} {v:.3f}" for k, v in m.items() if v is not None)
            print(f"  {task:<6} {mode:<11} {shown}")
    for name, v in losses.items():
        print(f"  loss {name:<18} {v['first']:.4f} -> {v['last']:.4f}")
    return 0


class _LiveView:
    """A few lines redrawn in place on a terminal; a status line every 10 s otherwise."""

    def __init__(self, tty: bool) -> None:
        self.tty, self.drawn, self.last_print = tty, 0, 0.0

    def show(self, record, replay, total: int) -> None:
        import time

        r = lambda k: record.last(k)  # noqa: E731
        fmt = lambda v: "  -  " if v is None else f"{v:.3f}"  # noqa: E731
        fresh = (r("freshness_sum") or 0) / max(1, r("freshness_count") or 0)
        evaluated = r("offline_step")
        evaluated = "-" if evaluated is None or evaluated < 0 else f"{evaluated:.0f}"
        lines = [
            f"t={record.rows[-1]['t']:6.0f}s  read {r('events') or 0:,.0f} of {total:,} events "
            f"({'replay done' if replay.done else 'replaying'})  events/s {record.rate('events'):8,.0f}  "
            f"samples/s {record.rate('trained'):7,.0f}  step {r('step') or 0:6.0f}  "
            f"dead letters {r('dead_letters') or 0:,.0f}",
            f"  lag: worker {r('lag/worker') or 0:,.0f} events, trainer {r('lag/trainer') or 0:,.0f} samples; "
            f"mean freshness {fresh:.2f} s; offline figures from step {evaluated}",
        ]
        for task in ("rec", "search"):
            lines.append(
                f"  {task:<6} loss {fmt(r(f'loss/{task}/total') or r(f'loss/{task}/click'))}  "
                f"HR@10 {fmt(r(f'hr/{task}/10/prequential'))} (offline {fmt(r(f'hr/{task}/10/offline'))})  "
                f"NDCG@10 {fmt(r(f'ndcg/{task}/10/prequential'))} (offline {fmt(r(f'ndcg/{task}/10/offline'))})")
        if self.tty:
            print(("\x1b[F\x1b[K" * self.drawn) + "\n".join(lines), flush=True)
            self.drawn = len(lines)
        elif time.monotonic() - self.last_print >= 10:
            print(" | ".join(line.strip() for line in lines), flush=True)
            self.last_print = time.monotonic()
