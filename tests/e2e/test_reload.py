"""SIGHUP reload called directly: a good file applies whole and at once, a bad one not at all."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog

from alertd import reload
from alertd.config import Config
from alertd.http.keys import ENGINE, LIVE, METRICS, RELOAD_HOOKS
from alertd.model import Level
from tests.support import MakeClient

CRIT = {"host": "web-01", "service": "HTTP", "state": "CRITICAL"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def post_status(client: Any, token: str) -> int:
    response = await client.post("/api/v1/results", json=CRIT, headers=bearer(token))
    return int(response.status)


async def test_good_file_swaps_policy_tokens_and_hooks_and_names_restart_keys(
    make_client: MakeClient, tmp_path: Path
) -> None:
    """Rules, timers and tokens apply at once; listener/store changes are named, not applied."""
    client = await make_client('[auth]\ntokens = ["old-tok"]\n')
    seen: list[tuple[Config, Config]] = []
    client.app[RELOAD_HOOKS].append(lambda old, new: seen.append((old, new)))
    path = tmp_path / "alertd.toml"
    path.write_text(
        f'[server]\nlisten = "127.0.0.1:1"\n[store]\npath = "{tmp_path / "other.db"}"\n'
        '[auth]\ntokens = ["new-tok"]\n[lifecycle]\nrecovery_hold = "1m"\n'
        '[[priority.rules]]\nname = "web"\nimpact = "high"\nhost = "web-*"\n'
    )
    with structlog.testing.capture_logs() as logs:
        report = await reload.reload(client.app, path, env={})

    assert report.applied
    assert report.changed == ("auth.tokens", "lifecycle.recovery_hold", "priority.rules")
    assert report.needs_restart == ("server.listen", "store.path")
    assert client.app[ENGINE].policy.recovery_hold == timedelta(minutes=1)
    assert len(seen) == 1 and seen[0][1].lifecycle.priority.rules[0].name == "web"
    assert await post_status(client, "old-tok") == 401
    assert await post_status(client, "new-tok") == 202
    (incident,) = (await (await client.get("/api/v1/incidents", headers=bearer("new-tok"))).json())[
        "incidents"
    ]
    assert incident["priority"] == "urgent" and incident["priority_rule"] == "web"
    assert [e["event"] for e in logs] == ["config_reloaded", "config_needs_restart"]
    assert logs[0]["tokens"] == 1 and "new-tok" not in repr(logs)
    assert (
        client.app[METRICS].registry.get_sample_value(
            "alertd_config_reloads_total", {"outcome": "ok"}
        )
        == 1
    )


async def test_bad_file_keeps_everything_and_logs_every_problem(
    make_client: MakeClient, tmp_path: Path
) -> None:
    """Three problems: three config_problem lines, one config_reload_failed, nothing applied."""
    client = await make_client('[auth]\ntokens = ["old-tok"]\n')
    before = client.app[LIVE].config
    policy = client.app[ENGINE].policy
    path = tmp_path / "alertd.toml"
    path.write_text(
        '[auth]\ntokens = ["new-tok", "has a space"]\n'
        '[lifecycle]\nrecovery_hold = "soon"\n[priority]\ndefault_impact = "huge"\n'
    )
    with structlog.testing.capture_logs() as logs:
        report = await reload.reload(client.app, path, env={})

    assert not report.applied and len(report.problems) == 3
    assert client.app[LIVE].config is before and client.app[ENGINE].policy is policy
    assert client.app[ENGINE].policy.priority.default_impact is Level.MEDIUM
    problems = [e for e in logs if e["event"] == "config_problem"]
    assert [p["key"] for p in problems] == [
        "auth.tokens[2]",
        "lifecycle.recovery_hold",
        "priority.default_impact",
    ]
    assert logs[-1]["event"] == "config_reload_failed" and logs[-1]["problems"] == 3
    assert "has a space" not in repr(logs) and "new-tok" not in repr(logs)
    assert await post_status(client, "old-tok") == 202


async def test_unreadable_file_is_a_refused_reload(make_client: MakeClient, tmp_path: Path) -> None:
    """A file that vanished or is not TOML is one problem, and the old config stays."""
    client = await make_client()
    (tmp_path / "broken.toml").write_text("[server\n")
    for path in (tmp_path / "missing.toml", tmp_path / "broken.toml"):
        with structlog.testing.capture_logs() as logs:
            report = await reload.reload(client.app, path, env={})
        assert not report.applied
        assert logs[0]["event"] == "config_problem" and logs[0]["file"] == str(path)
