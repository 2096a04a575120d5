"""Alertmanager webhook payloads (version 4, docs/protocols.md 6.1) -> check results. Pure.

Each alert becomes one HARD result (Prometheus's `for:` has already confirmed it):
- **identity**: by default an alert's full label set, as Alertmanager's own fingerprint, so
  distinct alerts (`DiskFull` on `/var` and on `/home`) never merge; `key_labels` narrows it
  to the labels the user names.
- **host**: the `host_label` (default `host`) if the alert has it, else `instance` (with
  `key_labels`: the first other key label it has), else `alertmanager`; a trailing `:port` is
  dropped (`strip_port`, default on) so `web-02:9100` meets Nagios's `web-02`.
- **service**: the `service_label` (default `alertname`), then the other identifying labels,
  sorted, readably: `DiskFull (mountpoint=/var, severity=critical)`.
- **state**: `resolved` -> OK; `firing` -> the `severity_label`'s value through
  `severity_map` (critical -> CRITICAL, warning -> WARNING; info and none are ignored: none is
  kube-prometheus's always-firing Watchdog), other or missing -> `unmapped_severity`.
- **output**: the `summary` annotation (else `description`, else the alert name);
  `description` is the long output. Labels are kept as labels, annotations as
  `annotations.<name>`, plus `alertmanager.fingerprint` and `alertmanager.generator_url`.

Unknown extra keys are allowed (newer Alertmanagers add fields); `endsAt` may be the zero time.
Times are not used: a result is stamped when alertd receives it. A webhook is a change report:
Alertmanager sends when a group changes (and repeats), not every evaluation.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from alertd.config import AlertmanagerConfig
from alertd.errors import InputError, ItemProblem
from alertd.model import CheckResult, CheckState, Reporting, StateType
from connectors.plugin_output import MAX_NAME, MAX_TEXT, BadValue, name

SOURCE = "alertmanager"
DEFAULT_HOST = "alertmanager"
# Prometheus's conventional target label: `host:port` of the scraped exporter.
INSTANCE_LABEL = "instance"
STATUSES = ("firing", "resolved")
# `host:9100` or `[::1]:9100`; a bare IPv6 address (`fe80::1`) has no port to strip.
_PORT = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<name>[^:\[\]]+)):\d+$")
# A label value shown bare in a service name unless it could be misread there.
_PLAIN_VALUE = re.compile(r"[^\s,()=\"']+")


def parse_webhook(
    payload: Any, config: AlertmanagerConfig, now: datetime, max_items: int
) -> tuple[list[CheckResult], int]:
    """(results, number of alerts ignored by severity); InputError names every bad alert."""
    if not isinstance(payload, dict):
        raise InputError("expected an Alertmanager webhook object (payload version 4)")
    version = payload.get("version", "4")
    if version != "4":
        raise InputError(f'unsupported webhook payload version {version!r}; expected "4"')
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise InputError("alerts: expected an array of alerts")
    if len(alerts) > max_items:
        raise InputError(f"too many alerts in one request: {len(alerts)} > {max_items}")
    results: list[CheckResult] = []
    problems: list[ItemProblem] = []
    ignored = 0
    for index, alert in enumerate(alerts):
        try:
            result = _alert(alert, config, now)
        except BadValue as bad:
            problems.append(ItemProblem(index, bad.field, bad.message))
            continue
        if result is None:
            ignored += 1
        else:
            results.append(result)
    if problems:
        invalid = len({p.index for p in problems})
        noun = "alert" if invalid == 1 else "alerts"
        raise InputError(f"{invalid} invalid {noun}; nothing was stored", problems)
    return results, ignored


def _alert(alert: Any, config: AlertmanagerConfig, now: datetime) -> CheckResult | None:
    if not isinstance(alert, dict):
        raise BadValue("", "expected an alert object")
    status = alert.get("status")
    if status not in STATUSES:
        raise BadValue("status", f"expected firing or resolved, got {status!r}")
    labels = _strings(alert.get("labels"), "labels")
    if not labels:
        raise BadValue("labels", "an alert needs at least one label")
    annotations = _strings(alert.get("annotations") or {}, "annotations")
    state = _state(status, labels, config)
    if state is None:
        return None
    host, service = _key(labels, config)
    summary = annotations.get("summary") or annotations.get("description") or ""
    description = annotations.get("description", "") if annotations.get("summary") else ""
    kept = dict(labels)
    kept.update((f"annotations.{k}", v[:MAX_TEXT]) for k, v in annotations.items())
    for field, label in (("fingerprint", "fingerprint"), ("generatorURL", "generator_url")):
        value = alert.get(field)
        if isinstance(value, str) and value:
            kept[f"alertmanager.{label}"] = value
    return CheckResult(
        host=host,
        service=service,
        state=state,
        timestamp=now,
        output=(summary or labels.get("alertname", service)).strip()[:MAX_TEXT],
        long_output=description.strip()[:MAX_TEXT],
        state_type=StateType.HARD,
        labels=kept,
        source=SOURCE,
        reporting=Reporting.CHANGE,
    )


def _strings(value: Any, field: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise BadValue(field, "expected an object of strings")
    for key, item in value.items():
        if not isinstance(item, str):
            raise BadValue(f"{field}.{key}", "expected a string")
    return value


def _state(status: str, labels: Mapping[str, str], config: AlertmanagerConfig) -> CheckState | None:
    if status == "resolved":
        return CheckState.OK
    severity = labels.get(config.severity_label, "").strip().lower()
    if severity in config.severity_map:
        return config.severity_map[severity]
    return config.unmapped_severity


def _key(labels: Mapping[str, str], config: AlertmanagerConfig) -> tuple[str, str]:
    service_label = config.service_label if config.service_label in labels else "alertname"
    service = name(labels.get(service_label), f"labels.{config.service_label}")
    if config.key_labels:
        identity = [k for k in config.key_labels if k != service_label and labels.get(k)]
        candidates = [config.host_label, *identity[:1]]
    else:  # the full label set, as Alertmanager's fingerprint
        identity = [k for k in labels if k != service_label]
        candidates = [config.host_label, INSTANCE_LABEL]
    host_from = next((k for k in candidates if labels.get(k)), "")
    host = name(labels[host_from], f"labels.{host_from}") if host_from else DEFAULT_HOST
    if config.strip_port:
        host = _without_port(host)
    rest = sorted(k for k in identity if k != host_from)
    if rest:
        service = _service_name(service, [(k, labels[k]) for k in rest])
    return host, service


def _without_port(host: str) -> str:
    match = _PORT.match(host)
    if match is None:
        return host
    return match.group("v6") or match.group("name")


def _service_name(base: str, pairs: list[tuple[str, str]]) -> str:
    """`DiskFull (mountpoint=/var, severity=critical)`: readable in a ticket subject, and one
    name per label set. A name too long for a key keeps its start and a digest of the whole."""
    shown = ", ".join(f"{k}={_shown(v)}" for k, v in pairs)
    full = f"{base} ({shown})"
    if len(full) <= MAX_NAME:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:12]
    return f"{full[: MAX_NAME - 16]}… #{digest})"


def _shown(value: str) -> str:
    return value if _PLAIN_VALUE.fullmatch(value) else json.dumps(value, ensure_ascii=False)
