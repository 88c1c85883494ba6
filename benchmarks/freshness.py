"""Freshness benchmark: seconds from producing an event to the end of the training step that
learned from it, at a sustained 5,000 events/s. Target: p99 at most 5 s on this machine.

The real system, on this machine: the embedded broker, a stream worker and a continual
trainer as their own processes (`unisar worker`, `unisar train`, the demo's trainer settings:
batch 512, max wait 1 s, the demo's table sizes, no held-out evaluation), and simulator events
replayed by `EventProducer` at a fixed rate. Freshness is what the trainer exports as
`unisar_freshness_seconds`: now (after the step) minus the sample's `ingest_ms`, the event's
Kafka timestamp, which the producer sets when it sends. To get exact quantiles rather than
histogram buckets, the trainer child is `unisar train` with its freshness histogram teed to
a file (every value it observes, unchanged); the histogram's own estimate (Prometheus-style
linear interpolation within FRESHNESS_BUCKETS) is printed beside it as a cross-check.

Two modes, one after the other, each on fresh topics, state and checkpoints, same events:
  all:  train on every sample (the default). The trainer learns a few hundred samples/s and
        5,000 events/s make about 3,700 samples/s, so its lag and freshness grow for as long
        as the run lasts: the figures are those of a --duration run and get worse with length.
  shed: `unisar train --max-staleness S`: samples ingested more than S seconds before their
        batch forms are dropped (unisar_train_samples_skipped_total{reason="stale"}). Its
        freshness is reported together with the fraction of samples it did not train on.

Each mode: start worker and trainer; a warm-up trickle (--warmup-rate) until the trainer has
taken a few steps (model built, consumer groups joined); then --duration seconds at --rate.
Quantiles are over the samples trained from --settle seconds into the sustained phase until
its end; rates and fractions are over the same window.

    python benchmarks/freshness.py [--rate 5000 --duration 50 --max-staleness 2]
Last line: a JSON list of {"metric", "value", "unit", "target"} objects (with "mode").
"""
from __future__ import annotations

import argparse
import array
import json
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET_P99_S = 5.0
TRAINER_CHILD_FLAG = "--trainer-child"  # internal: run `unisar train` with its freshness teed to a file


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=5000, help="sustained events/s (default 5000)")
    p.add_argument("--duration", type=float, default=50, help="seconds of sustained production per mode (default 50)")
    p.add_argument("--settle", type=float, default=5, help="seconds into the sustained phase before measuring (default 5)")
    p.add_argument("--max-staleness", type=float, default=2.0, help="the shed mode's --max-staleness (default 2 s)")
    p.add_argument("--modes", default="all,shed", help="which modes to run, comma-separated (default all,shed)")
    p.add_argument("--warmup-rate", type=float, default=500, help="events/s until the trainer has stepped (default 500)")
    p.add_argument("--warmup-steps", type=int, default=3, help="trainer steps before the sustained phase (default 3)")
    p.add_argument("--users", type=int, default=1500, help="simulated users (default 1500, as the demo)")
    p.add_argument("--batch-size", type=int, default=512, help="trainer samples per step (default 512, as the demo)")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated events and the trainer (default 0)")
    p.add_argument("--keep", metavar="DIR", help="keep logs, state and the freshness records in DIR")
    p.add_argument(TRAINER_CHILD_FLAG, dest="trainer_child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not args.modes or set(args.modes) - {"all", "shed"}:
        p.error(f"--modes: expected all and/or shed, got {args.modes}")
    for name in ("rate", "duration", "max_staleness", "warmup_rate"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    if not 0 <= args.settle < args.duration:
        p.error("--settle must be within [0, --duration)")
    return args


# ---- the trainer child: `unisar train`, its freshness observations teed to a file ----------


def trainer_child(path: str) -> int:
    """`unisar train` (settings from UNISAR_* as every child gets them), with each value its
    freshness histogram observes also written to `path` as (wall time, seconds) float64 pairs."""
    import atexit

    from ops import metrics
    from ops.cli import main

    sink = open(path, "ab")
    buf = array.array("d")
    lock = threading.Lock()
    last = [time.monotonic()]

    def flush() -> None:
        with lock:
            buf.tofile(sink)
            del buf[:]
            sink.flush()
            last[0] = time.monotonic()

    class Tee:
        def __init__(self, histogram) -> None:
            self.histogram = histogram

        def observe(self, value: float, *args, **kwargs) -> None:
            self.histogram.observe(value, *args, **kwargs)
            buf.append(time.time())
            buf.append(value)
            if len(buf) >= 8192 or time.monotonic() - last[0] > 1.0:
                flush()

        def __getattr__(self, name):
            return getattr(self.histogram, name)

    original = metrics.TrainerMetrics.__init__

    def init(self, *args, **kwargs) -> None:
        original(self, *args, **kwargs)
        self.freshness = Tee(self.freshness)

    metrics.TrainerMetrics.__init__ = init
    atexit.register(flush)
    return main(["train"])


def start_trainer(settings, log_path: Path, record_path: Path):
    """A `Child` (stop, alive, pid) running trainer_child."""
    import subprocess

    from ops.processes import Child, settings_env

    child = Child.__new__(Child)
    child.command, child.log_path = "train", log_path
    with open(log_path, "ab") as log:
        child.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), TRAINER_CHILD_FLAG,
                                       str(record_path)], env=settings_env(settings), stdout=log,
                                      stderr=subprocess.STDOUT, cwd=str(ROOT))
    return child


# ---- production ------------------------------------------------------------------------------


class Replay(threading.Thread):
    """Sends `events` (key, value) with EventProducer: at `warmup_rate` until `go` is set, then
    at `rate` for `duration` seconds (a fresh Pacer: no catching up on the warm-up). Counts
    the sustained phase's sends per whole second."""

    def __init__(self, settings, events, warmup_rate: float, rate: float, duration: float) -> None:
        super().__init__(name="replay", daemon=True)
        self.settings, self.events = settings, events
        self.warmup_rate, self.rate, self.duration = warmup_rate, rate, duration
        self.go, self.stop, self.done = threading.Event(), threading.Event(), threading.Event()
        self.start_wall = self.end_wall = None
        self.sent_warmup = self.sent = 0
        self.per_second: list[int] = []
        self.error: BaseException | None = None
        self.ran_out = False

    def run(self) -> None:
        from stream.ingest.producer import EventProducer, Pacer

        try:
            with EventProducer(self.settings) as producer:
                it = iter(self.events)
                pacer = Pacer(self.warmup_rate)
                while not self.go.is_set() and not self.stop.is_set():
                    pacer.wait(None)
                    key, value = next(it)
                    producer.send_raw(key, value)
                    self.sent_warmup += 1
                producer.flush()
                pacer = Pacer(self.rate)
                start = time.monotonic()
                self.start_wall = time.time()
                end = start + self.duration
                bins = [0] * (int(self.duration) + 1)
                while not self.stop.is_set():
                    pacer.wait(None)
                    now = time.monotonic()
                    if now >= end:
                        break
                    try:
                        key, value = next(it)
                    except StopIteration:
                        self.ran_out = True
                        break
                    producer.send_raw(key, value)
                    self.sent += 1
                    bins[int(now - start)] += 1
                self.end_wall = time.time()
                self.seconds = time.monotonic() - start
                self.per_second = bins[: int(self.duration)]
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc
        finally:
            self.done.set()


# ---- statistics -------------------------------------------------------------------------------


def quantile(sorted_values, q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    n = len(sorted_values)
    pos = (n - 1) * q
    lo = int(pos)
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus histogram_quantile over cumulative (upper bound, count) pairs incl. +Inf."""
    buckets = sorted(buckets)
    count = buckets[-1][1]
    if count <= 0:
        return None
    rank = q * count
    prev_bound, prev_count = 0.0, 0.0
    for bound, cum in buckets:
        if cum >= rank:
            if bound == float("inf"):
                return prev_bound  # Prometheus: the highest finite bound
            if cum == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (cum - prev_count)
        prev_bound, prev_count = bound, cum
    return buckets[-2][0]


def read_records(path: Path) -> list[tuple[float, float]]:
    data = array.array("d")
    raw = path.read_bytes() if path.exists() else b""
    data.frombytes(raw[: len(raw) // 16 * 16])
    return list(zip(data[0::2], data[1::2]))


def snapshot(settings) -> dict:
    """The figures we need from both /metrics endpoints (missing ones as 0)."""
    from ops.metrics import scrape_samples

    out = {"buckets": {}, "trainer_lag": 0.0, "worker_lag": 0.0, "trained": 0.0, "stale": 0.0, "steps": 0.0,
           "events_read": 0.0, "samples_emitted": 0.0, "t": time.time()}
    for name, labels, value in scrape_samples(settings.trainer_metrics_port):
        if name == "unisar_freshness_seconds_bucket":
            out["buckets"][float(labels["le"])] = value
        elif name == "unisar_trainer_consumer_lag":
            out["trainer_lag"] += value
        elif name == "unisar_train_samples_total":
            out["trained"] += value
        elif name == "unisar_train_samples_skipped_total" and labels.get("reason") == "stale":
            out["stale"] += value
        elif name == "unisar_train_steps_total":
            out["steps"] = value
    for name, labels, value in scrape_samples(settings.metrics_port):
        if name == "unisar_consumer_lag":
            out["worker_lag"] += value
        elif name == "unisar_events_total":
            out["events_read"] += value
        elif name == "unisar_samples_total":
            out["samples_emitted"] += value
    return out


def safe_snapshot(settings) -> dict | None:
    try:
        return snapshot(settings)
    except OSError:
        return None


# ---- one mode -----------------------------------------------------------------------------------


def run_mode(mode: str, broker, events, args, root: Path) -> dict:
    from ops.broker import free_port
    from ops.processes import Child
    from ops.settings import Settings
    from stream.kafka import ensure_topics_sync

    tag = f"{mode}-{uuid.uuid4().hex[:6]}"
    workdir = root / mode
    workdir.mkdir(parents=True)
    settings = Settings(
        brokers=broker.bootstrap, events_topic=f"ev-{tag}", samples_topic=f"sm-{tag}", dlq_topic=f"dlq-{tag}",
        changelog_topic=f"cl-{tag}", group=f"worker-{tag}", trainer_group=f"trainer-{tag}",
        state_dir=str(workdir / "state"), checkpoint_dir=str(workdir / "checkpoints"),
        metrics_port=free_port(), trainer_metrics_port=free_port(),
        # the demo's trainer (ops/commands/demo.py), without its held-out evaluation
        batch_size=args.batch_size, max_wait_s=1.0, seed=args.seed,
        n_users=max(1024, 2 * args.users), n_items=1 << 16, n_words=1 << 14,
        max_staleness_s=args.max_staleness if mode == "shed" else None)
    ensure_topics_sync(settings)
    record_path = workdir / "freshness.f64"
    label = "train on every sample" if mode == "all" else f"--max-staleness {args.max_staleness:g}"
    print(f"\n== mode {mode} ({label}): worker and trainer starting (logs in {workdir})", flush=True)
    worker = Child("worker", settings, workdir / "worker.log")
    trainer = start_trainer(settings, workdir / "trainer.log", record_path)
    replay = Replay(settings, events, args.warmup_rate, args.rate, args.duration)
    rows: list[dict] = []
    try:
        started = time.monotonic()
        replay.start()
        while True:  # warm-up: until the trainer has taken a few steps
            time.sleep(0.5)
            check_children(worker, trainer, replay)
            snap = safe_snapshot(settings)
            if snap and snap["steps"] >= args.warmup_steps:
                break
            if time.monotonic() - started > 180:
                raise SystemExit(f"the trainer took no {args.warmup_steps} steps in 180 s; see {workdir}")
        print(f"   warm-up done after {time.monotonic() - started:.0f} s ({replay.sent_warmup:,} events at "
              f"{args.warmup_rate:g}/s, trainer step {snap['steps']:.0f}); now {args.rate:,.0f} events/s for "
              f"{args.duration:g} s", flush=True)
        replay.go.set()
        while replay.start_wall is None and not replay.done.is_set():
            time.sleep(0.01)
        settle_at, last_print = replay.start_wall + args.settle, time.time()
        window_start = None
        while not replay.done.wait(1.0):
            check_children(worker, trainer, replay)
            snap = safe_snapshot(settings)
            if snap is None:
                continue
            rows.append(snap)
            if window_start is None and snap["t"] >= settle_at:
                window_start = snap
            if snap["t"] - last_print >= 5:
                print("   " + progress(rows, replay), flush=True)
                last_print = snap["t"]
        if replay.error:
            raise replay.error
        window_end = snapshot(settings)
        rows.append(window_end)
    finally:
        replay.stop.set()
        replay.join(30)
        trainer.stop()
        worker.stop()
    window_start = window_start or rows[0]
    return summarise(mode, args, replay, read_records(record_path), window_start, window_end, rows)


def check_children(worker, trainer, replay) -> None:
    for child in (worker, trainer):
        if not child.alive():
            raise SystemExit(f"the {child.command} exited with code {child.proc.returncode}; see {child.log_path}")
    if replay.error:
        raise replay.error


def progress(rows: list[dict], replay: Replay) -> str:
    a, b = rows[max(0, len(rows) - 6)], rows[-1]
    dt = max(1e-9, b["t"] - a["t"])
    return (f"t={b['t'] - replay.start_wall:4.0f} s  produced {replay.sent:9,}  worker {(b['events_read'] - a['events_read']) / dt:6,.0f} "
            f"events/s (lag {b['worker_lag']:7,.0f})  trainer {(b['trained'] - a['trained']) / dt:5,.0f} samples/s, "
            f"shed {(b['stale'] - a['stale']) / dt:5,.0f}/s (lag {b['trainer_lag']:8,.0f} samples)")


def summarise(mode, args, replay, records, start, end, rows) -> dict:
    lo, hi = start["t"], replay.end_wall
    values = sorted(v for t, v in records if lo <= t <= hi)
    seconds = end["t"] - start["t"]
    trained = end["trained"] - start["trained"]
    stale = end["stale"] - start["stale"]
    emitted = end["samples_emitted"] - start["samples_emitted"]
    hist = [(b, end["buckets"].get(b, 0) - start["buckets"].get(b, 0)) for b in end["buckets"]]
    first = [v for t, v in records if lo <= t <= lo + 5]
    last = [v for t, v in records if hi - 5 <= t <= hi]
    bins = replay.per_second
    return {
        "mode": mode, "max_staleness_s": args.max_staleness if mode == "shed" else None,
        "window_s": seconds, "n": len(values),
        "p50": quantile(values, 0.5) if values else None, "p99": quantile(values, 0.99) if values else None,
        "max": values[-1] if values else None,
        "hist_p50": histogram_quantile(0.5, hist) if hist else None,
        "hist_p99": histogram_quantile(0.99, hist) if hist else None,
        "first5_p50": quantile(sorted(first), 0.5) if first else None,
        "last5_p50": quantile(sorted(last), 0.5) if last else None,
        "produce_rate": replay.sent / replay.seconds, "produce_min_1s": min(bins) if bins else 0,
        "produce_seconds": replay.seconds, "produced": replay.sent, "ran_out": replay.ran_out,
        "worker_rate": (end["events_read"] - start["events_read"]) / seconds,
        "worker_lag_end": end["worker_lag"],
        "samples_emitted_rate": emitted / seconds,
        "trained_rate": trained / seconds, "shed_rate": stale / seconds,
        "shed_fraction": stale / (stale + trained) if stale + trained else 0.0,
        "trained_fraction": trained / emitted if emitted else 0.0,
        "trainer_lag_start": start["trainer_lag"], "trainer_lag_end": end["trainer_lag"],
        "trainer_lag_growth": (end["trainer_lag"] - start["trainer_lag"]) / seconds,
    }


def fmt(v, spec=".2f") -> str:
    return "n/a" if v is None else format(v, spec)


def report(r: dict) -> None:
    verdict = "n/a" if r["p99"] is None else ("met" if r["p99"] <= TARGET_P99_S else "MISSED")
    name = "train on every sample" if r["mode"] == "all" else f"shed samples older than {r['max_staleness_s']:g} s"
    print(f"\nmode {r['mode']} ({name}), {r['window_s']:.0f} s measured:")
    print(f"  produced      {r['produce_rate']:8,.0f} events/s over {r['produce_seconds']:.1f} s "
          f"(slowest whole second {r['produce_min_1s']:,}){'  RAN OUT OF EVENTS' if r['ran_out'] else ''}")
    print(f"  worker        {r['worker_rate']:8,.0f} events/s read, {r['samples_emitted_rate']:,.0f} samples/s "
          f"emitted, lag at end {r['worker_lag_end']:,.0f} events")
    print(f"  trainer       {r['trained_rate']:8,.0f} samples/s trained, {r['shed_rate']:,.0f}/s shed "
          f"(shed {100 * r['shed_fraction']:.1f}% of consumed; trained {100 * r['trained_fraction']:.1f}% of emitted)")
    print(f"  trainer lag   {r['trainer_lag_start']:,.0f} -> {r['trainer_lag_end']:,.0f} samples "
          f"({r['trainer_lag_growth']:+,.0f}/s)")
    print(f"  freshness     p50 {fmt(r['p50'])} s  p99 {fmt(r['p99'])} s  max {fmt(r['max'])} s over "
          f"{r['n']:,} trained samples (target p99 <= {TARGET_P99_S:g} s: {verdict})")
    print(f"                median of the first 5 s {fmt(r['first5_p50'])} s, of the last 5 s {fmt(r['last5_p50'])} s; "
          f"histogram estimate p50 {fmt(r['hist_p50'])} s, p99 {fmt(r['hist_p99'])} s")


def as_json(results: list[dict], rate: float) -> list[dict]:
    out = []
    for r in results:
        mode, extra = r["mode"], {"mode": r["mode"]}
        if r["mode"] == "shed":
            extra["max_staleness_s"] = r["max_staleness_s"]
        r3 = lambda v: None if v is None else round(v, 3)  # noqa: E731
        out += [
            {"metric": f"freshness_p50_{mode}", "value": r3(r["p50"]), "unit": "s", "target": None, **extra},
            {"metric": f"freshness_p99_{mode}", "value": r3(r["p99"]), "unit": "s", "target": TARGET_P99_S,
             "met": r["p99"] is not None and r["p99"] <= TARGET_P99_S, "samples": r["n"], **extra},
            {"metric": f"produce_rate_{mode}", "value": round(r["produce_rate"]), "unit": "events/s",
             "target": rate, "slowest_second": r["produce_min_1s"], **extra},
            {"metric": f"trainer_samples_per_s_{mode}", "value": round(r["trained_rate"]), "unit": "samples/s",
             "target": None, "emitted_samples_per_s": round(r["samples_emitted_rate"]), **extra},
            {"metric": f"trained_fraction_{mode}", "value": round(r["trained_fraction"], 4),
             "unit": "trained / emitted samples", "target": None, **extra},
            {"metric": f"trainer_lag_growth_{mode}", "value": round(r["trainer_lag_growth"]), "unit": "samples/s",
             "target": None, "lag_end": round(r["trainer_lag_end"]), **extra},
        ]
        if mode == "shed":
            out.append({"metric": "shed_fraction_shed", "value": round(r["shed_fraction"], 4),
                        "unit": "shed / consumed samples", "target": None, **extra})
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.trainer_child:
        return trainer_child(args.trainer_child)

    import orjson

    from ops.broker import EmbeddedBroker
    from stream.data.simulator import SimConfig, generate

    wall = time.monotonic()
    n = int(args.rate * (args.duration + 2) + args.warmup_rate * 60)
    print(f"simulating {n:,} events ({args.users:,} users) ...", flush=True)
    events = [(str(e["user"]).encode(), orjson.dumps(e)) for e in generate(SimConfig(users=args.users, seed=args.seed), n)]
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="unisar-freshness-"))
    root.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        with EmbeddedBroker(log_path=root / "broker.log") as broker:
            print(f"broker {broker.bootstrap}; {args.rate:,.0f} events/s for {args.duration:g} s per mode, measured "
                  f"from {args.settle:g} s in", flush=True)
            for mode in args.modes:
                results.append(run_mode(mode, broker, events, args, root))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    for r in results:
        report(r)
    print(f"\nwall time {time.monotonic() - wall:.0f} s")
    print(json.dumps(as_json(results, args.rate)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
