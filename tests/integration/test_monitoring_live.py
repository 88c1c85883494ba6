"""The monitoring assets in a real Prometheus server: it scrapes a live stream worker and a
live continual trainer on the embedded broker, loads ops/prometheus/alerts.yml, and every
expression of every panel in ops/dashboards/unisar.json returns data.

The server is the Debian package's binary (`apt-get install prometheus`; .ci/run installs it
when it can), run as our own process on a free loopback port with its storage in tmp_path.
The test skips, saying why, only where no `prometheus` binary is installed."""
from __future__ import annotations

import contextlib
import json
import math
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import orjson
import pytest
from eventgen import valid_events

from ops.broker import free_port
from ops.metrics import scrape
from ops.processes import Child
from stream.ingest.producer import EventProducer
from stream.kafka import ensure_topics_sync

pytestmark = [pytest.mark.integration, pytest.mark.slow]
yaml = pytest.importorskip("yaml")

OPS = Path(__file__).resolve().parents[2] / "ops"
DASHBOARD = OPS / "dashboards" / "unisar.json"
ALERTS = OPS / "prometheus" / "alerts.yml"
SHIPPED_CONFIG = OPS / "prometheus" / "prometheus.yml"

SCRAPE_S = 1
# What Grafana puts in place of its variables, for this 1 s scrape interval: $__rate_interval is
# max($__interval + scrape interval, 4 x scrape interval); the job selectors hold the job names.
VARIABLES = {
    "__rate_interval": f"{4 * SCRAPE_S}s",
    "__interval": f"{SCRAPE_S}s",
    "__range": "5m",
    "worker_job": "unisar-worker",
    "trainer_job": "unisar-trainer",
}
N_EVENTS = 4000
USERS = 200


def prometheus_binary() -> str:
    path = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
    if path is None:
        pytest.skip("no prometheus binary: install the Debian package `prometheus` (.ci/run tries to; "
                    "it could not here)")
    return path


def substitute(expr: str) -> str:
    """A dashboard expression with Grafana's variables ($name, ${name}, [[name]]) filled in."""
    def value(match: re.Match) -> str:
        name = match[1] or match[2] or match[3]
        assert name in VARIABLES, f"no test value for the dashboard variable ${name} in {expr!r}"
        return VARIABLES[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", value, expr)


def dashboard_exprs() -> list[tuple[str, str]]:
    panels = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        panels += [panel, *panel.get("panels", [])]  # a collapsed row holds its panels
    return [(f"{p['title']} [{t.get('refId', '?')}]", t["expr"]) for p in panels for t in p.get("targets", [])]


def scrape_config(ports: dict[str, int]) -> dict:
    """ops/prometheus/prometheus.yml as shipped, but scraping and evaluating every second,
    with each job's target on the port its process really serves, and the rules by absolute path."""
    config = yaml.safe_load(SHIPPED_CONFIG.read_text())
    config["global"].update(scrape_interval=f"{SCRAPE_S}s", scrape_timeout=f"{SCRAPE_S}s",
                            evaluation_interval=f"{SCRAPE_S}s")
    config["rule_files"] = [str((SHIPPED_CONFIG.parent / f).resolve()) for f in config["rule_files"]]
    assert config["rule_files"] == [str(ALERTS)]
    assert {job["job_name"] for job in config["scrape_configs"]} == set(ports)
    for job in config["scrape_configs"]:
        job.pop("scrape_interval", None)
        job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[job['job_name']]}"]}]
    return config


class PrometheusServer:
    """/usr/bin/prometheus with our configuration, storage and loopback port; stopped by stop()."""

    def __init__(self, binary: str, tmp: Path, targets: dict[str, int]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = tmp / "prometheus.yml"
        config.write_text(yaml.safe_dump(scrape_config(targets)))
        self.log_path = tmp / "prometheus.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc.poll() is None, f"prometheus exited with {self.proc.returncode}: {self.log()}"
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline, f"prometheus not ready after {timeout_s} s: {self.log()}"
            time.sleep(0.2)

    def api(self, path: str, **params) -> dict | list:
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:  # 400 for a bad query, with Prometheus's reason
            body = json.loads(exc.read() or b"{}") | {"http_status": exc.code}
        assert body.get("status") == "success", (path, params, body)
        return body["data"]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def produce_over(settings, events: list[dict], seconds: float) -> threading.Thread:
    """Send `events` in a background thread, spread over about `seconds`, so rates have a history."""
    chunks = 8

    def run() -> None:
        with EventProducer(settings) as producer:
            size = -(-len(events) // chunks)
            for i in range(0, len(events), size):
                for event in events[i:i + size]:
                    producer.send(event)
                producer.flush()
                time.sleep(seconds / chunks)

    thread = threading.Thread(target=run, name="produce", daemon=True)
    thread.start()
    return thread


def wait_metrics(port: int, procs: list[Child], want: dict[str, float], timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    have: dict = {}
    while time.monotonic() < deadline:
        for p in procs:
            assert p.alive(), f"the {p.command} exited with {p.proc.returncode}; see {p.log_path}"
        try:
            have = scrape(port)
        except OSError:
            have = {}
        if all(have.get(name, -math.inf) >= at_least for name, at_least in want.items()):
            return have
        time.sleep(0.3)
    raise AssertionError(f"not reached in {timeout_s} s: {want}; last scrape "
                         f"{ {n: have.get(n) for n in want} }")


SCALE_OUT_SERIES = {"unisar_trainer_rank", "unisar_trainer_world_size", "unisar_trainer_rounds_total",
                    "unisar_trainer_state_digest", "unisar_trainer_divergences_total"}


def selected(query: str) -> list[str]:
    """The metric names a PromQL expression selects (names followed by a `{` matcher)."""
    return re.findall(r"\b([a-z_:][a-z0-9_:]*)\{", query)


def finite(result: list[dict]) -> bool:
    """Whether an instant (vector) or range (matrix) result holds a finite number."""
    for series in result:
        points = series.get("values") or [series["value"]]
        if any(math.isfinite(float(v)) for _, v in points):
            return True
    return False


def test_prometheus_scrapes_loads_the_rules_and_every_panel_has_data(settings, worker_factory, tmp_path):
    binary = prometheus_binary()
    events = valid_events(N_EVENTS, users=USERS, seed=11)
    heldout = tmp_path / "events.jsonl"  # the trainer evaluates on its latest 10% ("offline")
    heldout.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    ensure_topics_sync(settings)

    with contextlib.ExitStack() as running:  # stopped in reverse order, also on failure
        worker = worker_factory(settings)
        running.callback(worker.stop)
        trainer_port = free_port()
        # a challenger beside the champion, so the side-by-side panels have data too
        trainer = Child("train", settings, tmp_path / "trainer.log", trainer_metrics_port=trainer_port,
                        models="unisar,popularity", checkpoint_dir=tmp_path / "ckpt", batch_size=128, max_wait_s=0.5, checkpoint_every_steps=4,
                        heldout=heldout, offline_every_steps=6, n_items=4096, n_users=512, n_words=1024)
        running.callback(trainer.stop)
        server = PrometheusServer(binary, tmp_path, {"unisar-worker": worker.metrics_port,
                                                     "unisar-trainer": trainer_port})
        running.callback(server.stop)
        check_live_system(server, settings, events, worker, trainer, trainer_port)
    assert (trainer.proc.returncode, worker.proc.returncode) == (0, 0), \
        f"a clean stop exits 0: see {trainer.log_path} and {worker.log_path}"


def check_live_system(server, settings, events, worker, trainer, trainer_port) -> None:
    """Produce the events while Prometheus scrapes, then read its API: targets, rules, every
    dashboard expression and the job selectors."""
    server.wait_ready()
    started = time.time()
    worker.wait_assigned()
    producer = produce_over(settings, events, seconds=6)
    wait_metrics(trainer_port, [worker, trainer], timeout_s=120, want={
        "unisar_train_samples_total": 2000, "unisar_checkpoints_total": 1,
        "unisar_offline_eval_seconds_count": 1})
    producer.join(30)
    time.sleep(3 * SCRAPE_S + 1)  # a few scrapes and rule evaluations after the last change
    now = time.time()

    targets = server.api("targets")["activeTargets"]
    assert sorted((t["labels"]["job"], t["health"]) for t in targets) == [
        ("unisar-trainer", "up"), ("unisar-worker", "up")], targets

    groups = server.api("rules", type="alert")["groups"]
    declared = {g["name"]: [r["alert"] for r in g["rules"]] for g in yaml.safe_load(ALERTS.read_text())["groups"]}
    assert {g["name"]: [r["name"] for r in g["rules"]] for g in groups} == declared
    bad = [(r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] != "ok"]
    assert not bad, f"rules that do not evaluate: {bad}"
    firing = [r["name"] for g in groups for r in g["rules"] if r["state"] == "firing"]
    assert not firing, f"alerts firing on a healthy system: {firing}"

    # The scale-out series exist only on ranks of `unisar train --world-size W` (W > 1); the
    # panel says so. Should a one-process trainer export them too, they must have data.
    one_process = "unisar_trainer_world_size" not in scrape(trainer_port)
    empty, no_number, not_now = {}, {}, {}
    for title, expr in dashboard_exprs():
        query = substitute(expr)
        instant = server.api("query", query=query, time=now)["result"]  # valid PromQL, or it raises
        if one_process and set(selected(query)) <= SCALE_OUT_SERIES:
            continue
        history = server.api("query_range", query=query, start=started, end=now, step=SCRAPE_S)["result"]
        if not history:
            empty[title] = query
        elif not finite(history):
            no_number[title] = query
        elif not instant:
            not_now[title] = query
    assert not empty, "dashboard expressions without data:\n" + json.dumps(empty, indent=1)
    assert not no_number, "dashboard expressions never a finite number:\n" + json.dumps(no_number, indent=1)
    assert not not_now, "dashboard expressions without data now (a stat panel's value):\n" + json.dumps(
        not_now, indent=1)

    # The `Worker job` and `Trainer job` selectors: label_values(series, job) lists our jobs.
    for var in json.loads(DASHBOARD.read_text())["templating"]["list"]:
        if var["type"] == "query":
            series, label = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["definition"]).groups()
            values = server.api(f"label/{label}/values", **{"match[]": series})
            assert VARIABLES[var["name"]] in values, (var["name"], values)
