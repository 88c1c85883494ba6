"""Flags and helpers shared by sub-commands."""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from ops.settings import Settings


def add_kafka_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("kafka")
    group.add_argument("--brokers", help="bootstrap servers, comma-separated (env UNISAR_BROKERS; "
                                         "default: the embedded broker at 127.0.0.1:19092)")
    group.add_argument("--partitions", type=int, help="partitions of the events topic when creating it "
                                                      "(env UNISAR_PARTITIONS, default 4)")
    group.add_argument("--security-protocol", help="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
    group.add_argument("--sasl-mechanism", help="e.g. PLAIN or SCRAM-SHA-256 (password: env UNISAR_SASL_PASSWORD)")
    group.add_argument("--sasl-username")
    group.add_argument("--ssl-cafile", help="CA bundle for TLS")


def settings_from(args: argparse.Namespace, **extra) -> Settings:
    """Environment first, then any flag the user gave."""
    names = ("brokers", "partitions", "security_protocol", "sasl_mechanism", "sasl_username", "ssl_cafile")
    given = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    given.update({k: v for k, v in extra.items() if v is not None})
    try:
        return Settings(**given)
    except Exception as exc:  # pydantic ValidationError: say which setting and why
        fail(f"invalid settings: {exc}")


def fail(message: str, code: int = 2):
    print(f"unisar: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def run_until_signalled(main) -> None:
    """Run `main(stop_event)` until it returns or SIGINT/SIGTERM asks it to stop cleanly."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())
