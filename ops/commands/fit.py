"""`unisar fit`: train a model offline on a JSONL event file, the way the stream would see it.

Events become samples through stream.contract.offline.OfflineStream, the worker's own code path.
Time-based split: the latest `--holdout-last` fraction of each user's samples is kept out
of training (its checkpoint remembers the fraction, and `unisar eval` on the same file
scores exactly those samples). Each optimiser step takes one rec batch (`--batch-size`
samples) and one search batch, sized so both tasks finish an epoch together.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import fields


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "fit", help="train a model offline on a JSONL event file",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--events", required=True, metavar="FILE.jsonl", help="v1 events, one JSON object per line, in time order")
    p.add_argument("--out", required=True, metavar="CKPT", help="where to write the checkpoint")
    p.add_argument("--model", default="unisar", help="model of the zoo (default: unisar)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=1024, help="rec samples per step (default: 1024)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate of the dense parameters (default: 1e-3)")
    p.add_argument("--table-lr", type=float, metavar="LR",
                   help="learning rate of the id embedding tables (lazy Adam; default: --lr)")
    p.add_argument("--negatives", type=int, default=4, metavar="N",
                   help="sampled negative items per training sample (default: 4)")
    p.add_argument("--holdout-last", type=float, default=0.1, metavar="F",
                   help="fraction of each user's latest samples kept out of training (default: 0.1)")
    p.add_argument("--users", type=int, help="user table rows (default: distinct users in the file + 25%%)")
    p.add_argument("--items", type=int, help="item table rows (default: distinct items in the file + 25%%)")
    p.add_argument("--words", type=int, help="word table rows (default: distinct words in the file + 25%%)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="model config field, e.g. --set use_mask=false --set dropout=0.2 (repeatable)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.set_defaults(func=run)


def fail(command: str, message: str) -> int:
    print(f"unisar {command}: {message}", file=sys.stderr)
    return 2


def distinct_ids(samples: list) -> dict[str, int]:
    users, items, words = set(), set(), set()
    for s in samples:
        users.add(s.user)
        items.update(s.items)
        words.update(s.query)
        items.update(b.item for b in s.history.rec)
        for b in s.history.search:
            words.update(b.query)
            items.update(b.clicks)
    return {"users": len(users), "items": len(items), "words": len(words)}


def parse_sets(model: str, pairs: list[str]) -> dict:
    """--set FIELD=VALUE pairs, typed by the config's defaults."""
    from model.registry import MODELS

    if model not in MODELS:
        raise ValueError(f"--model: expected one of {sorted(MODELS)}, got {model!r}")
    defaults = {f.name: f.default for f in fields(MODELS[model][0])}
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or name not in defaults:
            raise ValueError(f"--set: expected FIELD=VALUE with FIELD among {sorted(defaults)}, got {pair!r}")
        kind = type(defaults[name])
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"--set {name}: expected true or false, got {value!r}")
            out[name] = value.lower() in ("true", "1")
        elif kind is tuple:
            out[name] = tuple(int(v) for v in value.split(","))
        else:
            out[name] = kind(value)
    return out


def run(args: argparse.Namespace) -> int:
    if args.epochs < 1 or args.batch_size < 1 or (args.max_steps is not None and args.max_steps < 1):
        return fail("fit", f"expected --epochs, --batch-size and --max-steps >= 1, got "
                           f"{args.epochs}, {args.batch_size}, {args.max_steps}")
    if args.negatives < 1:
        return fail("fit", f"--negatives: expected at least 1, got {args.negatives}")
    if not 0.0 <= args.holdout_last < 1.0:
        return fail("fit", f"--holdout-last: expected a fraction in [0, 1), got {args.holdout_last}")
    try:
        overrides = parse_sets(args.model, args.set)
    except ValueError as exc:
        return fail("fit", str(exc))

    import numpy as np
    import torch
    from tqdm import tqdm

    from model.learner import Learner
    from ops.runtime import keep_freed_memory
    from stream.contract.offline import load_samples, split_holdout

    keep_freed_memory()
    try:
        samples, rejected = load_samples(args.events)
    except OSError as exc:
        return fail("fit", f"--events: expected a readable JSONL file, got {args.events!r} ({exc.strerror})")
    if rejected:
        offset, why = rejected[0]
        print(f"unisar fit: skipped {len(rejected)} invalid events (first, line {offset + 1}: {why.reason})", file=sys.stderr)
    train, _ = split_holdout(samples, args.holdout_last)
    rec = [s for s in train if s.task == "rec" and s.label == 1]
    search = [s for s in train if s.task == "search" and s.items]
    if not rec and not search:
        return fail("fit", f"--events: expected events that yield training samples (rec clicks or searches "
                           f"with clicks), got {len(samples)} samples and {len(rejected)} invalid events")

    sizes = distinct_ids(samples)
    for kind in ("users", "items", "words"):
        given = getattr(args, kind)
        overrides[f"n_{kind}"] = given if given else int(sizes[kind] * 1.25) + 16
    try:
        learner = Learner(args.model, seed=args.seed, lr=args.lr, table_lr=args.table_lr,
                          n_negatives=args.negatives, device=args.device, **overrides)
    except (ValueError, RuntimeError) as exc:
        return fail("fit", str(exc))

    steps_per_epoch = max(1, math.ceil(len(rec) / args.batch_size)) if rec else math.ceil(len(search) / args.batch_size)
    search_batch = math.ceil(len(search) / steps_per_epoch)
    total = steps_per_epoch * args.epochs if args.max_steps is None else min(args.max_steps, steps_per_epoch * args.epochs)
    print(f"unisar fit: {len(rec)} rec and {len(search)} search training samples "
          f"({len(samples) - len(train)} held out); {total} steps of {args.batch_size} rec + {search_batch} search")
    rng = np.random.default_rng(args.seed)
    terms: dict[str, float] = {}
    with tqdm(total=total, unit="step", disable=None) as bar:
        for _ in range(args.epochs):
            rec_order, search_order = rng.permutation(len(rec)), rng.permutation(len(search))
            for i in range(steps_per_epoch):
                if learner.step >= total:
                    break
                chunk = [rec[j] for j in rec_order[i * args.batch_size : (i + 1) * args.batch_size]]
                chunk += [search[j] for j in search_order[i * search_batch : (i + 1) * search_batch]]
                terms = learner.learn_many(chunk)
                if not all(math.isfinite(v) for v in terms.values()):
                    return fail("fit", f"training diverged at step {learner.step}: {terms}")
                bar.set_postfix(loss=f"{terms.get('total', float('nan')):.4f}")
                bar.update()

    checkpoint = learner.state_dict()
    checkpoint["fit"] = {"events": args.events, "holdout_last": args.holdout_last, "epochs": args.epochs,
                         "batch_size": args.batch_size, "seed": args.seed}
    try:
        torch.save(checkpoint, args.out)
    except OSError as exc:
        return fail("fit", f"--out: expected a writable path, got {args.out!r} ({exc.strerror})")
    shown = " ".join(f"{k}={v:.4f}" for k, v in terms.items())
    print(f"unisar fit: wrote {args.out} after {learner.step} steps; last step {shown}")
    return 0
