"""The catalogue on the real broker: item records and user profiles produced to the catalogue
topic reach the trainer's model (the item's input changes; the user's profile is held), and a
malformed record lands in the DLQ with its reason, while the trainer goes on."""
from __future__ import annotations

import json

import orjson
import pytest
import torch
from eventgen import valid_events
from kafka import KafkaProducer
from kafkatools import read_all
from test_trainer import produce_samples, start_trainer, wait_for

from model.learner import Learner
from ops.broker import free_port
from ops.cli import main
from state.checkpoints import CheckpointDir
from stream.contract.ids import item_id, user_id, word_id
from stream.contract.items import category_token, profile_token
from stream.contract.offline import OfflineStream
from stream.contract.samples import decode
from stream.kafka import ensure_topics_sync

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ITEMS = [f"i{k}" for k in range(1, 40)]  # the most frequent items of valid_events
USERS = [f"u{k}" for k in range(10)]


def test_catalogue_records_reach_the_model_and_bad_ones_the_dlq(settings, tmp_path):
    ensure_topics_sync(settings)
    catalogue = tmp_path / "x.items.jsonl"
    catalogue.write_text("".join(json.dumps({"v": 1, "item": i, "categories": [f"c{k % 4}", f"s{k % 9}"],
                                             "caption": f"red shoe {i}"}) + "\n" for k, i in enumerate(ITEMS))
                         + "".join(json.dumps({"v": 1, "user": u, "profile": {"age": "20s"}}) + "\n" for u in USERS))
    flags = ["--brokers", settings.brokers, "--items-topic", settings.items_topic, "--no-progress"]
    assert main(["produce", "--items", str(catalogue), *flags]) == 0
    raw = KafkaProducer(bootstrap_servers=settings.brokers, acks="all")
    raw.send(settings.items_topic, key=b"i5", value=b'{"v": 1, "item": "i5", "categories": "shoes"}')  # no list
    raw.send(settings.items_topic, key=b"i6", value=b'{"v": 1, "item": "i7"}')  # key names another item
    raw.send(settings.items_topic, key=b"user:u1", value=b'{"v": 1, "user": "u1", "profile": {"age": 2.5}}')
    raw.flush()
    raw.close()
    produce_samples(settings, 4_000)

    port = free_port()
    trainer = start_trainer(settings, tmp_path, port, "catalogue")
    try:
        metrics = wait_for(port, trainer, "unisar_checkpoints_total", 1)
        metrics = wait_for(port, trainer, "unisar_catalogue_records_total", len(ITEMS) + len(USERS) + 3)
        assert metrics["unisar_catalogue_items"] == len(ITEMS)
    finally:
        assert trainer.stop() == 0

    dead = [r for r in read_all(settings, settings.dlq_topic) if (r.key or b"") in (b"i5", b"i6", b"user:u1")]
    reasons = {r.key: dict(r.headers)["reason"].decode() for r in dead}
    assert "categories" in reasons[b"i5"] and "key" in reasons[b"i6"], reasons
    assert "profile field 'age'" in reasons[b"user:u1"], reasons
    assert all(dict(r.headers)["source"].startswith(settings.items_topic.encode()) for r in dead)

    learner = Learner.from_state_dict(CheckpointDir(tmp_path / "ckpt").load_latest())
    categories, caption = learner.catalogue.lookup([item_id("i3")])
    assert categories.tolist() == [[category_token(1, "c2"), category_token(2, "s2")]]
    assert caption[0, :3].tolist() == [word_id("red"), word_id("shoe"), word_id("i3")]
    assert len(learner.profiles) == len(USERS)  # the later, bad record of u1 left its profile as it was
    assert learner.profiles.lookup([user_id("u1")])[0][0, 0] == profile_token("age", "20s")

    # the model's input for a described item: its features move its scores
    encoded = OfflineStream().feed(orjson.dumps(e) for e in valid_events(600, users=50, seed=4))
    described = {item_id(i) for i in ITEMS}
    samples = [s for s in map(decode, encoded) if s.task == "rec" and s.label == 1 and s.items[0] in described][:20]
    assert samples
    with_features = learner.score(samples, n_negatives=5, seed=1)
    learner._features = False  # noqa: SLF001 - the same model, blind to the catalogue
    without = learner.score(samples, n_negatives=5, seed=1)
    assert not torch.allclose(with_features["rec"][:, 0], without["rec"][:, 0])
