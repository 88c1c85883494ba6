"""The naive baseline for benchmarks/ingest.py: a faust-streaming agent that updates one
faust Table entry (rocksdb store) per event and sends one sample per event, the way the
faust documentation shows tables being used. Same pure step as the real worker.

Run by ingest.py as a subprocess: faust_naive.py BROKERS EVENTS_TOPIC SAMPLES_TOPIC N DATADIR
Prints one JSON line: {"events": N, "seconds": S} measured from the first event to the N-th.
"""
from __future__ import annotations

import os
import sys
import time

import faust
import orjson

from stream.contract import history as hist
from stream.contract import samples
from stream.contract.events import Rejection, parse_event

brokers, events_topic, samples_topic, target, datadir = sys.argv[1:6]
target = int(target)
sys.argv = [sys.argv[0], "worker", "-l", "warn"]

app = faust.App(f"naive-{os.getpid()}", broker=f"kafka://{brokers}", store="rocksdb://", datadir=datadir,
                topic_partitions=4, web_enabled=False)
events = app.topic(events_topic, key_serializer="raw", value_serializer="raw")
out = app.topic(samples_topic, key_serializer="raw", value_serializer="raw")
histories = app.Table("histories", default=bytes, key_type=bytes, value_type=bytes, partitions=4)
limits = hist.Limits()
seen = {"n": 0, "t0": 0.0}


@app.agent(events)
async def process(stream):
    async for event in stream.events():
        if not seen["n"]:
            seen["t0"] = time.perf_counter()
        parsed = parse_event(event.value, event.key)
        if not isinstance(parsed, Rejection):
            before = histories[event.key] or hist.EMPTY
            after, sample = samples.step(before, parsed, event.message.offset, limits, int(time.time() * 1000))
            if after is not None:
                histories[event.key] = after
            if sample is not None:
                await out.send(key=event.key, value=sample)
        seen["n"] += 1
        if seen["n"] == target:
            print(orjson.dumps({"events": target, "seconds": time.perf_counter() - seen["t0"]}).decode(), flush=True)
            os._exit(0)


if __name__ == "__main__":
    app.main()
