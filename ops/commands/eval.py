"""`unisar eval`: the paper's offline protocol on a checkpoint, per task.

Each held-out sample (a rec click, or one click of a search) is ranked: the true item among
99 items sampled uniformly from the items the model knows and that the user never
interacted with anywhere in the file (sampled ranking), or among every known item with
`--full-ranking`. Reports HR@1/5/10 and NDCG@5/10; ties count against the model.

Which samples: by default the ones `unisar fit` held out of the same file (the latest
fraction of each user's samples, as stored in the checkpoint). With `--holdout-last F`
another fraction; `--holdout-last 1` scores every sample of FILE (e.g. a file of later
events that also replays the earlier ones, so histories are complete).
"""
from __future__ import annotations

import argparse
import json

from ops.commands.fit import fail
from stream.contract.offline import load_samples, split_holdout

from model.metrics import NAMES as COLUMNS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="evaluate a checkpoint with the paper's protocol (HR, NDCG)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="written by `unisar fit`")
    p.add_argument("--events", required=True, metavar="FILE.jsonl", help="v1 events, in time order")
    p.add_argument("--holdout-last", type=float, default=None, metavar="F",
                   help="score the latest F of each user's samples (default: the checkpoint's)")
    p.add_argument("--full-ranking", action="store_true", help="rank against every known item, not 99 sampled")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled negatives")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from model.evaluation import evaluable, evaluate_samples, interacted
    from model.learner import Learner
    from ops.runtime import keep_freed_memory

    keep_freed_memory()
    try:
        checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
        learner = Learner.from_state_dict(checkpoint, device=args.device)
    except FileNotFoundError:
        return fail("eval", f"--checkpoint: expected a checkpoint file, got {args.checkpoint!r} (no such file)")
    except Exception as exc:  # a foreign or corrupt file: say what arrived, no traceback
        return fail("eval", f"--checkpoint: expected a checkpoint written by `unisar fit`, got {args.checkpoint!r} "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
    fraction = args.holdout_last if args.holdout_last is not None else checkpoint.get("fit", {}).get("holdout_last")
    if fraction is None or not 0.0 < fraction <= 1.0:
        return fail("eval", f"--holdout-last: expected a fraction in (0, 1], got {fraction}")
    try:
        samples, rejected = load_samples(args.events)
    except OSError as exc:
        return fail("eval", f"--events: expected a readable JSONL file, got {args.events!r} ({exc.strerror})")
    test = evaluable(split_holdout(samples, fraction)[1])
    if not test:
        return fail("eval", f"--events: expected held-out rec clicks or searches with clicks, got none "
                            f"({len(samples)} samples, {len(rejected)} invalid events, holdout {fraction})")

    try:
        results = evaluate_samples(learner, test, exclude=interacted(samples), full_ranking=args.full_ranking,
                                   seed=args.seed, batch_size=args.batch_size)
    except ValueError as exc:
        return fail("eval", str(exc))

    protocol = "full ranking against every known item" if args.full_ranking else \
        "sampled ranking: true item among 99 sampled items the user never interacted with"
    print(f"unisar eval: {protocol}; {len(test)} held-out samples (latest {fraction:g} of each user's)")
    print(f"{'task':<8}{'rows':>8}{'non-finite':>11}" + "".join(f"{c:>9}" for c in COLUMNS))
    for task, r in results.items():
        print(f"{task:<8}{r['rows']:>8}{r['nonfinite']:>11}" + "".join(f"{r[c]:>9.4f}" for c in COLUMNS))
    if args.json:
        report = {"protocol": "full" if args.full_ranking else "sampled-99", "holdout_last": fraction,
                  "checkpoint": args.checkpoint, "events": args.events, "seed": args.seed, "tasks": results}
        try:
            with open(args.json, "w") as fh:
                json.dump(report, fh, indent=2)
        except OSError as exc:
            return fail("eval", f"--json: expected a writable path, got {args.json!r} ({exc.strerror})")
    return 0
