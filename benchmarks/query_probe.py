"""Does a trained checkpoint use the search query? Scores the held-out searches of FILE twice
with `unisar eval`'s protocol: once with their own queries, once with the queries shuffled
among them. A model that ignores the query scores the same both ways.

    python benchmarks/query_probe.py --checkpoint CKPT --events FILE.jsonl
Last line: one JSON object with both figures.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import random

import torch

from model.evaluation import evaluable, evaluate_samples, interacted
from model.learner import Learner
from model.metrics import NAMES
from stream.contract.offline import heldout_rule, load_samples, split_heldout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="written by `unisar fit`")
    parser.add_argument("--events", required=True, help="the event file it was fitted on")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffle and of the negatives")
    args = parser.parse_args()
    checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    learner = Learner.from_state_dict(checkpoint)
    samples, _ = load_samples(args.events)
    fraction, per_user = heldout_rule(checkpoint.get("fit", {}))  # the samples `unisar fit` held out
    test = [s for s in evaluable(split_heldout(samples, fraction or 0.1, per_user)[1]) if s.task == "search"]
    if not test:
        raise SystemExit(f"query_probe: expected held-out searches with clicks in {args.events}, got none")
    queries = [s.query for s in test]
    random.Random(args.seed).shuffle(queries)
    shuffled = [dataclasses.replace(s, query=q) for s, q in zip(test, queries)]
    exclude = interacted(samples)
    own, other = (evaluate_samples(learner, rows, exclude=exclude, seed=args.seed)["search"] for rows in (test, shuffled))
    for name, m in (("own query", own), ("shuffled query", other)):
        print(f"{name:<16}" + "".join(f"{k} {m[k]:.4f}  " for k in NAMES))
    print(json.dumps([{"metric": f"search_{k.lower().replace('@', '')}_{name}", "value": round(m[k], 4), "target": None}
                      for name, m in (("own_query", own), ("shuffled_query", other)) for k in ("HR@10", "NDCG@10")]))


if __name__ == "__main__":
    main()
