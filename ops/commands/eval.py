"""`unisar eval`: the paper's offline protocol on a checkpoint, per task.

Each held-out sample (a rec click, or one click of a search) is ranked: the true item among
99 items sampled uniformly from the items the model knows and that the user never
interacted with anywhere in the file (sampled ranking), or among every known item with
`--full-ranking`. Reports HR@1/5/10 and NDCG@5/10; ties count against the model.

Which samples: by default the ones `unisar fit` held out of the same file, by the fraction
and rule stored in the checkpoint (the latest fraction of all samples in event time, or with
fit's `--heldout-per-user`, of each user's). `--heldout-last F` takes another fraction and
`--heldout-per-user` / `--no-heldout-per-user` another rule; `--heldout-last 1` scores every
sample of FILE (e.g. a file of later events that also replays the earlier ones, so
histories are complete). FILE is JSONL, .jsonl.gz or parquet.

Time order: each file is replayed in time order (sorted by ts, ties in file order), whatever
order it was written in. With `--history`, an event of FILE earlier than its user's last
event in the history file would get a history holding later events: eval refuses, with
their count (split the log by time: `unisar data split`).
"""
from __future__ import annotations

import argparse
import json

from ops.commands._common import RawDescriptionHelpFormatter, add_items_flag, check_device, fail, load_items, out_file
from ops.commands._heldout import add_heldout_flags
from stream.contract.offline import (
    GLOBAL,
    PER_USER,
    OfflineStream,
    describe,
    heldout_rule,
    load_samples,
    split_heldout,
)

from model.metrics import NAMES as COLUMNS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="evaluate a checkpoint with the paper's protocol (HR, NDCG)",
        description=__doc__, formatter_class=RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="written by `unisar fit`")
    p.add_argument("--events", required=True, metavar="FILE", help="v1 events: .jsonl, .jsonl.gz or .parquet")
    add_heldout_flags(p, default=None, optional_switch=True,
                      last_help="score the latest F of the samples in event time (default: the checkpoint's)",
                      per_user_help="the latest F of each user's samples, or not (default: the checkpoint's rule)")
    p.add_argument("--history", metavar="FILE", help="earlier events (e.g. the training file of a time split), "
                   "replayed first as each user's history and never scored; then every sample of --events is "
                   "scored (no held-out rule); refused if an event of --events is earlier than its user's "
                   "last one here")
    p.add_argument("--full-ranking", action="store_true", help="rank against every known item, not 99 sampled")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled negatives")
    p.add_argument("--batch-size", type=int, default=256, help="samples scored at once")
    p.add_argument("--json", metavar="OUT", type=out_file, help="also write the results as JSON")
    add_items_flag(p)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from model.evaluation import evaluable, evaluate_samples, interacted, item_pool
    from model.learner import Learner
    from ops.runtime import keep_freed_memory
    from stream.contract.files import DataError, SourceUnavailable

    if args.batch_size < 1:
        fail(f"--batch-size: expected a positive integer, got {args.batch_size}")
    check_device(args.device)
    keep_freed_memory()
    try:
        checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
        learner = Learner.from_state_dict(checkpoint, device=args.device)
    except FileNotFoundError:
        fail(f"--checkpoint: expected a checkpoint file, got {args.checkpoint!r} (no such file)")
    except Exception as exc:  # a foreign or corrupt file: say what arrived, no traceback
        fail(f"--checkpoint: expected a checkpoint written by `unisar fit`, got {args.checkpoint!r} "
             f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
    learner.add_items(load_items(args, "eval"))  # a newer record of an item replaces the checkpoint's
    fit_record = checkpoint.get("fit") if isinstance(checkpoint.get("fit"), dict) else {}
    stored_fraction, stored_per_user = heldout_rule(fit_record)
    fraction = args.heldout_last if args.heldout_last is not None else stored_fraction
    per_user = args.heldout_per_user if args.heldout_per_user is not None else stored_per_user
    if fraction is None or not 0.0 < fraction <= 1.0:
        fail(f"--heldout-last: expected a fraction in (0, 1], got {fraction}")
    bar = lambda desc: lambda values: tqdm(values, desc=desc, unit=" events", disable=None)  # noqa: E731
    earlier: list = []
    stream = OfflineStream()
    if args.history:
        try:
            earlier, _ = load_samples(args.history, progress=bar("replaying --history"), stream=stream)
        except (DataError, SourceUnavailable) as exc:
            fail(f"--history: {exc}")
    late_before = stream.late  # 0: a file is replayed in time order
    try:
        samples, rejected = load_samples(args.events, progress=bar("building samples"), stream=stream)
    except (DataError, SourceUnavailable) as exc:
        fail(f"--events: {exc}")
    if stream.late > late_before:
        fail(f"--events: expected events no earlier than their user's last event in --history, got "
             f"{stream.late - late_before} earlier ones (their histories would hold later events); "
             f"split the log by time first, e.g. `unisar data split FILE --by fraction`")
    if stream.reordered:
        print(f"unisar eval: replayed in time order: {stream.reordered} events came after a later one in their file")
    test = evaluable(samples if args.history else split_heldout(samples, fraction, per_user)[1])
    samples = earlier + samples  # what users touched, and the items negatives come from
    if not test:
        fail(f"--events: expected held-out rec clicks or searches with clicks, got none "
             f"({len(samples)} samples, {len(rejected)} invalid events, held out: {describe(fraction, per_user)})")

    try:
        # negatives from every item of the file (train and test), whatever the model knows
        results = evaluate_samples(
            learner, test, exclude=interacted(samples), pool=item_pool(samples), full_ranking=args.full_ranking,
            seed=args.seed, batch_size=args.batch_size,
            progress=lambda starts: tqdm(starts, desc="scoring", unit=" batches", disable=None))
    except ValueError as exc:
        fail(str(exc))

    protocol = "full ranking against every known item" if args.full_ranking else \
        "sampled ranking: true item among 99 items of the file the user never interacted with"
    scored = f"every sample of {args.events}, after the history of {args.history}" if args.history \
        else describe(fraction, per_user)
    print(f"unisar eval: {protocol}; {len(test)} held-out samples ({scored})")
    print(f"{'task':<14}{'rows':>8}{'non-finite':>11}" + "".join(f"{c:>9}" for c in COLUMNS))
    for task, r in results.items():
        print(f"{task:<14}{r['rows']:>8}{r['nonfinite']:>11}" + "".join(f"{r[c]:>9.4f}" for c in COLUMNS))
        for part in ("warm", "cold"):  # true items seen in training, and never seen (its unknown-item vector)
            p = r[part]
            cells = "".join(f"{p[c]:>9.4f}" if p["rows"] else f"{'-':>9}" for c in COLUMNS)
            print(f"  {part + ' targets':<12}{p['rows']:>8}{'':>11}{cells}")
    print("cold targets (never seen in training): " + ", ".join(f"{t} {r['cold_share']:.1%}" for t, r in results.items()))
    if args.json:
        report = {"protocol": "full" if args.full_ranking else "sampled-99", "heldout_last": fraction,
                  "heldout_rule": PER_USER if per_user else GLOBAL, "history": args.history,
                  "checkpoint": args.checkpoint, "events": args.events, "seed": args.seed, "tasks": results}
        try:
            with open(args.json, "w") as fh:
                json.dump(report, fh, indent=2)
        except OSError as exc:
            fail(f"--json: expected a writable path, got {args.json!r} ({exc.strerror})")
    return 0
