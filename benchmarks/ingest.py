"""Ingest benchmark: events/s from Kafka through the stream worker into RocksDB and out to
sar.samples, next to a naive faust baseline; and RocksDB bytes per user with full histories.

Everything runs on this machine: the embedded broker, the worker (in this process), the
baseline (a faust subprocess). Events come from the calibrated simulator and are produced
before the clock starts. The worker's time runs from its first processed fetch to the
commit that makes the last event durable (state, samples and offsets), so it includes
the commit interval's tail. The baseline's time runs from its first to its N-th event
(no commit wait): generous to the baseline.

    python benchmarks/ingest.py [--events 200000 --users 50000 --baseline-events 20000]
Last line: a JSON list of {"metric", "value", "unit", "target"} objects.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson

from ops.broker import EmbeddedBroker
from ops.metrics import WorkerMetrics, fresh_registry
from ops.settings import Settings
from state.store import RocksHistoryStore
from stream.contract import history as hist
from stream.contract.events import Event, validate
from stream.kafka import ensure_topics
from stream.data.simulator import SimConfig, generate
from stream.ingest.worker import StreamWorker

HERE = Path(__file__).resolve().parent


def produce_all(settings: Settings, values: list[tuple[bytes, bytes]]) -> float:
    from aiokafka import AIOKafkaProducer

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.brokers, acks="all", linger_ms=20,
                                    max_batch_size=512 * 1024)
        await producer.start()
        try:
            futures = [await producer.send(settings.events_topic, value, key=key) for key, value in values]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    start = time.perf_counter()
    asyncio.run(run())
    return time.perf_counter() - start


async def time_worker(settings: Settings, n_events: int) -> dict:
    registry = fresh_registry()
    metrics = WorkerMetrics(registry)
    store = RocksHistoryStore(settings.state_dir)
    worker = StreamWorker(settings, store, metrics)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))

    def read() -> tuple[float, float]:
        seen = sum(registry.get_sample_value("unisar_events_total", {"type": t, "outcome": o}) or 0
                   for t in ("rec", "search", "invalid") for o in ("applied", "duplicate", "dead_letter"))
        return seen, registry.get_sample_value("unisar_event_processing_seconds_count") or 0

    while (seen := read()[0]) == 0:
        if task.done():
            await task
        await asyncio.sleep(0.005)
    start, already = time.perf_counter(), seen
    while read()[1] < n_events:
        if task.done():
            await task
        await asyncio.sleep(0.005)
    seconds = time.perf_counter() - start
    stop.set()
    await task
    emitted = sum(registry.get_sample_value("unisar_samples_total", {"task": t}) or 0 for t in ("rec", "search"))
    users = sum(1 for _ in store.items())
    store.close()
    return {"events": n_events - already, "seconds": seconds, "samples": int(emitted), "users": users}


def time_faust_baseline(settings: Settings, n_events: int, datadir: str) -> dict:
    cmd = [sys.executable, str(HERE / "faust_naive.py"), settings.brokers, settings.events_topic,
           settings.samples_topic + "-naive", str(n_events), datadir]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=HERE.parent,
                          env={**os.environ, "PYTHONPATH": str(HERE.parent)})
    for line in reversed((done.stdout + done.stderr).splitlines()):
        if '{"events"' in line:  # faust routes print() through its logger
            return json.loads(line[line.index("{"):])
    raise RuntimeError(f"faust baseline printed no result (exit {done.returncode}):\n{done.stderr[-2000:]}")


def bytes_per_full_user(root: Path, users: int, seed: int) -> dict:
    """Fill `users` histories to the 30 + 30 bound from simulator events, flush and compact
    RocksDB, and divide the size of its table files by the number of users."""
    limits = hist.Limits()
    config = SimConfig(users=users, items=100_000, seed=seed)
    histories: dict[int, bytes] = {}
    full = 0
    offset = 0
    for raw in generate(config, users * 400):
        event = validate(raw)
        assert isinstance(event, Event)
        before = histories.get(event.user, hist.EMPTY)
        after = hist.apply(before, event, offset, limits)
        offset += 1
        histories[event.user] = after
        if offset % 100_000 == 0:
            full = sum(1 for b in histories.values() if b[1] == limits.max_rec and b[2] == limits.max_search)
            if full >= 0.95 * users:
                break
    kept = {u: b for u, b in histories.items() if b[1] == limits.max_rec and b[2] == limits.max_search}
    store = RocksHistoryStore(root / "full")
    store.apply(kept)
    store.flush()
    store._db.compact_range(None, None)  # noqa: SLF001 - settle into compressed table files
    store.close()
    sst = sum(p.stat().st_size for p in (root / "full").glob("*.sst"))
    decoded = [hist.decode(b) for b in list(kept.values())[:2000]]
    words = sum(len(s.query) for d in decoded for s in d.search) / max(1, sum(len(d.search) for d in decoded))
    clicks = sum(len(s.clicks) for d in decoded for s in d.search) / max(1, sum(len(d.search) for d in decoded))
    raw_bytes = sum(len(b) for b in kept.values()) / max(1, len(kept))
    return {"users": len(kept), "sst_bytes_per_user": sst / max(1, len(kept)), "value_bytes_per_user": raw_bytes,
            "words_per_query": words, "clicks_per_search": clicks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--baseline-events", type=int, default=20_000,
                        help="events the (slow) faust baseline processes; 0 skips it")
    parser.add_argument("--full-users", type=int, default=5_000, help="users filled to 30+30 for bytes/user")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="unisar-bench-"))
    tag = uuid.uuid4().hex[:6]
    print(f"generating {args.events:,} simulator events over {args.users:,} users ...", flush=True)
    # Sessions spaced hours apart, so that every simulated user is active within the run.
    config = SimConfig(users=args.users, items=100_000, seed=args.seed, session_gap_s=21_600, session_break=0.0)
    events = list(generate(config, args.events))
    values = [(str(e["user"]).encode(), orjson.dumps(e)) for e in events]
    users_seen = len({e["user"] for e in events})

    with EmbeddedBroker(log_path=root / "broker.log") as broker:
        settings = Settings(brokers=broker.bootstrap, events_topic=f"ev-{tag}", samples_topic=f"sm-{tag}",
                            dlq_topic=f"dlq-{tag}", changelog_topic=f"cl-{tag}", group=f"bench-{tag}",
                            state_dir=str(root / "worker"), partitions=4, metrics_port=0)
        asyncio.run(ensure_topics(settings))
        prep = produce_all(settings, values)
        print(f"produced in {prep:.1f} s (not timed); running the worker ...", flush=True)
        worker = asyncio.run(time_worker(settings, len(values)))
        rate = worker["events"] / worker["seconds"]
        print(f"worker: {int(worker['events']):,} events in {worker['seconds']:.2f} s = {rate:,.0f} events/s "
              f"(target 20,000); {worker['samples']:,} samples; {worker['users']:,} users stored "
              f"({users_seen:,} in the events)", flush=True)
        base_rate = None
        if args.baseline_events:
            print(f"running the naive faust baseline on the first {args.baseline_events:,} events ...", flush=True)
            base = time_faust_baseline(settings, args.baseline_events, str(root / "faust"))
            base_rate = base["events"] / base["seconds"]
            print(f"naive faust baseline (one table update per event): {base_rate:,.0f} events/s; "
                  f"worker / baseline = {rate / base_rate:.1f}x", flush=True)

    size = bytes_per_full_user(root, args.full_users, args.seed)
    print(f"full histories (30 rec + 30 search; {size['words_per_query']:.2f} words per query, "
          f"{size['clicks_per_search']:.2f} clicks per search): {size['sst_bytes_per_user']:.0f} bytes per user "
          f"on disk (RocksDB, zstd), {size['value_bytes_per_user']:.0f} bytes raw, over {size['users']:,} users "
          f"(target at most 1024)", flush=True)
    results = [
        {"metric": "ingest_events_per_s", "value": round(rate), "unit": "events/s", "target": 20000},
        {"metric": "bytes_per_user_full_history", "value": round(size["sst_bytes_per_user"]), "unit": "bytes",
         "target": 1024},
    ]
    if base_rate is not None:
        results.insert(1, {"metric": "naive_faust_events_per_s", "value": round(base_rate), "unit": "events/s",
                           "target": None, "ratio_worker_over_naive": round(rate / base_rate, 2)})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
