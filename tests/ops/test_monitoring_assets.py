"""The dashboard, scrape config and alert rules in ops/ against the metrics contract
(ops/metrics.py): every series a PromQL expression selects is one the worker or the trainer
exposes, every label it matches or groups by exists on it, every alert is annotated and its
runbook section exists. Pure file parsing: no Prometheus, no Grafana, no network."""
from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import pytest
from prometheus_client.metrics import MetricWrapperBase

from model.metrics import HR_AT, NDCG_AT
from ops import metrics as m
from ops.settings import Settings

OPS = Path(__file__).resolve().parents[2] / "ops"
DASHBOARD = OPS / "dashboards" / "unisar.json"
PROMETHEUS = OPS / "prometheus" / "prometheus.yml"
ALERTS = OPS / "prometheus" / "alerts.yml"
GUIDE = OPS / "MONITORING.md"

JOBS = {"unisar-worker": Settings().metrics_port, "unisar-trainer": Settings().trainer_metrics_port}
TARGET_LABELS = {"job", "instance"}  # attached by Prometheus to every scraped series
SYNTHETIC = {"up": set()}  # series Prometheus itself writes per target
SEVERITIES = {"critical", "warning", "info"}

# Label values the contract fixes; a literal `label="value"` matcher must use one of them.
VALUE_DOMAINS = {
    ("unisar_train_loss", "task"): set(m.TASKS),
    ("unisar_train_loss", "term"): set(m.LOSS_TERMS),
    ("unisar_hr", "task"): set(m.TASKS),
    ("unisar_hr", "k"): {str(k) for k in HR_AT},
    ("unisar_hr", "mode"): set(m.MODES),
    ("unisar_ndcg", "task"): set(m.TASKS),
    ("unisar_ndcg", "k"): {str(k) for k in NDCG_AT},
    ("unisar_ndcg", "mode"): set(m.MODES),
    ("unisar_train_samples_total", "task"): set(m.TASKS),
    ("unisar_samples_total", "task"): set(m.TASKS),
    ("unisar_train_samples_skipped_total", "reason"): set(m.SKIP_REASONS),
    ("unisar_embedding_rows", "table"): set(m.ID_TABLES),
    ("unisar_embedding_rows_used", "table"): set(m.ID_TABLES),
    ("unisar_embedding_evictions_total", "table"): set(m.ID_TABLES),
}

PROMQL_FUNCTIONS = {
    # aggregation operators
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
    "quantile",
    # functions
    "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "day_of_month",
    "day_of_week", "day_of_year", "days_in_month", "delta", "deriv", "exp", "floor", "histogram_quantile",
    "holt_winters", "hour", "idelta", "increase", "irate", "label_join", "label_replace", "ln", "log2",
    "log10", "minute", "month", "predict_linear", "rate", "resets", "round", "scalar", "sgn", "sort",
    "sort_desc", "sqrt", "time", "timestamp", "vector", "year", "avg_over_time", "min_over_time",
    "max_over_time", "sum_over_time", "count_over_time", "quantile_over_time", "stddev_over_time",
    "stdvar_over_time", "last_over_time", "present_over_time",
}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2"}
NUMBER_WORDS = {"inf", "nan"}

TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<var>\$\{[^}]*\}|\$\w+|\[\[\w+\]\])
  | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=,(){}\[\]:@])
""", re.VERBOSE)


# ---- the contract: exposed series and their labels -----------------------------------------


@cache
def exposed() -> dict[str, frozenset[str]]:
    """{series name: its labels} for every series WorkerMetrics, TrainerMetrics and RankMetrics expose,
    read from the registry's own exposition (so _total, _bucket with `le`, _sum, _count and
    _created come out exactly as Prometheus will store them)."""
    registry = m.fresh_registry()
    for holder in (m.WorkerMetrics(registry), m.TrainerMetrics(registry), m.RankMetrics(registry)):
        for metric in vars(holder).values():
            # A labelled metric exposes nothing until it has a child: make one.
            if isinstance(metric, MetricWrapperBase) and metric._labelnames:
                metric.labels(*("0" for _ in metric._labelnames))
    series: dict[str, set[str]] = {}
    for family in registry.collect():
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(labels) for name, labels in series.items()}


def families() -> set[str]:
    """Family names as declared (a counter's without _total)."""
    registry = m.fresh_registry()
    m.WorkerMetrics(registry)
    m.TrainerMetrics(registry)
    m.RankMetrics(registry)
    return {family.name for family in registry.collect()}


# ---- a small PromQL reader: which series, matchers, groupings, functions -------------------


def tokens(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(expr):
        match = TOKEN.match(expr, pos)
        assert match, f"cannot read PromQL at {expr[pos:pos + 30]!r} in {expr!r}"
        if match.lastgroup != "ws":
            out.append((match.lastgroup, match.group()))
        pos = match.end()
    return out


def read_promql(expr: str) -> dict:
    """{"selectors": [(metric, [(label, op, value)])], "grouping": {labels}, "functions": {names}}.
    Ranges and subqueries ([5m], [10m:1m]) and string arguments are skipped."""
    toks = tokens(expr)
    selectors, grouping, functions = [], set(), set()
    i = 0

    def matchers(start: int) -> tuple[list, int]:
        """Read `{label op "value", ...}` from the `{` at `start`; return them and the index after `}`."""
        found, j = [], start + 1
        while toks[j][1] != "}":
            if toks[j][1] == ",":
                j += 1
                continue
            (lk, label), (_, op), (vk, value) = toks[j:j + 3]
            assert lk == "ident" and op in ("=", "!=", "=~", "!~") and vk == "string", \
                f"bad matcher near {label!r} in {expr!r}"
            found.append((label, op, value[1:-1]))
            j += 3
        return found, j + 1

    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else None
        if text == "[":
            while toks[i][1] != "]":
                i += 1
            i += 1
        elif text == "{":
            raise AssertionError(f"selector without a metric name in {expr!r}")
        elif kind != "ident":
            i += 1
        elif text in GROUPING:
            i += 1
            if nxt == "(":
                i += 1
                while toks[i][1] != ")":
                    if toks[i][0] == "ident":
                        grouping.add(toks[i][1])
                    i += 1
                i += 1
        elif text in KEYWORDS or text.lower() in NUMBER_WORDS:
            i += 1
        elif nxt in ("(", "by", "without"):  # a call, or an aggregation: sum by (le) (...)
            functions.add(text)
            i += 1
        elif nxt == "{":
            found, i = matchers(i + 1)
            selectors.append((text, found))
        else:
            selectors.append((text, []))
            i += 1
    return {"selectors": selectors, "grouping": grouping, "functions": functions}


def problems(expr: str) -> list[str]:
    """What in `expr` breaks the metrics contract (empty if nothing)."""
    contract = exposed() | {name: frozenset(labels) for name, labels in SYNTHETIC.items()}
    parsed = read_promql(expr)
    out = [f"unknown function {f}()" for f in parsed["functions"] - PROMQL_FUNCTIONS]
    if not parsed["selectors"] and "time" not in parsed["functions"]:
        out.append("selects no series")
    usable: set[str] = set(TARGET_LABELS)
    for metric, found in parsed["selectors"]:
        if metric not in contract:
            out.append(f"{metric} is not exposed by ops/metrics.py")
            continue
        labels = contract[metric] | TARGET_LABELS
        usable |= labels
        for label, op, value in found:
            if label not in labels:
                out.append(f"{metric} has no label {label!r} (has {sorted(labels)})")
            domain = VALUE_DOMAINS.get((metric, label))
            if domain and op == "=" and "$" not in value and value not in domain:
                out.append(f'{metric}{{{label}="{value}"}}: {label} is one of {sorted(domain)}')
    out += [f"groups by {label!r}, which no selected series has" for label in parsed["grouping"] - usable]
    return out


# ---- the reader itself --------------------------------------------------------------------


def test_reader_finds_series_labels_and_functions():
    parsed = read_promql('histogram_quantile(0.99, sum by (le) (rate(unisar_freshness_seconds_bucket'
                         '{job=~"$trainer_job"}[$__rate_interval]))) > 1e3 and on (job) up offset 5m')
    assert parsed["selectors"] == [("unisar_freshness_seconds_bucket", [("job", "=~", "$trainer_job")]),
                                   ("up", [])]
    assert parsed["grouping"] == {"le", "job"}
    assert parsed["functions"] == {"histogram_quantile", "sum", "rate"}
    subquery = read_promql("deriv(sum by (job) (unisar_consumer_lag)[10m:1m]) > 0")
    assert subquery["selectors"] == [("unisar_consumer_lag", [])]


@pytest.mark.parametrize(("expr", "complaint"), [
    ("rate(unisar_event_total[5m])", "unisar_event_total is not exposed"),
    ("unisar_freshness_seconds", "unisar_freshness_seconds is not exposed"),  # a histogram's family name
    ('unisar_consumer_lag{topic="x"}', "has no label 'topic'"),
    ('unisar_train_loss{term="bce"}', "term is one of"),
    ("sum by (stage) (unisar_consumer_lag)", "groups by 'stage'"),
    ("rates(unisar_events_total[5m])", "unknown function rates()"),
])
def test_reader_reports_contract_breaks(expr, complaint):
    assert any(complaint in p for p in problems(expr)), problems(expr)


def test_contract_exposes_suffixed_series():
    series = exposed()
    assert series["unisar_events_total"] == {"type", "outcome"}
    assert "le" in series["unisar_freshness_seconds_bucket"]
    assert {"unisar_freshness_seconds_sum", "unisar_freshness_seconds_count", "unisar_train_loss"} <= set(series)
    assert "unisar_events" not in series and "unisar_freshness_seconds" not in series


# ---- the dashboard ------------------------------------------------------------------------


@cache
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def all_panels() -> list[dict]:
    out = []
    for panel in dashboard()["panels"]:
        out.append(panel)
        out += panel.get("panels", [])  # a collapsed row holds its panels
    return out


def dashboard_exprs() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in all_panels() for t in p.get("targets", [])]


def test_dashboard_is_a_grafana_dashboard():
    d = dashboard()
    assert d["schemaVersion"] >= 36 and d["uid"] and d["title"]
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in all_panels()]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in all_panels():
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]) and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for t in panel["targets"]:
            assert t["datasource"] == panel["datasource"] and t["expr"].strip(), panel["title"]


def test_dashboard_exprs_keep_the_metrics_contract():
    broken = {f"{title}: {expr}": problems(expr) for title, expr in dashboard_exprs() if problems(expr)}
    assert not broken, json.dumps(broken, indent=2)


def test_dashboard_variables_query_declared_metrics():
    for var in dashboard()["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query.strip())
        assert match, f"variable {var['name']}: expected label_values(series, label), got {query!r}"
        assert not problems(f"count by ({match[2]}) ({match[1]})"), (var["name"], problems(match[1]))
        assert var["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_dashboard_charts_every_metric():
    """A metric added to ops/metrics.py without a panel is invisible to operators."""
    text = " ".join(expr for _, expr in dashboard_exprs())
    missing = {f for f in families() if not re.search(rf"\b{f}(_total|_bucket|_sum|_count)?\b", text)}
    assert not missing, f"no panel shows {sorted(missing)}"


def test_dashboard_uses_the_job_variables():
    exprs = [expr for _, expr in dashboard_exprs()]
    for expr in exprs:
        for metric, found in read_promql(expr)["selectors"]:
            assert ("job", "=~", "$worker_job") in found or ("job", "=~", "$trainer_job") in found, (metric, expr)


# ---- Prometheus configuration and alert rules ----------------------------------------------


@cache
def load_yaml(path: Path):
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict]:
    groups = load_yaml(ALERTS)["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_scrape_config_targets_the_default_ports_and_loads_the_rules():
    config = load_yaml(PROMETHEUS)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(JOBS)
    for name, port in JOBS.items():
        assert jobs[name]["static_configs"][0]["targets"] == [f"127.0.0.1:{port}"]
        assert jobs[name].get("scrape_interval", config["global"]["scrape_interval"]) == "5s"
    assert [(PROMETHEUS.parent / f).resolve() for f in config["rule_files"]] == [ALERTS.resolve()]


def test_alert_rules_are_well_formed():
    groups = load_yaml(ALERTS)["groups"]
    assert groups and all(group["name"] and group["rules"] for group in groups)
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names)), "alert names repeat"
    for rule in alert_rules():
        assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}, rule["alert"]
        assert re.fullmatch(r"(\d+(ms|[smhdwy]))+", str(rule.get("for", "0s"))), rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        annotations = rule["annotations"]
        for key in ("summary", "description", "runbook"):
            assert str(annotations.get(key, "")).strip(), f"{rule['alert']} lacks the {key} annotation"


def test_alert_exprs_keep_the_metrics_contract():
    broken = {rule["alert"]: problems(rule["expr"]) for rule in alert_rules() if problems(rule["expr"])}
    assert not broken, json.dumps(broken, indent=2)


def test_alert_job_matchers_name_scrape_jobs():
    for rule in alert_rules():
        for _, found in read_promql(rule["expr"])["selectors"]:
            for label, op, value in found:
                if label == "job":
                    assert any(re.fullmatch(value, job) if "~" in op else value == job for job in JOBS), rule["alert"]


def heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for line in markdown.splitlines():
        if match := re.match(r"#{1,6}\s+(.*)", line):
            anchors.add(re.sub(r"[^\w\- ]", "", match[1].strip().lower()).replace(" ", "-"))
    return anchors


def test_runbooks_point_to_sections_of_the_guide():
    anchors = heading_anchors(GUIDE.read_text())
    for rule in alert_rules():
        path, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert path == "ops/MONITORING.md" and anchor in anchors, (rule["alert"], rule["annotations"]["runbook"])
