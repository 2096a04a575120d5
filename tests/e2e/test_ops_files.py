"""The operations files shipped beside the code: alert rules, dashboard, metric docs.

They name metrics by string, so a renamed metric would silently break an alert; these tests
tie every name they use to `alertd.metrics.METRIC_NAMES` and to the README's table.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from alertd.metrics import METRIC_NAMES

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "config" / "prometheus-rules.yml"
DASHBOARD = ROOT / "config" / "grafana-dashboard.json"
SERIES_SUFFIXES = ("_bucket", "_count", "_sum")


def metric_names(expr: str) -> set[str]:
    """alertd metric families named in a PromQL expression (histogram series folded)."""
    names = set()
    for name in re.findall(r"\balertd_[a-z0-9_]+", expr):
        for suffix in SERIES_SUFFIXES:
            if name.endswith(suffix) and name.removesuffix(suffix) in METRIC_NAMES:
                name = name.removesuffix(suffix)
        names.add(name)
    return names


def test_alert_rules_are_well_formed_and_use_real_metrics() -> None:
    """Each rule has an alert name, expr, severity and summary; every metric exists."""
    doc = yaml.safe_load(RULES.read_text())
    rules: list[dict[str, Any]] = [r for g in doc["groups"] for r in g["rules"]]
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    assert {"AlertdOutboxStuck", "AlertdHelpdeskAuthFailing", "AlertdDeadLetters",
            "AlertdIngestErrors"} <= set(names)  # fmt: skip
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert metric_names(rule["expr"]) <= set(METRIC_NAMES), rule["alert"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_alert_rules_pass_promtool() -> None:
    result = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_is_grafana_json_over_real_metrics() -> None:
    """Valid JSON; every panel has a unique id and a place; queries name existing metrics."""
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    used: set[str] = set()
    for panel in panels:
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        for target in panel.get("targets", []):
            used |= metric_names(target["expr"])
    assert used <= set(METRIC_NAMES)
    # And every metric has a panel somewhere.
    assert set(METRIC_NAMES) - used == set()


def test_readme_documents_every_metric() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in METRIC_NAMES if f"`{name}`" not in readme]
    assert missing == []
