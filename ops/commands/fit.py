"""`unisar fit`: train a model offline on an event file, the way the stream would see it.

The file is JSONL, .jsonl.gz or parquet (stream.contract.files). Events become samples
through stream.contract.offline, the worker's own code path. Time-based split: the latest
`--heldout-last` fraction of all samples in event time (ties: file order) is kept out of
training, as the paper's last-day split; `--heldout-per-user` holds out the latest fraction
of each user's samples instead. The checkpoint remembers the fraction and the rule, and
`unisar eval` on the same file scores exactly those samples. Each optimiser step takes one
rec batch (`--batch-size` samples) and one search batch, sized so both tasks finish an
epoch together.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import fields

from ops.commands._common import RawDescriptionHelpFormatter, check_device, fail, out_file
from ops.commands._heldout import add_heldout_flags


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "fit", help="train a model offline on an event file (.jsonl, .jsonl.gz, .parquet)",
        description=__doc__, formatter_class=RawDescriptionHelpFormatter,
    )
    p.add_argument("--events", required=True, metavar="FILE",
                   help="v1 events: .jsonl (one JSON object per line), .jsonl.gz or .parquet")
    p.add_argument("--out", required=True, type=out_file, metavar="CKPT",
                   help="where to write the checkpoint (its folder must exist and be writable)")
    p.add_argument("--model", default="unisar", help="model of the zoo (default: unisar)")
    p.add_argument("--epochs", type=int, default=1, help="passes over the training samples")
    p.add_argument("--batch-size", type=int, default=1024, help="rec samples per step (default: 1024)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation, the sampling and the order")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate of the dense parameters (default: 1e-3)")
    p.add_argument("--table-lr", type=float, metavar="LR",
                   help="learning rate of the id embedding tables (lazy Adam; default: --lr)")
    p.add_argument("--negatives", type=int, default=4, metavar="N",
                   help="sampled negative items per training sample (default: 4)")
    add_heldout_flags(p, default=0.1,
                      last_help="the latest F of all samples in event time, kept out of training (default: 0.1)",
                      per_user_help="hold out the latest F of each user's samples instead (per-user rule)")
    p.add_argument("--users", type=int, help="user table rows (default: distinct users in the file + 25%%)")
    p.add_argument("--items", type=int, help="item table rows (default: distinct items in the file + 25%%)")
    p.add_argument("--words", type=int, help="word table rows (default: distinct words in the file + 25%%)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="model config field, e.g. --set use_mask=false --set dropout=0.2 (repeatable)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.set_defaults(func=run)


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
        fail(f"expected --epochs, --batch-size and --max-steps >= 1, got "
             f"{args.epochs}, {args.batch_size}, {args.max_steps}")
    if args.negatives < 1:
        fail(f"--negatives: expected at least 1, got {args.negatives}")
    if not 0.0 <= args.heldout_last < 1.0:
        fail(f"--heldout-last: expected a fraction in [0, 1), got {args.heldout_last}")
    try:
        overrides = parse_sets(args.model, args.set)
    except ValueError as exc:
        fail(str(exc))
    check_device(args.device)

    import numpy as np
    import torch
    from tqdm import tqdm

    from model.learner import Learner
    from ops.runtime import keep_freed_memory
    from stream.contract.files import DataError, SourceUnavailable
    from stream.contract.offline import GLOBAL, PER_USER, describe, load_samples, split_heldout, table_sizes

    keep_freed_memory()
    try:
        samples, rejected = load_samples(args.events, progress=lambda values: tqdm(
            values, desc="building samples", unit=" events", disable=None))
    except (DataError, SourceUnavailable) as exc:
        fail(f"--events: {exc}")
    if rejected:
        line, why = rejected[0]
        print(f"unisar fit: skipped {len(rejected)} invalid events (first, line {line}: {why.reason})", file=sys.stderr)
    train, _ = split_heldout(samples, args.heldout_last, args.heldout_per_user)
    rec = [s for s in train if s.task == "rec" and s.label == 1]
    search = [s for s in train if s.task == "search" and s.items]
    if not rec and not search:
        fail(f"--events: expected events that yield training samples (rec clicks or searches "
             f"with clicks), got {len(samples)} samples and {len(rejected)} invalid events")

    sizes = table_sizes(samples)
    for kind in ("users", "items", "words"):
        overrides[f"n_{kind}"] = getattr(args, kind) or sizes[kind]
    try:
        learner = Learner(args.model, seed=args.seed, lr=args.lr, table_lr=args.table_lr,
                          n_negatives=args.negatives, device=args.device, **overrides)
    except (ValueError, RuntimeError) as exc:
        fail(str(exc))

    steps_per_epoch = max(1, math.ceil(len(rec) / args.batch_size)) if rec else math.ceil(len(search) / args.batch_size)
    search_batch = math.ceil(len(search) / steps_per_epoch)
    total = steps_per_epoch * args.epochs if args.max_steps is None else min(args.max_steps, steps_per_epoch * args.epochs)
    held = describe(args.heldout_last, args.heldout_per_user)
    print(f"unisar fit: {len(rec)} rec and {len(search)} search training samples "
          f"({len(samples) - len(train)} held out: {held}); {total} steps of {args.batch_size} rec + {search_batch} search")
    rng = np.random.default_rng(args.seed)
    terms: dict[str, float] = {}
    losses: list[dict[str, float]] = []  # every step's terms: kept in the checkpoint, plotted beside it
    with tqdm(total=total, desc="training", unit="step", disable=None) as bar:
        for _ in range(args.epochs):
            rec_order, search_order = rng.permutation(len(rec)), rng.permutation(len(search))
            for i in range(steps_per_epoch):
                if learner.step >= total:
                    break
                chunk = [rec[j] for j in rec_order[i * args.batch_size : (i + 1) * args.batch_size]]
                chunk += [search[j] for j in search_order[i * search_batch : (i + 1) * search_batch]]
                terms = learner.learn_many(chunk)
                losses.append(terms)
                if not all(math.isfinite(v) for v in terms.values()):
                    fail(f"training diverged at step {learner.step}: {terms}")
                bar.set_postfix(loss=f"{terms.get('total', float('nan')):.4f}")
                bar.update()

    checkpoint = learner.state_dict()
    checkpoint["fit"] = {"events": args.events, "heldout_last": args.heldout_last,
                         "heldout_rule": PER_USER if args.heldout_per_user else GLOBAL, "epochs": args.epochs,
                         "batch_size": args.batch_size, "seed": args.seed, "losses": losses}
    try:
        torch.save(checkpoint, args.out)
    except OSError as exc:
        fail(f"--out: expected a writable path, got {args.out!r} ({exc.strerror})")
    plot = write_loss_plot(losses, args.out)
    shown = " ".join(f"{k}={v:.4f}" for k, v in terms.items())
    print(f"unisar fit: wrote {args.out} after {learner.step} steps; last step {shown}"
          + (f"; loss plot {plot}" if plot else ""))
    return 0


def write_loss_plot(losses: list[dict[str, float]], out: str) -> str | None:
    """The loss terms over the steps, one panel per term (lines: tasks), beside the checkpoint."""
    from pathlib import Path

    from ops.report import plot_panels

    panels: dict[str, dict] = {}
    for step, terms in enumerate(losses, 1):
        for key, value in terms.items():
            task, _, term = key.rpartition("/")
            xs, ys = panels.setdefault(f"loss: {term}", {}).setdefault(task or "joint", ([], []))
            xs.append(step)
            ys.append(value)
    path = Path(out).with_suffix(".losses.png")
    return str(path) if plot_panels(path, "unisar fit: loss terms per step", panels, xlabel="step") else None
