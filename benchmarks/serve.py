"""Serving benchmark: latency and throughput of `unisar serve`'s POST /v1/rank for 100
candidates, beside `unisar eval`'s per-sample scoring cost.

Targets (the 2-core machine): at concurrency 1, p99 at most 20 ms; at concurrency 16, at
least 500 requests/s with p99 at most 100 ms.

The real service (stream.serve's FastAPI app, micro-batcher and model holder under uvicorn)
runs in a child process of its own with a checkpoint of the trainer's default table sizes
and a RocksDB history view of --users users, each with a full history (30 rec + 30 search
behaviours); only the Kafka follower is left out (the view is filled directly), so the
figures are those of the request path. Requests name a random stored user and 100 random
candidates, --query-share of them with a two-word query (the search task). The client is
this process (asyncio, keep-alive connections): on a 2-core machine it shares the cores
with the service, so the figures are if anything pessimistic. Latency is measured by the
client, from sending a request to reading its answer.

    python benchmarks/serve.py [--requests 400 --duration 10 --concurrency 16 --precision auto]
Last line: a JSON list of {"metric", "value", "unit", "target"} objects.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _hardware import hardware_line

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SERVER_CHILD_FLAG = "--server-child"  # internal: run the service in this process
N_CANDIDATES = 100
TARGETS = {"p99_c1_ms": 20.0, "rps_c16": 500.0, "p99_c16_ms": 100.0}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=400, help="requests at concurrency 1 (default 400)")
    p.add_argument("--duration", type=float, default=10, help="seconds at --concurrency (default 10)")
    p.add_argument("--concurrency", type=int, default=16, help="requests in flight in the load phase (default 16)")
    p.add_argument("--users", type=int, default=2000, help="users in the history view (default 2000)")
    p.add_argument("--items", type=int, default=20_000, help="distinct item ids drawn from (default 20000)")
    p.add_argument("--query-share", type=float, default=0.5, help="share of requests with a query (default 0.5)")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"], help="as `unisar serve` (auto)")
    p.add_argument("--threads", type=int, default=0, help="torch threads of the service and of the eval "
                   "figure (default 0: as `unisar serve`, one less than the CPUs)")
    p.add_argument("--batch-wait-ms", type=float, default=2.0, help="as `unisar serve` (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated events and the model (default 0)")
    return p.parse_args(argv)


# ------------------------------------------------------------- the world: model, histories


def full_history(rng: np.random.Generator, items: np.ndarray, words: np.ndarray):
    from stream.contract.history import History, RecBehaviour, SearchBehaviour

    ts = 1_700_000_000_000 + np.sort(rng.integers(0, 10**9, 60))
    return History(rec=tuple(RecBehaviour(int(t), int(rng.choice(items))) for t in ts[:30]),
                   search=tuple(SearchBehaviour(int(t), tuple(int(w) for w in rng.choice(words, 2)),
                                                tuple(int(i) for i in rng.choice(items, 2))) for t in ts[30:]))


def build_world(args, folder: Path) -> None:
    """A checkpoint (the trainer's default sizes, after a few steps on these ids) and a RocksDB
    history view of args.users users with full histories."""
    import torch

    from model.learner import Learner
    from state.checkpoints import CheckpointDir
    from state.store import RocksHistoryStore
    from stream.contract import history as hist
    from stream.contract.ids import item_id, user_id, word_id
    from stream.contract.samples import Sample
    from stream.serve.ranking import inference_threads

    torch.set_num_threads(inference_threads(args.threads))
    rng = np.random.default_rng(args.seed)
    items = np.array([item_id(f"i{j}") for j in range(args.items)], np.int64)
    words = np.array([word_id(f"w{j}") for j in range(500)], np.int64)
    histories = {user_id(f"u{j}"): full_history(rng, items, words) for j in range(args.users)}
    learner = Learner("unisar", seed=args.seed)
    users = list(histories)
    # one step over every history's items: the id tables hold them, as a trained model's would
    learner.learn_many([Sample("e", u, 0, "rec", (int(rng.choice(items)),), 1, (), histories[u])
                        for u in rng.choice(users, 256)])
    CheckpointDir(folder / "ckpt").save(learner.state_dict(), learner.step)
    with RocksHistoryStore(folder / "view") as store:
        store.apply({u: hist.encode(h) for u, h in histories.items()})


def eval_per_sample_ms(args, folder: Path) -> float:
    """What `unisar eval` pays per sample: Learner.score with 99 sampled negatives (100 candidates)."""
    import torch

    from model.learner import Learner
    from state.checkpoints import CheckpointDir
    from state.store import RocksHistoryStore
    from stream.contract import history as hist
    from stream.contract.samples import Sample
    from stream.serve.ranking import inference_threads

    torch.set_num_threads(inference_threads(args.threads))
    learner = Learner.from_state_dict(CheckpointDir(folder / "ckpt").load_latest())
    with RocksHistoryStore(folder / "view", read_only=True) as store:
        rows = list(store.items())[:256]
    samples = [Sample("e", u, 0, "rec", (hist.decode(v).rec[-1].item,), 1, (), hist.decode(v)) for u, v in rows]
    learner.score(samples)
    start = time.perf_counter()
    for _ in range(3):
        learner.score(samples)
    return (time.perf_counter() - start) / (3 * len(samples)) * 1e3


# ------------------------------------------------------------- the service (child process)


def serve_child(argv: list[str]) -> None:
    folder, port = Path(argv[0]), int(argv[1])
    args = parse_args(argv[2:])
    import torch
    import uvicorn

    from ops.metrics import ServeMetrics
    from ops.settings import ServeSettings
    from state.store import RocksHistoryStore
    from stream.serve.app import create_app
    from stream.serve.models import ModelHolder
    from stream.serve.pool import PopularPool
    from model.precision import name as precision_name, use_bf16
    from stream.serve.ranking import inference_threads
    from stream.serve.service import RankingService
    from stream.serve.view import HistoryView

    torch.set_num_threads(inference_threads(args.threads))
    bf16 = use_bf16(args.precision, torch.device("cpu"))
    view = HistoryView(RocksHistoryStore(folder / "view"))
    view.ready = True  # filled directly: no changelog to follow here
    service = RankingService(view, ModelHolder(folder / "ckpt"), PopularPool(), ServeMetrics(), bf16=bf16,
                             batch_wait_s=args.batch_wait_ms / 1000, check_interval_s=60)
    settings = ServeSettings(checkpoint_dir=str(folder / "ckpt"), max_candidates=1000)
    print(f"service: precision {precision_name(bf16)}, {torch.get_num_threads()} torch threads", flush=True)
    uvicorn.run(create_app(service, settings), host="127.0.0.1", port=port, access_log=False, log_level="warning")


# ------------------------------------------------------------- the client


class Client:
    """Minimal HTTP/1.1 keep-alive client: a request costs the service's time, not a library's."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader = self.writer = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = (f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)


def request_bodies(args, n: int) -> list[bytes]:
    rng = np.random.default_rng(args.seed + 1)
    out = []
    for _ in range(n):
        body = {"user": f"u{rng.integers(args.users)}", "k": 10,
                "candidates": [f"i{j}" for j in rng.choice(args.items, N_CANDIDATES, replace=False)]}
        if rng.random() < args.query_share:
            body["query"] = f"w{rng.integers(500)} w{rng.integers(500)}"
        out.append(json.dumps(body).encode())
    return out


async def run_load(port: int, bodies: list[bytes], concurrency: int, duration_s: float | None) -> tuple[list[float], float, int]:
    """Latencies (s), wall time and failures of `concurrency` clients sending `bodies` in turn,
    until they run out (duration None) or for `duration_s`."""
    latencies: list[float] = []
    failures = 0
    next_body = 0
    start = time.perf_counter()
    end = None if duration_s is None else start + duration_s

    async def one_client() -> None:
        nonlocal next_body, failures
        client = Client(port)
        while True:
            if end is None and next_body >= len(bodies) or end is not None and time.perf_counter() >= end:
                return
            body = bodies[next_body % len(bodies)]
            next_body += 1
            sent = time.perf_counter()
            status, _ = await client.post("/v1/rank", body)
            latencies.append(time.perf_counter() - sent)
            failures += status != 200

    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return latencies, time.perf_counter() - start, failures


def wait_listening(port: int, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the service exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the service did not get ready")


def main(argv=None) -> None:
    args = parse_args(argv)
    from ops.broker import free_port

    print(hardware_line())
    with tempfile.TemporaryDirectory(prefix="unisar-serve-bench-") as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        build_world(args, folder)
        print(f"world: {args.users} users with full histories, a checkpoint of the default table sizes "
              f"({time.perf_counter() - t:.0f} s to build)")
        eval_ms = eval_per_sample_ms(args, folder)
        print(f"unisar eval's scoring: {eval_ms:.3f} ms per sample (100 candidates, batches of 256)")
        port = free_port()
        child = subprocess.Popen([sys.executable, __file__, SERVER_CHILD_FLAG, str(folder), str(port),
                                  *(argv if argv is not None else sys.argv[1:])])
        try:
            wait_listening(port, child)
            bodies = request_bodies(args, max(args.requests, 2000))
            asyncio.run(run_load(port, bodies[:50], 1, None))  # warm-up
            lat1, _, fail1 = asyncio.run(run_load(port, bodies[: args.requests], 1, None))
            latn, wall, failn = asyncio.run(run_load(port, bodies, args.concurrency, args.duration))
        finally:
            child.terminate()
            child.wait(30)
    p50_1, p99_1 = (float(np.percentile(lat1, q)) * 1e3 for q in (50, 99))
    p50_n, p99_n = (float(np.percentile(latn, q)) * 1e3 for q in (50, 99))
    rps = len(latn) / wall
    print(f"concurrency 1: {len(lat1)} requests, p50 {p50_1:.1f} ms, p99 {p99_1:.1f} ms "
          f"(target p99 <= {TARGETS['p99_c1_ms']:.0f} ms), {fail1} failed")
    print(f"concurrency {args.concurrency}: {len(latn)} requests in {wall:.1f} s = {rps:,.0f} requests/s "
          f"(target >= {TARGETS['rps_c16']:.0f}), p50 {p50_n:.1f} ms, p99 {p99_n:.1f} ms "
          f"(target <= {TARGETS['p99_c16_ms']:.0f} ms), {failn} failed")
    print(f"per request at concurrency {args.concurrency}: {1e3 / rps:.2f} ms of the machine, against "
          f"{eval_ms:.3f} ms per sample in unisar eval's batches of 256")
    c = args.concurrency
    print(json.dumps([
        {"metric": "serve_rank_p50_ms_c1", "value": round(p50_1, 2), "unit": "ms", "target": None},
        {"metric": "serve_rank_p99_ms_c1", "value": round(p99_1, 2), "unit": "ms", "target": TARGETS["p99_c1_ms"]},
        {"metric": f"serve_rank_requests_per_s_c{c}", "value": round(rps, 1), "unit": "requests/s",
         "target": TARGETS["rps_c16"]},
        {"metric": f"serve_rank_p99_ms_c{c}", "value": round(p99_n, 2), "unit": "ms", "target": TARGETS["p99_c16_ms"]},
        {"metric": "eval_score_ms_per_sample", "value": round(eval_ms, 4), "unit": "ms", "target": None},
        {"metric": "serve_failed_requests", "value": fail1 + failn, "unit": "requests", "target": 0},
    ]))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == SERVER_CHILD_FLAG:
        serve_child(sys.argv[2:])
    else:
        main()
