"""The models of `--models` and their policies: parsing, when each learns, the periodic
retrain from scratch on the trailing window and its swap; the stream's item pool and the
shared candidates; the ledger."""
from __future__ import annotations

import threading
from statistics import median

import numpy as np
import orjson
import pytest
from eventgen import valid_events

from model.batch import collate
from model.learner import Learner
from model.prequential import SlidingWindow
from stream.contract.offline import OfflineStream
from stream.contract.samples import decode
from stream.train.candidates import ItemPool, mentioned, shared_negatives
from stream.train.contenders import Contender, Schedule, Spec, parse_models, retrain
from stream.train.ledger import Ledger, read_ledger

KNOWN = frozenset({"unisar", "sasrec", "popularity"})
TINY = dict(n_users=256, n_items=1024, n_words=256)


def planted_samples(n_events: int, seed: int) -> list:
    """The samples a worker makes of `n_events` generated events."""
    values = OfflineStream().feed(orjson.dumps(e) for e in valid_events(n_events, users=40, seed=seed, items=600))
    return [decode(v) for v in values]


def test_models_parse_with_policies_and_bounded_names():
    specs = parse_models("unisar, unisar:frozen,unisar:periodic, sasrec", KNOWN)
    assert [s.name for s in specs] == ["unisar", "unisar-frozen", "unisar-periodic", "sasrec"]
    assert specs[0] == Spec("unisar", "continual")


@pytest.mark.parametrize("text, complaint", [
    ("", "at least one"), ("unisar,unisar", "named twice"), ("bert4rec", "unknown model"),
    ("unisar:weekly", "unknown policy"), ("unisar:frozen,unisar:frozen", "named twice"),
])
def test_models_that_cannot_run_are_refused_with_the_reason(text, complaint):
    with pytest.raises(ValueError, match=complaint):
        parse_models(text, KNOWN)


def contender(policy: str, schedule: Schedule, model: str = "popularity") -> Contender:
    return Contender(Spec(model, policy), Learner(model, seed=0, **TINY), schedule, SlidingWindow(100))


def test_frozen_stops_learning_after_its_samples_and_continual_never_does():
    schedule = Schedule(frozen_after=10, retrain_every=10)
    frozen, continual = contender("frozen", schedule), contender("continual", schedule)
    batch = list(range(4))  # only counted
    for _ in range(3):
        for c in (frozen, continual):
            c.offered(batch, c.learns())
    assert frozen.seen == 12 and not frozen.learns() and frozen.trained == 12  # learnt the 3 batches before 10
    frozen.offered(batch, frozen.learns())
    assert frozen.trained == 12 and continual.learns()


def test_periodic_retrains_from_scratch_on_the_trailing_window_and_swaps_when_ready():
    samples = planted_samples(400, seed=2)
    schedule = Schedule(frozen_after=64, retrain_every=64, retrain_window=96, retrain_epochs=1, batch_size=32)
    periodic = contender("periodic", schedule, model="unisar")
    for start in range(0, 64, 32):
        chunk = samples[start : start + 32]
        assert periodic.learns()
        periodic.learner.learn_many(chunk)
        periodic.offered(chunk, True)
    assert not periodic.learns()  # from the first retrain on it learns only by retraining
    periodic._retrain.join()
    before = periodic.learner
    assert periodic.swap_if_ready() and periodic.learner is not before and periodic.swaps == 1
    assert periodic.learner.step > before.step  # the model line's step keeps counting
    assert not periodic.swap_if_ready()  # nothing new until the next retrain
    for start in range(64, 128, 32):
        periodic.offered(samples[start : start + 32], False)
    periodic._retrain.join()
    assert periodic.swap_if_ready() and periodic.swaps == 2


def test_a_retrain_is_the_same_whatever_thread_runs_it():
    samples = planted_samples(100, seed=3)
    schedule = Schedule(retrain_epochs=2, batch_size=40)
    a, b = Learner("unisar", seed=5, **TINY), Learner("unisar", seed=5, **TINY)
    retrain(a, samples, schedule)
    thread = threading.Thread(target=retrain, args=(b, samples, schedule))
    thread.start()
    thread.join()
    assert a.step == b.step == 2 * -(-len(samples) // 40) and a.digest() == b.digest()


def test_the_item_pool_keeps_items_in_first_appearance_order_and_drops_the_oldest():
    pool = ItemPool(4)
    pool.add([5, 6, 0, 5, 7])
    assert pool.array().tolist() == [5, 6, 7]  # 0 is padding, repeats keep their place
    pool.add([8, 9])
    assert sorted(pool.array().tolist()) == [6, 7, 8, 9] and len(pool) == 4
    again = ItemPool(4)
    again.load_state_dict(pool.state_dict())
    again.add([10])
    pool.add([10])
    assert again.array().tolist() == pool.array().tolist()
    smaller = ItemPool(2)
    smaller.load_state_dict(pool.state_dict())
    assert sorted(smaller.array().tolist()) == [9, 10]  # a smaller pool keeps the newest


def test_shared_negatives_wait_for_a_pool_and_are_the_same_for_every_model():
    samples = planted_samples(1200, seed=1)
    a, b = Learner("unisar", seed=0, **TINY), Learner("sasrec", seed=1, **TINY)
    pool = ItemPool(10_000)
    pool.add(mentioned(samples[:5]))
    assert shared_negatives(samples[:64], a.limits, pool, seed=3) is None  # fewer than 200 items
    pool.add(mentioned(samples))
    negatives = shared_negatives(samples[:64], a.limits, pool, seed=3)
    assert negatives is not None and all(n.shape[1] == 99 for n in negatives.values())
    batch = collate(samples[:64], a.limits)
    assert {t: len(r.target) for t, r in batch.tasks.items()} == {t: len(n) for t, n in negatives.items()}
    for learner in (a, b):  # each model scores the rows on exactly these candidates
        scores = learner.score(batch, negatives=negatives)
        assert {t: s.shape for t, s in scores.items()} == {t: (len(n), 100) for t, n in negatives.items()}
    again = shared_negatives(samples[:64], b.limits, pool, seed=3)
    assert all(np.array_equal(negatives[t], again[t]) for t in negatives)


def test_the_ledger_appends_a_line_per_scored_batch_and_reads_back_past_a_torn_line(tmp_path):
    samples = planted_samples(20, seed=1)
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.write(samples, {("unisar", "rec"): (10, 0.5, 0.25)}, {"unisar": 64})
    ledger.write(samples, {}, {"unisar": 64})  # nothing scored: no line
    ledger.close()
    with open(tmp_path / "ledger.jsonl", "a") as f:
        f.write('{"t": 1, "scor')
    lines = read_ledger(tmp_path / "ledger.jsonl")
    assert len(lines) == 1 and lines[0]["scores"] == {"unisar": {"rec": [10, 0.5, 0.25]}}
    assert lines[0]["event_ms"] == int(median(s.ts for s in samples)) and lines[0]["trained"] == {"unisar": 64}


def test_with_a_lag_the_retrained_model_is_swapped_in_at_its_place_in_the_stream():
    samples = planted_samples(400, seed=4)
    schedule = Schedule(retrain_every=64, retrain_window=64, retrain_epochs=3, batch_size=32, retrain_lag=64)
    periodic = contender("periodic", schedule, model="unisar")
    periodic.offered(samples[:64], True)  # the retrain starts: swap due 64 samples later
    assert not periodic.swap_if_ready() or periodic._retrain is None  # may be ready early, never waited for yet
    while periodic.swaps == 0 and periodic.seen < 128:
        periodic.offered(samples[periodic.seen : periodic.seen + 32], False)
        periodic.swap_if_ready()
    assert periodic.swaps == 1 and periodic.seen <= 128  # waited for at its place at the latest


def test_a_frozen_model_can_start_from_a_checkpoint_file_and_never_learns(tmp_path):
    import torch

    from ops.metrics import TrainerMetrics, fresh_registry
    from ops.settings import Settings
    from stream.train.trainer import ContinualTrainer

    samples = planted_samples(600, seed=5)
    fitted = Learner("unisar", seed=3, **TINY)
    fitted.learn_many(samples[:200])
    torch.save(fitted.state_dict(), tmp_path / "fitted.pt")
    settings = Settings(models="unisar,unisar:frozen", frozen_from=str(tmp_path / "fitted.pt"), score_share=1.0,
                        checkpoint_dir=str(tmp_path / "ckpt"), **TINY)
    trainer = ContinualTrainer(settings, TrainerMetrics(fresh_registry()))
    champion, frozen = trainer.contenders
    assert frozen.learner.digest() == fitted.digest() and not frozen.learns()
    assert champion.learner.step == 0  # the champion starts fresh
    terms = trainer._test_then_train(samples[200:456])
    assert terms["unisar-frozen"] is None and terms["unisar"] and frozen.learner.digest() == fitted.digest()
    missing = settings.model_copy(update=dict(frozen_from=str(tmp_path / "none.pt"),
                                              checkpoint_dir=str(tmp_path / "other")))
    with pytest.raises(ValueError, match="--frozen-from"):
        ContinualTrainer(missing, TrainerMetrics(fresh_registry()))


def test_a_failed_retrain_keeps_the_current_model_and_lets_the_next_one_start(monkeypatch):
    import stream.train.contenders as contenders

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    samples = planted_samples(300, seed=6)
    periodic = contender("periodic", Schedule(retrain_every=32, retrain_window=32, retrain_lag=0, batch_size=32),
                         model="unisar")
    monkeypatch.setattr(contenders, "retrain", broken)
    current = periodic.learner
    periodic.offered(samples[:32], True)
    assert not periodic.swap_if_ready() and periodic.learner is current and periodic._retrain is None
    monkeypatch.undo()
    periodic.offered(samples[32:64], False)  # due again: this one works
    assert periodic.swap_if_ready() and periodic.swaps == 1
