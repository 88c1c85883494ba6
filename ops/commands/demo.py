"""`unisar demo`: the whole ingestion path on this machine, with nothing to install or start.

It starts the embedded broker, creates the topics, simulates events (or takes a file),
runs a stream worker as its own process, replays the events into Kafka with a progress
bar, waits until the worker has committed them all, prints what happened and writes a
summary to --out. Everything it started stops on exit, Ctrl-C and errors included.
"""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the pipeline end to end on the embedded broker",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=100_000, help="simulated events (default 100000)")
    p.add_argument("--users", type=int, default=5_000, help="simulated users (default 5000)")
    p.add_argument("--file", help="replay this event file (JSONL) instead of simulating")
    p.add_argument("--rate", type=float, help="events per second to replay at (default: as fast as possible)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/demo", help="directory for events, state and the summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from tqdm import tqdm

    from ops.broker import EmbeddedBroker, free_port
    from ops.commands._common import fail
    from ops.metrics import scrape
    from ops.settings import Settings
    from stream.kafka import ensure_topics_sync
    from stream.producer import EventProducer, Pacer, produce_lines

    if args.events <= 0 or args.users <= 0:
        fail(f"--events and --users must be positive, got {args.events} and {args.users}")
    if args.rate is not None and args.rate <= 0:
        fail(f"--rate must be positive, got {args.rate}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.file:
        events_path = Path(args.file)
        if not events_path.is_file():
            fail(f"--file: expected an event file, found nothing at {events_path}")
    else:
        from stream.sources.jsonl import write_events
        from stream.sources.simulator import SimConfig, generate

        events_path = out / "events.jsonl"
        config = SimConfig(users=args.users, seed=args.seed)
        write_events(generate(config, args.events), events_path, check_every=100,
                     desc="simulating events", total=args.events)

    state_dir = out / f"state-{int(time.time())}"  # the embedded broker starts empty each run
    worker_log = out / "worker.log"
    with EmbeddedBroker(log_path=out / "broker.log") as broker:
        settings = Settings(brokers=broker.bootstrap, state_dir=str(state_dir), metrics_port=free_port())
        ensure_topics_sync(settings)
        env = {**os.environ, **{f"UNISAR_{k.upper()}": str(v) for k, v in settings.model_dump().items()
                                if v is not None}}
        with open(worker_log, "ab") as log:
            worker = subprocess.Popen([sys.executable, "-m", "ops.cli", "worker"], env=env,
                                      stdout=log, stderr=subprocess.STDOUT)
        try:
            print(f"broker {broker.bootstrap}; worker pid {worker.pid}, metrics "
                  f"http://127.0.0.1:{settings.metrics_port}/metrics, log {worker_log}")
            with EventProducer(settings) as producer, open(events_path, "rb") as source, \
                    tqdm(desc="producing", unit="ev") as bar:
                produced = produce_lines(producer, source, Pacer(args.rate), bar)
            started = time.monotonic()
            with tqdm(total=produced.sent + len(produced.invalid), desc="worker committed", unit="ev") as bar:
                done = 0.0
                while done < produced.sent:
                    if worker.poll() is not None:
                        fail(f"the worker exited with code {worker.returncode}; see {worker_log}", 1)
                    try:
                        metrics = scrape(settings.metrics_port)
                    except OSError:
                        metrics = {}
                    done = metrics.get("unisar_event_processing_seconds_count", 0.0)
                    bar.update(int(done) - bar.n)
                    time.sleep(0.2)
        finally:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(30)
                except subprocess.TimeoutExpired:
                    worker.kill()

    summary = {
        "events_file": str(events_path), "events_sent": produced.sent, "invalid_lines": len(produced.invalid),
        "produce_seconds": round(produced.seconds, 2), "wait_after_produce_seconds": round(time.monotonic() - started, 2),
        "applied": metrics.get("unisar_events_total", 0.0) - metrics.get("unisar_dead_letters_total", 0.0),
        "dead_letters": metrics.get("unisar_dead_letters_total", 0.0),
        "samples": metrics.get("unisar_samples_total", 0.0), "users_stored": metrics.get("unisar_users_stored", 0.0),
        "state_dir": str(state_dir), "broker": broker.bootstrap, "worker_pid": worker.pid,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(produced.render(show=5))
    print(f"worker: {summary['applied']:,.0f} events applied, {summary['samples']:,.0f} training samples, "
          f"{summary['dead_letters']:,.0f} dead letters, ~{summary['users_stored']:,.0f} users in {state_dir}")
    with open(events_path, "rb") as fh:
        first_user = json.loads(fh.readline()).get("user", "?")
    print(f"summary written to {out / 'summary.json'}; try: unisar inspect --state-dir {state_dir} --user {first_user}")
    return 0
