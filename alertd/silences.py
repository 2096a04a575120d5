"""Maintenance windows (silences): what they match, when they are active. Pure.

A silence matches incidents by host, service and labels (globs: the API refuses `re:`, so the
only regexes are the escaped exact names of Nagios downtimes). Every given matcher must match,
an absent one matches anything: `host = "web-01"` alone covers the host check and every
service of web-01. It is active from `starts_at` to `ends_at`
(None: until ended, as for a Nagios downtime), or, when `recurring`, during each weekly
occurrence that falls between them. The engine keeps the live silences in memory and asks
`next_change` when to look again; the store keeps them as `to_document` dicts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from types import MappingProxyType
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from alertd.durations import format_duration, parse_duration
from alertd.policy import Pattern

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAINTENANCE = "maintenance"
_REASON_ID = re.compile(r"maintenance \(silence ([0-9]+)[,)]")
_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Weekly:
    """A routine window: on `days` (0 = Monday) at `start` local time in `zone`, `duration` long."""

    days: frozenset[int]
    start: time
    duration: timedelta
    zone: ZoneInfo

    def occurrence(self, at: datetime) -> tuple[datetime, datetime] | None:
        """The occurrence (start, end) that contains `at`, or None."""
        local = at.astimezone(self.zone).date()
        for back in range(self.duration // _DAY + 2):
            day = local - back * _DAY
            if day.weekday() in self.days:
                begin = datetime.combine(day, self.start, self.zone).astimezone(UTC)
                if begin <= at < begin + self.duration:
                    return begin, begin + self.duration
        return None

    def next_start(self, after: datetime) -> datetime:
        """The first occurrence's start strictly after `after`."""
        local = after.astimezone(self.zone).date()
        for ahead in range(9):
            day = local + ahead * _DAY
            if day.weekday() in self.days:
                begin = datetime.combine(day, self.start, self.zone).astimezone(UTC)
                if begin > after:
                    return begin
        raise AssertionError("a weekly schedule has an occurrence every week")

    def as_json(self) -> dict[str, Any]:
        return {
            "days": [DAYS[d] for d in sorted(self.days)],
            "start": self.start.strftime("%H:%M"),
            "duration": format_duration(self.duration),
            "timezone": self.zone.key,
        }


@dataclass(frozen=True, slots=True)
class Silence:
    id: int
    starts_at: datetime
    ends_at: datetime | None
    author: str
    comment: str
    created_at: datetime
    host: Pattern | None = None
    service: Pattern | None = None
    labels: Mapping[str, Pattern] = field(default_factory=lambda: MappingProxyType({}))
    recurring: Weekly | None = None
    source: str = "api"  # "api", or "nagios" for one made from a DOWNTIMESTART

    @property
    def reason(self) -> str:
        """The suppression reason of the incidents it holds; `silence_id` reads it back."""
        text = f"{MAINTENANCE} (silence {self.id}, by {self.author or 'unknown'})"
        return f"{text}: {self.comment}" if self.comment else text

    def matches(self, host: str, service: str | None, labels: Mapping[str, str]) -> bool:
        if self.host is not None and not self.host.matches(host):
            return False
        if self.service is not None and not self.service.matches(service):
            return False
        return all(p.matches(labels.get(name)) for name, p in self.labels.items())

    def window(self, now: datetime) -> tuple[datetime, datetime | None] | None:
        """The active window containing `now` (end None: open-ended), or None."""
        if now < self.starts_at or (self.ends_at is not None and now >= self.ends_at):
            return None
        if self.recurring is None:
            return self.starts_at, self.ends_at
        occurrence = self.recurring.occurrence(now)
        if occurrence is None:
            return None
        begin, end = occurrence
        if self.ends_at is not None:
            end = min(end, self.ends_at)
        return max(begin, self.starts_at), end

    def is_active(self, now: datetime) -> bool:
        return self.window(now) is not None

    def next_change(self, now: datetime) -> datetime | None:
        """When `is_active` next changes after `now`; None if it never will again."""
        if self.ends_at is not None and now >= self.ends_at:
            return None
        window = self.window(now)
        if window is not None:
            return window[1]
        if self.recurring is None:
            return self.starts_at if now < self.starts_at else None
        at = max(now, self.starts_at)
        if at > now and self.recurring.occurrence(at) is not None:
            return at
        begin = self.recurring.next_start(at)
        return begin if self.ends_at is None or begin < self.ends_at else None

    def is_expired(self, now: datetime) -> bool:
        """Over for good: not active and never again."""
        return not self.is_active(now) and self.next_change(now) is None

    def state(self, now: datetime) -> str:
        if self.is_active(now):
            return "active"
        return "expired" if self.is_expired(now) else "pending"

    def expire(self, now: datetime) -> Silence:
        """This silence ended at `now` (or earlier, if it already had)."""
        if self.ends_at is not None and self.ends_at <= now:
            return self
        return replace(self, ends_at=now)


class SilenceChange(NamedTuple):
    """Engine input: store this silence (new, or changed) and apply it."""

    silence: Silence


class SilenceExpire(NamedTuple):
    """Engine input: end silence `silence_id` now."""

    silence_id: int


def first_match(
    silences: Iterable[Silence], host: str, service: str | None, labels: Mapping[str, str]
) -> Silence | None:
    """The matching silence with the lowest id (so the reason is stable), or None."""
    found = [s for s in silences if s.matches(host, service, labels)]
    return min(found, key=lambda s: s.id) if found else None


class SilenceIndex:
    """Silences by the one host they name, and the others (host a glob, or no host at all).

    Matching a result then costs the silences of its host and the general ones, not every
    silence: 10,000 Nagios host downtimes cost one dict lookup per result."""

    def __init__(self, silences: Iterable[Silence] = ()) -> None:
        self._by_host: dict[str, list[Silence]] = {}
        self._general: list[Silence] = []
        for silence in silences:
            self.add(silence)

    def add(self, silence: Silence) -> None:
        host = literal_host(silence)
        if host is None:
            self._general.append(silence)
        else:
            self._by_host.setdefault(host, []).append(silence)

    def remove(self, silence: Silence) -> None:
        """Take `silence` out (as added); costs the silences of its host, or the general ones."""
        host = literal_host(silence)
        if host is None:
            self._general.remove(silence)
            return
        named = self._by_host[host]
        named.remove(silence)
        if not named:
            del self._by_host[host]

    def first_match(
        self, host: str, service: str | None, labels: Mapping[str, str]
    ) -> Silence | None:
        """As `first_match` over every silence indexed: the lowest id among those matching."""
        named = self._by_host.get(host, ())
        if not named and not self._general:
            return None
        return first_match((*named, *self._general), host, service, labels)


def literal_host(silence: Silence) -> str | None:
    """The one host `silence` can match, or None (a glob, or no host matcher: any host)."""
    return silence.host.literal() if silence.host is not None else None


def downtime_key(silence: Silence) -> tuple[str, str | None] | None:
    """What `is_downtime_of` compares, for a Nagios downtime's silence (None for others): the
    writer indexes downtimes by it, so a DOWNTIMESTART never scans every silence."""
    if silence.source != "nagios" or silence.host is None:
        return None
    return silence.host.source, silence.service.source if silence.service else None


def downtime_key_of(host: str, service: str | None) -> tuple[str, str | None]:
    """The `downtime_key` of the silence a Nagios downtime for (host, service) creates."""
    return Pattern.exact(host).source, None if service is None else Pattern.exact(service).source


def silence_id(reason: str | None) -> int | None:
    """Which silence a suppression reason names; None if it is not a maintenance reason."""
    if reason is None or not reason.startswith(MAINTENANCE):
        return None
    match = _REASON_ID.match(reason)
    return int(match.group(1)) if match else None


def downtime_silence(
    silence_id_: int,
    host: str,
    service: str | None,
    author: str,
    comment: str,
    now: datetime,
) -> Silence:
    """The silence equivalent to a Nagios downtime: open-ended, exact host (and service).

    A host downtime covers the host's services too, as Nagios holds back service notifications
    while their host is in downtime.
    """
    return Silence(
        id=silence_id_,
        starts_at=now,
        ends_at=None,
        author=author,
        comment=comment,
        created_at=now,
        host=Pattern.exact(host),
        service=None if service is None else Pattern.exact(service),
        source="nagios",
    )


def is_downtime_of(silence: Silence, host: str, service: str | None) -> bool:
    """Whether `silence` is the one a Nagios downtime for (host, service) created."""
    wanted_service = None if service is None else Pattern.exact(service).source
    return (
        silence.source == "nagios"
        and silence.host is not None
        and silence.host.source == Pattern.exact(host).source
        and (silence.service.source if silence.service else None) == wanted_service
    )


# -- the stored / wire form ----------------------------------------------------------------------


def to_document(silence: Silence) -> dict[str, Any]:
    return {
        "id": silence.id,
        "host": silence.host.source if silence.host else None,
        "service": silence.service.source if silence.service else None,
        "labels": {name: p.source for name, p in silence.labels.items()},
        "starts_at": _ts(silence.starts_at),
        "ends_at": _ts(silence.ends_at),
        "author": silence.author,
        "comment": silence.comment,
        "created_at": _ts(silence.created_at),
        "recurring": silence.recurring.as_json() if silence.recurring else None,
        "source": silence.source,
    }


def from_document(doc: Mapping[str, Any]) -> Silence:
    """Inverse of `to_document` (for documents this module wrote: trusted)."""
    recurring = doc.get("recurring")
    ends_at = doc.get("ends_at")
    return Silence(
        id=int(doc["id"]),
        starts_at=datetime.fromisoformat(doc["starts_at"]),
        ends_at=datetime.fromisoformat(ends_at) if ends_at else None,
        author=doc["author"],
        comment=doc["comment"],
        created_at=datetime.fromisoformat(doc["created_at"]),
        host=Pattern.compile(doc["host"]) if doc.get("host") else None,
        service=Pattern.compile(doc["service"]) if doc.get("service") else None,
        labels=MappingProxyType(
            {name: Pattern.compile(src) for name, src in (doc.get("labels") or {}).items()}
        ),
        recurring=weekly(**recurring) if recurring else None,
        source=doc.get("source", "api"),
    )


def weekly(days: Iterable[str], start: str, duration: str, timezone: str) -> Weekly:
    """A Weekly from its JSON form; ValueError (or ZoneInfoNotFoundError) if wrong."""
    bad = [d for d in days if d not in DAYS]
    if bad:
        raise ValueError(f"unknown day {bad[0]!r}; use {', '.join(DAYS)}")
    span = parse_duration(duration)
    return Weekly(
        days=frozenset(DAYS.index(d) for d in days),
        start=time.fromisoformat(start),
        duration=span,
        zone=ZoneInfo(timezone),
    )


def _ts(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")
