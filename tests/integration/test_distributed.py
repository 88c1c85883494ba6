"""Scale-out: trainer ranks in one gloo process group.

  - data-parallel steps (`Learner.learn_many(batch, sync)`) keep every rank's learner
    identical, idle ranks included, and equal a one-process step on the union batch where
    the maths says they must;
  - two `unisar train` ranks on the embedded broker split the samples partitions, step in
    lockstep, stop together on one SIGINT and leave one checkpoint with every offset.
"""
from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import orjson
import pytest
import torch
import torch.multiprocessing as mp

from eventgen import valid_events

from model.learner import Learner
from ops.broker import free_port
from ops.metrics import scrape_samples
from ops.processes import Child
from state.checkpoints import CheckpointDir
from stream.contract import samples as sample_codec
from stream.kafka import ensure_topics_sync
from stream.contract.offline import OfflineStream

pytestmark = pytest.mark.integration

TINY = dict(n_users=512, n_items=2048, n_words=2048, d=16, d_ff=16, d_expert=16,
            tower_dims=(16, 16), head_dims=(16, 8), rel_negatives=64)
SIZES = dict(n_users=512, n_items=2048, n_words=2048)


def stream_samples(n_events: int, seed: int = 4) -> list:
    encoded = OfflineStream().feed(orjson.dumps(e) for e in valid_events(n_events, users=60, items=400, seed=seed))
    return [sample_codec.decode(v) for v in encoded]


def _params(learner: Learner) -> dict[str, np.ndarray]:
    return {k: v.numpy().copy() for k, v in learner.model.state_dict().items()}


def _rank(rank: int, world_size: int, addr: str, out: str) -> None:
    """One rank: data-parallel steps on its own batches, digests after each (spawned)."""
    from stream.train.distributed import GlooSync

    torch.set_num_threads(1)
    sync = GlooSync(rank, world_size, addr, timeout_s=60)
    samples = stream_samples(1400)
    report: dict = {}
    try:
        # 1. UniSAR: different batches per rank, rank 1 idle in step 2, everyone idle in step 3
        learner = Learner("unisar", seed=3, **TINY)
        start = _params(learner)
        chunks = [samples[i * 150 : (i + 1) * 150] for i in range(2 * 4)]  # 1,200 of ~1,300
        plan = [chunks[2 * i + rank] for i in range(4)]
        if rank == 1:
            plan[1] = []
        plan[2] = []
        digests, steps, terms = [], [], []
        for batch in plan:
            terms.append(sorted(learner.learn_many(batch, sync)))
            digests.append(learner.digest())
            steps.append(learner.step)
        end = _params(learner)
        report["unisar"] = dict(digests=digests, steps=steps, terms=terms,
                                changed=[k for k in start if not np.array_equal(start[k], end[k])])

        # 2. popularity, rec clicks only, no sampled negatives: the weighted mean of the
        #    ranks' gradients is exactly the union batch's gradient
        clicks = [s for s in samples if s.task == "rec" and s.label == 1]
        batches = [clicks[i * 60 : (i + 1) * 60] for i in range(6)]  # 3 steps x 2 ranks
        # no unknown-item dropout either: its draws differ between one process and two ranks
        synced = Learner("popularity", seed=1, n_negatives=0, unknown_rate=0.0, **SIZES)
        for step in range(3):
            own = batches[2 * step + rank][: 60 - 25 * rank]  # unequal batch sizes
            synced.learn_many(own, sync)
        report["popularity"] = dict(digest=synced.digest())
        if rank == 0:
            alone = Learner("popularity", seed=1, n_negatives=0, unknown_rate=0.0, **SIZES)
            for step in range(3):
                alone.learn_many(batches[2 * step] + batches[2 * step + 1][:35])
            a, b = _params(synced), _params(alone)
            table = synced.optimizers["tables"].state
            tables = [group["params"] for group in (synced.optimizers["tables"].param_groups[0],
                                                    alone.optimizers["tables"].param_groups[0])]
            moments = [(table[p]["exp_avg"], alone.optimizers["tables"].state[q]["exp_avg"]) for p, q in zip(*tables)]
            report["popularity"].update(
                max_param_diff=max(float(np.abs(a[k] - b[k]).max()) for k in a),
                max_moment_diff=max(float((x - y).abs().max()) for x, y in moments),
                param_norm=max(float(np.abs(a[k]).max()) for k in a),
                ids_equal=all(np.array_equal(synced.ids[k].row_key, alone.ids[k].row_key)
                              and np.array_equal(synced.ids[k].last_used, alone.ids[k].last_used)
                              for k in synced.ids),
                steps=[synced.step, alone.step],
            )

        # 3. a state broadcast makes learners that started apart identical
        other = Learner("popularity", seed=rank, **SIZES)
        other.learn_many(batches[rank])
        state = sync.broadcast_state(other.state_dict() if rank == 0 else None)
        report["broadcast"] = Learner.from_state_dict(state).digest() if rank else other.digest()
    finally:
        sync.close()
    Path(out, f"rank{rank}.json").write_text(json.dumps(report))


def test_synced_steps_keep_ranks_identical_and_match_one_process(tmp_path):
    mp.start_processes(_rank, args=(2, f"127.0.0.1:{free_port()}", str(tmp_path)), nprocs=2,
                       start_method="spawn", join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))

    u0, u1 = r0["unisar"], r1["unisar"]
    assert u0["digests"] == u1["digests"], "ranks diverged"
    assert u0["steps"] == u1["steps"] == [1, 2, 2, 3]  # idle rank 1 stepped too; nobody stepped on no data
    assert len(set(u0["digests"])) == 3  # every real step changed the state
    assert u1["terms"][1] == [] and u0["terms"][1]  # the idle rank has no loss of its own
    tables = {"nets.0.embed.user.weight", "nets.0.embed.item.weight", "nets.0.embed.word.weight"}
    assert tables < set(u0["changed"]) and len(u0["changed"]) > 3 * len(tables)  # sparse and dense parameters

    p0 = r0["popularity"]
    assert p0["digest"] == r1["popularity"]["digest"]
    assert p0["steps"] == [3, 3] and p0["ids_equal"]
    assert p0["param_norm"] > 1e-3  # it learned something, and the same as one process did:
    assert p0["max_param_diff"] < 1e-6 and p0["max_moment_diff"] < 1e-6

    assert r0["broadcast"] == r1["broadcast"]


@pytest.mark.parametrize("flags, says", [
    (["--world-size", "2", "--rank", "2"], "--rank: expected 0..1 for --world-size 2, got 2"),
    (["--world-size", "3", "--rank", "0", "--partitions", "2"],
     "--partitions: expected at least --world-size (3) partitions, one or more per rank, got 2"),
    (["--world-size", "2", "--dist-addr", "localhost"], "--dist-addr: expected HOST:PORT, got 'localhost'"),
])
def test_train_refuses_a_world_that_cannot_work(flags, says, capsys):
    from ops.cli import main

    assert main(["train", *flags]) == 2
    assert says in capsys.readouterr().err


# ---- two `unisar train` ranks on the embedded broker


def produce_spread(settings, encoded: list[bytes], partitions: int) -> dict[int, int]:
    """Samples round-robin over the samples partitions (the i-th always to the same one);
    returns how many went to each."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.brokers, acks="all", linger_ms=10)
    counts = dict.fromkeys(range(partitions), 0)
    for i, value in enumerate(encoded):
        producer.send(settings.samples_topic, value=value, partition=i % partitions)
        counts[i % partitions] += 1
    producer.flush()
    producer.close()
    return counts


def by_name(port: int) -> dict[str, list[tuple[dict, float]]]:
    out: dict = {}
    for name, labels, value in scrape_samples(port):
        out.setdefault(name, []).append((labels, value))
    return out


def total(metrics: dict, name: str) -> float:
    return sum(v for _, v in metrics.get(name, []))


def start_ranks(settings, tmp_path, name: str) -> tuple[list[Child], list[int]]:
    addr, ports = f"127.0.0.1:{free_port()}", [free_port(), free_port()]
    ranks = [Child("train", settings, tmp_path / f"{name}{r}.log", world_size=2, rank=r, dist_addr=addr,
                   dist_timeout_s=60, trainer_metrics_port=ports[r], checkpoint_dir=tmp_path / "ckpt",
                   batch_size=100, max_wait_s=0.3, checkpoint_every_steps=3, n_items=4096, n_users=512,
                   n_words=1024) for r in (0, 1)]
    return ranks, ports


def consumed(m: dict) -> float:
    """Samples a rank took in: trained on, or rec exposures (no loss uses them yet)."""
    exposures = sum(v for labels, v in m.get("unisar_train_samples_skipped_total", []) if labels["reason"] == "exposure")
    return total(m, "unisar_train_samples_total") + exposures


def wait_trained(ranks: list[Child], ports: list[int], n: int, log, timeout_s: float = 60) -> list[dict]:
    """Both ranks' metrics once they have trained on `n` samples (or skipped them) together."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert all(r.alive() for r in ranks), "a rank exited early: " + log.read_text()[-2000:]
        try:
            metrics = [by_name(p) for p in ports]
            done = sum(total(m, "unisar_train_samples_total") + total(m, "unisar_train_samples_skipped_total")
                       for m in metrics)
            if done >= n:
                return metrics
        except OSError:
            pass
        assert time.monotonic() < deadline, f"the ranks did not get through {n} samples in {timeout_s} s"
        time.sleep(0.3)


@pytest.mark.slow
def test_two_train_ranks_split_partitions_step_together_checkpoint_and_resume(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # two ranks on a small machine
    ensure_topics_sync(settings)
    encoded = list(OfflineStream().feed(orjson.dumps(e) for e in valid_events(2_400, users=200, seed=5)))
    first, later = encoded[:2_000], encoded[2_000:]
    counts = produce_spread(settings, first, settings.partitions)
    ranks, ports = start_ranks(settings, tmp_path, "first")
    try:
        metrics = wait_trained(ranks, ports, sum(counts.values()), tmp_path / "first0.log")
        for r, m in enumerate(metrics):  # each rank read its own partitions only, and learned from them
            assert {int(labels["partition"]) for labels, _ in m["unisar_trainer_consumer_lag"]} == {r, r + 2}
            assert consumed(m) == counts[r] + counts[r + 2]
            assert total(m, "unisar_trainer_rank") == r and total(m, "unisar_trainer_world_size") == 2
        steps = [total(m, "unisar_model_step") for m in metrics]
        assert steps[0] == steps[1] >= 8, steps  # lockstep: the same steps, on the union of the batches
        assert total(metrics[0], "unisar_trainer_state_digest") == total(metrics[1], "unisar_trainer_state_digest")
        assert total(metrics[0], "unisar_checkpoints_total") >= 1 and total(metrics[1], "unisar_checkpoints_total") == 0

        ranks[1].proc.send_signal(signal.SIGINT)  # one rank's Ctrl-C stops both, cleanly
        assert [r.proc.wait(30) for r in ranks] == [0, 0]
    finally:
        for r in ranks:
            if r.alive():
                r.kill()
    state = CheckpointDir(tmp_path / "ckpt").load_latest()
    assert state["offsets"] == {str(p): n for p, n in counts.items()}  # every partition's end
    assert state["step"] == steps[0] and state["world_size"] == 2
    assert [len(state["admission_by_rank"][str(r)]) for r in (0, 1)] == [counts[0] + counts[2], counts[1] + counts[3]]
    assert "rank 1 stopped cleanly" in (tmp_path / "first1.log").read_text()

    # resumed: new samples, and 200 old ones again (a worker's redelivery), on their old partitions
    produce_spread(settings, first[:200] + later, settings.partitions)
    ranks, ports = start_ranks(settings, tmp_path, "second")
    try:
        metrics = wait_trained(ranks, ports, 200 + len(later), tmp_path / "second0.log")
        assert sum(consumed(m) for m in metrics) == len(later)  # from the offsets on
        duplicates = sum(v for m in metrics for labels, v in m["unisar_train_samples_skipped_total"]
                         if labels["reason"] == "duplicate")
        assert duplicates == 200  # each rank's memory
        assert total(metrics[0], "unisar_model_step") > state["step"]

        ranks[1].kill()  # kill -9: its peer notices and exits with an error, not a hang
        assert ranks[0].proc.wait(30) == 1
    finally:
        for r in ranks:
            if r.alive():
                r.kill()
    assert "rank 0: lost the other ranks" in (tmp_path / "second0.log").read_text()
