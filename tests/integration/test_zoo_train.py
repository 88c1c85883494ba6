"""`unisar train --model NAME` for the zoo's sequence models, on the real broker: each
learns from sar.samples in the streaming pipeline and checkpoints its own model; a
checkpoint directory of another model is refused before anything is consumed."""
from __future__ import annotations

import subprocess
import sys

import pytest
from test_trainer import produce_samples, start_trainer, wait_for

from ops.broker import free_port
from ops.processes import settings_env
from state.checkpoints import CheckpointDir
from stream.kafka import ensure_topics_sync

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("model", ["sasrec", "unifiedssr", "user"])
def test_train_runs_the_model_in_the_stream_and_refuses_another_models_checkpoint(model, settings, tmp_path):
    ensure_topics_sync(settings)
    produce_samples(settings, 3_000)
    settings = settings.model_copy(update={"model": model})
    port = free_port()
    trainer = start_trainer(settings, tmp_path, port, model)
    try:
        metrics = wait_for(port, trainer, "unisar_checkpoints_total", 1)
        assert metrics["unisar_model_step"] >= 4 and metrics["unisar_train_samples_total"] > 0
    finally:
        assert trainer.stop() == 0
    state = CheckpointDir(tmp_path / "ckpt").load_latest()
    assert state["model_name"] == model and state["step"] >= 4
    other = "sasrec" if model != "sasrec" else "unifiedssr"
    env = settings_env(settings.model_copy(update={"model": other}), checkpoint_dir=tmp_path / "ckpt",
                       trainer_metrics_port=0)
    done = subprocess.run([sys.executable, "-m", "ops.cli", "train"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert f"holds model {model!r}, --model asks for {other!r}" in done.stderr
