"""Two models on one stream (issue 16): on the embedded broker, a trainer with `--models
unisar,sasrec` scores both models on exactly the same candidates for every sample, and
unisar's figures and final model are those of a trainer that runs unisar alone."""
from __future__ import annotations

import asyncio

import numpy as np
import orjson
import pytest
from eventgen import valid_events

from model.learner import Learner
from ops.metrics import TrainerMetrics, fresh_registry
from stream.contract.offline import OfflineStream
from stream.kafka import ensure_topics_sync
from stream.train.ledger import read_ledger
from stream.train.trainer import ContinualTrainer

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BATCH = 128


def produce(settings, values: list[bytes]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.brokers, acks="all", linger_ms=10)
    for value in values:
        producer.send(settings.samples_topic, value=value)
    producer.flush()
    producer.close()


def train(settings, tmp_path, name: str, models: str, total: int, seen: list | None = None) -> ContinualTrainer:
    """Run a trainer in this process until it has consumed `total` samples."""
    run = settings.model_copy(update=dict(
        models=models, trainer_group=f"{settings.group}-{name}", checkpoint_dir=str(tmp_path / name / "ckpt"),
        ledger=str(tmp_path / name / "ledger.jsonl"), batch_size=BATCH, max_wait_s=30.0, score_share=1.0,
        n_users=512, n_items=4096, n_words=1024, trainer_metrics_port=0))
    trainer = ContinualTrainer(run, TrainerMetrics(fresh_registry()))
    if seen is not None:  # what each model was given to score: its rows' true items and negatives
        for c in trainer.contenders:
            score = c.learner.score

            def spy(batch, *args, _name=c.name, _score=score, **kwargs):
                negatives = kwargs.get("negatives")
                seen.append((_name, {t: (rows.target.copy(), negatives[t].copy()) for t, rows in batch.tasks.items()}))
                return _score(batch, *args, **kwargs)

            c.learner.score = spy

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(trainer.run(stop))
        for _ in range(1200):
            await asyncio.sleep(0.25)
            if task.done() or sum(trainer.offsets.values()) >= total:
                break
        stop.set()
        await task

    asyncio.run(main())
    assert sum(trainer.offsets.values()) == total, "the trainer did not consume the stream"
    # a restart resumes every model from its own newest checkpoint, the offsets from the champion's
    again = ContinualTrainer(run, TrainerMetrics(fresh_registry()))
    assert [c.learner.digest() for c in again.contenders] == [c.learner.digest() for c in trainer.contenders]
    assert again.offsets == trainer.offsets
    return trainer


def test_two_models_score_identical_candidates_and_neither_changes_the_other(settings, tmp_path):
    settings = settings.model_copy(update=dict(partitions=1))  # one partition: the same batches every run
    ensure_topics_sync(settings)
    values = list(OfflineStream().feed(orjson.dumps(e) for e in valid_events(3_000, users=150, seed=6, items=900)))
    values = values[: len(values) // BATCH * BATCH]  # whole batches only: none waits for max_wait
    produce(settings, values)

    seen: list = []
    both = train(settings, tmp_path, "both", "unisar,sasrec", len(values), seen)
    calls = {name: [c for n, c in seen if n == name] for name in ("unisar", "sasrec")}
    assert len(calls["unisar"]) == len(calls["sasrec"]) >= len(values) // BATCH - 4  # the first wait for a pool of 200 items
    for a, b in zip(calls["unisar"], calls["sasrec"]):
        assert a.keys() == b.keys()
        for task in a:
            np.testing.assert_array_equal(a[task][0], b[task][0])  # the same true items
            np.testing.assert_array_equal(a[task][1], b[task][1])  # and the same 99 negatives each
            assert a[task][1].shape[1] == 99 and not (a[task][1] == a[task][0][:, None]).any()

    alone = train(settings, tmp_path, "alone", "unisar", len(values))
    together = [line["scores"]["unisar"] for line in read_ledger(tmp_path / "both" / "ledger.jsonl")]
    by_itself = [line["scores"]["unisar"] for line in read_ledger(tmp_path / "alone" / "ledger.jsonl")]
    assert together == by_itself and len(together) == len(calls["unisar"])  # every batch's figures, exactly
    assert both.contenders[0].learner.digest() == alone.contenders[0].learner.digest()
    assert isinstance(both.contenders[1].learner, Learner) and both.contenders[1].learner.model_name == "sasrec"
    assert (tmp_path / "both" / "ckpt" / "challengers" / "sasrec").is_dir()
