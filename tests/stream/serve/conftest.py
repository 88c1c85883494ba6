"""Fixtures for the service's unit tests: a checkpoint directory with a tiny trained model."""
from __future__ import annotations

import shutil

import pytest
import torch
from cores import THREADS
from serving import trained_learner

from state.checkpoints import CheckpointDir


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(THREADS)


@pytest.fixture(scope="session")
def _trained_dir(tmp_path_factory):
    directory = CheckpointDir(tmp_path_factory.mktemp("ckpts"))
    learner = trained_learner()
    directory.save(learner.state_dict(), learner.step)
    return directory.path


@pytest.fixture
def ckpt_dir(_trained_dir, tmp_path):
    """A checkpoint directory of this test's own, holding one checkpoint of a tiny trained model (step 2)."""
    target = tmp_path / "ckpts"
    shutil.copytree(_trained_dir, target)
    return CheckpointDir(target)
