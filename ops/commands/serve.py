"""`unisar serve`: rankings over HTTP from the newest checkpoint and the freshest histories."""
from __future__ import annotations

import argparse

from ops.commands._common import add_settings_flags
from ops.settings import KafkaSettings, ServeSettings, TopicSettings


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve rankings over HTTP (POST /v1/rank, /v1/recommend; /docs)",
                       description="Serve rankings for a user (and a query) over HTTP, from the newest checkpoint "
                                   "of the trainer's checkpoint directory (a newer one is swapped in while "
                                   "requests go on) and from every user's history, followed from the changelog "
                                   "topic into a RocksDB view of the service's own. OpenAPI at /openapi.json "
                                   "and /docs, Prometheus at /metrics. Binds to loopback unless --host says "
                                   "otherwise; set UNISAR_SERVE_TOKEN to require a bearer token.")
    add_settings_flags(p, ServeSettings, KafkaSettings, TopicSettings)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import signal

    import uvicorn

    from ops.commands._common import fail, require_broker, settings_from
    from ops.metrics import ServeMetrics
    from state.store import RocksHistoryStore
    from stream.kafka import ensure_topics
    from stream.serve.app import create_app
    from stream.serve.models import ModelHolder
    from stream.serve.pool import PopularPool
    from model.precision import use_bf16
    from stream.serve.ranking import inference_threads
    from stream.serve.service import RankingService
    from stream.serve.view import ChangelogFollower, HistoryView

    log = logging.getLogger("unisar.serve")
    settings = settings_from(args)
    require_broker(settings)
    try:
        store = RocksHistoryStore(settings.serve_state_dir)
    except Exception as exc:  # rocksdict raises a plain Exception, e.g. for a locked directory
        fail(f"cannot open the RocksDB directory {settings.serve_state_dir!r} (--serve-state-dir): {exc}")
    try:
        holder = ModelHolder(settings.checkpoint_dir)
    except OSError as exc:
        fail(f"cannot use the checkpoint directory {settings.checkpoint_dir!r} (--checkpoint-dir): {exc.strerror}")
    if settings.serve_host not in ("127.0.0.1", "localhost", "::1") and not settings.serve_token:
        log.warning("listening on %s without a token: anyone who reaches it can query rankings "
                    "(set UNISAR_SERVE_TOKEN)", settings.serve_host)

    import torch

    torch.set_num_threads(inference_threads(settings.inference_threads))
    bf16 = use_bf16(settings.precision, torch.device("cpu"))
    metrics, view, pool = ServeMetrics(), HistoryView(store), PopularPool(settings.pool_size)
    follower = ChangelogFollower(settings.kafka, settings.topics, view, pool, metrics, settings.pool_warmup)
    service = RankingService(view, holder, pool, metrics, bf16=bf16, batch_max=settings.batch_max,
                             batch_wait_s=settings.batch_wait_ms / 1000, check_interval_s=settings.check_interval_s,
                             follower=follower)
    app = create_app(service, settings.view(ServeSettings))
    server = uvicorn.Server(uvicorn.Config(app, host=settings.serve_host, port=settings.serve_port,
                                           access_log=False, log_level="warning", lifespan="on"))

    async def main() -> None:
        # uvicorn stops gracefully on SIGINT/SIGTERM, then raises the signal again for the
        # handler found before it: a stop asked for is a clean exit (0), as for the worker
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: None)
        await ensure_topics(settings)
        announce = asyncio.create_task(_announce(server, bf16))
        try:
            await server.serve()
        finally:
            announce.cancel()

    try:
        asyncio.run(main())
    except OSError as exc:  # the port is taken
        fail(f"cannot serve on {settings.serve_host}:{settings.serve_port} (--host, --port): {exc.strerror}")
    finally:
        store.close()
    if not server.started:
        fail(f"cannot serve on {settings.serve_host}:{settings.serve_port} (--host, --port): see the log above")
    return 0


async def _announce(server, bf16: bool) -> None:
    import asyncio

    while not server.started:
        await asyncio.sleep(0.05)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    import torch

    from model.precision import name as precision_name

    print(f"unisar serve: http://{host}:{port} (OpenAPI: /docs; precision {precision_name(bf16)}, "
          f"{torch.get_num_threads()} inference threads)", flush=True)
