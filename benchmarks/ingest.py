"""Ingest benchmark: events/s from Kafka through the stream worker into RocksDB and out to
sar.samples, for both engines side by side (aiokafka, the default, and faust), on the same
events; and RocksDB bytes per user, after the run and with full histories.

Everything runs on this machine: the embedded broker and each engine in turn, in this
process. Events come from the calibrated simulator and are produced before the clock
starts. An engine's time runs from its first processed event to the moment the last one is
durable (state, samples and offsets), so it includes its commit tail.

    python benchmarks/ingest.py [--events 200000 --users 50000 --engines aiokafka,faust]
Last line: a JSON list of {"metric", "value", "unit", "target"} objects: each engine's
events/s (with its stored bytes per user), their ratio, and bytes per full history.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from _hardware import hardware_line

from ops.broker import EmbeddedBroker
from ops.metrics import WorkerMetrics, fresh_registry
from ops.settings import Settings
from state.store import RocksHistoryStore
from stream.contract import history as hist
from stream.contract.events import Event, validate
from stream.kafka import ensure_topics
from stream.data.simulator import SimConfig, generate
from stream.ingest.engines import ENGINES, new_worker



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


async def time_worker(settings: Settings, n_events: int, engine: str) -> dict:
    """Run one engine in this process over the events topic; time it from its first
    processed event to the moment every event's state, sample and offset is durable."""
    registry = fresh_registry()
    metrics = WorkerMetrics(registry)
    store = RocksHistoryStore(settings.state_dir)
    partitions = await ensure_topics(settings)
    worker = new_worker(settings.model_copy(update={"engine": engine}), store, metrics, partitions)
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
    if already > n_events / 2:  # the clock starts after the first fetch: it must leave most events to time
        stop.set()
        await task
        store.close()
        raise SystemExit(f"--events {n_events:,}: the {engine} engine's first fetch took {int(already):,} of them "
                         f"before the clock started; time at least {20 * int(already):,} events")
    stop.set()
    await task
    emitted = sum(registry.get_sample_value("unisar_samples_total", {"task": t}) or 0 for t in ("rec", "search"))
    users = sum(1 for _ in store.items())
    store.flush()
    store._db.compact_range(None, None)  # noqa: SLF001 - settle into compressed table files
    store.close()
    sst = sum(p.stat().st_size for p in Path(settings.state_dir).glob("*.sst"))
    return {"events": n_events - already, "seconds": seconds, "samples": int(emitted), "users": users,
            "bytes_per_user": sst / max(1, users)}


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
    parser.add_argument("--events", type=int, default=200_000, help="events each engine processes (default 200,000)")
    parser.add_argument("--users", type=int, default=50_000, help="simulated users (default 50,000)")
    parser.add_argument("--engines", default="aiokafka,faust", help="engines to run, side by side (default both)")
    parser.add_argument("--full-users", type=int, default=5_000,
                        help="users filled to 30+30 for bytes/user (default 5,000)")
    parser.add_argument("--seed", type=int, default=3, help="seed of the simulated events (default 3)")
    args = parser.parse_args()
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = set(engines) - set(ENGINES)
    if unknown or not engines:
        parser.error(f"--engines: expected aiokafka and/or faust, got {args.engines!r}")

    root = Path(tempfile.mkdtemp(prefix="unisar-bench-"))
    tag = uuid.uuid4().hex[:6]
    print(hardware_line(), flush=True)
    print(f"generating {args.events:,} simulator events over {args.users:,} users ...", flush=True)
    # Sessions spaced hours apart, so that every simulated user is active within the run.
    config = SimConfig(users=args.users, items=100_000, seed=args.seed, session_gap_s=21_600, session_break=0.0)
    events = list(generate(config, args.events))
    values = [(str(e["user"]).encode(), orjson.dumps(e)) for e in events]
    users_seen = len({e["user"] for e in events})

    rates: dict[str, float] = {}
    stored: dict[str, float] = {}
    with EmbeddedBroker(log_path=root / "broker.log") as broker:
        base = Settings(brokers=broker.bootstrap, events_topic=f"ev-{tag}", dlq_topic=f"dlq-{tag}",
                        partitions=4, metrics_port=0)
        asyncio.run(ensure_topics(base))
        prep = produce_all(base, values)
        print(f"produced in {prep:.1f} s (not timed)", flush=True)
        for engine in engines:
            # Each engine reads the same events with its own group, state, samples and changelog.
            settings = base.model_copy(update=dict(
                group=f"bench-{engine}-{tag}", samples_topic=f"sm-{engine}-{tag}", changelog_topic=f"cl-{engine}-{tag}",
                state_dir=str(root / engine)))
            print(f"running the {engine} engine ...", flush=True)
            run = asyncio.run(time_worker(settings, len(values), engine))
            rates[engine] = run["events"] / run["seconds"]
            stored[engine] = run["bytes_per_user"]
            print(f"{engine}: {int(run['events']):,} events in {run['seconds']:.2f} s = {rates[engine]:,.0f} events/s"
                  f"{' (target 20,000)' if engine == 'aiokafka' else ''}; {run['samples']:,} samples; {run['users']:,} users stored ({users_seen:,} in "
                  f"the events), {run['bytes_per_user']:.0f} bytes per user on disk", flush=True)
    if len(rates) == 2:
        print(f"aiokafka / faust = {rates['aiokafka'] / rates['faust']:.1f}x", flush=True)

    size = bytes_per_full_user(root, args.full_users, args.seed)
    print(f"full histories (30 rec + 30 search; {size['words_per_query']:.2f} words per query, "
          f"{size['clicks_per_search']:.2f} clicks per search): {size['sst_bytes_per_user']:.0f} bytes per user "
          f"on disk (RocksDB, zstd), {size['value_bytes_per_user']:.0f} bytes raw, over {size['users']:,} users "
          f"(target at most 1024; the same store format for both engines)", flush=True)
    results = [{"metric": f"ingest_events_per_s_{engine}", "value": round(rate), "unit": "events/s",
                "target": 20000 if engine == "aiokafka" else None, "bytes_per_user_stored": round(stored[engine])}
               for engine, rate in rates.items()]
    if len(rates) == 2:
        results.append({"metric": "ingest_ratio_aiokafka_over_faust", "value": round(rates["aiokafka"] / rates["faust"], 2),
                        "unit": "x", "target": None})
    results.append({"metric": "bytes_per_user_full_history", "value": round(size["sst_bytes_per_user"]),
                    "unit": "bytes", "target": 1024})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
