"""Every Prometheus metric alertd exports, on a registry passed in (tests use a fresh one).

`Metrics` owns the metric objects and one small method per thing that happens; the code where
it happens calls the method (ingest routes, the engine's batch hook, later the helpdesk outbox)
and never touches a metric object itself, so names, labels and buckets live in this file only.
Gauges that describe the in-memory incidents are computed at scrape time from the engine's
cache (a scrape walks it once), never maintained incrementally.

Names follow Prometheus conventions: `alertd_` prefix, base units (seconds), `_total` on
counters. The README ("Metrics") documents each one; keep it in step with `METRIC_NAMES`.
"""

from __future__ import annotations

import platform
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from alertd.gauges import GaugeKey
from alertd.model import CheckState, EventKind, Priority, Status

if TYPE_CHECKING:
    from alertd.engine import BatchStats
    from alertd.store import WriteBatch

# Results per group commit: from a lone result up to the engine's max_batch (20,000).
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000)
# A commit with synchronous=FULL is one fsync: well under a millisecond on SSD, more on disks.
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Helpdesk API calls cross the internet: tens of milliseconds to the client's timeout.
HELPDESK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# Statuses the incident gauge reports: the cache holds resolved incidents only while they may
# reopen, so a "resolved" count from it would be meaningless; resolutions are a counter instead.
GAUGE_STATUSES = (Status.PENDING, Status.OPEN, Status.RECOVERING)

# Why an ingest request was refused (label `reason` of alertd_ingest_rejected_total).
REJECT_REASONS = (
    "invalid", "unauthorized", "forbidden", "too_large", "unsupported_media", "store_unavailable"
)  # fmt: skip
# The inputs (label `source`) and the helpdesk calls whose counters start at 0 (see _zeros).
SOURCES = ("api", "nrdp", "nagios", "alertmanager")
HELPDESK_OPERATIONS = (
    "create_ticket", "update_ticket", "add_note", "view_ticket", "list_tickets", "search",
    "conversations",
)  # fmt: skip
HELPDESK_OUTCOMES = (
    "ok", "transient_error", "permanent_error", "auth_error", "timeout", "rate_limited",
)  # fmt: skip

# The inputs, as label `source` of alertd_results_late_total (at zero from the start). Only a
# time the source gives can be late (`api`, `nagios`); the others stamp results on receipt.
LATE_SOURCES = ("api", "nrdp", "nagios", "alertmanager")

# What retention deletes, as label `kind` of alertd_retention_deleted_total (`store.PurgeKind`).
RETENTION_KINDS = ("incidents", "events", "outbox")

# Every metric family this module exports, as exposed (counters with their `_total`).
METRIC_NAMES = (
    "alertd_build_info",
    "alertd_results_received_total",
    "alertd_ingest_rejected_total",
    "alertd_alertmanager_alerts_ignored_total",
    "alertd_ingest_batch_size",
    "alertd_ingest_commit_duration_seconds",
    "alertd_ingest_queued_submissions",
    "alertd_inbox_backlog_results",
    "alertd_incidents",
    "alertd_incidents_flapping",
    "alertd_incidents_suppressed",
    "alertd_incidents_acknowledged",
    "alertd_incidents_stale",
    "alertd_incidents_opened_total",
    "alertd_incidents_resolved_total",
    "alertd_incidents_reopened_total",
    "alertd_results_deduplicated_total",
    "alertd_results_late_total",
    "alertd_helpdesk_requests_total",
    "alertd_helpdesk_request_duration_seconds",
    "alertd_helpdesk_rate_limited_total",
    "alertd_outbox_pending",
    "alertd_outbox_oldest_pending_age_seconds",
    "alertd_outbox_dead_letters",
    "alertd_outbox_dead_lettered_total",
    "alertd_escalations_total",
    "alertd_config_reloads_total",
    "alertd_retention_deleted_total",
)


class _Labelled(Collector):
    """Every sample of `registry` with `labels` added: a constant label on the whole output."""

    def __init__(self, registry: CollectorRegistry, labels: dict[str, str]) -> None:
        self._registry = registry
        self._labels = labels

    def collect(self) -> Iterable[Metric]:
        for family in self._registry.collect():
            out = Metric(family.name, family.documentation, family.type, family.unit)
            for sample in family.samples:
                out.add_sample(
                    sample.name, {**sample.labels, **self._labels}, sample.value,
                    sample.timestamp, sample.exemplar,
                )  # fmt: skip
            yield out


def exposition(registry: CollectorRegistry, node: str | None) -> CollectorRegistry:
    """What /metrics serves: `registry`, with the constant label `node` when a node is named
    (several daemons on one PostgreSQL store, whose series must be told apart). A lone daemon
    on SQLite with no `server.node` keeps the label sets it always had (contract 5)."""
    if node is None:
        return registry
    served = CollectorRegistry(auto_describe=False)
    served.register(_Labelled(registry, {"node": node}))
    return served


class IncidentView(Protocol):
    """What the scrape-time gauges read: the engine, seen read-only."""

    @property
    def queued(self) -> int: ...

    # Results acknowledged from the inbox and not applied yet.
    backlog: int
    # On PostgreSQL: inputs in the shared journal not applied yet by the leader.
    journal_backlog: int

    def gauge_counts(self) -> Mapping[GaugeKey, int]:
        """Unresolved incidents by `gauge_key`, kept as the cache changes: a scrape reads a few
        hundred counters, not every incident (a million took the loop for a second)."""
        ...


class Metrics:
    """alertd's metrics on one registry. Construct once per app; call the methods below."""

    def __init__(self, registry: CollectorRegistry, *, version: str) -> None:
        self.registry = registry
        Info("alertd_build", "Version of alertd and of the Python running it.",
             registry=registry).info({"version": version,
                                      "python": platform.python_version()})  # fmt: skip

        # -- ingestion ---------------------------------------------------------------------------
        self._received = Counter(
            "alertd_results_received",
            "Check results accepted (committed to the store), by input and check state.",
            ["source", "state"],
            registry=registry,
        )
        self._received_children: dict[tuple[str, str], Counter] = {}
        self._rejected = Counter(
            "alertd_ingest_rejected",
            "Ingest requests refused whole (none of their results stored), by input and reason.",
            ["source", "reason"],
            registry=registry,
        )
        self._am_ignored = Counter(
            "alertd_alertmanager_alerts_ignored",
            "Alertmanager alerts dropped because their severity maps to ignore (info, none).",
            registry=registry,
        )
        self._batch_size = Histogram(
            "alertd_ingest_batch_size",
            "Results per group commit of the writer.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self._commit_seconds = Histogram(
            "alertd_ingest_commit_duration_seconds",
            "Time to apply one batch to the incidents and commit it durably.",
            buckets=COMMIT_BUCKETS,
            registry=registry,
        )

        # -- incident lifecycle (from the events of each committed batch) ------------------------
        self._opened = Counter(
            "alertd_incidents_opened", "Incidents opened (confirmed problems).", registry=registry
        )
        self._resolved = Counter(
            "alertd_incidents_resolved",
            "Incidents resolved (OK held for the recovery hold).",
            registry=registry,
        )
        self._reopened = Counter(
            "alertd_incidents_reopened",
            "Resolved incidents reopened by a problem within the reopen window.",
            registry=registry,
        )
        self._deduplicated = Counter(
            "alertd_results_deduplicated",
            "Problem results folded into an existing incident instead of a new one.",
            registry=registry,
        )
        self._late = Counter(
            "alertd_results_late",
            "Check results older than the newest one applied for their key: recorded in the "
            "incident's audit trail (event `late`), applied to nothing. By input.",
            ["source"],
            registry=registry,
        )
        for source in LATE_SOURCES:  # on /metrics from the start, for rate() and alerts
            self._late.labels(source)
        self._retention_deleted = Counter(
            "alertd_retention_deleted",
            "Rows deleted by retention ([store] retention): resolved incidents, their events, "
            "and delivered ticket operations. By kind.",
            ["kind"],
            registry=registry,
        )
        for purge_kind in RETENTION_KINDS:
            self._retention_deleted.labels(purge_kind)

        # -- helpdesk and outbox (issue 4 calls these) -------------------------------------------
        self._helpdesk_requests = Counter(
            "alertd_helpdesk_requests",
            "Helpdesk API calls by operation (create, update, resolve, reopen, lookup, note, "
            "ping) and outcome (ok, transient_error, permanent_error, auth_error, timeout, "
            "rate_limited).",
            ["operation", "outcome"],
            registry=registry,
        )
        self._helpdesk_seconds = Histogram(
            "alertd_helpdesk_request_duration_seconds",
            "Helpdesk API call latency by operation, whatever the outcome.",
            ["operation"],
            buckets=HELPDESK_BUCKETS,
            registry=registry,
        )
        self._rate_limited = Counter(
            "alertd_helpdesk_rate_limited",
            "HTTP 429 answers received from the helpdesk.",
            registry=registry,
        )
        self._outbox_pending = Gauge(
            "alertd_outbox_pending",
            "Outbox rows waiting for delivery to the helpdesk (dead letters excluded).",
            registry=registry,
        )
        self._outbox_oldest = Gauge(
            "alertd_outbox_oldest_pending_age_seconds",
            "Age of the oldest pending outbox row; 0 when none is pending.",
            registry=registry,
        )
        self._dead_letters = Gauge(
            "alertd_outbox_dead_letters",
            "Outbox rows that failed permanently and wait for an operator (alertd outbox retry).",
            registry=registry,
        )
        self._dead_lettered = Counter(
            "alertd_outbox_dead_lettered",
            "Outbox rows moved to the dead-letter state.",
            registry=registry,
        )
        self._escalations = Counter(
            "alertd_escalations",
            "Automatic escalation steps taken, by level (tier1, tier2, tier3, onsite, manager, "
            "director).",
            ["level"],
            registry=registry,
        )

        # -- the process ---------------------------------------------------------------------------
        self._reloads = Counter(
            "alertd_config_reloads",
            "Configuration reloads (SIGHUP) by outcome (ok, failed).",
            ["outcome"],
            registry=registry,
        )
        self._view = _IncidentCollector()
        registry.register(self._view)
        # The registry is ours, not prometheus_client's global one, so the standard process_*,
        # python_gc_* and python_info series must be added to it by hand.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        self._zeros()

    def _zeros(self) -> None:
        """Start the label sets that alert rules watch at 0: a counter that does not exist
        until its first increment makes `rate(...) == 0` ("no results") silent after a restart."""
        for source in SOURCES:
            for state in (*CheckState, "notice"):
                self._received_child(source, str(state))
            for reason in REJECT_REASONS:
                self._rejected.labels(source, reason)
        for outcome in ("ok", "failed"):
            self._reloads.labels(outcome)
        for operation in HELPDESK_OPERATIONS:
            for outcome in HELPDESK_OUTCOMES:
                self._helpdesk_requests.labels(operation, outcome)

    # -- ingestion -------------------------------------------------------------------------------

    def results_accepted(self, source: str, results: Sequence[object]) -> None:
        """`results` (from input `source`) are committed. Items without a state count as
        `state="notice"` (acknowledgements, downtimes, comments)."""
        if len(results) == 1:  # the common case: one result per request
            # A CheckState is a StrEnum: it finds the child made for its text, without str().
            self._received_child(source, getattr(results[0], "state", "notice")).inc()
            return
        tally = Tally(str(getattr(r, "state", "notice")) for r in results)
        for state, count in tally.items():
            self._received_child(source, state).inc(count)

    def _received_child(self, source: str, state: str) -> Counter:
        # labels() validates and locks on every call; a dict lookup is ~20x cheaper per request.
        key = (source, state)
        child = self._received_children.get(key)
        if child is None:
            child = self._received_children[key] = self._received.labels(source, state)
        return child

    def ingest_rejected(self, source: str, reason: str) -> None:
        """An ingest request from input `source` was refused whole; `reason` is one of
        `REJECT_REASONS`."""
        self._rejected.labels(source, reason).inc()

    def alerts_ignored(self, count: int) -> None:
        """`count` Alertmanager alerts of an accepted webhook were dropped by their severity."""
        if count:
            self._am_ignored.inc(count)

    def observe_batch(self, stats: BatchStats, write: WriteBatch) -> None:
        """One group commit succeeded: its size, its latency, and what happened to incidents."""
        if stats.results:  # timer-only commits are not ingest batches
            self._batch_size.observe(stats.results)
            self._commit_seconds.observe(stats.commit_seconds)
        for purge_kind, deleted in write.purged.items():
            if deleted:
                self._retention_deleted.labels(purge_kind.value).inc(deleted)
        for _, event in write.events:
            kind = event.kind
            if kind is EventKind.DEDUPLICATED:
                self._deduplicated.inc(event.detail.get("count", 1))
            elif kind is EventKind.OPENED:
                self._opened.inc()
            elif kind is EventKind.RESOLVED:
                self._resolved.inc()
            elif kind is EventKind.REOPENED:
                self._reopened.inc()
            elif kind is EventKind.LATE:
                self._late.labels(str(event.detail.get("source"))).inc(event.detail.get("count", 1))
            elif kind is EventKind.ESCALATED and "name" in event.detail:
                self.escalated(str(event.detail["name"]))

    def watch(self, view: IncidentView | None) -> None:
        """Compute the incident gauges from `view` at each scrape (None: stop, e.g. at exit)."""
        self._view.view = view

    # -- helpdesk and outbox ---------------------------------------------------------------------

    def helpdesk_request(self, operation: str, outcome: str, seconds: float) -> None:
        """One helpdesk API call ended: `operation` (create, update, ...), `outcome` (ok,
        transient_error, permanent_error, auth_error, timeout, rate_limited), its duration."""
        self._helpdesk_requests.labels(operation, outcome).inc()
        self._helpdesk_seconds.labels(operation).observe(seconds)

    def helpdesk_rate_limited(self) -> None:
        """The helpdesk answered 429 (count it in addition to `helpdesk_request`)."""
        self._rate_limited.inc()

    def outbox_state(self, *, pending: int, oldest_pending_age: float, dead_letters: int) -> None:
        """The dispatcher's view of the outbox table, set after each pass (seconds for age)."""
        self._outbox_pending.set(pending)
        self._outbox_oldest.set(oldest_pending_age)
        self._dead_letters.set(dead_letters)

    def dead_lettered(self, count: int = 1) -> None:
        """`count` outbox rows just moved to the dead-letter state."""
        self._dead_lettered.inc(count)

    def escalated(self, level: str) -> None:
        """An incident was escalated to `level` (tier1 ... manager, director)."""
        self._escalations.labels(level).inc()

    # -- the process -----------------------------------------------------------------------------

    def reloaded(self, ok: bool) -> None:
        """A SIGHUP reload ended, applied (`ok`) or refused."""
        self._reloads.labels("ok" if ok else "failed").inc()


class _IncidentCollector(Collector):
    """Scrape-time gauges from the engine's counts of its cache."""

    def __init__(self) -> None:
        self.view: IncidentView | None = None

    def describe(self) -> Iterable[GaugeMetricFamily]:
        # Without describe(), registering would call collect() to learn the names.
        return list(self._families())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = self._families()
        by_status, flapping, suppressed, acknowledged, stale, queued, backlog = families
        if self.view is not None:
            counts: Tally[tuple[Status, Priority]] = Tally()
            flaps = supps = acks = stales = 0
            # Synchronous on the event loop: the writer cannot change the counts meanwhile.
            for (status, priority, flap, supp, ack, stale_), n in self.view.gauge_counts().items():
                counts[status, priority] += n
                flaps += flap * n
                supps += supp * n
                acks += ack * n
                stales += stale_ * n
            # Every combination, zeros included, so that graphs and alerts never see gaps.
            for status in GAUGE_STATUSES:
                for priority in Priority:
                    by_status.add_metric([status.value, priority.value], counts[status, priority])
            flapping.add_metric([], flaps)
            suppressed.add_metric([], supps)
            acknowledged.add_metric([], acks)
            stale.add_metric([], stales)
            queued.add_metric([], self.view.queued)
            backlog.add_metric([], self.view.backlog + self.view.journal_backlog)
        yield from families

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily(
                "alertd_incidents",
                "Unresolved incidents by status (pending, open, recovering) and priority.",
                labels=["status", "priority"],
            ),
            GaugeMetricFamily("alertd_incidents_flapping", "Unresolved incidents now flapping."),
            GaugeMetricFamily(
                "alertd_incidents_suppressed",
                "Unresolved incidents suppressed (maintenance, silence, or absorbed by their "
                "host's DOWN incident).",
            ),
            GaugeMetricFamily(
                "alertd_incidents_acknowledged", "Unresolved incidents acknowledged."
            ),
            GaugeMetricFamily(
                "alertd_incidents_stale",
                "Unresolved incidents whose check stopped reporting (no data is not OK).",
            ),
            GaugeMetricFamily(
                "alertd_ingest_queued_submissions",
                "Ingest requests waiting for the writer (a growing value means the store lags).",
            ),
            GaugeMetricFamily(
                "alertd_inbox_backlog_results",
                "Results acknowledged and waiting to be applied: in the inbox (at "
                "store.inbox_backlog, ingest waits for room), or on PostgreSQL in the shared "
                "journal (accepted by any daemon, applied by the leader).",
            ),
        )
