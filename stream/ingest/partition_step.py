"""One partition's run of event records -> what a worker must emit: the step both engines
(aiokafka and faust) call, so their histories, samples and dead letters cannot differ.

Pure apart from `load`, the store lookup of histories not yet in memory. A record is any
object with `key`, `value`, `headers`, `offset` and `timestamp` (epoch ms): aiokafka's
ConsumerRecord as it is, faust's message through stream.ingest.faust_app.FaustRecord.

- a record that cannot be decoded, validated, routed or stepped is that record's fault: it
  becomes a dead letter with the stage and the reason, never the worker's end;
- each history lives on its user's home partition (the one the key hashes to, murmur2 as
  the Java, kafka-python and aiokafka producers do); an event read elsewhere (a producer with
  another partitioner, a grown topic) is forwarded home with a header naming its source
  partition and offset, which the history remembers too (stream.contract.history);
- a history carries the offset of the last record applied to it, so a redelivered event is
  skipped (`duplicate`): state is exactly-once under at-least-once delivery.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from kafka.partitioner.default import murmur2

from stream.contract import history as hist
from stream.contract import samples
from stream.contract.events import Event, Rejection, failed, parse_event
from stream.ingest.changelog import changelog_key

FORWARDED = "unisar-forwarded-from"  # header of a forwarded event: b"PARTITION:OFFSET"


def home_partition(key: bytes, partitions: int) -> int:
    """The partition a key belongs to: Kafka's default partitioner (murmur2)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def forwarded_from(headers, partitions: int, home: int) -> tuple[int, int] | Rejection | None:
    """The (partition, offset) a forwarded event came from, None for an event produced here."""
    raw = next((v for k, v in headers or () if k == FORWARDED), None)
    if raw is None:
        return None
    try:
        partition, offset = (int(x) for x in bytes(raw).split(b":"))
    except ValueError:
        partition, offset = -1, -1
    if not (0 <= partition < partitions and partition != home and offset >= 0):
        return Rejection("route", f"a {FORWARDED} header 'PARTITION:OFFSET' from another partition",
                         repr(bytes(raw[:40])))
    return partition, offset


@dataclass
class Outcome:
    """What one partition's run produced, in record order within each list."""

    samples: list[tuple[bytes, bytes]] = field(default_factory=list)  # (key, sample)
    dead_letters: list[tuple[object, Rejection]] = field(default_factory=list)  # (record, why)
    forwards: list[tuple[int, object, list]] = field(default_factory=list)  # (home, record, headers)
    loaded: list[int] = field(default_factory=list)  # users whose history was read from the store
    counts: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, outcome) -> events

    def count(self, kind: str, outcome: str) -> None:
        self.counts[kind, outcome] = self.counts.get((kind, outcome), 0) + 1


def step_partition(partition: int, records: list, histories: dict[int, bytes],
                   load: Callable[[list[int]], list[bytes | None]], partitions: int,
                   limits: hist.Limits) -> Outcome:
    """Step `records` (one partition's, in offset order) against `histories` (user -> history
    bytes; updated in place, users not in it are loaded with `load`)."""
    out = Outcome()
    parsed: list[tuple[Event, object, tuple[int, int] | None]] = []
    for record in records:
        try:
            event, source, home = _route(record, partitions)
        except Exception as exc:  # noqa: BLE001 - one record's fault, never the worker's end
            event, source, home = failed("decode", exc), None, partition
        if isinstance(event, Rejection):
            out.dead_letters.append((record, event))
        elif home != partition:
            out.count(event.kind, "forwarded")
            origin = f"{partition}:{record.offset}" if source is None else "%d:%d" % source
            headers = [h for h in record.headers or () if h[0] != FORWARDED] + [(FORWARDED, origin.encode())]
            out.forwards.append((home, record, headers))
        else:
            parsed.append((event, record, source))

    out.loaded = list({e.user for e, _, _ in parsed if e.user not in histories})
    for user, value in zip(out.loaded, load(out.loaded)):
        histories[user] = value or hist.EMPTY

    for event, record, source in parsed:
        try:
            after, sample = samples.step(histories[event.user], event, record.offset, limits,
                                         record.timestamp, source)
        except Exception as exc:  # noqa: BLE001 - e.g. a stored history that cannot be read
            out.dead_letters.append((record, failed("step", exc)))
            continue
        if after is None:
            out.count(event.kind, "duplicate")
            continue
        histories[event.user] = after
        out.count(event.kind, "applied")
        if sample is not None:
            out.count(event.kind, "sample")
            out.samples.append((changelog_key(event.user), sample))
    return out


def _route(record, partitions: int) -> tuple[Event | Rejection, tuple[int, int] | None, int]:
    """A record's event (or why it is refused), where it was forwarded from, and its home."""
    event = parse_event(record.value, record.key)
    if isinstance(event, Rejection):
        return event, None, -1
    home = home_partition(record.key, partitions)
    source = forwarded_from(record.headers, partitions, home)
    if isinstance(source, Rejection):
        return source, None, home
    return event, source, home
