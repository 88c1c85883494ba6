"""Fixtures for the model tests: a tiny UniSAR config and planted samples."""
from __future__ import annotations

import pytest
import torch
from cores import THREADS

from planted import planted_samples

TINY = dict(
    n_users=256, n_items=1024, n_words=256, d=16, d_ff=16, d_expert=16,
    tower_dims=(16, 16), head_dims=(16, 8), rel_negatives=64,
)


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(THREADS)


@pytest.fixture(scope="session")
def samples() -> list:
    return planted_samples(seed=1, n_users=40, n_events=30, n_clusters=8, cluster_size=20)


@pytest.fixture
def batch_samples(samples) -> list:
    """A step's worth: some rec clicks, a rec exposure, some searches."""
    rec = [s for s in samples if s.task == "rec"][-40:]
    search = [s for s in samples if s.task == "search"][-24:]
    return rec + search
