"""A real Nagios 4 owned by one test: its own nagios.cfg, objects, command pipe, check results
and logs under the test's directory, no web UI, running as the test's own user.

Check states come from files: every host and service runs `check.sh STATEFILE`, which prints
the file's second line and exits with its first, so a test sets a state by writing a file and
makes Nagios look by a forced check through the command pipe. Nagios then does what it does in
the field (SOFT attempts, retries, HARD, host checks on a failing service, notifications, OCSP
and OCHP) with the README's `define command` blocks, taken from README.md itself so that the
test breaks if the README's commands do.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import ROOT

NAGIOS = "/usr/sbin/nagios4"  # Debian's nagios4-core
PACKAGE = "nagios4-core"
# The four notification commands of README "Nagios, Naemon, Icinga 1", as written there.
README_COMMANDS = (
    "notify-service-by-alertd", "notify-host-by-alertd", "alertd-ocsp", "alertd-ochp"
)  # fmt: skip
# What the README's command lines assume, and what a test replaces it with.
README_BINARY = "/usr/local/bin/alertd"
README_URL = "http://alertd.example:8780"
README_TOKEN_FILE = "/etc/nagios4/alertd.token"
# A plugin's exit code for a state. Nagios takes a host check's exit 1 as UP (unless
# use_aggressive_host_checking), so DOWN is exit 2; UNREACHABLE is Nagios's own conclusion from
# parents, never a plugin's.
EXIT_CODES = {"OK": 0, "UP": 0, "WARNING": 1, "CRITICAL": 2, "DOWN": 2, "UNKNOWN": 3}
# status.dat's current_state for a state.
STATUS_CODES = {
    "OK": 0,
    "UP": 0,
    "WARNING": 1,
    "DOWN": 1,
    "CRITICAL": 2,
    "UNREACHABLE": 2,
    "UNKNOWN": 3,
}

_BLOCK = re.compile(r"^define command \{\n(?P<body>.*?)^\}", re.M | re.S)


def readme_commands(binary: str, url: str, token_file: Path, spool_dir: Path) -> str:
    """The README's `define command` blocks for alertd, with its example binary, URL and token
    file replaced by the test's. `--spool-dir` is added: without it a run as root would spool
    into /var/spool/alertd, shared by every test and clone on the machine."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = {}
    for match in _BLOCK.finditer(text):
        named = re.search(r"command_name\s+(\S+)", match["body"])
        if named is not None and named[1] in README_COMMANDS:
            blocks[named[1]] = match[0]
    missing = [name for name in README_COMMANDS if name not in blocks]
    assert not missing, f"README.md has no `define command` block for {missing}"
    out = []
    for name in README_COMMANDS:
        block = blocks[name]
        for example in (README_BINARY, README_URL, README_TOKEN_FILE):
            assert example in block, f"README's {name} no longer says {example}"
        block = block.replace(README_BINARY, binary).replace(README_URL, url)
        block = block.replace(
            README_TOKEN_FILE,
            f"{shlex.quote(str(token_file))} --spool-dir {shlex.quote(str(spool_dir))}",
        )
        out.append(block)
    return "\n\n".join(out) + "\n"


def alertd_command() -> str:
    """How Nagios (through /bin/sh) runs this checkout's `alertd`: the venv's script when the
    tests run in one, else the interpreter running the tests."""
    import sys

    script = Path(sys.executable).parent / "alertd"
    if script.exists():
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m alertd.cli"


@dataclass
class Host:
    name: str
    services: list[str] = field(default_factory=list)


@dataclass
class NagiosOptions:
    """What differs between scenarios: OCSP/OCHP on or off, notifications on or off."""

    obsess: bool = True
    notifications: bool = True
    max_check_attempts: int = 3


CHECK_SCRIPT = """#!/bin/sh
# A check plugin whose result is a file: line 1 the exit code, line 2 the output.
{ read -r code; read -r output; } < "$1" || { echo "UNKNOWN - no state file $1"; exit 3; }
echo "$output"
exit "$code"
"""


class Nagios:
    """One test-owned Nagios process. `start()`, then drive it with `set_state()` and
    `force_check()`, watch it with `status()` and `log()`, and `stop()` it (the fixture does)."""

    def __init__(self, binary: Path, base: Path, hosts: Iterable[Host], commands: str,
                 options: NagiosOptions | None = None) -> None:  # fmt: skip
        self.binary = binary
        self.base = base
        self.hosts = list(hosts)
        self.options = options or NagiosOptions()
        self.states = base / "states"
        self.cfg = base / "nagios.cfg"
        self.pipe = base / "rw" / "nagios.cmd"
        self.status_file = base / "status.dat"
        self.log_file = base / "nagios.log"
        self.proc: subprocess.Popen[bytes] | None = None
        # A Unix socket path must fit in 108 bytes; tmp_path may not, so the query socket
        # lives in a short directory of its own.
        self._qh_dir = Path(tempfile.mkdtemp(prefix="nagios-qh-"))
        self._write(commands)

    # --- configuration ------------------------------------------------------------------

    def _write(self, commands: str) -> None:
        for sub in ("states", "rw", "checkresults", "tmp"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        check = self.base / "check.sh"
        check.write_text(CHECK_SCRIPT)
        check.chmod(0o755)
        for host in self.hosts:
            self.set_state(host.name, None, "UP", "PING OK - up")
            for service in host.services:
                self.set_state(host.name, service, "OK", f"{service} OK")
        (self.base / "alertd-commands.cfg").write_text(commands)
        (self.base / "objects.cfg").write_text(self._objects())
        self.cfg.write_text(self._main_cfg())

    def _main_cfg(self) -> str:
        user = _user_and_group()
        o = self.options
        b = self.base
        lines = {
            "log_file": b / "nagios.log",
            "cfg_file": [b / "objects.cfg", b / "alertd-commands.cfg"],
            "object_cache_file": b / "objects.cache",
            "precached_object_file": b / "objects.precache",
            "status_file": self.status_file,
            # Once a second: tests wait on status.dat to know what Nagios has done.
            "status_update_interval": 1,
            "nagios_user": user[0],
            "nagios_group": user[1],
            "check_external_commands": 1,
            "command_file": self.pipe,
            "lock_file": b / "nagios.pid",
            "temp_file": b / "nagios.tmp",
            "temp_path": b / "tmp",
            "check_result_path": b / "checkresults",
            "query_socket": self._qh_dir / "nagios.qh",
            "use_syslog": 0,
            "log_notifications": 1,
            "log_service_retries": 1,
            "log_host_retries": 1,
            "log_external_commands": 1,
            "log_passive_checks": 1,
            "retain_state_information": 0,
            # One "time unit" is a second, so check and retry intervals below are seconds.
            "interval_length": 1,
            "max_service_check_spread": 1,
            "max_host_check_spread": 1,
            # Results are reaped every second (the sample config's 10 s would slow every step).
            "check_result_reaper_frequency": 1,
            "max_check_result_reaper_time": 1,
            # A failing service triggers a fresh host check, as it would after a real outage.
            "cached_host_check_horizon": 0,
            "cached_service_check_horizon": 0,
            "enable_predictive_host_dependency_checks": 0,
            "enable_predictive_service_dependency_checks": 0,
            "execute_service_checks": 1,
            "execute_host_checks": 1,
            "accept_passive_service_checks": 1,
            "accept_passive_host_checks": 1,
            "enable_notifications": int(o.notifications),
            "enable_event_handlers": 0,
            "process_performance_data": 0,
            "obsess_over_services": int(o.obsess),
            "ocsp_command": "alertd-ocsp",
            "obsess_over_hosts": int(o.obsess),
            "ochp_command": "alertd-ochp",
            "ocsp_timeout": 5,
            "ochp_timeout": 5,
            "notification_timeout": 30,
            "service_check_timeout": 10,
            "host_check_timeout": 10,
            "check_service_freshness": 0,
            "check_host_freshness": 0,
            # Nagios's own flap detection would add FLAPPINGSTART notifications depending on
            # how fast the machine runs the scenario; alertd's flap handling is what is tested.
            "enable_flap_detection": 0,
            "check_for_updates": 0,
            "bare_update_check": 0,
            "check_for_orphaned_services": 0,
            "check_for_orphaned_hosts": 0,
            "date_format": "iso8601",
            # The sample config's list (README: the double quotes of the commands hold).
            "illegal_object_name_chars": "`~!$%^&*|'\"<>?,()=",
            "illegal_macro_output_chars": "`~$&|'\"<>",
            "use_regexp_matching": 0,
            "daemon_dumps_core": 0,
            "use_large_installation_tweaks": 0,
            "enable_environment_macros": 0,
            "debug_level": 0,
        }
        out = []
        for key, value in lines.items():
            for one in value if isinstance(value, list) else [value]:
                out.append(f"{key}={one}")
        return "\n".join(out) + "\n"

    def _objects(self) -> str:
        check = f"/bin/sh {shlex.quote(str(self.base / 'check.sh'))}"
        states = self.states
        attempts = self.options.max_check_attempts
        out = [
            "define timeperiod {\n  timeperiod_name 24x7\n  alias always\n"
            + "".join(f"  {day} 00:00-24:00\n" for day in _DAYS)
            + "}",
            "define command {\n  command_name check-host-file\n"
            f"  command_line {check} {states}/$HOSTNAME$\n}}",
            "define command {\n  command_name check-service-file\n"
            f"  command_line {check} {states}/$HOSTNAME$.$SERVICEDESC$\n}}",
            # README: the contact that receives everything.
            "define contact {\n  contact_name alertd\n  alias alertd incident daemon\n"
            "  service_notification_period 24x7\n  host_notification_period 24x7\n"
            "  service_notification_options w,u,c,r,f,s\n  host_notification_options d,u,r,f,s\n"
            "  service_notification_commands notify-service-by-alertd\n"
            "  host_notification_commands notify-host-by-alertd\n}",
        ]
        # Scheduled checks hourly, so only the test's forced checks and Nagios's own retries
        # (every second while a problem is SOFT) run during a scenario.
        common = (
            f"  max_check_attempts {attempts}\n  check_interval 3600\n  retry_interval 1\n"
            "  check_period 24x7\n  contacts alertd\n  notification_period 24x7\n"
            "  notification_interval 0\n  notifications_enabled 1\n  active_checks_enabled 1\n"
            "  passive_checks_enabled 1\n  obsess 1\n  flap_detection_enabled 0\n"
            "  first_notification_delay 0\n"
        )
        for host in self.hosts:
            out.append(
                f"define host {{\n  host_name {host.name}\n  alias {host.name}\n"
                f"  address 127.0.0.1\n  check_command check-host-file\n{common}"
                "  notification_options d,u,r,f,s\n}"
            )
            for service in host.services:
                out.append(
                    f"define service {{\n  host_name {host.name}\n"
                    f"  service_description {service}\n  check_command check-service-file\n"
                    f"{common}  notification_options w,u,c,r,f,s\n}}"
                )
        return "\n\n".join(out) + "\n"

    # --- process --------------------------------------------------------------------------

    def start(self, env: Mapping[str, str] | None = None, timeout: float = 30.0) -> None:
        """Verify the configuration (a bad one fails here with Nagios's own words), then run
        Nagios in the foreground and wait until it reads its command pipe and writes status."""
        verify = subprocess.run([str(self.binary), "-v", str(self.cfg)],
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        assert verify.returncode == 0, f"nagios -v failed:\n{verify.stdout}\n{verify.stderr}"
        full = dict(os.environ)
        full.update(env or {})
        with (self.base / "nagios.out").open("wb") as out:
            self.proc = subprocess.Popen(
                [str(self.binary), str(self.cfg)], stdout=out, stderr=subprocess.STDOUT,
                env=full, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not (self.pipe.exists() and self.status_file.exists()):
            if self.proc.poll() is not None:
                raise AssertionError(f"nagios exited {self.proc.returncode}: {self.output()}")
            assert time.monotonic() < deadline, f"nagios did not start: {self.output()}"
            time.sleep(0.1)

    def settle(self, timeout: float = 30.0) -> None:
        """Check every host and service now and wait until status.dat shows them all checked:
        Nagios otherwise spreads its first checks over the first minute, and one of them could
        land in the middle of a scenario."""
        for host in self.hosts:
            self.force_check(host.name)
            for service in host.services:
                self.force_check(host.name, service)
        keys: list[tuple[str, str | None]] = [(h.name, None) for h in self.hosts]
        keys += [(h.name, s) for h in self.hosts for s in h.services]
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if all(status.get(k, {}).get("has_been_checked") == "1" for k in keys):
                return
            assert time.monotonic() < deadline, f"nagios never checked everything: {status}"
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s; Nagios's workers are in its session and go too."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self._qh_dir, ignore_errors=True)

    def output(self) -> str:
        path = self.base / "nagios.out"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    # --- driving it -----------------------------------------------------------------------

    def set_state(self, host: str, service: str | None, state: str, output: str) -> None:
        """What the next check of host (or host's service) will say."""
        name = host if service is None else f"{host}.{service}"
        path = self.states / name
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"{EXIT_CODES[state]}\n{output}\n")
        os.replace(tmp, path)  # a check running now sees the old file or the new, never half

    def command(self, *lines: str) -> None:
        """Send external commands through the pipe, stamped now."""
        now = int(time.time())
        data = "".join(f"[{now}] {line}\n" for line in lines).encode()
        fd = os.open(self.pipe, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def force_check(self, host: str, service: str | None = None) -> None:
        now = int(time.time())
        if service is None:
            self.command(f"SCHEDULE_FORCED_HOST_CHECK;{host};{now}")
        else:
            self.command(f"SCHEDULE_FORCED_SVC_CHECK;{host};{service};{now}")

    def status(self) -> dict[tuple[str, str | None], dict[str, str]]:
        """status.dat as {(host, service or None): fields}."""
        try:
            text = self.status_file.read_text(errors="replace")
        except FileNotFoundError:
            return {}
        found: dict[tuple[str, str | None], dict[str, str]] = {}
        for kind, body in re.findall(r"^(hoststatus|servicestatus) \{\n(.*?)^\s*\}", text,
                                     re.M | re.S):  # fmt: skip
            fields = dict(line.strip().split("=", 1) for line in body.splitlines() if "=" in line)
            service = fields.get("service_description") if kind == "servicestatus" else None
            found[(fields.get("host_name", ""), service)] = fields
        return found

    def hard(self, host: str, service: str | None, state: str) -> bool:
        """Whether Nagios holds host (or its service) in `state`, HARD, per status.dat."""
        fields = self.status().get((host, service))
        return (
            fields is not None
            and fields.get("has_been_checked") == "1"
            and fields.get("current_state") == str(STATUS_CODES[state])
            and fields.get("state_type") == "1"
        )

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def notify_lines(self) -> list[str]:
        """What `alertd notify` printed in runs that did not exit 0: Nagios 4 logs a command's
        output only then (README), so an empty list means every run delivered."""
        return [line for line in self.log().splitlines() if "alertd notify:" in line]


_DAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")


def _user_and_group() -> tuple[str, str]:
    """Nagios drops to nagios_user/nagios_group; the test's own, so it can run this checkout's
    alertd and write the test's directory (root in CI, anyone locally)."""
    import grp
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
