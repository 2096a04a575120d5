"""The rules the pure lifecycle follows: thresholds, timers, the priority matrix and impact rules.

Built from configuration by `alertd.config`, consumed by `alertd.lifecycle` and
`alertd.priority`. Pure data; the defaults here are the documented defaults.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from alertd.model import CheckState, Level, Priority

H, M, L = Level.HIGH, Level.MEDIUM, Level.LOW

# ITIL impact x urgency matrix (issue "Core", section 4).
DEFAULT_MATRIX: Mapping[Level, Mapping[Level, Priority]] = {
    H: {H: Priority.URGENT, M: Priority.HIGH, L: Priority.MEDIUM},
    M: {H: Priority.HIGH, M: Priority.MEDIUM, L: Priority.LOW},
    L: {H: Priority.MEDIUM, M: Priority.LOW, L: Priority.LOW},
}

DEFAULT_URGENCY: Mapping[CheckState, Level] = {
    CheckState.CRITICAL: H,
    CheckState.DOWN: H,
    CheckState.WARNING: M,
    CheckState.UNREACHABLE: M,
    CheckState.UNKNOWN: L,
}


@dataclass(frozen=True, slots=True)
class Pattern:
    """A glob (`web-*`) or, written `re:...`, a regular expression; compiled once at load."""

    source: str
    regex: re.Pattern[str]

    def matches(self, value: str | None) -> bool:
        return value is not None and self.regex.fullmatch(value) is not None

    @classmethod
    def compile(cls, source: str) -> Pattern:
        """Compile a glob or `re:<regex>`; ValueError names what is wrong."""
        if source in ("", "re:"):
            raise ValueError("empty pattern")
        regex = source[3:] if source.startswith("re:") else fnmatch.translate(source)
        try:
            return cls(source, re.compile(regex))
        except re.error as exc:
            raise ValueError(f"invalid regular expression {regex!r}: {exc}") from exc

    def literal(self) -> str | None:
        """The one value this pattern matches, if it matches exactly one (a glob without
        wildcards, or the escaped name `exact` makes); None for a real pattern."""
        if self.source.startswith("re:"):
            body = self.source[3:]
            value = re.sub(r"\\(.)", r"\1", body, flags=re.DOTALL)
            return value if re.escape(value) == body else None
        return None if any(c in self.source for c in "*?[]") else self.source

    @classmethod
    def exact(cls, value: str) -> Pattern:
        """A pattern matching exactly `value`, whatever glob characters it holds."""
        plain = not any(c in value for c in "*?[]") and not value.startswith("re:")
        return cls.compile(value if plain else f"re:{re.escape(value)}")


@dataclass(frozen=True, slots=True)
class ImpactRule:
    """First matching rule gives the impact. Every given matcher must match (AND)."""

    impact: Level
    name: str
    host: Pattern | None = None
    service: Pattern | None = None
    labels: Mapping[str, Pattern] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PriorityPolicy:
    matrix: Mapping[Level, Mapping[Level, Priority]] = field(default_factory=lambda: DEFAULT_MATRIX)
    urgency: Mapping[CheckState, Level] = field(default_factory=lambda: DEFAULT_URGENCY)
    rules: tuple[ImpactRule, ...] = ()
    default_impact: Level = Level.MEDIUM


STALE_FACTOR = 3
STALE_MINIMUM = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class LifecyclePolicy:
    # Consecutive non-OK results that confirm a problem when the source gives no state type.
    open_after: int = 1
    recovery_hold: timedelta = timedelta(minutes=5)
    reopen_window: timedelta = timedelta(hours=24)
    # Nagios's sample nagios.cfg thresholds (percent state change), with hysteresis.
    flap_low: float = 5.0
    flap_high: float = 20.0
    # How many state changes an incident keeps in its history.
    history_limit: int = 50
    # An open incident whose stream has sent nothing for this long is stale (alertd.staleness);
    # None = "auto": STALE_FACTOR x its interval, at least STALE_MINIMUM.
    stale_after: timedelta | None = None
    priority: PriorityPolicy = field(default_factory=PriorityPolicy)
