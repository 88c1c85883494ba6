"""`unisar train`: the continual trainer (sar.samples -> test-then-train -> checkpoints)."""
from __future__ import annotations

import argparse

from ops.commands._common import add_settings_flags
from ops.settings import KafkaSettings, MetricsSettings, ScaleOutSettings, TopicSettings, TrainerSettings


def register(sub) -> None:
    p = sub.add_parser("train", help="run the continual trainer on the samples topic",
                       description="Consume training samples in a consumer group (or, with --world-size, a share of the "
                                   "partitions as one rank of several), score each mini-batch before "
                                   "learning from it (prequential HR/NDCG), take one joint step of the --model, checkpoint "
                                   "atomically and resume from the newest checkpoint. Serves /metrics. Ctrl-C stops "
                                   "it cleanly (final checkpoint).")
    add_settings_flags(p, TrainerSettings, ScaleOutSettings, MetricsSettings, KafkaSettings, TopicSettings)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from ops.commands._common import check_device, fail, require_broker, run_until_signalled, settings_from
    from ops.metrics import TrainerMetrics
    from stream.kafka import ensure_topics
    from stream.train.distributed import PeerLost, WorldMismatch
    from stream.contract.files import DataError, SourceUnavailable
    from stream.contract.offline import heldout_samples
    from stream.train.trainer import ContinualTrainer

    settings = settings_from(args)
    check_model(settings.model)
    check_models(settings)
    check_world(settings)
    check_device(settings.device)
    require_broker(settings)
    from ops.runtime import keep_freed_memory

    keep_freed_memory()
    heldout = []
    if settings.heldout and settings.rank == 0:  # offline evaluation runs on rank 0 only
        try:  # the latest --heldout-last of its samples in event time (stream.contract.offline)
            heldout = heldout_samples(settings.heldout, settings.heldout_last)
        except (DataError, SourceUnavailable) as exc:
            fail(f"--heldout: {exc}")
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


def check_model(name: str) -> None:
    from model.registry import MODELS
    from ops.commands._common import fail

    if name not in MODELS:
        fail(f"--model: expected one of {', '.join(sorted(MODELS))}, got {name!r}")


def check_models(settings) -> None:
    """`--models` that cannot run, said before anything starts."""
    from ops.commands._common import fail
    from stream.train.trainer import contender_specs

    try:
        specs = contender_specs(settings)
    except ValueError as exc:
        fail(f"--models: {exc}")
    if len(specs) > 1 and settings.world_size > 1:
        fail("--models runs several models in one process; with --world-size > 1 give one --model")


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
