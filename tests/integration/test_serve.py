"""`unisar serve` end to end on the embedded broker: a real worker writes the changelog, the
service (a real process) follows it and ranks with the newest checkpoint of a directory
that changes under it. Prints the measured figures (freshness, swap time)."""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from ops.broker import free_port
from ops.processes import Child
from state.checkpoints import CheckpointDir
from stream.ingest.producer import EventProducer
from stream.kafka import ensure_topics_sync

pytestmark = pytest.mark.integration

TINY = dict(n_users=256, n_items=1024, n_words=256, d=16, d_ff=16, d_expert=16,
            tower_dims=(16, 16), head_dims=(16, 8), rel_negatives=64)
T0 = 1_700_000_000_000


def call(port: int, path: str, body: dict | None = None, timeout_s: float = 5) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def wait_ready(port: int, proc: Child, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.alive(), f"serve exited with {proc.proc.returncode}: {proc.log_path.read_text()[-2000:]}"
        try:
            if call(port, "/ready")[0] == 200:
                return
        except OSError:
            pass  # not listening yet
        time.sleep(0.1)
    raise AssertionError(f"serve not ready after {timeout_s} s: {proc.log_path.read_text()[-2000:]}")


def save_checkpoint(directory: CheckpointDir, step: int) -> None:
    from model.learner import Learner

    state = Learner("unisar", seed=step, **TINY).state_dict()
    state["step"] = step
    directory.save(state, step)


def rec_click(user: str, item: str, ts: int) -> dict:
    return {"v": 1, "event_id": f"{user}-{item}", "user": user, "ts": ts, "type": "rec", "item": item, "click": 1}


def test_rankings_follow_new_behaviour_and_new_checkpoints(settings, worker_factory, tmp_path):
    ensure_topics_sync(settings)
    ckpts = CheckpointDir(tmp_path / "ckpt")
    save_checkpoint(ckpts, 2)
    worker = worker_factory(settings)
    port = free_port()
    serve = Child("serve", settings, tmp_path / "serve.log", serve_port=port, checkpoint_dir=ckpts.path,
                  serve_state_dir=tmp_path / "serve-state", check_interval_s=1.0, history_endpoint=True)
    try:
        worker.wait_assigned()
        wait_ready(port, serve)

        # 1. freshness: each round gives 10 users one more click and times until a ranking uses it
        delays = []
        with EventProducer(settings, linger_ms=0) as producer:
            for round_ in range(3):
                users = [f"fresh{round_}-{j}" if round_ == 0 else f"fresh0-{j}" for j in range(10)]
                for j, user in enumerate(users):
                    producer.send(rec_click(user, f"item{round_}-{j}", T0 + round_ * 1000))
                producer.flush()
                sent = time.monotonic()
                waiting = dict.fromkeys(users)
                while waiting and time.monotonic() - sent < 10:
                    for user in list(waiting):
                        status, out = call(port, "/v1/rank", {"user": user, "candidates": ["x", "y"], "k": 1})
                        assert status == 200, out
                        if out["history"]["rec"] == round_ + 1:
                            delays.append(time.monotonic() - sent)
                            del waiting[user]
                    time.sleep(0.02)
                assert not waiting, f"rankings of {sorted(waiting)} never used their newest click"
        p50, p99 = np.percentile(delays, 50), np.percentile(delays, 99)
        print(f"\nfreshness over {len(delays)} events: p50 {p50:.2f} s, p99 {p99:.2f} s")
        assert p99 <= 3.0

        # the candidate pool of /v1/recommend fills from the events' clicks, under their raw ids
        status, out = call(port, "/v1/recommend", {"user": "fresh0-1", "k": 5})
        clicked = {f"item{r}-{j}" for r in range(3) for j in range(10)}
        assert status == 200 and out["pool"] == len(clicked) and len(out["items"]) == 5, out
        assert {i["item"] for i in out["items"]} <= clicked

        status, out = call(port, "/v1/users/fresh0-3/history")
        assert status == 200 and [e["item"] for e in out["timeline"]] and len(out["timeline"]) == 3
        assert [e["transition"] for e in out["timeline"]] == [None, "rec->rec", "rec->rec"]

        # 2. a newer checkpoint is swapped in within one check interval while requests go on
        outcomes: list[tuple[int, int | None]] = []
        stop = threading.Event()

        def keep_asking() -> None:
            while not stop.is_set():
                status, out = call(port, "/v1/rank", {"user": "fresh0-1", "query": "red shoes",
                                                      "candidates": [f"c{i}" for i in range(100)], "k": 10})
                outcomes.append((status, out.get("step")))

        askers = [threading.Thread(target=keep_asking) for _ in range(4)]
        for t in askers:
            t.start()
        try:
            time.sleep(0.5)
            save_checkpoint(ckpts, 7)
            written = time.monotonic()
            while not outcomes or outcomes[-1][1] != 7:
                assert time.monotonic() - written < 10, "the new checkpoint was not picked up"
                time.sleep(0.01)
            swap_s = time.monotonic() - written
            # 3. a corrupt checkpoint appearing is refused; the model of step 7 keeps serving
            ckpts.file(9).write_bytes(ckpts.file(7).read_bytes()[:4096])
            time.sleep(2.5)  # two check intervals
        finally:
            stop.set()
            for t in askers:
                t.join()
        print(f"checkpoint swap seen {swap_s:.2f} s after it was written (check interval 1 s); "
              f"{len(outcomes)} requests meanwhile")
        assert swap_s <= 1.0 + 1.5  # one interval, plus loading it on a busy 2-core machine
        assert {s for s, _ in outcomes} == {200}, "requests failed during the swap"
        steps = [step for _, step in outcomes]
        assert steps[-1] == 7 and set(steps) == {2, 7}
        assert steps == sorted(steps)  # never back to the old model
        log = serve.log_path.read_text()
        assert "ckpt-000000000009.pt refused" in log and "still serving step 7" in log
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert "unisar_serve_checkpoints_refused_total 1.0" in metrics
        assert "unisar_serve_model_step 7.0" in metrics
        assert 'unisar_serve_requests_total{endpoint="rank",outcome="ok"}' in metrics

        # 4. a restart restores the view from its own store and reads what it missed meanwhile
        assert serve.stop() == 0
        with EventProducer(settings, linger_ms=0) as producer:
            producer.send(rec_click("fresh0-3", "while-down", T0 + 5000))
        serve = Child("serve", settings, tmp_path / "serve-2.log", serve_port=port, checkpoint_dir=ckpts.path,
                      serve_state_dir=tmp_path / "serve-state", check_interval_s=1.0, history_endpoint=True)
        wait_ready(port, serve)
        assert call(port, "/v1/users/fresh0-1/history")[1]["timeline"]  # kept from before the restart
        deadline = time.monotonic() + 10
        while len(call(port, "/v1/users/fresh0-3/history")[1]["timeline"]) < 4:
            assert time.monotonic() < deadline, "the click made while the service was down never arrived"
            time.sleep(0.05)
        assert call(port, "/ready")[1]["step"] == 7  # the corrupt step 9 is refused again, step 7 serves
    finally:
        assert serve.stop() == 0
        worker.stop()
