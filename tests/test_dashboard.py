"""The Grafana dashboard of the monitoring overlay asks only for series the operator exports: every metric name
and every label name in its PromQL (panels' queries, template variables) and in the alert rules is checked
against the operator's own registry. The overlay provisions it as a ConfigMap Grafana's dashboard sidecar finds."""
from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Iterator

import pytest

from oscar_batch.controller.metrics import Metrics
from oscar_batch.core.ranges import Change
from test_packaging import _render

ROOT = pathlib.Path(__file__).resolve().parents[1]
OVERLAY = ROOT / "manifests" / "overlays" / "monitoring"
DASHBOARD_FILE = "oscar-batch-dashboard.json"
DASHBOARD = json.loads((OVERLAY / DASHBOARD_FILE).read_text())


def exported_series() -> dict[str, set[str]]:
    """Every sample name the operator exports (as Prometheus stores it: counters' `_total`, histograms' `_bucket`,
    `_sum`, `_count`) with its label names. A labelled metric has samples only once used, so every metric is."""
    metrics = Metrics()
    batch = metrics.batch("ns", "b")
    batch.invoked(0.1, cluster="c")
    batch.ended(Change.SUCCEEDED, seen_at=1.0, cluster="c")
    batch.ended(Change.RETRIED, seen_at=1.0, cluster="c")
    batch.problem("OscarUnavailable", cluster="c")
    batch.status_taken({"items": {"pending": 1}, "invocations": {"running": 1}, "parallelism": 1,
                        "completedItems": "", "clusters": [{"name": "c", "access": "Remote", "parallelism": 1,
                                                            "running": 1, "succeeded": 0, "reachable": True,
                                                            "message": ""}]})
    families = list(metrics.registry.collect())
    assert all(family.samples for family in families), [f.name for f in families if not f.samples]
    return {sample.name: set(sample.labels) for family in families for sample in family.samples}


EXPORTED = exported_series()

# PromQL as far as names go: strings, range and subquery brackets and Grafana's `$variables` are opaque; a
# duration is one token, so that `offset 5m` names no metric `m`.
TOKEN = re.compile(r"""
    (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<brackets>\[[^\]]*\])
  | (?P<variable>\$\{[^}]*\}|\$\w+)
  | (?P<duration>(?:\d+(?:ms|[smhdwy]))+\b)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_:][\w:]*)
  | (?P<punctuation>[(){},@])
  | (?P<operator>[-+*/%^<>!=~]+)
  | (?P<space>\s+)
""", re.VERBOSE)
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
                "quantile", "limitk", "limit_ratio"}
GROUPING = {"by", "without"}
MATCHING = {"on", "ignoring", "group_left", "group_right"}
KEYWORDS = GROUPING | MATCHING | {"bool", "and", "or", "unless", "offset", "atan2", "inf", "nan"}


def tokens(expr: str) -> list[tuple[str, str]]:
    found, at = [], 0
    while at < len(expr):
        match = TOKEN.match(expr, at)
        if match is None:
            raise ValueError(f"cannot read {expr[at:at + 20]!r} in {expr!r}")
        if match.lastgroup != "space":
            found.append((match.lastgroup, match.group()))
        at = match.end()
    return found


def groups(found: list[tuple[str, str]]) -> dict[int, int]:
    """Each opening parenthesis or brace's index → its closing one's."""
    closing, stack = {}, []
    for index, (_, text) in enumerate(found):
        if text in ("(", "{"):
            stack.append(index)
        elif text in (")", "}"):
            closing[stack.pop()] = index
    assert not stack, found
    return closing


def unknown_names(expr: str) -> list[str]:
    """What in `expr` the operator does not export: metric names, labels of a selector, `by`/`without` labels
    (checked against every metric they aggregate), `on`/`ignoring`/`group_*` labels (against every metric of the
    enclosing parentheses), `label_values(metric, label)`. Labels are checked against the metrics as exported,
    not against what an inner aggregation left of them, and labels named in strings (label_replace) are not."""
    found = tokens(expr)
    closing = groups(found)
    enclosing = {index: opening for opening, end in sorted(closing.items()) if found[opening][1] == "("
                 for index in range(opening + 1, end)}      # the innermost: it opens last
    metrics: dict[int, str] = {}
    labels: list[tuple[str, tuple[int, int], str]] = []     # label, the token range whose metrics must have it, use
    skip: set[int] = set()
    for index, (kind, text) in enumerate(found):
        following = found[index + 1][1] if index + 1 < len(found) else ""
        if index in skip or kind != "name":
            if text == "{" and (index == 0 or found[index - 1][0] != "name"):
                return [f"a selector without its metric in {expr!r}"]
            continue
        if text in GROUPING | MATCHING:
            if following != "(":
                continue                                    # group_left without labels
            end = closing[index + 1]
            if text in GROUPING:
                after_argument = found[index - 1][1] == ")"      # `sum (x) by (l)` rather than `sum by (l) (x)`
                start = next(o for o, e in closing.items() if e == index - 1) if after_argument else end + 1
                scope = (start, closing[start])
            else:
                outer = enclosing.get(index)
                scope = (outer, closing[outer]) if outer is not None else (0, len(found))
            for label_index in range(index + 2, end):
                if found[label_index][0] == "name":
                    labels.append((found[label_index][1], scope, f"{text} (…)"))
                    skip.add(label_index)
        elif text == "label_values" and following == "(":
            end = closing[index + 1]
            if found[end - 2][1] != ",":
                return [f"label_values without its metric in {expr!r}"]
            labels.append((found[end - 1][1], (index + 2, end - 2), "label_values"))
            skip.add(end - 1)
        elif following == "(" or text in KEYWORDS or (text in AGGREGATIONS and following in GROUPING):
            continue                                        # a function or an aggregation
        else:
            metrics[index] = text
            if following == "{":
                end = closing[index + 1]
                for label_index in range(index + 2, end):
                    if found[label_index][0] == "name" and found[label_index + 1][0] == "operator":
                        labels.append((found[label_index][1], (index, index + 1), "a selector"))
                        skip.add(label_index)
    unknown = [f"metric {name}" for name in metrics.values() if name not in EXPORTED]
    for label, (start, end), use in labels:
        scoped = [name for at, name in metrics.items() if start <= at <= end and name in EXPORTED]
        if not scoped and not any(start <= at <= end for at in metrics):
            unknown.append(f"label {label} in {use} over no metric")
        unknown += [f"label {label} of {name} in {use}" for name in scoped if label not in EXPORTED[name]]
    return unknown


def panels(within: dict) -> Iterator[dict]:
    for panel in within.get("panels", []):
        yield panel
        yield from panels(panel)                            # a collapsed row holds its panels


def variables() -> list[dict]:
    return DASHBOARD["templating"]["list"]


def expressions() -> list[str]:
    queries = [target["expr"] for panel in panels(DASHBOARD) for target in panel.get("targets", [])]
    for variable in variables():
        if variable["type"] == "query":
            queries += [variable["query"], variable["definition"]]
    return queries


@pytest.mark.parametrize("expr", expressions())
def test_every_dashboard_query_asks_for_metrics_and_labels_the_operator_exports(expr):
    assert unknown_names(expr) == []


def test_every_alert_asks_for_metrics_and_labels_the_operator_exports():
    rules = [rule for (kind, _, _), document in _render(OVERLAY).items() if kind == "PrometheusRule"
             for group in document["spec"]["groups"] for rule in group["rules"]]
    assert rules and {rule["alert"]: unknown_names(rule["expr"]) for rule in rules} == \
        {rule["alert"]: [] for rule in rules}


@pytest.mark.parametrize("expr, unknown", [
    ('sum by (namespace, batch, cluster) (rate(oscar_batch_invocations_total{cluster=~"$cluster|"}[5m] offset 1h))',
     []),
    ('histogram_quantile(0.9, sum by (le) (rate(oscar_batch_dispatch_seconds_bucket[$__rate_interval])))', []),
    ('max(oscar_batch_items{state="by (cluster)"}) by (state) and on (namespace) oscar_batch_slots', []),
    ("label_values(oscar_batch_cluster_reachable, cluster)", []),
    ("sum by (namespace) ((oscar_batch_items / on (state) oscar_batch_items) or oscar_batch_slots)", []),
    ("oscar_batch_itemz", ["metric oscar_batch_itemz"]),
    ("rate(oscar_batch_invocations[5m])", ["metric oscar_batch_invocations"]),          # a counter is `_total`
    ('oscar_batch_items{cluster="a"}', ["label cluster of oscar_batch_items in a selector"]),
    ("sum by (cluster) (oscar_batch_items)", ["label cluster of oscar_batch_items in by (…)"]),
    ("sum (oscar_batch_slots) without (state)", ["label state of oscar_batch_slots in without (…)"]),
    ("sum by (le) (oscar_batch_dispatch_seconds_count)", ["label le of oscar_batch_dispatch_seconds_count in by (…)"]),
    ("oscar_batch_items / on (kind) oscar_batch_slots", ["label kind of oscar_batch_items in on (…)"]),
    ('label_values(oscar_batch_items{namespace=~"$namespace"}, outcome)',
     ["label outcome of oscar_batch_items in label_values"]),
    ("label_values(batch)", ["label_values without its metric in 'label_values(batch)'"]),
    ('{__name__="oscar_batch_items"}', ["a selector without its metric in '{__name__=\"oscar_batch_items\"}'"]),
])
def test_the_checker_finds_unknown_metrics_and_labels_and_only_those(expr, unknown):
    assert unknown_names(expr) == unknown


def test_the_dashboard_takes_its_prometheus_and_batches_from_template_variables():
    assert DASHBOARD["schemaVersion"] >= 39
    by_name = {variable["name"]: variable for variable in variables()}
    assert by_name["datasource"]["type"] == "datasource" and by_name["datasource"]["query"] == "prometheus"
    for name in ("namespace", "batch", "cluster"):
        assert by_name[name]["type"] == "query"
        assert by_name[name]["definition"].startswith("label_values(") and by_name[name]["definition"].endswith(
            f", {name})")
        # All as `.*`: it matches the empty cluster of series without one, which a list of the values would not.
        assert by_name[name]["includeAll"] and by_name[name]["allValue"] == ".*"
    queried = [panel for panel in panels(DASHBOARD) if panel["type"] != "row"]
    prometheus = {"type": "prometheus", "uid": "${datasource}"}
    assert all(panel["datasource"] == prometheus and panel["targets"] and panel["description"] for panel in queried)
    assert all(target["datasource"] == prometheus for panel in queried for target in panel["targets"])
    assert all(by_name[name]["datasource"] == prometheus for name in ("namespace", "batch", "cluster"))
    assert len({panel["id"] for panel in panels(DASHBOARD)}) == len(list(panels(DASHBOARD)))


def test_the_monitoring_overlay_provisions_the_dashboard_for_grafanas_sidecar():
    [config_map] = [document for (kind, _, _), document in _render(OVERLAY).items()
                    if kind == "ConfigMap" and document["metadata"].get("labels", {}).get("grafana_dashboard")]
    # The sidecar loads every ConfigMap so labelled: a fixed name, so that a change replaces the dashboard.
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["name"] == "oscar-batch-dashboard"
    assert json.loads(config_map["data"][DASHBOARD_FILE]) == DASHBOARD
