"""Back to Nagios: once an incident from Nagios has a ticket, acknowledge the problem in Nagios
through its external command file, with the ticket's id and link in the comment, so Nagios
stops re-notifying a problem someone already tracks (`[nagios] ack_on_ticket`).

The acknowledgement is sticky (it lasts until the check is OK again), sends no notification
(so it never comes back to alertd as an ACKNOWLEDGEMENT notification and stops alertd's own
escalation clock) and keeps its comment across Nagios restarts (persistent). Command formats:
docs/protocols.md 3.3.

Which incidents: those whose creating input came from a source in `ack_sources` (the incident
records it: `Incident.source`); by default "nagios" (`alertd notify`, NRDP external commands),
since only those name hosts and services exactly as Nagios defines them.

Nothing here may hold up the writer: the engine's after-commit hook only queues the new ticket
(`ticket_created`), and one worker task reads the incident through the read-only connection and
writes the line from a thread. The command file is opened without blocking and never created:
Nagios's FIFO without a reader (Nagios stopped) or a missing file is logged and the
acknowledgement dropped. It is best effort, like Nagios's own commands: not retried, not
stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import time
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import structlog

from alertd.clock import Clock
from alertd.config import NagiosConfig
from alertd.model import CheckState, Incident, Status
from alertd.store import Store

log = structlog.get_logger(__name__)

WRITE_SECONDS = 5.0  # how long a full FIFO may hold one line before it is dropped
_UP = (CheckState.OK, CheckState.UP)
_QUEUE_MAX = 1000  # tickets waiting for their acknowledgement; more are dropped (and logged)


class CommandFileError(Exception):
    """The line could not be written; `reason` says why, for the log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def ack_command(incident: Incident, comment: str, author: str, now: datetime) -> str | None:
    """The external command line (with its newline) acknowledging the incident's problem:
    sticky (2), no notification (0), persistent comment (1). None when a name cannot be
    written in the ';'-separated form."""
    names = [incident.host] if incident.service is None else [incident.host, incident.service]
    if any(c in name for name in names for c in ";\n\r"):
        return None
    # The comment is the last field, but a line break would end the command early.
    text = " ".join(comment.replace(";", ",").split())
    command = "ACKNOWLEDGE_HOST_PROBLEM" if incident.service is None else "ACKNOWLEDGE_SVC_PROBLEM"
    fields = ";".join([command, *names, "2", "0", "1", author, text])
    return f"[{int(now.timestamp())}] {fields}\n"


def ack_comment(incident: Incident, ticket_id: int, ticket_url: str) -> str:
    return f"Ticket #{ticket_id} {ticket_url} (alertd incident {incident.id})"


def write_command(path: Path, line: str, seconds: float = WRITE_SECONDS) -> None:
    """Append one line to the command file without ever blocking on it: a FIFO with no reader
    fails at once (ENXIO), a full one is retried until `seconds` pass. Never creates the file
    (a regular file where Nagios makes its FIFO would stop Nagios from starting)."""
    data = line.encode("utf-8", errors="replace")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise CommandFileError("no reader on the command file (is Nagios running?)") from exc
        raise CommandFileError(f"cannot open: {exc.strerror or exc}") from exc
    deadline = time.monotonic() + seconds
    try:
        while data:
            try:
                # A line shorter than PIPE_BUF goes into a FIFO whole or not at all.
                data = data[os.write(fd, data) :]
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise CommandFileError(f"the command file stayed full for {seconds}s") from None
                time.sleep(0.05)
            except OSError as exc:
                raise CommandFileError(f"cannot write: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


class _Created(NamedTuple):
    incident_id: int
    ticket_id: int


class NagiosAcknowledger:
    """Acknowledges ticketed Nagios problems in Nagios; one worker task, started and stopped by
    its owner (the app)."""

    def __init__(self, config: NagiosConfig, helpdesk_url: str, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._queue: asyncio.Queue[_Created] = asyncio.Queue(_QUEUE_MAX)
        self._task: asyncio.Task[None] | None = None
        self.reconfigure(config, helpdesk_url)

    def reconfigure(self, config: NagiosConfig, helpdesk_url: str) -> None:
        """A reload: the next acknowledgement uses the new file, author and sources."""
        self._config = config
        self._helpdesk_url = helpdesk_url

    def ticket_created(self, incident_id: int, ticket_id: int) -> None:
        """Called by the writer after the commit that linked a new ticket; never blocks."""
        try:
            self._queue.put_nowait(_Created(incident_id, ticket_id))
        except asyncio.QueueFull:
            log.warning("nagios_ack_dropped", incident_id=incident_id, ticket_id=ticket_id,
                        reason="queue full")  # fmt: skip

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="nagios-ack")

    async def stop(self, grace: float = 2.0) -> None:
        """Give what is queued `grace` seconds, then stop the worker."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), grace)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self._acknowledge(item)
            except Exception:  # one failure must not end the worker
                log.exception("nagios_ack_failed", incident_id=item.incident_id)
            finally:
                self._queue.task_done()

    async def _acknowledge(self, item: _Created) -> None:
        config = self._config
        if not config.ack_on_ticket or config.command_file is None:
            return
        incident = await self._store.get_incident(item.incident_id)
        if incident is None or incident.source not in config.ack_sources:
            return
        if incident.status is Status.RESOLVED or incident.check_state in _UP:
            return  # Nagios ignores an acknowledgement of an OK object anyway
        url = f"{self._helpdesk_url}/a/tickets/{item.ticket_id}"  # as the incidents API links it
        comment = ack_comment(incident, item.ticket_id, url)
        line = ack_command(incident, comment, config.ack_author, self._clock.now())
        fields = {"incident_id": incident.id, "ticket_id": item.ticket_id}
        if line is None:
            log.warning("nagios_ack_skipped", **fields, reason="';' or a line break in a name")
            return
        try:
            await asyncio.to_thread(write_command, config.command_file, line)
        except CommandFileError as exc:
            log.warning("nagios_ack_failed", **fields, file=str(config.command_file),
                        reason=exc.reason)  # fmt: skip
            return
        log.info("nagios_acknowledged", **fields, host=incident.host, service=incident.service)
