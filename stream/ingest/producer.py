"""Event producers: a small kafka-python client, and file replay with validation.

Files are read by stream.contract.files (JSONL, `.jsonl.gz`, parquet, `-` for stdin), which
yields each event's raw value with its line number; `produce_lines` validates and sends them.

Settings are explicit because kafka-python 3.x changed its defaults: acks="all" and
idempotence on (the broker drops a retried duplicate), key = the raw user id so a user's
events share one partition and stay in order.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import orjson
from kafka import KafkaProducer

from ops.settings import Settings
from stream.contract.events import MAX_EVENT_BYTES, Rejection, validate
from stream.contract.items import parse_record, record_key
from stream.kafka import sync_kwargs


class EventProducer:
    def __init__(self, settings: Settings, topic: str | None = None, **overrides) -> None:
        self.topic = topic or settings.events_topic
        config = dict(
            acks="all", enable_idempotence=True, retries=5, linger_ms=10,
            batch_size=256 * 1024, max_request_size=4 << 20, request_timeout_ms=30_000,
        )
        config.update(overrides)
        self._producer = KafkaProducer(**sync_kwargs(settings), **config)

    def send_raw(self, key: bytes, value: bytes) -> None:
        self._producer.send(self.topic, key=key, value=value)

    def send(self, event: dict) -> None:
        """Send one event dict as it is (validate it first with stream.contract.events.validate)."""
        self.send_raw(str(event["user"]).encode(), orjson.dumps(event))

    def flush(self, timeout_s: float | None = None) -> None:
        self._producer.flush(timeout_s)

    def close(self) -> None:
        self._producer.flush()
        self._producer.close()

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class Line:
    number: int  # 1-based line number in the file (row, for parquet)
    key: bytes | None  # raw user id, None when invalid
    value: bytes
    rejection: Rejection | None


def check_lines(values: Iterable[tuple[int, bytes]]) -> Iterator[Line]:
    """Validate each (line number, raw value) of an event file (stream.contract.files.read_values);
    the value is sent verbatim."""
    for number, value in values:
        if len(value) > MAX_EVENT_BYTES:
            yield Line(number, None, value, Rejection("decode", f"a line of at most {MAX_EVENT_BYTES} bytes",
                                                      f"{len(value)} bytes"))
            continue
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            yield Line(number, None, value, Rejection("decode", "one JSON object per line", exc.msg))
            continue
        checked = validate(obj)
        if isinstance(checked, Rejection):
            yield Line(number, None, value, checked)
        else:
            yield Line(number, str(obj["user"]).encode(), value, None)


class Pacer:
    """Holds a producer to `rate` events/s, or to the events' own timestamps sped up
    `speedup` times (replay at N times real time). Neither: as fast as possible."""

    def __init__(self, rate: float | None = None, speedup: float | None = None) -> None:
        self.rate, self.speedup = rate, speedup
        self._start = time.monotonic()
        self._count = 0
        self._first_ts: int | None = None

    def wait(self, event_ts_ms: int | None) -> None:
        due = None
        if self.rate:
            due = self._start + self._count / self.rate
        elif self.speedup and event_ts_ms is not None:
            if self._first_ts is None:
                self._first_ts = event_ts_ms
            due = self._start + (event_ts_ms - self._first_ts) / 1000 / self.speedup
        self._count += 1
        if due is not None:
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)


@dataclass
class ProduceSummary:
    sent: int = 0
    invalid: list[tuple[int, str]] = field(default_factory=list)
    seconds: float = 0.0
    what: str = "events"

    def render(self, show: int = 20) -> str:
        rate = self.sent / self.seconds if self.seconds else 0.0
        lines = [f"sent {self.sent} {self.what} in {self.seconds:.1f} s ({rate:,.0f} {self.what}/s); "
                 f"{len(self.invalid)} invalid lines not sent"]
        lines += [f"  line {n}: {reason}" for n, reason in self.invalid[:show]]
        if len(self.invalid) > show:
            lines.append(f"  ... and {len(self.invalid) - show} more")
        return "\n".join(lines)


def produce_lines(producer: EventProducer, source: Iterable[tuple[int, bytes]], pacer: Pacer,
                  progress=None) -> ProduceSummary:
    """Send every valid event of `source`, (line number, raw value) pairs as
    stream.contract.files yields them; report invalid ones with their line numbers."""
    summary = ProduceSummary()
    started = time.monotonic()
    try:
        for line in check_lines(source):
            if progress is not None:
                progress.update(1)
            if line.rejection is not None:
                summary.invalid.append((line.number, line.rejection.reason))
                continue
            pacer.wait(_ts(line.value) if pacer.speedup else None)
            producer.send_raw(line.key, line.value)
            summary.sent += 1
    finally:
        producer.flush()
        summary.seconds = time.monotonic() - started
    return summary


def produce_items(producer: EventProducer, source: Iterable[tuple[int, bytes]], progress=None) -> ProduceSummary:
    """Send every valid catalogue record of `source` (stream.contract.items: items and user
    profiles; key = stream.contract.items.record_key); report invalid ones with their line
    numbers, as produce_lines does events."""
    summary = ProduceSummary(what="catalogue records")
    started = time.monotonic()
    try:
        for number, value in source:
            if progress is not None:
                progress.update(1)
            record = parse_record(value)
            if isinstance(record, Rejection):
                summary.invalid.append((number, record.reason))
                continue
            producer.send_raw(record_key(orjson.loads(value)).encode(), value)
            summary.sent += 1
    finally:
        producer.flush()
        summary.seconds = time.monotonic() - started
    return summary


def _ts(value: bytes) -> int | None:
    ts = orjson.loads(value).get("ts")
    return ts if isinstance(ts, int) else None


