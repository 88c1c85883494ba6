"""The monitoring stack as the real tools read it: promtool checks the scrape config and the
alert rules and runs the rules' unit tests (ops/prometheus/alerts_test.yml); the compose file
(ops/compose.yml) and Grafana's provisioning files (ops/grafana/provisioning) fit together and
point at what exists. Docker is not needed: where a compose client is installed it validates
the file too, otherwise those checks are YAML structure only. A live Prometheus scraping a
worker and a trainer: tests/integration/test_monitoring_live.py."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ops import metrics as m
from ops.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "ops"
PROMETHEUS = OPS / "prometheus" / "prometheus.yml"
ALERTS = OPS / "prometheus" / "alerts.yml"
ALERTS_TEST = OPS / "prometheus" / "alerts_test.yml"
COMPOSE = OPS / "compose.yml"
PROVISIONING = OPS / "grafana" / "provisioning"
DASHBOARD = OPS / "dashboards" / "unisar.json"

yaml = pytest.importorskip("yaml")


def load(path: Path):
    return yaml.safe_load(path.read_text())


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (Debian package `prometheus`; .ci/run installs it when it can)")
    return path


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)


# ---- promtool --------------------------------------------------------------------------------


def test_promtool_checks_the_rules_and_the_scrape_config():
    tool = promtool()
    rules = run(tool, "check", "rules", str(ALERTS))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    n_alerts = sum(len(g["rules"]) for g in load(ALERTS)["groups"])
    assert f"SUCCESS: {n_alerts} rules found" in rules.stdout, rules.stdout
    config = run(tool, "check", "config", str(PROMETHEUS))  # also checks the rule files it loads
    assert config.returncode == 0, config.stdout + config.stderr


def test_promtool_runs_the_alert_unit_tests():
    result = run(promtool(), "test", "rules", str(ALERTS_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout


def test_every_alert_has_firing_and_quiet_cases():
    """promtool only runs the cases written down: each alert needs at least one where it
    fires and one where it must not."""
    suite = load(ALERTS_TEST)
    assert [ALERTS_TEST.parent / f for f in suite["rule_files"]] == [ALERTS]
    fires, quiet = set(), set()
    for case in suite["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = {rule["alert"] for group in load(ALERTS)["groups"] for rule in group["rules"] if "alert" in rule}
    assert alerts - fires == set(), f"no case where these fire: {sorted(alerts - fires)}"
    assert alerts - quiet == set(), f"no case where these stay quiet: {sorted(alerts - quiet)}"
    assert (fires | quiet) <= alerts, f"tests of alerts that do not exist: {sorted((fires | quiet) - alerts)}"


# ---- the compose file and Grafana's provisioning ---------------------------------------------


def compose() -> dict:
    return load(COMPOSE)


def host_path(volume: str) -> tuple[Path, str]:
    """A bind mount `./src:/dst[:ro]` as (host path, container path)."""
    src, dst, *_ = volume.split(":")
    assert src.startswith("."), f"{volume}: expected a path relative to {COMPOSE.name}"
    return (COMPOSE.parent / src).resolve(), dst


def mounts(service: str) -> dict[str, Path]:
    """{container path: host path} for a service's bind mounts (named volumes left out)."""
    out = {}
    for volume in compose()["services"][service].get("volumes", []):
        if volume.startswith("."):
            src, dst = host_path(volume)
            out[dst] = src
    return out


def in_container(service: str, path: str) -> Path:
    """The host file that `path` inside the container is, through the service's bind mounts."""
    for dst, src in sorted(mounts(service).items(), key=lambda kv: -len(kv[0])):
        if path == dst or path.startswith(dst.rstrip("/") + "/"):
            return src / path[len(dst):].lstrip("/")
    raise AssertionError(f"{service}: {path} is not on any bind mount of {COMPOSE.name}")


def flag(service: str, name: str) -> str:
    for arg in compose()["services"][service]["command"]:
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{service}: no --{name}")


def test_compose_runs_prometheus_and_grafana_on_the_host_network():
    services = compose()["services"]
    assert set(services) == {"prometheus", "grafana"}
    for name, service in services.items():
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", service["image"]), f"{name}: pin an image version"
        # The processes serve /metrics on the host's loopback (metrics_addr): only a container
        # on the host's network reaches it.
        assert service["network_mode"] == "host", name
        assert "ports" not in service, f"{name}: ports do not apply with network_mode host"
        for dst, src in mounts(name).items():
            assert src.exists(), f"{name}: {src} (mounted at {dst}) does not exist"
    assert Settings().metrics_addr == "127.0.0.1"


def test_compose_prometheus_loads_the_shipped_config_and_rules():
    config = in_container("prometheus", flag("prometheus", "config.file"))
    assert config == PROMETHEUS
    for rule_file in load(PROMETHEUS)["rule_files"]:  # relative to the config, in the same mount
        assert (config.parent / rule_file).resolve() == ALERTS
    assert flag("prometheus", "web.listen-address").startswith("127.0.0.1:")


def test_scrape_targets_are_the_default_metrics_ports():
    ports = {job["job_name"]: job["static_configs"][0]["targets"] for job in load(PROMETHEUS)["scrape_configs"]}
    assert ports == {"unisar-worker": [f"127.0.0.1:{Settings().metrics_port}"],
                     "unisar-trainer": [f"127.0.0.1:{Settings().trainer_metrics_port}"]}


def test_grafana_provisioning_wires_the_data_source_and_the_dashboard():
    grafana = compose()["services"]["grafana"]
    assert in_container("grafana", "/etc/grafana/provisioning") == PROVISIONING

    sources = [s for f in sorted((PROVISIONING / "datasources").glob("*.yml")) for s in load(f)["datasources"]]
    assert len(sources) == 1
    source = sources[0]
    assert source["type"] == "prometheus" and source["access"] == "proxy" and source["isDefault"] is True
    # Grafana reaches Prometheus where compose makes it listen.
    assert source["url"] == f"http://{flag('prometheus', 'web.listen-address')}"
    scrape = load(PROMETHEUS)["global"]["scrape_interval"]
    assert source["jsonData"]["timeInterval"] == scrape  # sizes $__rate_interval

    providers = [p for f in sorted((PROVISIONING / "dashboards").glob("*.yml")) for p in load(f)["providers"]]
    assert len(providers) == 1 and providers[0]["type"] == "file"
    folder = in_container("grafana", providers[0]["options"]["path"])
    assert folder == DASHBOARD.parent and DASHBOARD in folder.glob("*.json")
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert in_container("grafana", home) == DASHBOARD
    assert grafana["environment"]["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"

    # The dashboard picks its data source through a `datasource` variable of type prometheus:
    # with nothing chosen, Grafana takes the default one provisioned above.
    import json

    variables = {v["name"]: v for v in json.loads(DASHBOARD.read_text())["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"


def test_compose_client_accepts_the_file():
    """Where a compose client is installed (Docker is not needed for `config`)."""
    if shutil.which("docker") and run("docker", "compose", "version").returncode == 0:
        cmd = ["docker", "compose"]
    elif shutil.which("docker-compose"):
        cmd = ["docker-compose"]
    else:
        pytest.skip("no docker compose or docker-compose client installed: YAML checks only")
    result = run(*cmd, "-f", str(COMPOSE), "-p", "unisar", "config", "-q")
    assert result.returncode == 0, result.stdout + result.stderr


# ---- metrics that must exist before anything happens -----------------------------------------


def test_worker_exposes_zero_dead_letters_per_stage_before_any():
    """Dashboards and alerts divide by and group these: a worker that has refused nothing
    (or read nothing) yet shows zeros, not "No data"."""
    registry = m.fresh_registry()
    m.WorkerMetrics(registry)
    for stage in m.DLQ_STAGES:
        assert registry.get_sample_value("unisar_dead_letters_total", {"stage": stage}) == 0
    for kind in m.EVENT_KINDS:
        assert registry.get_sample_value("unisar_events_total", {"type": kind, "outcome": "applied"}) == 0
        assert registry.get_sample_value("unisar_samples_total", {"task": kind}) == 0


def test_dead_letter_stages_cover_the_stream_code():
    """Every stage the worker can dead-letter with is one the metrics create up front."""
    stages = set()
    for path in (ROOT / "stream").rglob("*.py"):
        text = path.read_text()
        stages |= set(re.findall(r"""\bRejection\(\s*["'](\w+)["']""", text))
        stages |= set(re.findall(r"""\bfailed\(\s*["'](\w+)["']""", text))
    assert stages and stages <= set(m.DLQ_STAGES), sorted(stages - set(m.DLQ_STAGES))
