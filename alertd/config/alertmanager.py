"""[alertmanager]: how webhook alerts map onto incident keys (labels) and states (severities)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from alertd.config.reader import _Table
from alertd.model import CheckState

# What a firing alert's severity label becomes: a check state, or None to ignore the alert.
SeverityAction = CheckState | None
SEVERITY_ACTIONS = ("CRITICAL", "WARNING", "UNKNOWN", "ignore")
# kube-prometheus's vocabulary (critical, warning, info, none); "none" is its always-firing
# Watchdog, which must not become a permanent incident, and "info" is informational.
DEFAULT_SEVERITY_MAP: Mapping[str, SeverityAction] = MappingProxyType(
    {
        "critical": CheckState.CRITICAL,
        "error": CheckState.CRITICAL,
        "warning": CheckState.WARNING,
        "info": None,
        "none": None,
    }
)


@dataclass(frozen=True, slots=True)
class AlertmanagerConfig:
    """How Alertmanager webhook alerts map onto incident keys and states."""

    # Empty: an alert is identified by its full label set, as Alertmanager's fingerprint;
    # distinct alerts then never merge. Named labels narrow the identity to them.
    key_labels: tuple[str, ...] = ()
    host_label: str = "host"
    # `web-02:9100` -> `web-02`, the name Nagios and the helpdesk know the machine by.
    strip_port: bool = True
    service_label: str = "alertname"
    severity_label: str = "severity"
    severity_map: Mapping[str, SeverityAction] = field(default_factory=lambda: DEFAULT_SEVERITY_MAP)
    unmapped_severity: SeverityAction = CheckState.UNKNOWN


def _alertmanager(t: _Table) -> AlertmanagerConfig:
    t.check_keys(
        ("key_labels", "host_label", "service_label", "severity_label", "severity_map",
         "unmapped_severity", "strip_port")
    )  # fmt: skip
    default = AlertmanagerConfig()
    key_labels = default.key_labels
    raw = t.get("key_labels", list, "an array of label names")
    if raw is not None:
        if not all(isinstance(v, str) and _LABEL_NAME.fullmatch(v) for v in raw):
            t.add("key_labels", "expected an array of Prometheus label names")
        else:
            key_labels = tuple(dict.fromkeys(raw))
    severity_map = dict(default.severity_map)
    given = t.table("severity_map")
    for severity in given.data:
        action = _severity_action(given, severity)
        if action is not _BAD:
            severity_map[severity.lower()] = action
    unmapped = _severity_action(t, "unmapped_severity", default.unmapped_severity)
    strip_port = t.get("strip_port", bool, "true or false")
    return AlertmanagerConfig(
        key_labels=key_labels,
        host_label=_label_name(t, "host_label", default.host_label),
        strip_port=default.strip_port if strip_port is None else strip_port,
        service_label=_label_name(t, "service_label", default.service_label),
        severity_label=_label_name(t, "severity_label", default.severity_label),
        severity_map=MappingProxyType(severity_map),
        unmapped_severity=default.unmapped_severity if unmapped is _BAD else unmapped,
    )


_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _label_name(t: _Table, name: str, default: str) -> str:
    value = t.get(name, str, "a label name")
    if value is None:
        return default
    if not _LABEL_NAME.fullmatch(value):
        t.add(name, f"not a Prometheus label name: {value!r}")
        return default
    return value


# Marks a severity action given but wrong (already reported); distinct from None = "ignore".
_BAD: SeverityAction = CheckState.OK


def _severity_action(t: _Table, name: str, default: SeverityAction = None) -> SeverityAction:
    """A state for a severity, None for "ignore", or `_BAD` if the value is wrong (reported)."""
    if name not in t.data:
        return default
    value = t.get(name, str, f"a string, one of {', '.join(SEVERITY_ACTIONS)}")
    if value is None:
        return _BAD
    if value.lower() == "ignore":
        return None
    if value.upper() not in SEVERITY_ACTIONS:
        t.add(name, f"expected one of {', '.join(SEVERITY_ACTIONS)}, got {value!r}")
        return _BAD
    return CheckState(value.upper())
