"""Silences, staleness and heartbeats on the pure side: matching, weekly windows, timers."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from alertd import heartbeats
from alertd.lifecycle import due_at, mark_stale, stale_deadline, tick
from alertd.model import CheckState, EventKind, Status
from alertd.policy import LifecyclePolicy, Pattern
from alertd.silences import (
    Silence,
    SilenceIndex,
    downtime_silence,
    first_match,
    from_document,
    is_downtime_of,
    silence_id,
    to_document,
    weekly,
)
from tests.support.lifecycle import HOLD, MINUTE, OK, STREAM, T0, kinds, opened, step

HOUR = timedelta(hours=1)


def silence(**fields: object) -> Silence:
    base = Silence(id=7, starts_at=T0, ends_at=T0 + HOUR, author="alice", comment="swap disks",
                   created_at=T0)  # fmt: skip
    return replace(base, **fields)  # type: ignore[arg-type]  # test helper: fields vary


def test_matchers_are_anded_and_an_absent_one_matches_anything() -> None:
    """A host-only silence covers the host check and every service; globs, `re:` and labels
    must all match the whole value."""
    web = silence(host=Pattern.compile("web-*"))
    assert web.matches("web-01", None, {}) and web.matches("web-01", "HTTP", {})
    assert not web.matches("db-01", "HTTP", {})
    http = silence(host=Pattern.compile("web-*"), service=Pattern.compile("re:HTTPS?"))
    assert http.matches("web-02", "HTTPS", {}) and not http.matches("web-02", "HTTPS cert", {})
    assert not http.matches("web-02", None, {})  # a service matcher never matches a host check
    prod = silence(labels={"hostgroups": Pattern.compile("*prod*")})
    assert prod.matches("x", "y", {"hostgroups": "linux,prod-eu"})
    assert not prod.matches("x", "y", {})


def test_a_one_shot_window_is_active_between_start_and_end_and_then_over() -> None:
    """Before the start it is pending, inside active until `ends_at`, then expired for good."""
    s = silence(starts_at=T0 + HOUR, ends_at=T0 + 2 * HOUR)
    assert s.state(T0) == "pending" and s.next_change(T0) == T0 + HOUR
    assert s.state(T0 + HOUR) == "active" and s.next_change(T0 + HOUR) == T0 + 2 * HOUR
    assert s.state(T0 + 2 * HOUR) == "expired" and s.next_change(T0 + 2 * HOUR) is None
    cut = s.expire(T0 + 90 * MINUTE)
    assert cut.ends_at == T0 + 90 * MINUTE and cut.is_expired(T0 + 90 * MINUTE)
    assert cut.expire(T0 + 2 * HOUR) is cut


def test_weekly_windows_follow_local_time_across_midnight_and_dst() -> None:
    """Saturday 23:00 Berlin for 3h: covers Sunday 01:00 local; the window across the change
    to summer time lasts 3 real hours; after it the start is 23:00 summer time (21:00 UTC)."""
    s = silence(
        starts_at=datetime(2026, 1, 1, tzinfo=UTC),
        ends_at=None,
        recurring=weekly(["sat"], "23:00", "3h", "Europe/Berlin"),
    )
    berlin = ZoneInfo("Europe/Berlin")
    winter = datetime(2026, 3, 22, 1, 0, tzinfo=berlin)  # Sunday, CET
    assert s.window(winter) == (
        datetime(2026, 3, 21, 22, 0, tzinfo=UTC),
        datetime(2026, 3, 22, 1, 0, tzinfo=UTC),
    )
    after = datetime(2026, 3, 22, 1, 0, tzinfo=UTC)
    assert not s.is_active(after)
    across = datetime(2026, 3, 28, 22, 0, tzinfo=UTC)  # Saturday 23:00 CET; DST starts at 01:00
    assert s.next_change(after) == across
    assert s.window(across) == (across, across + 3 * HOUR)  # until 04:00 CEST
    assert s.next_change(across + 3 * HOUR) == datetime(2026, 4, 4, 21, 0, tzinfo=UTC)
    assert not s.is_active(datetime(2026, 3, 25, 12, 0, tzinfo=UTC))  # a Wednesday


def test_a_weekly_window_is_clipped_by_the_silence_bounds() -> None:
    """`starts_at` inside an occurrence opens the window then; `ends_at` cuts it short and
    ends the schedule."""
    schedule = weekly(["mon", "tue", "wed", "thu", "fri"], "09:00", "8h", "UTC")
    s = silence(starts_at=T0 + HOUR, ends_at=T0 + 24 * HOUR, recurring=schedule)  # T0: Wed 12:00
    assert s.next_change(T0) == T0 + HOUR
    assert s.window(T0 + HOUR) == (T0 + HOUR, T0 + 5 * HOUR)
    assert s.next_change(T0 + 5 * HOUR) == T0 + 21 * HOUR  # Thursday 09:00
    assert s.window(T0 + 23 * HOUR) == (T0 + 21 * HOUR, T0 + 24 * HOUR)
    assert s.is_expired(T0 + 24 * HOUR)


def test_documents_round_trip_and_reasons_name_their_silence() -> None:
    """What the store keeps reads back equal; a suppression reason leads back to its silence."""
    s = silence(
        host=Pattern.compile("web-*"),
        labels={"env": Pattern.compile("re:prod|staging")},
        recurring=weekly(["sun"], "02:00", "2h", "Europe/Berlin"),
    )
    assert from_document(to_document(s)) == s
    assert s.reason == "maintenance (silence 7, by alice): swap disks"
    assert silence_id(s.reason) == 7
    assert silence_id("host web-01 is DOWN (incident 3)") is None
    assert silence_id("maintenance (silence 12, by x): (silence 3, ...)") == 12


def test_a_nagios_downtime_is_an_exact_open_ended_silence() -> None:
    """Names with glob characters match only themselves; the key finds its silence again."""
    s = downtime_silence(3, "web[1]", "HTTP *", "bob", "patching", T0)
    assert s.ends_at is None and s.is_active(T0 + 1000 * HOUR)
    assert s.matches("web[1]", "HTTP *", {}) and not s.matches("web1", "HTTP x", {})
    assert is_downtime_of(s, "web[1]", "HTTP *") and not is_downtime_of(s, "web[1]", None)


def test_a_stream_that_goes_quiet_is_stale_after_three_intervals_or_the_configured_time() -> None:
    """The interval is smoothed from the gaps between a stream's results; auto staleness is 3x
    it (at least 5m); a fixed `stale_after` applies to a stream even before any interval is
    known (never past 9999). Silence counts from the daemon's start at the earliest."""
    incident = opened(reporting=STREAM)
    assert incident.interval is None and stale_deadline(incident, LifecyclePolicy()) is None
    fixed = LifecyclePolicy(stale_after=timedelta(minutes=2))
    assert stale_deadline(incident, fixed) == T0 + 2 * MINUTE
    assert stale_deadline(incident, fixed, since=T0 + HOUR) == T0 + HOUR + 2 * MINUTE
    last_day = datetime.max.replace(tzinfo=UTC)
    assert stale_deadline(incident._replace(last_seen=last_day), fixed) is None
    for n in range(1, 4):
        after = step(incident, CheckState.CRITICAL, T0 + n * 4 * MINUTE, reporting=STREAM)
        assert after.incident is not None
        incident = after.incident
    assert incident.interval == 240.0
    assert stale_deadline(incident, LifecyclePolicy()) == T0 + 24 * MINUTE
    batch = step(incident, CheckState.CRITICAL, T0 + 12 * MINUTE, reporting=STREAM).incident
    assert batch is not None and batch.interval == 240.0  # a spool: a gap of 0 does not count
    hourly = {"reporting": STREAM, "interval": timedelta(hours=1)}  # a stream that says its rhythm
    stated = step(incident, CheckState.CRITICAL, T0 + 13 * MINUTE, **hourly)
    assert stated.incident is not None and stated.incident.interval == 3600.0


def test_a_check_that_reports_only_changes_is_never_stale() -> None:
    """Silence is a change report's normal: no interval is learnt from the gaps between its
    results, and no `stale_after` applies to it."""
    incident = opened()
    for n in range(1, 4):
        after = step(incident, CheckState.CRITICAL, T0 + n * 4 * MINUTE).incident
        assert after is not None
        incident = after
    assert incident.interval is None and incident.stream_seen is None
    assert stale_deadline(incident, LifecyclePolicy()) is None
    assert stale_deadline(incident, LifecyclePolicy(stale_after=timedelta(minutes=2))) is None


def test_a_recovering_incident_is_never_stale_and_resolves_after_its_hold() -> None:
    """Staleness never turns a recovery into a stuck incident: a recovering incident has no
    stale deadline (its last word was OK; a problem that returns reopens it), and one stored
    stale while recovering (by an older alertd) resolves when its hold ends."""
    fixed = LifecyclePolicy(stale_after=timedelta(minutes=2))
    recovering = step(opened(reporting=STREAM), OK, T0 + MINUTE, reporting=STREAM).incident
    assert recovering is not None and recovering.status is Status.RECOVERING
    assert stale_deadline(recovering, fixed) is None
    stored = mark_stale(recovering, T0 + 6 * MINUTE).incident
    assert stored is not None and stored.stale and due_at(stored) == T0 + MINUTE + HOLD
    resolved = tick(stored, fixed, T0 + MINUTE + HOLD)
    assert resolved.incident is not None and resolved.incident.status is Status.RESOLVED
    assert kinds(resolved) == [EventKind.RESOLVED] and not resolved.incident.stale


def test_a_heartbeat_is_missed_after_one_and_a_half_intervals_and_a_beat_ends_the_miss() -> None:
    """The first beat needs an interval; a miss is a HARD CRITICAL for alertd-heartbeat/<name>
    and repeats every interval; the next beat is an OK for that key."""
    hb, first = heartbeats.beat(None, heartbeats.Beat("backup", timedelta(minutes=10), T0))
    assert hb.due == T0 + 15 * MINUTE
    # A first beat is an OK too: it ends what a retired heartbeat of that name left open.
    assert first is not None and first.state is CheckState.OK and first.is_stream
    again, none = heartbeats.beat(hb, heartbeats.Beat("backup", None, T0 + MINUTE))
    assert none is None and again.due == T0 + 16 * MINUTE
    missed, crit = heartbeats.miss(hb, hb.due)
    assert missed.missed and missed.due == T0 + 25 * MINUTE
    assert (crit.host, crit.service, crit.state) == (
        "alertd-heartbeat",
        "backup",
        CheckState.CRITICAL,
    )
    assert (
        crit.output == "no heartbeat from backup since 2024-05-01 12:00:00 UTC (expected every 10m)"
    )
    back, ok = heartbeats.beat(missed, heartbeats.Beat("backup", None, T0 + HOUR))
    assert ok is not None and ok.state is CheckState.OK and not back.missed
    assert back.interval == timedelta(minutes=10) and back.due == T0 + HOUR + 15 * MINUTE


def test_the_host_index_finds_what_a_look_at_every_silence_finds() -> None:
    """Silences indexed by the host they name give the same answer as comparing the result
    with every silence: the lowest matching id, globs and exact names mixed."""
    windows = [downtime_silence(n, f"h{n % 50}", None if n % 3 else "Disk", "n", "", T0)
               for n in range(10, 400)]  # fmt: skip
    windows += [
        silence(id=5, host=Pattern.compile("h1*")),
        silence(id=300, service=Pattern.compile("Ping")),
        silence(id=2, host=Pattern.exact("h[7]"), service=Pattern.compile("HTTP")),
        silence(id=401, labels={"team": Pattern.compile("db")}),
    ]
    index = SilenceIndex(windows)
    for host in [f"h{n}" for n in range(60)] + ["h[7]", "other"]:
        for service in (None, "Disk", "HTTP", "Ping"):
            for labels in ({}, {"team": "db"}):
                assert index.first_match(host, service, labels) == first_match(
                    windows, host, service, labels
                ), (host, service, labels)
