"""Worker memory benchmark: the stream worker's RSS while N distinct users pass through it.

The embedded broker runs here; the worker runs as its own process (`unisar worker`), so its
RSS is its own. Users arrive in chunks, one rec event each, keyed by the user id and sent to
the key's murmur2 partition, as Kafka's default partitioner does. After each chunk the
benchmark waits until the worker has applied every event and committed once more, then reads
its VmRSS and VmHWM (the peak so far) from /proc. events/s of a chunk = its events / the time
from its first send to the worker having applied its last event (producer, broker and worker
share the CPUs, so this is the end-to-end rate, a lower bound on the worker's).

The allowance is what the worker holds that the RocksDB budget does not cover: its idle RSS,
measured before the first event (Python, aiokafka, rocksdict, prometheus-client; no torch),
plus a fixed margin for buffers bounded by configuration, not by users: the Kafka fetch
buffers (fetch_max_bytes 32 MiB), one commit interval of histories, samples and changelog
records, and allocator slack.

Beware: the embedded broker keeps every topic in memory (events, samples, changelog): about
250 MB per million users here. MB = 2**20 bytes.

    python benchmarks/worker_memory.py [--users 10000000 --checkpoints 1000000,5000000,10000000]
Last line: a JSON list of {"metric", "value", "unit", "target"} objects.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from kafka.partitioner.default import murmur2

from _hardware import hardware_line
from ops.broker import EmbeddedBroker, free_port
from ops.settings import Settings
from stream.kafka import ensure_topics

ROOT = Path(__file__).resolve().parent.parent
MARGIN_MB = 64  # the fixed margin of the allowance, see the docstring
TS0 = 1_700_000_000_000


def proc_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(rest.split()[0]) / 1024
    return out


def dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def scrape(port: int) -> dict[str, float]:
    """The worker's progress: events processed (forwarded ones count at home), records read
    (forwarded ones twice) and records committed (every record read is timed at its commit)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {"processed": 0.0, "read": 0.0, "committed": 0.0, "partitions": 0.0}
    for line in text.splitlines():
        if line.startswith("unisar_events_total{"):
            value = float(line.rsplit(" ", 1)[1])
            out["read"] += value
            out["processed"] += 0 if 'outcome="forwarded"' in line else value
        elif line.startswith("unisar_event_processing_seconds_count"):
            out["committed"] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("unisar_worker_partitions_assigned"):
            out["partitions"] = float(line.rsplit(" ", 1)[1])
    return out


async def produce(settings: Settings, start: int, stop: int) -> None:
    """One rec event per user in [start, stop), built straight into per-partition batches."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.brokers, acks="all", linger_ms=20,
                                max_batch_size=512 * 1024, max_request_size=8 << 20)
    await producer.start()
    try:
        topic, parts = settings.events_topic, settings.partitions
        batches = [producer.create_batch() for _ in range(parts)]
        inflight: list[asyncio.Future] = []

        async def send(p: int) -> None:
            batch, batches[p] = batches[p], producer.create_batch()
            batch.close()
            inflight.append(await producer.send_batch(batch, topic, partition=p))
            if len(inflight) >= 64:  # keep this process's memory small
                await asyncio.gather(*inflight)
                inflight.clear()

        for i in range(start, stop):
            key = b"u%d" % i
            value = b'{"v":1,"event_id":"e%d","user":"u%d","ts":%d,"type":"rec","item":"i%d","click":1}' % (
                i, i, TS0 + i, i % 100_000)
            p = (murmur2(key) & 0x7FFFFFFF) % parts
            if batches[p].append(key=key, value=value, timestamp=None) is None:
                await send(p)
                batches[p].append(key=key, value=value, timestamp=None)
        for p in range(parts):
            if batches[p].record_count():
                await send(p)
        await asyncio.gather(*inflight)
    finally:
        await producer.stop()


def wait_for(port: int, worker: subprocess.Popen, done, timeout_s: float, what: str) -> dict[str, float]:
    deadline = time.monotonic() + timeout_s
    while True:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with code {worker.returncode} while waiting for {what}")
        try:
            seen = scrape(port)
            if done(seen):
                return seen
        except OSError:
            pass  # not serving yet
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s:.0f} s for {what}")
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=type(
        "Formatter", (argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter), {}))
    parser.add_argument("--users", type=int, default=10_000_000, help="distinct users, one event each")
    parser.add_argument("--checkpoints", default="1000000,5000000,10000000",
                        help="user counts at which RSS is reported (comma-separated)")
    parser.add_argument("--chunk", type=int, default=1_000_000, help="users produced between measurements")
    parser.add_argument("--state-memory-mb", type=int, default=Settings().state_memory_mb,
                        help="the worker's RocksDB memory budget")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of the events topic")
    parser.add_argument("--target-mb", type=float, default=300, help="RSS target at the last checkpoint")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (RocksDB, logs)")
    args = parser.parse_args()
    checkpoints = sorted({int(c) for c in args.checkpoints.split(",") if int(c) <= args.users} | {args.users})

    root = Path(tempfile.mkdtemp(prefix="unisar-memory-"))
    tag = uuid.uuid4().hex[:6]
    print(hardware_line(), flush=True)
    print(f"{args.users:,} users, checkpoints {', '.join(f'{c:,}' for c in checkpoints)}; RocksDB budget "
          f"{args.state_memory_mb} MB; files under {root}", flush=True)
    metrics_port = free_port()
    results, rows, worker = [], [], None
    with EmbeddedBroker(log_path=root / "broker.log") as broker:
        settings = Settings(brokers=broker.bootstrap, partitions=args.partitions, group=f"memory-{tag}",
                            state_dir=str(root / "worker"), metrics_port=metrics_port)
        asyncio.run(ensure_topics(settings))
        cmd = [sys.executable, "-m", "ops.cli", "worker", "--brokers", settings.brokers,
               "--partitions", str(args.partitions), "--group", settings.group, "--state-dir", settings.state_dir,
               "--metrics-port", str(metrics_port), "--state-memory-mb", str(args.state_memory_mb)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        log = open(root / "worker.log", "wb")
        worker = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(metrics_port, worker, lambda s: s["partitions"] >= args.partitions, 120, "partitions")
            time.sleep(2)
            idle = proc_mb(worker.pid)["VmRSS"]
            allowance = idle + MARGIN_MB
            limit = args.state_memory_mb + allowance
            print(f"worker pid {worker.pid}: idle RSS {idle:.0f} MB (Python, aiokafka, rocksdict, prometheus; "
                  f"no torch). allowance = idle + {MARGIN_MB} MB margin = {allowance:.0f} MB; budget + allowance = "
                  f"{limit:.0f} MB", flush=True)
            print(f"{'users':>12} {'RSS MB':>8} {'peak MB':>8} {'store MB':>9} {'broker MB':>10} "
                  f"{'produce s':>10} {'events/s':>9}", flush=True)
            done = 0
            while done < args.users:
                upto = min(done + args.chunk, args.users, next(c for c in checkpoints if c > done))
                before = scrape(metrics_port)
                started = time.perf_counter()
                asyncio.run(produce(settings, done, upto))
                produced = time.perf_counter() - started
                target = before["processed"] + (upto - done)
                wait_for(metrics_port, worker, lambda s: s["processed"] >= target, 3600, f"{upto:,} users")
                rate = (upto - done) / (time.perf_counter() - started)
                # measure once the last event's state is in RocksDB and its commit's buffers are freed
                wait_for(metrics_port, worker, lambda s: s["committed"] >= s["read"], 120, "the commit")
                mem = proc_mb(worker.pid)
                row = {"users": upto, "rss": mem["VmRSS"], "peak": mem["VmHWM"], "store": dir_mb(root / "worker"),
                       "broker": proc_mb(broker._proc.pid)["VmRSS"], "rate": rate}  # noqa: SLF001
                rows.append(row)
                mark = " <- checkpoint" if upto in checkpoints else ""
                print(f"{upto:>12,} {row['rss']:>8.0f} {row['peak']:>8.0f} {row['store']:>9.0f} "
                      f"{row['broker']:>10.0f} {produced:>10.1f} {rate:>9,.0f}{mark}", flush=True)
                done = upto
        finally:
            worker.terminate()
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                worker.kill()
            log.close()

    for row in rows:
        if row["users"] in checkpoints:
            last = row["users"] == checkpoints[-1]
            results.append({"metric": f"worker_rss_mb_at_{row['users']}_users", "value": round(row["rss"]),
                            "unit": "MB", "target": args.target_mb if last else round(limit),
                            "budget_plus_allowance_mb": round(limit), "peak_mb": round(row["peak"])})
    rates = [r["rate"] for r in rows]
    print(f"events/s per chunk: min {min(rates):,.0f}, mean {sum(rates) / len(rates):,.0f} (target 20,000)")
    results.append({"metric": "ingest_events_per_s", "value": round(min(rates)), "unit": "events/s",
                    "target": 20000, "mean": round(sum(rates) / len(rates))})
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
