"""Each sequence model of the zoo learns the planted transitions (tests/model/planted.py),
the way a user runs it: `unisar fit --model NAME` on a planted event log, then `unisar eval`,
which reads the model from the checkpoint and scores the latest 10% of the samples with the
offline protocol (the true item against 99 sampled items). A model that reads nothing gets
HR@10 = 0.10."""
import json

import pytest
import torch
from planted import planted_events, write_jsonl

from ops.cli import main

pytestmark = pytest.mark.slow  # 15-40 s a model

# model -> flags of `unisar fit`: tiny and without dropout, so each trains in seconds
RECIPES = {
    "sasrec": ["--set", "d=16", "--set", "dropout=0"],
    "unifiedssr": ["--set", "d=16", "--set", "dropout=0"],
    "user": ["--set", "d=16", "--set", "d_ff=16", "--set", "dropout=0"],
}


@pytest.fixture(scope="module")
def events_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("events") / "planted.jsonl"
    write_jsonl(path, planted_events(seed=0, n_users=80, n_events=40, n_clusters=8, cluster_size=20))
    return path


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_fit_and_eval_learn_the_planted_transitions_on_both_tasks(name, events_file, tmp_path):
    torch.set_num_threads(1)  # tiny models: one thread is faster than two, and CI's cores are shared
    out, report = tmp_path / f"{name}.pt", tmp_path / "eval.json"
    assert main(["fit", "--model", name, "--events", str(events_file), "--out", str(out), "--epochs", "8",
                 "--batch-size", "64", "--validation", "0", "--lr", "1e-2", "--seed", "0", *RECIPES[name]]) == 0
    assert torch.load(out, weights_only=True)["model_name"] == name
    assert main(["eval", "--checkpoint", str(out), "--events", str(events_file), "--json", str(report)]) == 0
    results = json.loads(report.read_text())["tasks"]
    for task in ("rec", "search"):
        assert results[task]["rows"] > 50 and results[task]["nonfinite"] == 0
        assert results[task]["HR@10"] > 0.3, (task, results[task])  # random: 0.10
