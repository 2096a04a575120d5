"""A real Prometheus Alertmanager owned by one test: its config is the README's webhook receiver
(taken from README.md, with the test's URL and token file), with short group timers; alerts
go in through its own API (`POST /api/v2/alerts`), as Prometheus sends them."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from tests.support import ROOT
from tests.support.proc import free_port

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"  # Debian's prometheus-alertmanager
PACKAGE = "prometheus-alertmanager"
README_URL = "http://alertd.example:8780/api/v1/alertmanager"
README_TOKEN_FILE = "/etc/alertmanager/alertd.token"
# Seconds, not Alertmanager's defaults (30s, 5m): a group is sent a second after its first
# alert, and again a second after any change, so firing and resolved reach alertd promptly.
TIMERS = {"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"}


def readme_config(url: str, token_file: Path) -> dict[str, Any]:
    """The README's Alertmanager configuration, pointed at the test's alertd."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "webhook_configs" in b]
    assert len(blocks) == 1, "README.md should have one Alertmanager receiver block"
    for example in (README_URL, README_TOKEN_FILE):
        assert example in blocks[0], f"README's Alertmanager block no longer says {example}"
    block = blocks[0].replace(README_URL, url + "/api/v1/alertmanager")
    config: dict[str, Any] = yaml.safe_load(block.replace(README_TOKEN_FILE, str(token_file)))
    # Alerts of one alertname and instance travel together: a group of several alerts.
    config["route"].update(TIMERS, group_by=["alertname", "instance"])
    return config


class Alertmanager:
    """One Alertmanager process on a free loopback port, clustering off (no gossip port shared
    with anything else on the machine), its data in `base`."""

    def __init__(self, binary: Path, base: Path, alertd_url: str, token: str) -> None:
        self.binary = binary
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        token_file = base / "alertd.token"
        token_file.write_text(token)  # Alertmanager sends the file's content as the token
        self.config = base / "alertmanager.yml"
        self.config.write_text(yaml.safe_dump(readme_config(alertd_url, token_file)))
        self.log_file = base / "alertmanager.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        with self.log_file.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(self.binary), f"--config.file={self.config}",
                 f"--storage.path={self.base / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}",
                 "--cluster.listen-address=", "--log.level=debug"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/-/ready", timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise AssertionError(f"alertmanager exited: {self.log()}") from None
                assert time.monotonic() < deadline, f"alertmanager not ready: {self.log()}"
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        return text[-3000:]

    def post(self, *alerts: dict[str, Any]) -> None:
        """`POST /api/v2/alerts`, as Prometheus posts its alerts."""
        request = urllib.request.Request(
            f"{self.url}/api/v2/alerts", json.dumps(list(alerts)).encode(),
            {"Content-Type": "application/json"}, method="POST",
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200, response.read()

    def notifications(self) -> int:
        """Webhooks Alertmanager reports it sent, from its debug log."""
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        return text.count("Notify success")


def alert(
    labels: dict[str, str], summary: str, starts: datetime, *, resolved: bool = False
) -> dict[str, Any]:
    """One alert as Prometheus sends it: firing since `starts` with an end a few minutes ahead
    (Prometheus resends while it fires), or resolved: the same start, its end now."""
    now = datetime.now(UTC)
    ends = now if resolved else now + timedelta(minutes=5)
    return {
        "labels": labels,
        "annotations": {"summary": summary},
        "startsAt": starts.isoformat(),
        "endsAt": ends.isoformat(),
        "generatorURL": "http://prometheus.example:9090/graph",
    }
