"""`unisar fit`: train a model offline on an event file, the way the stream would see it.

The file is JSONL, .jsonl.gz or parquet (stream.contract.files). Events become samples
through stream.contract.offline, the worker's own code path, replayed in time order (sorted
by ts, ties in file order) whatever order the file was written in. Time-based split: the
latest `--heldout-last` fraction of all samples in event time is kept out of training, as
the paper's last-day split; `--heldout-per-user` holds out the latest fraction of each
user's samples instead. The checkpoint remembers the fraction and the rule, and `unisar
eval` on the same file scores exactly those samples. Each optimiser step takes one rec batch
(`--batch-size` samples) and one search batch, sized so both tasks finish an epoch together.

The schedule (the reference's): the latest `--validation` fraction of the training samples,
by the same rule, is a validation set, never trained on. After each epoch (or every
`--eval-every` steps; by default at least 30 steps apart, as the patience below counts
validations and the reference's epochs are thousands of steps) it is scored with the
evaluation protocol (the true item among 99 sampled items, identical candidates every time)
and HR@10 / NDCG@10 are printed per task.
The validation score is the mean NDCG@10 of the two tasks (each task counts alike, however
many rows it has). After `--lr-patience` evaluations without a better score every learning
rate is multiplied by `--lr-factor`; after `--patience` of them training stops. The
checkpoint written is the learner at its best evaluation (its step is the record's
`best_step`; the record keeps every evaluation: step, epoch, metrics, learning rates).
`--validation 0` trains on every non-held-out sample and writes the last state.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import fields

from ops.commands._common import RawDescriptionHelpFormatter, add_items_flag, check_device, fail, load_items, out_file
from ops.commands._heldout import add_heldout_flags


DEFAULT_EPOCHS = 20
MIN_EVAL_STEPS = 30  # validate no more often than this, however short an epoch


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
    p.add_argument("--epochs", type=int, default=None,
                   help=f"most passes over the training samples; validation stops training earlier (default: "
                        f"{DEFAULT_EPOCHS}, or more on a small file: see --min-steps)")
    p.add_argument("--batch-size", type=int, default=1024, help="rec samples per step (default: 1024)")
    p.add_argument("--min-steps", type=int, default=300, metavar="N",
                   help="without --epochs, raise the epoch cap on a small file until it allows this many steps "
                        "(validation can still stop earlier; default: 300)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation, the sampling and the order")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate of the dense parameters (default: 1e-3)")
    p.add_argument("--table-lr", type=float, metavar="LR",
                   help="learning rate of the id embedding tables (lazy Adam; default: --lr)")
    p.add_argument("--negatives", type=int, default=16, metavar="N",
                   help="sampled negative items per training sample (default: 16)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="forward pass precision (auto: bf16 autocast where the CPU has bf16 instructions or on a "
                   "CUDA device with bf16, else fp32; weights and losses stay fp32; default: auto)")
    p.add_argument("--exposures", action=argparse.BooleanOptionalAction, default=False,
                   help="train on rec exposures without a click as labelled negatives (default: off; "
                   "README, 'Rec exposures')")
    add_heldout_flags(p, default=0.1,
                      last_help="the latest F of all samples in event time, kept out of training (default: 0.1)",
                      per_user_help="hold out the latest F of each user's samples instead (per-user rule)")
    p.add_argument("--validation", type=float, default=0.1, metavar="F",
                   help="the latest F of the training samples, by the held-out rule, to validate on "
                        "(default: 0.1; 0: no validation, no schedule, the last state is written)")
    p.add_argument("--eval-every", type=int, metavar="N",
                   help=f"validate every N steps (default: after each epoch, or every {MIN_EVAL_STEPS} steps "
                        "where an epoch is shorter)")
    p.add_argument("--lr-factor", type=float, default=0.5, metavar="X",
                   help="multiply the learning rates by this on a plateau (default: 0.5)")
    p.add_argument("--lr-patience", type=int, default=1, metavar="N",
                   help="validations without improvement before the learning rates drop (default: 1)")
    p.add_argument("--patience", type=int, default=3, metavar="N",
                   help="validations without improvement before training stops (default: 3)")
    p.add_argument("--user-rows", dest="users_rows", type=int, metavar="N",
                   help="user table rows (default: distinct users in the file + 25%%)")
    p.add_argument("--item-rows", dest="items_rows", type=int, metavar="N",
                   help="item table rows (default: distinct items in the file + 25%%)")
    p.add_argument("--word-rows", dest="words_rows", type=int, metavar="N",
                   help="word table rows (default: distinct words in the file + 25%%)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="model config field, e.g. --set use_mask=false --set dropout=0.2 (repeatable)")
    add_items_flag(p)
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
    if args.min_steps < 0:
        fail(f"expected --min-steps >= 0, got {args.min_steps}")
    if min(args.epochs or 1, args.batch_size, args.max_steps or 1) < 1:
        fail(f"expected --epochs, --batch-size and --max-steps >= 1, got "
             f"{args.epochs}, {args.batch_size}, {args.max_steps}")
    if args.negatives < 1:
        fail(f"--negatives: expected at least 1, got {args.negatives}")
    if not 0.0 <= args.heldout_last < 1.0:
        fail(f"--heldout-last: expected a fraction in [0, 1), got {args.heldout_last}")
    if not 0.0 <= args.validation < 1.0:
        fail(f"--validation: expected a fraction in [0, 1), got {args.validation}")
    if not 0.0 < args.lr_factor <= 1.0:
        fail(f"--lr-factor: expected a number in (0, 1], got {args.lr_factor}")
    if args.lr_patience < 1 or args.patience < 1 or (args.eval_every is not None and args.eval_every < 1):
        fail(f"expected --lr-patience, --patience and --eval-every >= 1, got "
             f"{args.lr_patience}, {args.patience}, {args.eval_every}")
    try:
        overrides = parse_sets(args.model, args.set)
    except ValueError as exc:
        fail(str(exc))
    check_device(args.device)

    import numpy as np
    import torch
    from tqdm import tqdm

    from model.learner import Learner
    from model.precision import name as precision_name
    from ops.runtime import keep_freed_memory
    from stream.contract.files import DataError, SourceUnavailable
    from stream.contract.offline import (
        GLOBAL,
        PER_USER,
        OfflineStream,
        describe,
        load_samples,
        split_validation,
        table_sizes,
    )

    keep_freed_memory()
    stream = OfflineStream()
    try:
        samples, rejected = load_samples(args.events, progress=lambda values: tqdm(
            values, desc="building samples", unit=" events", disable=None), stream=stream)
    except (DataError, SourceUnavailable) as exc:
        fail(f"--events: {exc}")
    if stream.reordered:
        print(f"unisar fit: replayed in time order: {stream.reordered} events came after a later one in the file")
    if rejected:
        line, why = rejected[0]
        print(f"unisar fit: skipped {len(rejected)} invalid events (first, line {line}: {why.reason})", file=sys.stderr)
    train, valid, test = split_validation(samples, args.heldout_last, args.validation, args.heldout_per_user)
    validation = Validation.of(valid, train, args) if args.validation else None
    if validation is None:  # no validation rows (or none asked for): train on them all
        train = train + valid
    rec = [s for s in train if s.task == "rec" and (s.label == 1 or args.exposures)]
    search = [s for s in train if s.task == "search" and s.items]
    if not rec and not search:
        fail(f"--events: expected events that yield training samples (rec clicks or searches "
             f"with clicks), got {len(samples)} samples and {len(rejected)} invalid events")

    items = load_items(args, "fit")
    sizes = table_sizes(samples, catalogue=items)
    for kind in ("users", "items", "words"):
        overrides[f"n_{kind}"] = getattr(args, f"{kind}_rows") or sizes[kind]
    try:
        learner = Learner(args.model, seed=args.seed, lr=args.lr, table_lr=args.table_lr,
                          n_negatives=args.negatives, exposures=args.exposures, precision=args.precision,
                          device=args.device,
                          catalogue_size=max(overrides["n_items"], len(items) + 1), **overrides)
    except (ValueError, RuntimeError) as exc:
        fail(str(exc))
    learner.add_items(items)  # side information about every item and user, test ones included: no labels

    steps_per_epoch = max(1, math.ceil(len(rec) / args.batch_size)) if rec else math.ceil(len(search) / args.batch_size)
    search_batch = math.ceil(len(search) / steps_per_epoch)
    if args.epochs is None:  # a small file makes few steps an epoch: 20 of 9 left UniSAR improving at the cap
        args.epochs = max(DEFAULT_EPOCHS, math.ceil(args.min_steps / steps_per_epoch))
    if args.eval_every is None and steps_per_epoch < MIN_EVAL_STEPS:
        # patience counts validations: after every 9-step epoch, one noisy dip in UniSAR's flat
        # first ~80 steps halved its learning rate for good (README, "Training defaults")
        args.eval_every = MIN_EVAL_STEPS
    total = steps_per_epoch * args.epochs if args.max_steps is None else min(args.max_steps, steps_per_epoch * args.epochs)
    held = describe(args.heldout_last, args.heldout_per_user)
    print(f"unisar fit: {len(rec)} rec and {len(search)} search training samples "
          f"({len(test)} held out: {held}; {validation.describe() if validation else 'no validation'}); "
          f"{total} steps of {args.batch_size} rec + {search_batch} search; forward pass in "
          f"{precision_name(learner.bf16)} (--precision {args.precision})")
    rng = np.random.default_rng(args.seed)
    terms: dict[str, float] = {}
    losses: list[dict[str, float]] = []  # every step's terms: kept in the checkpoint, plotted beside it
    stop = False
    with tqdm(total=total, desc="training", unit="step", disable=None) as bar:
        for epoch in range(1, args.epochs + 1):
            rec_order, search_order = rng.permutation(len(rec)), rng.permutation(len(search))
            for i in range(steps_per_epoch):
                if learner.step >= total or stop:
                    break
                chunk = [rec[j] for j in rec_order[i * args.batch_size : (i + 1) * args.batch_size]]
                chunk += [search[j] for j in search_order[i * search_batch : (i + 1) * search_batch]]
                terms = learner.learn_many(chunk)
                losses.append(terms)
                if not all(math.isfinite(v) for v in terms.values()):
                    fail(f"training diverged at step {learner.step}: {terms}")
                bar.set_postfix(loss=f"{terms.get('total', float('nan')):.4f}")
                bar.update()
                if validation and args.eval_every and learner.step % args.eval_every == 0:
                    stop = validation(learner, epoch, bar.write)
            if stop or learner.step >= total:
                break
            if validation and not args.eval_every:
                stop = validation(learner, epoch, bar.write)
        if validation and validation.last_step != learner.step and not stop:  # the last state is a candidate too
            validation(learner, epoch, bar.write)

    steps = learner.step
    best = validation.best_state if validation else None
    checkpoint = learner.state_dict() if best is None else best
    checkpoint["fit"] = {"events": args.events, "heldout_last": args.heldout_last,
                         "heldout_rule": PER_USER if args.heldout_per_user else GLOBAL, "epochs": args.epochs,
                         "batch_size": args.batch_size, "seed": args.seed, "steps": steps, "losses": losses,
                         "validation": args.validation if validation else 0.0,
                         **(validation.record(stopped=stop) if validation else {})}
    try:
        torch.save(checkpoint, args.out)
    except OSError as exc:
        fail(f"--out: expected a writable path, got {args.out!r} ({exc.strerror})")
    plot = write_loss_plot(losses, args.out, validation.history if validation else ())
    shown = " ".join(f"{k}={v:.4f}" for k, v in terms.items())
    kept = f"; kept step {checkpoint['step']}, the best validation ({validation.metric} " \
           f"{validation.schedule.best:.4f})" if validation else ""
    print(f"unisar fit: wrote {args.out} after {steps} steps{' (stopped early)' if stop else ''}{kept}; "
          f"last step {shown}" + (f"; loss plot {plot}" if plot else ""))
    return 0


class Validation:
    """The validation samples and the schedule on them: scores the learner (the evaluation
    protocol, identical candidates every time), keeps a copy of its best state, cuts its
    learning rates on a plateau and says when to stop (model.schedule.Plateau)."""

    metric = "mean NDCG@10 of the tasks"

    def __init__(self, rows: list, seen: list, args: argparse.Namespace) -> None:
        from model.evaluation import interacted, item_pool
        from model.schedule import Plateau

        self.rows, self.fraction, self.seed = rows, args.validation, args.seed
        self.per_user = args.heldout_per_user
        # negatives from the items of the training and validation samples: nothing of the test time
        self.exclude, self.pool = interacted(seen), item_pool(seen)
        self.schedule = Plateau(args.lr_factor, args.lr_patience, args.patience)
        self.history: list[dict] = []
        self.best_state: dict | None = None
        self.last_step: int | None = None

    @classmethod
    def of(cls, valid: list, train: list, args: argparse.Namespace) -> Validation | None:
        """None when `valid` holds no row the protocol ranks (a tiny file)."""
        from model.evaluation import evaluable

        rows = evaluable(valid)
        if not rows:
            print(f"unisar fit: no validation rows in the latest {args.validation:g} of the training samples; "
                  f"training without validation", file=sys.stderr)
            return None
        return cls(rows, train + valid, args)

    def describe(self) -> str:
        from stream.contract.offline import describe

        return f"{len(self.rows)} validation rows: {describe(self.fraction, self.per_user)} of the rest"

    def __call__(self, learner, epoch: int, say) -> bool:
        """Score the learner, apply the schedule; True when training should stop."""
        import copy

        from model.evaluation import evaluate_samples

        try:
            results = evaluate_samples(learner, self.rows, exclude=self.exclude, pool=self.pool, seed=self.seed,
                                       batch_size=256)
        except ValueError as exc:  # too few items for 99 negatives
            fail(f"validation: {exc} (or --validation 0)")
        score = sum(r["NDCG@10"] for r in results.values()) / len(results)
        lrs = {name: opt.param_groups[0]["lr"] for name, opt in learner.optimizers.items()}
        verdict = self.schedule.update(learner.step, score)
        if verdict.improved:
            self.best_state = copy.deepcopy(learner.state_dict())
        if verdict.cut_lr:
            for opt in learner.optimizers.values():
                for group in opt.param_groups:
                    group["lr"] *= self.schedule.factor
        self.last_step = learner.step
        self.history.append({"step": learner.step, "epoch": epoch, "score": score, "lr": lrs,
                             "tasks": {task: {k: r[k] for k in ("rows", "HR@10", "NDCG@10")}
                                       for task, r in results.items()},
                             "improved": verdict.improved, "lr_cut": verdict.cut_lr})
        shown = "  ".join(f"{task} HR@10 {r['HR@10']:.4f} NDCG@10 {r['NDCG@10']:.4f}" for task, r in results.items())
        note = "best" if verdict.improved else "stop" if verdict.stop else \
            f"lr x{self.schedule.factor:g}" if verdict.cut_lr else "no better"
        say(f"validation at step {learner.step} (epoch {epoch}): {shown}  score {score:.4f} ({note})")
        return verdict.stop

    def record(self, stopped: bool) -> dict:
        """What the checkpoint's `fit` record keeps of the schedule."""
        s = self.schedule
        return {"validation_metric": self.metric, "validation_history": self.history, "best_step": s.best_step,
                "stopped_early": stopped,
                "schedule": {"lr_factor": s.factor, "lr_patience": s.lr_patience, "patience": s.patience}}


def write_loss_plot(losses: list[dict[str, float]], out: str, validation=()) -> str | None:
    """The loss terms over the steps, one panel per term (lines: tasks), beside the checkpoint;
    and the validation NDCG@10 per task when there is a validation history."""
    from pathlib import Path

    from ops.report import plot_panels

    panels: dict[str, dict] = {}
    for step, terms in enumerate(losses, 1):
        for key, value in terms.items():
            task, _, term = key.rpartition("/")
            xs, ys = panels.setdefault(f"loss: {term}", {}).setdefault(task or "joint", ([], []))
            xs.append(step)
            ys.append(value)
    for entry in validation:
        for task, r in entry["tasks"].items():
            xs, ys = panels.setdefault("validation: NDCG@10", {}).setdefault(task, ([], []))
            xs.append(entry["step"])
            ys.append(r["NDCG@10"])
    path = Path(out).with_suffix(".losses.png")
    return str(path) if plot_panels(path, "unisar fit: loss terms per step", panels, xlabel="step") else None
