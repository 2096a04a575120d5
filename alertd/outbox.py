"""The outbox dispatcher: delivers queued ticket operations to the helpdesk, exactly once.

A boring loop. Each round takes the first pending operation of up to `concurrency` incidents
(highest priority first; an incident's operations strictly in order, so nothing goes before its
create), sends them concurrently through the rate-limited client, and records every outcome in
one commit through the engine's single writer. What it records decides what happens next:

- success: done (and the ticket id, for a create);
- 429: no count against the operation; all calls wait out Retry-After (the limiter);
- 5xx, timeout, connection error: retried with exponential backoff and jitter, persisted in the
  row (attempts, next_attempt_at), so restarts keep the schedule;
- 401/403: the helpdesk refuses the key: alertd reports not ready and retries slowly;
- a known ticket answers 404 (gone) or 405 (in the trash, or spam): a new ticket naming the old
  one, a dead letter, or (405) the ticket restored, as configured; an archived ticket always
  gets a new ticket naming it, since it can never change again;
- other 4xx: dead letter, with the helpdesk's answer, until re-driven.

Exactly once: right before each create, update or note leaves (alertd.sending), the row is
marked `started` (committed), with its next attempt due only once that write can no longer
land. If the outcome is then unknown (timeout, dropped connection, crash), the next attempt
first looks for the effect: the ticket by its unique tag (listing recent tickets, since
search lags), the note by the marker every note carries.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

import structlog

from alertd import agent_actions, sending
from alertd.clock import Clock
from alertd.config import HelpdeskConfig
from alertd.config.helpdesk import MAX_TAGS
from alertd.engine import Engine, Input
from alertd.errors import (
    AuthFailed,
    HelpdeskError,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    TicketArchived,
    TicketGone,
)
from alertd.metrics import Metrics
from alertd.model import Notice, NoticeKind
from alertd.ratelimit import RateLimiter
from alertd.store import OutboxRow, OutboxState, OutboxUpdate, Store, TicketLink
from alertd.tickets import CreatePayload, NotePayload, Op, TicketPlanner, UpdatePayload

log: structlog.typing.FilteringBoundLogger = structlog.get_logger(__name__)

PENDING, DONE, DEAD = OutboxState.PENDING, OutboxState.DONE, OutboxState.DEAD

BACKOFF_FIRST = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=1)
AUTH_RETRY = timedelta(minutes=5)
WAIT_FOR_TICKET = timedelta(minutes=10)
IDLE = 30.0  # longest sleep with nothing due (new rows ring the engine's doorbell anyway)
MARKER = "alertd-op-"
UNAVAILABLE = 503
POLL_FIRST = timedelta(hours=24)  # at start, look this far back for tickets taken meanwhile
POLL_OVERLAP = timedelta(minutes=1)  # list timestamps are seconds: look back a little
# The API serves at most 300 pages of a list (docs/protocols.md section 1): 30,000 tickets.
POLL_PAGES = 300
PROBE_FIRST = 1.0  # seconds from the failure to the first probe of a helpdesk that failed
PROBE_MAX = 15.0  # the longest gap between probes while it stays down


class HelpdeskClient(Protocol):
    """What the dispatcher needs of a helpdesk (`connectors.freshdesk.FreshdeskClient`).

    Every method raises the `HelpdeskError` tree (alertd.errors) on failure: transient ones are
    retried, permanent ones dead-lettered, `OutcomeUnknown` looked up before a repeat.
    """

    def create_body(self, payload: CreatePayload) -> dict[str, Any]: ...

    async def create_ticket(self, body: Mapping[str, Any]) -> dict[str, Any]: ...

    async def update_ticket(self, ticket_id: int, fields: Mapping[str, Any]) -> dict[str, Any]: ...

    async def add_note(
        self, ticket_id: int, body_html: str, *, private: bool, notify_emails: Sequence[str] = ()
    ) -> dict[str, Any]: ...

    async def view_ticket(self, ticket_id: int) -> dict[str, Any]: ...

    async def restore_ticket(self, ticket_id: int) -> None: ...

    async def probe(self, now: datetime) -> None:
        """Return if the helpdesk answers now (one request, no retry), raise if not."""
        ...

    async def list_tickets(
        self, updated_since: datetime, page: int = 1, *, oldest_first: bool = False
    ) -> list[dict[str, Any]]: ...

    async def conversations(self, ticket_id: int, page: int = 1) -> list[dict[str, Any]]: ...

    async def merged_into(self, ticket_id: int) -> int | None: ...

    async def find_by_tag(
        self, tag: str, since: datetime, *, exclude: int | None = None
    ) -> dict[str, Any] | None: ...


@dataclass
class HelpdeskHealth:
    """What readiness and metrics need to know about the helpdesk."""

    authorised: bool = True
    # False after a call that got no answer at all (connection refused, DNS, timeout); the
    # next answered call sets it back. A 5xx is an answer: reachable, if unwell.
    reachable: bool = True
    last_error: str | None = None
    # Set while every call fails for a reason of the helpdesk's (5xx, timeout, no connection):
    # the workers then send nothing and a probe watches for the helpdesk to come back.
    down_since: float | None = None

    def failed(self, exc: HelpdeskError) -> None:
        """A call failed with `exc` (AuthFailed is recorded where it is handled)."""
        self.last_error = str(exc)
        if exc.status is None:
            self.reachable = False


class Dispatcher:
    def __init__(
        self,
        store: Store,
        engine: Engine,
        client: HelpdeskClient,
        planner: TicketPlanner,
        config: HelpdeskConfig,
        clock: Clock,
        *,
        metrics: Metrics | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._metrics = metrics
        self._store = store
        self._engine = engine
        self._client = client
        self._planner = planner
        self._config = config
        self._clock = clock
        self._limiter = limiter
        self.health = HelpdeskHealth()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._poll_every = config.poll_interval.total_seconds()
        self._next_poll = 0.0
        self._polled_since: datetime | None = None
        self._random = random.Random()
        # Incidents with an operation in flight: one at a time per incident, so its operations
        # go in sequence. Claimed and released under `_pick`, so that a pick never acts on a
        # read taken before another worker's outcome was committed.
        self._busy: set[int] = set()
        self._pick = asyncio.Lock()
        self._quiet = asyncio.Event()  # set while nothing is in flight
        self._quiet.set()
        self._bell = asyncio.Event()  # replaced on every ring; workers wait on the one they saw
        self._up = asyncio.Event()  # cleared while the helpdesk is down
        self._up.set()
        self._reported = 0.0
        self._sending: set[asyncio.Task[Any]] = set()  # worker tasks in the middle of a send
        self._outage_seen = False  # a probe failed too: a real outage, not one bad operation

    def reconfigure(self, config: HelpdeskConfig) -> None:
        """A reload: concurrency, poll interval, missing-ticket policy and notes from now on."""
        self._config = config
        self._poll_every = config.poll_interval.total_seconds()

    def start(self) -> None:
        """The workers (`concurrency` of them, fixed at start), the doorbell and the poll."""
        self._tasks = [
            asyncio.create_task(self._worker(), name=f"alertd-outbox-{n}")
            for n in range(self._config.concurrency)
        ]
        self._tasks.append(asyncio.create_task(self._doorbell(), name="alertd-outbox-bell"))
        self._tasks.append(asyncio.create_task(self._poller(), name="alertd-outbox-poll"))

    async def stop(self, grace: float = 10.0) -> None:
        """Let the operations in flight finish and record their outcomes (at most `grace`
        seconds), then end the loops. What is cut off stays `started`: the next run looks
        before it acts, and not before the earlier attempt can no longer land."""
        if not self._tasks:
            return
        self._stopping = True
        tasks, self._tasks = self._tasks, []
        # Only a send has outcomes to record; a task that waits (for a ring, a rate-limit slot,
        # the next poll or probe) just ends.
        waiting = [t for t in tasks if t not in self._sending]
        for task in waiting:
            task.cancel()
        _, late = await asyncio.wait(tasks, timeout=grace)
        for task in late:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _ring(self) -> None:
        bell, self._bell = self._bell, asyncio.Event()
        bell.set()

    async def _doorbell(self) -> None:
        """Pass the engine's doorbell (rows committed) on to every idle worker."""
        ready = self._engine.outbox_ready
        while not self._stopping:
            await ready.wait()
            ready.clear()
            self._ring()

    async def _worker(self) -> None:
        """Take a rate-limit slot, then the most urgent due operation, send it, record it.

        Each worker goes at its own pace: one slow call holds only its own worker, and the
        operation a freed slot is spent on is chosen when the slot frees (by priority)."""
        while not self._stopping:
            try:
                await self._up.wait()
                bell = self._bell
                if self._limiter is not None:
                    await self._limiter.reserve()
                row, waiting = await self._claim()
                if row is None:
                    if self._limiter is not None:
                        self._limiter.unreserve()
                    await self._idle(bell, waiting)
                    continue
                await self._send_marked([row])
            except asyncio.CancelledError:
                raise
            except Exception:  # a boring loop: log, pause, go on
                log.exception("outbox_round_failed")
                await asyncio.sleep(5)

    async def _send_marked(self, rows: Sequence[OutboxRow]) -> None:
        """`_send`, with this task marked as sending: a stop lets it finish and record."""
        task = asyncio.current_task()
        assert task is not None  # always called from a worker task
        self._sending.add(task)
        try:
            await self._send(rows)
        finally:
            self._sending.discard(task)

    async def _claim(self) -> tuple[OutboxRow | None, bool]:
        """The most urgent due operation whose incident is not busy, claimed; and whether any
        operation is due at all (due but busy: wait for a ring, not for the clock)."""
        rows, due = await self._claim_many(1)
        return (rows[0] if rows else None), due

    async def _idle(self, bell: asyncio.Event, waiting: bool) -> None:
        """Sleep until rung, or until the next row falls due (`waiting`: rows are due but
        their incidents are busy; a finished operation rings)."""
        await self._report()  # the oldest pending age keeps growing while nothing is sent
        timeout = IDLE
        if not waiting:
            due = await self._store.next_op_due()
            if due is not None:
                timeout = min(IDLE, max(0.05, (due - self._clock.now()).total_seconds()))
        if self._stopping:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(bell.wait(), timeout)

    async def _poller(self) -> None:
        while not self._stopping:
            try:
                if self._poll_due():
                    await self.poll_taken_tickets()
                wait = IDLE
                if self._poll_every:
                    wait = min(IDLE, max(0.05, self._next_poll - time.monotonic()))
                await asyncio.sleep(wait)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("helpdesk_poll_crashed")
                await asyncio.sleep(5)

    async def drain(self, max_rounds: int = 1000) -> None:
        """Deliver until nothing is due now (tests and tools; the workers do this by themselves),
        waiting for what the workers have in flight."""
        for _ in range(max_rounds):
            if await self.run_once():
                continue
            if not self._busy:
                return  # nothing due that is not in flight, and nothing in flight
            await self._quiet.wait()

    async def run_once(self) -> int:
        """One round: deliver what is due now (up to `concurrency` incidents at once), record
        the outcomes; returns how many were sent."""
        rows, _ = await self._claim_many(self._config.concurrency)
        if rows:
            await self._send(rows)
        return len(rows)

    async def _claim_many(self, limit: int) -> tuple[list[OutboxRow], bool]:
        async with self._pick:
            rows = await self._store.due_ops(self._clock.now(), limit + len(self._busy))
            mine = [r for r in rows if r.incident_id not in self._busy][:limit]
            self._busy.update(r.incident_id for r in mine)
            if mine:
                self._quiet.clear()
            return mine, bool(rows)

    async def _release(self, rows: Sequence[OutboxRow]) -> None:
        async with self._pick:
            self._busy.difference_update(r.incident_id for r in rows)
            if not self._busy:
                self._quiet.set()
        self._ring()  # the next operation of these incidents may be due now

    async def _send(self, rows: Sequence[OutboxRow]) -> None:
        """Send, record: each write is marked `started` as it leaves (`_attempt`), and the
        outcome is committed before the claim ends."""
        try:
            outcomes = await asyncio.gather(*(self._attempt(r) for r in rows))
            records = [item for items in outcomes for item in items]
            await self._engine.submit(records)
        finally:
            await self._release(rows)
        if self._metrics is not None:
            dead = sum(1 for r in records if isinstance(r, OutboxUpdate) and r.state is DEAD)
            if dead:
                self._metrics.dead_lettered(dead)
        if time.monotonic() - self._reported >= 1.0:  # a scan: at most once a second
            await self._report()

    async def _report(self) -> None:
        if self._metrics is None:
            return
        self._reported = time.monotonic()
        stats = await self._store.outbox_stats()
        oldest = stats["oldest_pending"]
        age = (self._clock.now() - oldest).total_seconds() if oldest is not None else 0.0
        self._metrics.outbox_state(
            pending=stats["pending"], oldest_pending_age=max(age, 0.0), dead_letters=stats["dead"]
        )

    async def _attempt(self, row: OutboxRow) -> list[Input]:
        now = self._clock.now()
        wrote = False

        async def leaving() -> None:
            # Recorded before each write leaves (alertd.sending), so that a crash in between
            # is recognised afterwards as "maybe done"; and its next attempt is due only once
            # this write can no longer land: its deadline plus the helpdesk's late window,
            # counted from when it leaves, which may be well after the operation started.
            nonlocal wrote
            wrote = True
            look = self._clock.now() + self._config.timeout + self._config.outcome_wait
            await self._engine.submit([_update(row, PENDING, True, look, None, row.last_error)])

        try:
            with sending.on_write(leaving):
                items = await self._deliver(row)
        except RateLimited as exc:
            # Not the operation's fault: try again when the helpdesk allows, attempt uncounted.
            return [
                _update(
                    row,
                    PENDING,
                    row.started,
                    now + timedelta(seconds=exc.retry_after),
                    row.attempts,
                    str(exc),
                )
            ]
        except AuthFailed as exc:
            self.health.authorised = False
            self.health.last_error = str(exc)
            log.error(
                "helpdesk_auth_failed",
                error=str(exc),
                status=exc.status,
                hint="check helpdesk.api_key_env / api_key_file and the agent's rights",
            )
            return [
                _update(row, PENDING, row.started, now + AUTH_RETRY, row.attempts + 1, str(exc))
            ]
        except TicketGone as exc:
            policy = self._config.on_missing_ticket
            if policy == "restore" and exc.status == 405:
                return await self._restore_then(row, now, exc)
            if policy != "dead_letter" or isinstance(exc, TicketArchived):
                # "restore" cannot bring back what answers 404: a new ticket is the next best.
                return await self._recreate_then(row, now)
            return [self._dead(row, exc)]
        except PermanentError as exc:
            return [self._dead(row, exc)]
        except HelpdeskError as exc:  # transient: back off, persisted
            self.health.failed(exc)
            self._failed()
            # A 5xx or a lost answer may hide an effect (a gateway's 502 or 504 while the
            # helpdesk behind it goes on): look for it before the next try, and not before the
            # helpdesk can no longer act on this attempt. A 503 is the helpdesk refusing the
            # request outright (down, or in maintenance): nothing to look for.
            answered = exc.status is not None and exc.status != UNAVAILABLE
            unknown = answered or isinstance(exc, OutcomeUnknown)
            started = row.started or (wrote and unknown)
            delay = self._backoff(row.attempts + 1)
            if started:
                delay = max(delay, self._config.outcome_wait)
            log.warning(
                "helpdesk_retry",
                op=row.op,
                row=row.id,
                incident_id=row.incident_id,
                attempts=row.attempts + 1,
                error=str(exc),
                in_seconds=delay.seconds,
            )
            return [
                _update(row, PENDING, started, now + delay, row.attempts + 1, str(exc), True)
            ]
        self.health.authorised = self.health.reachable = True
        if self.health.down_since is not None:
            await self._recovered("an operation went through")
        return items

    # -- the helpdesk down and back -------------------------------------------------------------

    def _failed(self) -> None:
        """A call failed for the helpdesk's reason: stop sending and probe until it answers.

        One failing operation does not make an outage: if the first probe answers at once, the
        operation keeps its own backoff and the others go on. Only an outage the probe saw
        releases the backlog when it ends."""
        if self.health.down_since is not None or self._stopping:
            return
        self.health.down_since = time.monotonic()
        self._outage_seen = False
        self._up.clear()
        self._tasks.append(asyncio.create_task(self._probe(), name="alertd-outbox-probe"))

    async def _probe(self) -> None:
        delay = PROBE_FIRST
        while not self._stopping and self.health.down_since is not None:
            await asyncio.sleep(delay)
            if self.health.down_since is None:
                return  # an operation in flight went through meanwhile
            try:
                await self._client.probe(self._clock.now())
            except (RateLimited, AuthFailed, PermanentError):
                pass  # an answer of its own: the helpdesk is there
            except HelpdeskError as exc:
                self._outage_seen = True
                self.health.last_error = str(exc)
                delay = min(delay * 2, PROBE_MAX)
                continue
            except Exception:  # a bug here must not leave delivery stopped for good
                log.exception("helpdesk_probe_crashed")
            await self._recovered("the probe was answered")
            return

    async def _recovered(self, how: str) -> None:
        """The helpdesk answers again: resume, and after an outage release the backlog now
        (the workers then take it by priority, within the rate limit, each incident in order)
        instead of letting each operation wait out its own doubled backoff."""
        down_since, self.health.down_since = self.health.down_since, None
        outage, self._outage_seen = self._outage_seen, False
        self._up.set()
        if down_since is None or not outage:
            return
        now = self._clock.now()
        released = []
        for row in await self._store.backed_off():
            due = now
            if row.started:  # a lost answer: still not before the late window has passed
                due = max(now, row.updated_at + self._config.outcome_wait)
            if row.next_attempt_at > due:
                released.append(
                    _update(row, PENDING, row.started, due, None, row.last_error, False)
                )
        if released:
            await self._engine.submit(released)
        log.info(
            "helpdesk_recovered",
            how=how,
            down_seconds=round(time.monotonic() - down_since, 1),
            released=len(released),
        )
        self._ring()

    def _dead(self, row: OutboxRow, exc: HelpdeskError) -> OutboxUpdate:
        error = f"{exc} {exc.body}".strip()
        log.error(
            "outbox_dead_letter",
            op=row.op,
            row=row.id,
            incident_id=row.incident_id,
            status=exc.status,
            error=error,
        )
        # A create that may have gone out keeps `started`: a re-drive looks before it creates.
        started = row.started and row.op == Op.CREATE
        return _update(row, DEAD, started, self._clock.now(), row.attempts + 1, error)

    def _backoff(self, attempts: int) -> timedelta:
        base: timedelta = min(BACKOFF_FIRST * 2 ** min(attempts - 1, 16), BACKOFF_MAX)
        return base * self._random.uniform(0.8, 1.2)

    # -- tickets agents have taken -------------------------------------------------------------

    def _poll_due(self) -> bool:
        return bool(self._poll_every) and time.monotonic() >= self._next_poll

    async def poll_taken_tickets(self) -> int:
        """Find what agents did to alertd's tickets (took one: an ack; resolved one by hand: the
        agent-close policy) by listing tickets changed since the last look: the slow
        reconciliation beside the helpdesk's webhook. Returns how many notices it made."""
        self._next_poll = time.monotonic() + self._poll_every
        now = self._clock.now()
        since = self._polled_since or now - POLL_FIRST
        notices: list[Input] = []
        mark = now - POLL_OVERLAP  # where the next look starts if this one reads everything
        try:
            # Oldest change first, so that a look cut short by the page cap has read a prefix
            # of the span: the mark then moves to the last change read, never past one unread.
            for page in range(1, POLL_PAGES + 1):
                tickets = await self._client.list_tickets(since, page, oldest_first=True)
                notices += await self.observe(tickets)
                if len(tickets) < 100:
                    break
            else:
                last = _updated_at(tickets[-1]) if tickets else None
                mark = max(since, last - POLL_OVERLAP) if last is not None else since
                log.warning("helpdesk_poll_cut_short", pages=POLL_PAGES, next_since=str(mark))
        except HelpdeskError as exc:
            log.warning("helpdesk_poll_failed", error=str(exc))
            self.health.failed(exc)
            return 0  # the same span is looked at again next time
        self.health.reachable = True
        if notices:
            await self._engine.submit(notices)
        # Only a look that went through moves the mark (any failure above keeps the span).
        self._polled_since = mark
        return len(notices)

    async def ticket_event(self, ticket_id: int) -> int:
        """The helpdesk says an agent changed `ticket_id` (its automation webhook): read the
        ticket as it is now and decide as the poll would. Returns how many notices it made;
        raises the HelpdeskError tree when the ticket cannot be read."""
        try:
            ticket = await self._client.view_ticket(ticket_id)
        except TicketGone:
            return 0  # deleted meanwhile: the next operation's 404 handles it
        notices = await self.observe([ticket])
        if notices:
            await self._engine.submit(notices)
        return len(notices)

    async def observe(self, tickets: Sequence[Mapping[str, Any]]) -> list[Input]:
        """The notices agents' actions on `tickets` amount to (alertd.agent_actions.decide)."""
        notices: list[Input] = []
        now = self._clock.now()
        statuses = agent_actions.Statuses(  # what the account's statuses mean, once per look
            taken=frozenset(self._config.taken_statuses),
            done=agent_actions.DONE_STATUSES | frozenset(self._config.done_statuses),
        )
        for ticket in tickets:
            seen = agent_actions.view(ticket, self._config.instance)
            if seen is None:
                continue
            stored = await self._store.get_incident(seen.incident_id)
            live = self._engine.cached(stored.key) if stored is not None else None
            if live is None or live.id != seen.incident_id:
                continue
            facts = await self._facts(live.id)
            notice = agent_actions.decide(seen, live, facts, now, statuses)
            if notice is not None and notice.kind is NoticeKind.TICKET_CLOSED:
                notice = await self._merge_of(notice, seen.ticket_id)
            if notice is not None:
                log.info("helpdesk_agent_action", kind=notice.kind.value,
                         ticket_id=seen.ticket_id, incident_id=live.id)  # fmt: skip
                notices.append(notice)
        return notices

    async def _merge_of(self, notice: Notice, ticket_id: int) -> Notice:
        """A close that was a merge says so (the primary's id), so the ticket is never reopened.
        The helpdesk not answering leaves it a plain close."""
        try:
            primary = await self._client.merged_into(ticket_id)
        except HelpdeskError as exc:
            log.warning("helpdesk_merge_lookup_failed", ticket_id=ticket_id, error=str(exc))
            return notice
        if primary is None:
            return notice
        comment = f"ticket #{ticket_id} merged into #{primary} in the helpdesk"
        return notice._replace(merged_into=primary, comment=comment)

    async def _facts(self, incident_id: int) -> agent_actions.Facts:
        """What alertd's own delivered operations did to the incident's ticket."""
        link = await self._store.ticket_of(incident_id)
        responder: int | None = None
        status: int | None = None
        for op in reversed(await self._store.ops_of(incident_id)):
            if op.state is not DONE:
                continue
            if op.op == Op.CREATE and link is not None:
                break  # operations before the current ticket's create were for an older one
            fields = op.payload.get("fields", {})
            if responder is None and "responder_id" in fields:
                responder = int(fields["responder_id"])
            if status is None and "status" in fields:
                status = int(fields["status"])
        return agent_actions.Facts(
            ticket_id=None if link is None else link.ticket_id,
            responder_set=responder,
            status_set=status,
        )

    # -- one operation --------------------------------------------------------------------------

    async def _deliver(self, row: OutboxRow) -> list[Input]:
        link = await self._store.ticket_of(row.incident_id)
        if row.op == Op.CREATE:
            return await self._create(row, link)
        if link is None:
            # Its create is dead-lettered (or was never possible): wait for a re-drive.
            error = "waiting for this incident's ticket: its create has not succeeded"
            return [
                _update(
                    row,
                    PENDING,
                    row.started,
                    self._clock.now() + WAIT_FOR_TICKET,
                    row.attempts,
                    error,
                )
            ]
        if row.op == Op.UPDATE:
            return await self._update(row, link)
        note = cast(NotePayload, row.payload)
        private = note.get("private", not self._config.public_notes)
        await self._note(row, link.ticket_id, note["body"], note.get("notify_emails", ()), private)
        return [_done(row, self._clock.now())]

    async def _create(self, row: OutboxRow, link: TicketLink | None) -> list[Input]:
        now = self._clock.now()
        payload = cast(CreatePayload, row.payload)  # the planner wrote it (alertd.tickets)
        replaces = payload.get("replaces")
        if link is not None and link.ticket_id != replaces:
            # Recorded already (a re-drive of a create that had succeeded); a replacement's
            # create finds the closed ticket it replaces still linked until it succeeds.
            return [_done(row, now)]
        tag = payload["tags"][-1]
        if row.started:
            found = await self._client.find_by_tag(
                tag, row.created_at - timedelta(minutes=5), exclude=replaces
            )
            if found is not None:
                log.info(
                    "ticket_found_after_unknown_outcome",
                    ticket_id=found["id"],
                    tag=tag,
                    incident_id=row.incident_id,
                )
                found_id = int(found["id"])
                return [
                    TicketLink(row.incident_id, found_id, payload["priority"], created=True),
                    _done(row, now),
                ]
        ticket = await self._client.create_ticket(self._client.create_body(payload))
        log.info(
            "ticket_created",
            ticket_id=ticket.get("id"),
            incident_id=row.incident_id,
            priority=payload["priority"],
        )
        # The priority the ticket got: a Freshservice Priority Matrix may have overruled ours,
        # and that is not an agent's change by hand.
        got = ticket.get("priority")
        kept = got if isinstance(got, int) else payload["priority"]
        return [
            TicketLink(row.incident_id, int(ticket["id"]), kept, created=True),
            _done(row, now),
        ]

    async def _update(self, row: OutboxRow, link: TicketLink) -> list[Input]:
        payload = cast(UpdatePayload, row.payload)
        fields = dict(payload["fields"])
        superseded = await self._superseded(row) & fields.keys()
        if superseded:
            # A later update of this incident sets these fields again: sending this one's
            # values would only show the ticket a state it has already left (a resolve landing
            # after the reopen). Its note still goes: the audit trail keeps every step.
            log.info(
                "update_superseded", row=row.id, incident_id=row.incident_id,
                fields=sorted(superseded),
            )  # fmt: skip
            for name in superseded:
                del fields[name]
        items: list[Input] = []
        if row.started and fields:
            # An earlier attempt's PUT may have landed with its answer lost (a helpdesk slower
            # than the timeout): what the ticket holds already is not sent again, or such a
            # helpdesk would time out every repeat and the note would never go.
            current = await self._client.view_ticket(link.ticket_id)
            held = [n for n in _PLAIN_FIELDS if n in fields and current.get(n) == fields[n]]
            if held:
                log.info("update_already_held", row=row.id, ticket_id=link.ticket_id,
                         fields=held)  # fmt: skip
                if "priority" in held:  # it is what alertd sent, not an agent's
                    items.append(TicketLink(link.incident_id, link.ticket_id, fields["priority"]))
                for name in held:
                    del fields[name]
        note = payload.get("note")
        add_tags = payload.get("add_tags", [])
        if add_tags:
            # A PUT's tags replace the ticket's: keep what agents added.
            current = await self._client.view_ticket(link.ticket_id)
            tags, left_out = merge_tags(current.get("tags") or [], add_tags)
            fields["tags"] = tags
            if left_out:
                # The helpdesk refuses the whole update past 30 tags. An agent's tags are their
                # filing: ours give way, and the note says so, rather than the level dying.
                log.warning(
                    "tags_left_out", row=row.id, incident_id=row.incident_id, tags=left_out
                )
                note = (note or "") + (
                    f"<p>Not tagged {', '.join(left_out)}: the ticket already has "
                    f"{MAX_TAGS} tags, the helpdesk's limit.</p>"
                )
        if "priority" in fields and self._config.keep_agent_priority:
            # Any PUT that sets the priority (a change of state, a reopening, an escalation),
            # not only one that lowers it: a priority an agent set by hand is their judgement,
            # and it beats the matrix. (`lowers` in older queued payloads changes nothing.)
            current = await self._client.view_ticket(link.ticket_id)
            by_hand = (
                link.priority_sent is not None and current.get("priority") != link.priority_sent
            )
            if by_hand and current.get("priority") != fields["priority"]:
                del fields["priority"]
                note = (note or "") + "<p>The priority an agent set by hand was kept.</p>"
        if fields:
            await self._client.update_ticket(link.ticket_id, fields)
            if "priority" in fields:
                items.append(TicketLink(link.incident_id, link.ticket_id, fields["priority"]))
        if note:
            await self._note(row, link.ticket_id, note, payload.get("notify_emails", ()))
        return [*items, _done(row, self._clock.now())]

    async def _superseded(self, row: OutboxRow) -> set[str]:
        """The fields that a later pending update of the same incident sets (a lowering of the
        priority only counts when it is sure to be sent: the agent's priority may stop it)."""
        names: set[str] = set()
        for later in await self._store.ops_of(row.incident_id):
            if later.id <= row.id or later.state is not PENDING or later.op != Op.UPDATE:
                continue
            fields = later.payload.get("fields", {})
            lowers = bool(later.payload.get("lowers"))
            names.update(name for name in fields if not (name == "priority" and lowers))
        return names

    async def _note(
        self,
        row: OutboxRow,
        ticket_id: int,
        body: str,
        notify_emails: Sequence[str],
        private: bool | None = None,
    ) -> None:
        marker = f"{MARKER}{row.id}"
        if row.started and await self._has_note(ticket_id, marker):
            return  # the earlier attempt did reach the ticket
        stamped = f'{body}<p style="color:#888;font-size:smaller">alertd · {marker}</p>'
        if private is None:
            private = not self._config.public_notes
        await self._client.add_note(
            ticket_id, stamped, private=private, notify_emails=notify_emails
        )

    async def _has_note(self, ticket_id: int, marker: str) -> bool:
        for page in range(1, 51):
            entries = await self._client.conversations(ticket_id, page)
            if any(marker in str(e.get("body", "")) for e in entries):
                return True
            if len(entries) < 100:
                return False
        return False

    async def _restore_then(self, row: OutboxRow, now: datetime, gone: TicketGone) -> list[Input]:
        """The ticket is in the trash (405): restore it, then go on with the operation; a ticket
        that cannot be restored (spam) gets a new one naming it."""
        link = await self._store.ticket_of(row.incident_id)
        if link is None:
            return [self._dead(row, gone)]
        try:
            await self._client.restore_ticket(link.ticket_id)
        except PermanentError:
            return await self._recreate_then(row, now)
        except HelpdeskError as exc:
            delay = self._backoff(row.attempts + 1)
            return [_update(row, PENDING, row.started, now + delay, row.attempts + 1, str(exc))]
        log.warning("ticket_restored", ticket_id=link.ticket_id, incident_id=row.incident_id)
        # The operation itself goes on the restored ticket in the next round (due now).
        return [_update(row, PENDING, False, now, row.attempts, "ticket restored from the trash")]

    async def _recreate_then(self, row: OutboxRow, now: datetime) -> list[Input]:
        """The ticket is gone (deleted or archived): open a new one naming it, then go on."""
        old = await self._store.ticket_of(row.incident_id)
        incident = await self._store.get_incident(row.incident_id)
        if old is None or incident is None:
            return [self._dead(row, PermanentError("ticket gone and incident unknown"))]
        payload = self._planner.recreate(incident, old.ticket_id)
        body = self._client.create_body(payload)
        try:
            # A re-create whose answer was lost (or whose record was) must not be repeated:
            # a ticket with this incident's tag that is not the gone one is ours already.
            found = await self._client.find_by_tag(
                payload["tags"][-1], row.updated_at - timedelta(minutes=5), exclude=old.ticket_id
            )
            ticket = found or await self._client.create_ticket(body)
        except HelpdeskError as exc:
            delay = self._backoff(row.attempts + 1)
            return [_update(row, PENDING, row.started, now + delay, row.attempts + 1, str(exc))]
        log.warning(
            "ticket_recreated",
            old_ticket_id=old.ticket_id,
            ticket_id=ticket.get("id"),
            incident_id=row.incident_id,
        )
        link = TicketLink(row.incident_id, int(ticket["id"]), incident.priority.rank, created=True)
        # The operation itself goes on the new ticket in the next round (still pending, due now).
        return [link, _update(row, PENDING, False, now, row.attempts, "ticket re-created")]


# Fields of an update whose value a ticket shows as sent, so a ticket that holds it already
# needs no PUT for it (tags are merged and custom fields nested: those are always sent).
_PLAIN_FIELDS = ("status", "priority", "subject", "group_id", "responder_id", "type")


def _update(
    row: OutboxRow,
    state: OutboxState,
    started: bool,
    at: datetime,
    attempts: int | None = None,
    error: str | None = None,
    backoff: bool = False,
) -> OutboxUpdate:
    return OutboxUpdate(
        row_id=row.id,
        state=state,
        attempts=row.attempts if attempts is None else attempts,
        started=started,
        next_attempt_at=at,
        last_error=error,
        backoff=backoff,
    )




def _updated_at(ticket: Mapping[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(ticket.get("updated_at")))
    except ValueError:
        return None


def _done(row: OutboxRow, now: datetime) -> OutboxUpdate:
    return _update(row, DONE, False, now, row.attempts + 1, None)


def merge_tags(current: Sequence[str], add: Sequence[str]) -> tuple[list[str], list[str]]:
    """The ticket's tags plus `add`, within the helpdesk's limit; and what did not fit."""
    merged = list(dict.fromkeys(current))
    new = [tag for tag in dict.fromkeys(add) if tag not in merged]
    room = max(MAX_TAGS - len(merged), 0)
    return [*merged, *new[:room]], new[room:]
