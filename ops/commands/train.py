"""`unisar train`: the continual trainer (sar.samples -> test-then-train -> checkpoints)."""
from __future__ import annotations

import argparse

from ops.commands._common import add_kafka_flags


def register(sub) -> None:
    p = sub.add_parser("train", help="run the continual trainer on the samples topic",
                       description="Consume training samples in a consumer group (or, with --world-size, a share of the "
                                   "partitions as one rank of several), score each mini-batch before "
                                   "learning from it (prequential HR/NDCG), take one joint UniSAR step, checkpoint "
                                   "atomically and resume from the newest checkpoint. Serves /metrics. Ctrl-C stops "
                                   "it cleanly (final checkpoint).")
    p.add_argument("--checkpoint-dir", help="checkpoints (default ./checkpoints); resumes from the newest")
    p.add_argument("--model", help="model of the zoo (default unisar)")
    p.add_argument("--batch-size", type=int, help="samples per step (default 1024)")
    p.add_argument("--max-wait", type=float, dest="max_wait_s", help="seconds before a partial batch trains (default 2)")
    p.add_argument("--checkpoint-every", type=int, dest="checkpoint_every_steps", help="steps (default 50)")
    p.add_argument("--checkpoint-every-s", type=float, dest="checkpoint_every_s", help="seconds (default 60)")
    p.add_argument("--keep", type=int, dest="keep_checkpoints", help="checkpoints kept (default 3)")
    p.add_argument("--heldout", help="time-ordered event file (JSONL); the samples of its last --heldout-last "
                                     "fraction are the offline evaluation set")
    p.add_argument("--heldout-last", type=float, help="fraction held out (default 0.1)")
    p.add_argument("--offline-every", type=int, dest="offline_every_steps", help="steps between offline evaluations")
    p.add_argument("--max-staleness", type=float, dest="max_staleness_s", metavar="S",
                   help="shed samples ingested more than S seconds ago, counted in "
                        "unisar_train_samples_skipped_total{reason=\"stale\"} (default: train on every sample)")
    p.add_argument("--metrics-port", type=int, dest="trainer_metrics_port", help="/metrics port (default 9109; 0 = off)")
    p.add_argument("--items", type=int, dest="n_items", help="item table rows (default 262144)")
    p.add_argument("--users", type=int, dest="n_users", help="user table rows (default 32768)")
    p.add_argument("--words", type=int, dest="n_words", help="word table rows (default 131072)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="cpu or cuda")
    dist = p.add_argument_group("scale-out", "W trainer processes (same flags otherwise) share the samples "
                                "partitions: rank R consumes partitions p with p %% W == R; every step averages "
                                "the ranks' gradients (torch.distributed, gloo). Rank 0 loads and writes the "
                                "checkpoints and runs the offline evaluation; give each rank its own "
                                "--metrics-port.")
    dist.add_argument("--world-size", type=int, metavar="W", help="trainer processes in all (default 1)")
    dist.add_argument("--rank", type=int, metavar="R", help="this process's rank, 0..W-1 (default 0)")
    dist.add_argument("--dist-addr", metavar="HOST:PORT",
                      help="rank 0's rendezvous address, the same for every rank (default 127.0.0.1:29500)")
    dist.add_argument("--dist-timeout", type=float, dest="dist_timeout_s", metavar="S",
                      help="seconds to wait for the other ranks at start-up and in each collective (default 300)")
    add_kafka_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from ops.commands._common import fail, run_until_signalled, settings_from
    from ops.metrics import TrainerMetrics
    from stream.kafka import ensure_topics
    from stream.train.distributed import PeerLost, WorldMismatch
    from stream.contract.offline import split_by_time
    from stream.train.trainer import ContinualTrainer

    names = ("checkpoint_dir", "model", "batch_size", "max_wait_s", "checkpoint_every_steps", "checkpoint_every_s",
             "keep_checkpoints", "heldout", "heldout_last", "offline_every_steps", "max_staleness_s", "trainer_metrics_port", "n_items", "n_users",
             "n_words", "seed", "device", "world_size", "rank", "dist_addr", "dist_timeout_s")
    settings = settings_from(args, **{n: getattr(args, n) for n in names})
    check_world(settings)
    from ops.runtime import keep_freed_memory

    keep_freed_memory()
    heldout = []
    if settings.heldout and settings.rank == 0:  # offline evaluation runs on rank 0 only
        try:
            _, heldout = split_by_time(settings.heldout, settings.heldout_last)
        except OSError as exc:
            fail(f"--heldout: expected a readable event file, got {settings.heldout!r} ({exc.strerror})")
    metrics = TrainerMetrics()
    if settings.trainer_metrics_port:
        try:
            port = metrics.serve(settings.trainer_metrics_port, settings.metrics_addr)
        except OSError as exc:
            hint = "; give each rank its own --metrics-port" if settings.world_size > 1 else ""
            fail(f"cannot serve /metrics on port {settings.trainer_metrics_port}: {exc.strerror}{hint}")
        logging.getLogger(__name__).info("metrics on http://127.0.0.1:%d/metrics", port)
    try:
        if settings.world_size > 1:
            from stream.train.scaleout import RankTrainer

            trainer = RankTrainer(settings, metrics, heldout)
        else:
            trainer = ContinualTrainer(settings, metrics, heldout)
    except (PeerLost, WorldMismatch) as exc:
        fail(str(exc))
    except ValueError as exc:  # e.g. a checkpoint of another model or config
        fail(f"cannot start from {settings.checkpoint_dir!r}: {exc}")

    async def main(stop) -> None:
        await ensure_topics(settings)
        await trainer.run(stop)

    try:
        run_until_signalled(main)
    except (PeerLost, WorldMismatch) as exc:
        fail(str(exc), code=1)
    return 0


def check_world(settings) -> None:
    """Flags of a scale-out rank that cannot work, said before joining anything."""
    from ops.commands._common import fail

    w, r = settings.world_size, settings.rank
    if not 0 <= r < w:
        fail(f"--rank: expected 0..{w - 1} for --world-size {w}, got {r}")
    if settings.partitions < w:
        fail(f"--partitions: expected at least --world-size ({w}) partitions, one or more per rank, "
             f"got {settings.partitions}")
    host, _, port = settings.dist_addr.rpartition(":")
    if w > 1 and (not host or not port.isdigit() or not 0 < int(port) < 65536):
        fail(f"--dist-addr: expected HOST:PORT, got {settings.dist_addr!r}")
