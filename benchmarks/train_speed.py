"""Training and evaluation throughput of a model of the zoo (`--model`, default UniSAR) at
the paper's shapes (KuaiSAR).

One training step = one rec batch of 1,024 samples + one search batch of 88 (the search
batch the reference derives for KuaiSAR so both tasks finish an epoch together), full
30 + 30 histories, ~2 clicks per search behaviour, 1-5 words per query, 1,024 L_Rel
negative items and queries (UniSAR's), d = 64 (each model's default shape otherwise), tables of KuaiSAR size (22,700 users, 673,416 items,
394,912 words). A timed step is the learner's real path, `learn_many(samples)`: collating
Sample objects, id mapping, negative sampling, forward, backward, both optimisers.
train samples/s counts rec samples: 1,024 per step (each carrying its share of the 88
search samples). Evaluation scores rec samples against 100 candidates (1 true + 99
sampled), `score(samples)` end to end.

Items and words are drawn uniformly from the tables by default: the worst case, where
almost no (query, item) pair repeats inside a batch (`--zipf 1.0` draws them with a
Zipf-like popularity instead, as real logs are).

Beside the rates it prints two ceilings. From arithmetic alone: the step's floating-point
work as torch's FlopCounterMode counts it (matrix products, forward and backward) divided by
the best matrix-product rate this device reaches on d=64-shaped products. From the products
at their shapes (benchmarks/_products.py): the step's and an evaluation batch's products
recorded and replayed alone, which at d = 64 run far below the best rate. No implementation
of this maths trains faster than the first; none through these kernels faster than the second.

Every timed step (and evaluation batch) is a batch not seen before, as in a stream: a
product of a new shape costs more than one seen before.

Each precision the device runs natively is measured side by side in one run (fp32, and
bf16 autocast where the CPU has bf16 instructions or on a GPU), taking turns step by step
so that a drifting machine moves them alike; rates are medians over steps, printed with
their spread. Each has its own ceiling and a torch.profiler table of one step's top
operators. The hardware line (CPU model, bf16 instructions, device) is printed and carried
by every JSON object.

    python benchmarks/train_speed.py [--model unisar --steps 8 --device cpu|cuda --precision both --zipf 0]
Last line: a JSON list of {"metric", "value", "unit", "target"} objects.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from _products import record_products, replay_seconds
from model.learner import Learner
from model.cpu import cpu_info
from model.precision import cpu_has_bf16, name as precision_name, use_bf16
from ops.runtime import keep_freed_memory
from stream.contract.history import History, RecBehaviour, SearchBehaviour
from stream.contract.samples import Sample

KUAISAR = dict(n_users=22_700, n_items=673_416, n_words=394_912)
REC_BATCH, SEARCH_BATCH, EVAL_BATCH = 1024, 88, 512
WARM_UP = 2  # untimed steps (and evaluation batches) first
ANCHORS = "reference implementation: ~120 train samples/s and ~235 eval samples/s on this 2-core CPU; ~5,900 train samples/s on an RTX 3090"


class Draw:
    """Ids uniform over a table, or Zipf-like (rank r drawn with weight 1 / r^s)."""

    def __init__(self, rng: np.random.Generator, n: int, zipf: float) -> None:
        self.rng, self.n = rng, n
        self.cdf = None
        if zipf > 0:
            w = 1.0 / np.arange(1, n) ** zipf
            self.cdf = np.cumsum(w) / w.sum()
            self.perm = rng.permutation(np.arange(1, n))  # popular ids scattered over the table

    def __call__(self, size) -> np.ndarray:
        if self.cdf is None:
            return self.rng.integers(1, self.n, size)
        return self.perm[np.searchsorted(self.cdf, self.rng.random(size))]


def make_samples(rng: np.random.Generator, n: int, task: str, items: Draw, words: Draw) -> list[Sample]:
    out = []
    t0 = 1_700_000_000_000
    for i in range(n):
        ts = t0 + np.sort(rng.integers(0, 10**9, 60))
        kinds = rng.permutation(np.repeat([0, 1], 30))  # 30 rec and 30 search behaviours, interleaved
        rec_ts, search_ts = ts[kinds == 0], ts[kinds == 1]
        rec = tuple(RecBehaviour(int(t), int(x)) for t, x in zip(rec_ts, items(30)))
        n_words, n_clicks = rng.integers(1, 6, 30), rng.integers(1, 4, 30)  # mean 3 words, 2 clicks
        search = tuple(
            SearchBehaviour(int(t), tuple(words(int(w)).tolist()), tuple(items(int(c)).tolist()))
            for t, w, c in zip(search_ts, n_words, n_clicks)
        )
        target = tuple(items(1 if task == "rec" else 2).tolist())
        query = tuple(words(3).tolist()) if task == "search" else ()
        out.append(Sample(f"b{i}", int(rng.integers(1, KUAISAR["n_users"])), t0 + 10**10, task, target, 1, query,
                          History(-1, rec, search)))
    return out


def fill(samples: list[Sample]) -> tuple[float, float, float]:
    rec = np.mean([len(s.history.rec) for s in samples]) / 30
    search = np.mean([len(s.history.search) for s in samples]) / 30
    clicks = np.mean([len(b.clicks) for s in samples for b in s.history.search])
    return rec, search, clicks


def step_flops(learner: Learner, samples: list[Sample]) -> float:
    """Floating-point operations of one training step (forward and backward), as counted by
    torch for its matrix products (mm, addmm, bmm, attention): the bulk of the work."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        learner.learn_many(samples)
    return float(counter.get_total_flops())


def matmul_peak(device: str, sync, dtype: torch.dtype = torch.float32, seconds: float = 1.0) -> float:
    """The best FLOP/s of a few products shaped like the model's (inner or outer size 64),
    each repeated for about `seconds`: an upper bound on the rate the step's products reach."""
    best = 0.0
    for m, k, n in ((1024, 64, 1024), (4096, 64, 4096), (65536, 64, 64), (65536, 64, 320)):
        a, b = torch.randn(m, k, device=device, dtype=dtype), torch.randn(k, n, device=device, dtype=dtype)
        a @ b
        sync()
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 4:
            a @ b
            reps += 1
        sync()
        best = max(best, 2 * m * k * n * reps / (time.perf_counter() - start))
    return best


def hardware(device: str) -> dict:
    """What the figures depend on: the CPU model, its bf16 instructions, the device."""
    cpu = cpu_info("model name") or platform.processor() or "unknown"
    out = {"cpu": cpu, "cpu_bf16": cpu_has_bf16(), "device": device}
    if device == "cuda":
        out["gpu"] = torch.cuda.get_device_name()
    return out


def profile_call(learner: Learner, call, top: int = 12) -> str:
    """torch.profiler's table of `call()` (one training step, one evaluation batch), the
    `top` operators by self time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if learner.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        call()
    key = "self_cuda_time_total" if learner.device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=top)


def measure(args, precisions: list[str], steps: list, eval_sets: list, sync) -> dict[str, dict]:
    """Training and evaluation rates of a fresh learner per precision, and its ceiling. The
    precisions take turns, one training step (or evaluation batch) each, so a machine that
    slows down or speeds up during the run moves them alike: this machine's rates drift by
    10-20% between runs, more than the differences being compared. A rate is the median
    over its steps; the spread (slowest to fastest step) is printed beside it."""
    learners = {p: Learner(args.model, seed=args.seed, device=args.device, precision=p, **KUAISAR) for p in precisions}

    def seconds(call) -> float:
        start = time.perf_counter()
        call()
        sync()
        return time.perf_counter() - start

    for learner in learners.values():
        for s in steps[:WARM_UP]:
            learner.learn_many(s)
    step_s = {p: [] for p in precisions}
    for s in steps[WARM_UP:]:
        for p, learner in learners.items():
            step_s[p].append(seconds(lambda: learner.learn_many(s)))
    for learner in learners.values():
        for s in eval_sets[:WARM_UP]:
            learner.score(s)
    eval_s = {p: [] for p in precisions}
    for s in eval_sets[WARM_UP:]:
        for p, learner in learners.items():
            eval_s[p].append(seconds(lambda: learner.score(s)))
    out = {}
    for p in precisions:
        learner, median = learners[p], float(np.median(step_s[p]))
        train_rate = REC_BATCH / median
        print(f"[{p}] train: {median * 1e3:.0f} ms per step (median of {len(step_s[p])}; "
              f"{min(step_s[p]) * 1e3:.0f}-{max(step_s[p]) * 1e3:.0f}) -> {train_rate:,.0f} rec samples/s "
              f"({(REC_BATCH + SEARCH_BATCH) / median:,.0f} rec+search samples/s)", flush=True)
        flops = step_flops(learner, steps[0])
        peak = matmul_peak(args.device, sync, torch.bfloat16 if p == "bf16" else torch.float32)
        ceiling = REC_BATCH / (flops / peak) if flops else float("inf")  # popularity: no products at all
        print(f"[{p}] arithmetic: {flops / 1e9:.1f} GFLOP per step (forward + backward); best {p} "
              f"matrix-product rate here {peak / 1e9:.0f} GFLOP/s -> at most {ceiling:,.0f} rec samples/s with "
              f"nothing but the products ({train_rate / ceiling:.0%} of that reached)", flush=True)
        eval_rate = EVAL_BATCH / float(np.median(eval_s[p]))
        print(f"[{p}] eval: {eval_rate:,.0f} samples/s (100 candidates each; median of {len(eval_s[p])} batches, "
              f"{EVAL_BATCH / max(eval_s[p]):,.0f}-{EVAL_BATCH / min(eval_s[p]):,.0f})", flush=True)
        products = {"train": record_products(lambda: learner.learn_many(steps[0])),
                    "eval": record_products(lambda: learner.score(eval_sets[0]))}
        alone = {k: replay_seconds(v, sync) for k, v in products.items()}
        # a model with no products (popularity) has no such ceiling
        shaped = {k: n / alone[k] if products[k] else float("inf") for k, n in (("train", REC_BATCH), ("eval", EVAL_BATCH))}
        print(f"[{p}] products alone, replayed at their shapes ({len(products['train'])} in a step, "
              f"{len(products['eval'])} in an evaluation batch): {alone['train'] * 1e3:.0f} ms per step "
              f"({alone['train'] / median:.0%} of it) -> at most {shaped['train']:,.0f} rec samples/s; "
              f"{alone['eval'] * 1e3:.0f} ms per evaluation batch ({alone['eval'] * eval_rate / EVAL_BATCH:.0%}) "
              f"-> at most {shaped['eval']:,.0f} samples/s", flush=True)
        if args.profile:
            print(f"[{p}] profile of one training step:\n"
                  f"{profile_call(learner, lambda: learner.learn_many(steps[0]))}", flush=True)
            print(f"[{p}] profile of one evaluation batch:\n"
                  f"{profile_call(learner, lambda: learner.score(eval_sets[0]))}", flush=True)
        out[p] = {"train": train_rate, "eval": eval_rate, "ceiling": ceiling, "flops": flops, "peak": peak,
                  "shaped": shaped}
    return out


def finite(rate: float) -> float | None:
    """A rate for the JSON line: None where there is no bound (inf)."""
    return round(rate, 1) if rate != float("inf") else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="unisar", help="model of the zoo (model.registry; default: unisar)")
    p.add_argument("--steps", type=int, default=8, help="timed training steps (after 2 warm-up steps; default 8)")
    p.add_argument("--eval-batches", type=int, default=4, help="timed evaluation batches of 512 (default 4)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="default cpu")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--precision", default="both", choices=["both", "auto", "bf16", "fp32"],
                   help="both: fp32, then bf16 where the device has it (default); else one run at that precision")
    p.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True,
                   help="print torch.profiler's top operators of one step per precision (default on)")
    p.add_argument("--zipf", type=float, default=0.0, help="0: uniform ids (default); s > 0: Zipf-like popularity")
    p.add_argument("--seed", type=int, default=0, help="default 0")
    args = p.parse_args()
    from model.registry import MODELS

    if args.model not in MODELS:
        raise SystemExit(f"--model: expected one of {', '.join(sorted(MODELS))}, got {args.model!r}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: expected a CUDA device, found none")
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # what `unisar fit` does too: no page faults on re-allocated activations
    rng = np.random.default_rng(args.seed)
    items, words = Draw(rng, KUAISAR["n_items"], args.zipf), Draw(rng, KUAISAR["n_words"], args.zipf)
    hw = hardware(args.device)
    native = use_bf16("auto", torch.device(args.device))
    print(f"hardware: {hw['cpu']}; bf16 instructions: {'yes' if hw['cpu_bf16'] else 'no'}; device {args.device}"
          + (f" ({hw['gpu']})" if "gpu" in hw else "") + f"; bf16 native here: {'yes' if native else 'no'}")

    # a batch per step, none seen twice: a product of a shape not seen before costs more (oneDNN
    # builds a kernel for it, about 0.5 ms each on a 2-core EPYC), as it does in a stream
    n_data = WARM_UP + args.steps
    print(f"building {n_data} steps of {REC_BATCH} rec + {SEARCH_BATCH} search samples ...", flush=True)
    steps = [make_samples(rng, REC_BATCH, "rec", items, words) + make_samples(rng, SEARCH_BATCH, "search", items, words)
             for _ in range(n_data)]
    rec_fill, search_fill, clicks = fill(steps[0])
    print(f"history fill: rec {rec_fill:.0%}, search {search_fill:.0%} of 30 slots; "
          f"{clicks:.2f} clicks per search behaviour; ids {'uniform' if not args.zipf else f'zipf s={args.zipf}'}")
    print(f"model: {args.model}")
    eval_sets = [make_samples(rng, EVAL_BATCH, "rec", items, words) for _ in range(WARM_UP + args.eval_batches)]
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    if args.precision == "both":
        precisions = ["fp32", "bf16"] if native else ["fp32"]
    else:
        precisions = [precision_name(use_bf16(args.precision, torch.device(args.device)))]
    results = measure(args, precisions, steps, eval_sets, sync)

    best = max(results, key=lambda k: results[k]["train"])
    where = "cpu" if args.device == "cpu" else "cuda"
    # issue 14's targets: with bf16 instructions (or a GPU) absolute rates; without, half the fp32 ceiling
    if where == "cuda":
        train_target, eval_target = 100_000, None
    elif native:
        train_target, eval_target = 1500, 5000
    else:
        train_target, eval_target = round(0.5 * results["fp32"]["ceiling"]), None
    r = results[best]
    print(f"best: {best}, {r['train']:,.0f} rec samples/s training (target {train_target:,}), "
          f"{r['eval']:,.0f} samples/s evaluation (target {eval_target or '-'}); ceilings at {best}: "
          f"{r['ceiling']:,.0f} training from FLOPs at the best product rate, {r['shaped']['train']:,.0f} training "
          f"and {r['shaped']['eval']:,.0f} evaluation from the products at their shapes")
    print(f"anchors: {ANCHORS}")
    rows = []
    for precision, r in results.items():
        common = {"model": args.model, "precision": precision, **hw}
        rows += [
            {"metric": f"train_samples_per_s_{where}", "value": round(r["train"], 1), "unit": "samples/s",
             "target": train_target if precision == best else None, **common},
            {"metric": f"train_ceiling_samples_per_s_{where}",
             "value": finite(r["ceiling"]), "unit": "samples/s",
             "target": None, "gflop_per_step": round(r["flops"] / 1e9, 2), "matmul_gflops": round(r["peak"] / 1e9, 1),
             **common},
            {"metric": f"train_products_ceiling_samples_per_s_{where}", "value": finite(r["shaped"]["train"]),
             "unit": "samples/s", "target": None, **common},
            {"metric": f"eval_samples_per_s_{where}", "value": round(r["eval"], 1), "unit": "samples/s",
             "target": eval_target if precision == best else None, **common},
            {"metric": f"eval_products_ceiling_samples_per_s_{where}", "value": finite(r["shaped"]["eval"]),
             "unit": "samples/s", "target": None, **common},
        ]
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
