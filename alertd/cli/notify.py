"""`alertd notify`: hand one Nagios/Opsview notification or OCSP/OCHP result to the daemon.

Nagios execs this once per notification, so it imports only the standard library (no aiohttp,
no structlog) and prints exactly one line, which is what ends up in nagios.log. It reads the
`NAGIOS_*` environment (enable_environment_macros=1, or Opsview's fixed subset), or the same
values as options for a Nagios without environment macros; options win over the environment.

Delivery is strictly oldest first: the notification is **spooled** first (one file, written
atomically), then the spool is sent in order up to and including it, each file POSTed as JSON
to `<url>/api/v1/nagios` with a bearer token (retrying briefly) and deleted only after a 2xx.
One run sends at a time; a run that finds another sending waits for its turn, and what is left
when time runs out stays spooled for the next run. With no usable spool directory the
notification is sent directly (lost only if the daemon cannot take it either).
`alertd notify --check` says whether this user can spool and reach the daemon.

Exit codes (documented in the README):
  0  delivered (and any spooled notifications with it)
  1  spooled: the daemon was unreachable or failed; nothing is lost, the next run delivers it
  2  needs the admin: refused as malformed (not spooled), refused for auth/config (spooled,
     delivered once fixed), a usage error, or the spool itself failed (the notification is lost)
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from alertd.cli.spool import Spool
from alertd.cli.transport import token_opener
from alertd.errors import SpoolError

EXIT_DELIVERED, EXIT_SPOOLED, EXIT_ATTENTION = 0, 1, 2
DEFAULT_URL = "http://127.0.0.1:8780"
TOKEN_ENV = "ALERTD_TOKEN"
PREFIX = "NAGIOS_"
# Surrogates that surrogateescape never produces (it maps bytes 0x80-0xff to U+DC80-U+DCFF).
_NOT_A_BYTE = re.compile("[\ud800-\udc7f\udd00-\udfff]")
# Spooled notifications delivered per run at most this long, so that a big backlog cannot
# push the run past Nagios's notification_timeout (30 s by default).
DRAIN_SECONDS = 10.0

# option -> macro; {OBJ} is SERVICE when a service is named, else HOST.
OPTIONS = {
    "type": "NOTIFICATIONTYPE",
    "host": "HOSTNAME",
    "service": "SERVICEDESC",
    "state": "{OBJ}STATE",
    "state_type": "{OBJ}STATETYPE",
    "attempt": "{OBJ}ATTEMPT",
    "max_attempts": "MAX{OBJ}ATTEMPTS",
    "output": "{OBJ}OUTPUT",
    "long_output": "LONG{OBJ}OUTPUT",
    "perfdata": "{OBJ}PERFDATA",
    "author": "NOTIFICATIONAUTHOR",
    "comment": "NOTIFICATIONCOMMENT",
    "hostgroups": "HOSTGROUPNAMES",
    "servicegroups": "SERVICEGROUPNAMES",
    "time": "TIMET",
}


class Refused(Exception):
    """The daemon answered, and not with a 2xx."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"{status} {message}")

    @property
    def malformed(self) -> bool:
        # 400 = this notification itself is invalid: resending it can never succeed.
        return self.status == 400

    @property
    def transient(self) -> bool:
        return self.status >= 500 or self.status == 429


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alertd notify",
        description="Send one Nagios/Opsview notification or OCSP/OCHP result to alertd.",
    )
    parser.add_argument("--url", help=f"daemon base URL (default $ALERTD_URL or {DEFAULT_URL})")
    parser.add_argument(
        "--token-file", type=Path, help=f"file holding the token (else ${TOKEN_ENV})"
    )
    parser.add_argument("--spool-dir", type=Path, help="where undelivered notifications wait")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per attempt (5)")
    parser.add_argument("--retries", type=int, default=2, help="retries after a failure (2)")
    parser.add_argument(
        "--check", action="store_true",
        help="send nothing: say whether this user can spool and reach the daemon (exit 0 or 2)",
    )  # fmt: skip
    macros = parser.add_argument_group("macros (for Nagios without enable_environment_macros)")
    for option, macro in OPTIONS.items():
        shown = "$" + macro.replace("{OBJ}", "SERVICE") + "$"
        macros.add_argument("--" + option.replace("_", "-"), dest=option, metavar="V", help=shown)
    macros.add_argument(
        "--macro", action="append", default=[], metavar="NAME=VALUE",
        help="any other macro, e.g. _HOSTRACK=$_HOSTRACK$ (repeatable)",
    )  # fmt: skip
    return parser


def main(argv: list[str] | None, env: Mapping[str, str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.check:
        return check(args, env)
    try:
        macros = collect(args, env)
        token = read_token(args.token_file, env)
    except (ValueError, OSError) as exc:
        return say(EXIT_ATTENTION, f"not sent: {exc}")
    body = json.dumps(macros, separators=(",", ":")).encode()
    what = describe(macros)
    sender = Sender(nagios_url(args, env), token, args.timeout)
    retries = max(args.retries, 0)
    try:
        spool = Spool.open(args.spool_dir, env)
        mine = spool.put(body)  # spool first: from here on a crash or a kill loses nothing
    except (SpoolError, OSError) as exc:
        return send_direct(sender, body, what, retries, exc)
    return deliver(spool, mine, sender, what, retries)


def nagios_url(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    return (args.url or env.get("ALERTD_URL") or DEFAULT_URL).rstrip("/") + "/api/v1/nagios"


def send_direct(sender: Sender, body: bytes, what: str, retries: int, no_spool: Exception) -> int:
    """No spool to keep it in (e.g. Nagios started from a root shell: HOME=/root): send now,
    since the daemon is usually up; only if that fails too is the notification lost."""
    try:
        sender.send(body, retries=retries)
    except Refused as exc:
        if exc.malformed:
            return say(EXIT_ATTENTION, f"{what} refused as malformed, not spooled: {exc.message}")
        return lost(what, exc, no_spool)
    except OSError as exc:
        return lost(what, exc, no_spool)
    return say(EXIT_DELIVERED, f"delivered {what} (without a spool: {reason(no_spool)})")


def lost(what: str, cause: Exception, no_spool: Exception) -> int:
    return say(EXIT_ATTENTION, f"{what} LOST: daemon unavailable ({reason(cause)}) and "
               f"cannot spool ({reason(no_spool)})")  # fmt: skip


def deliver(spool: Spool, mine: Path, sender: Sender, what: str, retries: int) -> int:
    """Send the spool, oldest first, up to and including `mine`, each file deleted only after
    a 2xx. One run at a time sends (the lock); a run that finds another sending waits its turn
    rather than jumping the queue, and one that runs out of time leaves `mine` spooled behind
    the older ones instead of sending it ahead of them."""
    deadline = time.monotonic() + DRAIN_SECONDS
    with spool.locked(deadline) as owner:
        if not mine.exists():  # the run before us sent it (or set it aside as malformed)
            if spool.was_rejected(mine):
                return say(EXIT_ATTENTION, f"{what} refused as malformed (set aside in "
                           f"{spool.path / 'rejected'})")  # fmt: skip
            return say(EXIT_DELIVERED, f"delivered {what} (by an earlier run, in order)")
        if not owner:
            waiting = len(spool.pending())
            return say(EXIT_SPOOLED, f"{what} spooled in {spool.path} ({waiting} waiting): "
                       "another run is still delivering; the next run delivers it")  # fmt: skip
        return _drain(spool, mine, sender, what, retries, deadline)


def _drain(
    spool: Spool, mine: Path, sender: Sender, what: str, retries: int, deadline: float
) -> int:
    older = 0
    for path in spool.pending():
        if path > mine:  # newer ones are their own runs' to send, after ours
            break
        if time.monotonic() > deadline:
            ahead = len([p for p in spool.pending() if p < mine])
            return say(EXIT_SPOOLED, f"{what} spooled in {spool.path} behind {ahead} older "
                       "notifications (out of time); the next run delivers it")  # fmt: skip
        try:
            sender.send(path.read_bytes(), retries=retries)
        except Refused as exc:
            if exc.malformed and path == mine:
                spool.remove(path)
                return say(EXIT_ATTENTION,
                           f"{what} refused as malformed, not spooled: {exc.message}")
            if exc.malformed:  # an older one the daemon can never take: out of the queue
                spool.reject(path)
                continue
            return spooled(spool, what, exc)
        except OSError as exc:
            return spooled(spool, what, exc)
        spool.remove(path)
        older += path != mine
    backlog = f" (+{older} from spool)" if older else ""
    return say(EXIT_DELIVERED, f"delivered {what}{backlog}")


def check(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """`--check`: what a notification run as this user would find, one line per thing needed.
    Run it as the Nagios user (`sudo -u nagios alertd notify --check ...`)."""
    user = _user_name()
    good = True
    try:
        spool = Spool.open(args.spool_dir, env)
        print(f"spool: {spool.path} is writable by {user} ({len(spool.pending())} waiting)")
    except SpoolError as exc:
        good = False
        print(f"spool: NONE for {user}: {exc}; notifications are sent directly and LOST "
              "while the daemon is down (create one, see --spool-dir)")  # fmt: skip
    url = nagios_url(args, env)
    try:
        sender = Sender(url, read_token(args.token_file, env), args.timeout)
        sender.send(b"[]")  # an empty batch: stores nothing, but passes the token check first
        print(f"daemon: {url} took an empty batch")  # unexpected, but reachable and authorised
    except Refused as exc:
        if exc.status != 400:  # 400 "empty batch" is the answer expected past the token check
            good = False
            print(f"daemon: {url} refused: {reason(exc)}")
        else:
            print(f"daemon: {url} is reachable and accepts the token")
    except (ValueError, OSError) as exc:
        good = False
        print(f"daemon: {url} cannot be reached: {reason(exc)}")
    return EXIT_DELIVERED if good else EXIT_ATTENTION


def _user_name() -> str:
    # Nagios's workers may run with a bare environment: ask the OS, not $USER.
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.geteuid()}"


def collect(args: argparse.Namespace, env: Mapping[str, str]) -> dict[str, str]:
    """The macro set: NAGIOS_* from the environment, overridden by options."""
    macros = {k: v for k, v in env.items() if k.startswith(PREFIX) and v}
    given = {option: getattr(args, option) for option in OPTIONS}
    service = given["service"]
    if service is None:
        service = macros.get(PREFIX + "SERVICEDESC")
    obj = "SERVICE" if service else "HOST"
    for option, value in given.items():
        if value is not None:
            macros[PREFIX + OPTIONS[option].replace("{OBJ}", obj)] = value
    for item in args.macro:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--macro expects NAME=VALUE, got {item!r}")
        macros[PREFIX + name.strip().removeprefix(PREFIX).strip("$")] = value
    if not macros.get(PREFIX + "HOSTNAME", "").strip():
        raise ValueError(
            "no host: set enable_environment_macros=1 in nagios.cfg, or pass --host '$HOSTNAME$'"
        )
    return {_valid_text(k): _valid_text(v) for k, v in macros.items() if v}


def _valid_text(text: str) -> str:
    """`text` as valid Unicode. Python hands over environment and argv bytes that are not UTF-8
    (plugin output in Latin-1) as lone surrogates, which json.dumps would send as escapes no
    store can keep; each such byte becomes U+FFFD here."""
    text = _NOT_A_BYTE.sub("\ufffd", text)  # surrogates the OS did not make: no byte to restore
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def read_token(path: Path | None, env: Mapping[str, str]) -> str:
    if path is None:
        return env.get(TOKEN_ENV, "").strip()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(f"cannot read token file {path}: {exc.strerror or exc}") from exc
    tokens = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if not tokens:
        raise ValueError(f"token file {path} holds no token")
    return tokens[0]


def describe(macros: Mapping[str, str]) -> str:
    kind = macros.get(PREFIX + "NOTIFICATIONTYPE") or "result"
    host = macros.get(PREFIX + "HOSTNAME", "?")
    service = macros.get(PREFIX + "SERVICEDESC")
    return f"{kind} {host}/{service}" if service else f"{kind} {host}"


class Sender:
    def __init__(self, url: str, token: str, timeout: float) -> None:
        self.url = url
        self.token = token
        self.timeout = timeout
        self._opener = token_opener()  # only ever to `url`: no proxy, no redirects

    def send(self, body: bytes, *, retries: int = 0) -> None:
        """Deliver once, retrying transient failures `retries` times with a short backoff.
        Raises Refused (the daemon said no) or OSError (it could not be reached)."""
        for attempt in range(retries + 1):
            try:
                return self._post(body)
            except Refused as exc:
                if not exc.transient or attempt == retries:
                    raise
            except OSError:
                if attempt == retries:
                    raise
            time.sleep(0.5 * 2**attempt)

    def _post(self, body: bytes) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": "alertd-notify"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url, body, headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout):
                return
        except urllib.error.HTTPError as exc:
            raise Refused(exc.code, _error_text(exc)) from exc


def _error_text(exc: urllib.error.HTTPError) -> str:
    """The daemon's error and what it names ({"error": ..., "details": [...]}), on one line."""
    with contextlib.suppress(OSError, ValueError, AttributeError, KeyError, TypeError):
        body = json.loads(exc.read())
        named = [f"{d['field']}: {d['message']}" for d in body.get("details", [])]
        return "; ".join([str(body["error"]), *named])
    return str(exc.reason)


def spooled(spool: Spool, what: str, cause: Exception) -> int:
    """The queue is blocked at its head by `cause`; ours waits in the spool behind it."""
    waiting = len(spool.pending())
    if isinstance(cause, Refused) and not cause.transient:
        # Auth or configuration: spooled, but someone has to fix it before it can go.
        return say(EXIT_ATTENTION, f"{what} refused ({reason(cause)}); spooled in {spool.path} "
                   f"({waiting} waiting) until that is fixed")  # fmt: skip
    return say(EXIT_SPOOLED, f"{what} spooled in {spool.path} ({waiting} waiting): daemon "
               f"unavailable ({reason(cause)}); the next run delivers it")  # fmt: skip


def reason(exc: Exception) -> str:
    """A failure as one short phrase for nagios.log."""
    if isinstance(exc, Refused):
        return f"HTTP {exc.status}: {exc.message}"
    if isinstance(exc, urllib.error.URLError):
        inner = exc.reason
        return getattr(inner, "strerror", None) or str(inner)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return getattr(exc, "strerror", None) or str(exc)


def say(code: int, message: str) -> int:
    print(f"alertd notify: {message}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], os.environ))
