"""Auth fails closed and tokens carry scopes: an emptied tokens file never opens the API, a token
does only what its scopes allow, and an NRDP token is no API token."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import structlog

from alertd import reload
from tests.support import MakeClient
from tests.support.proc import free_port

CRIT = {"host": "web-01", "service": "HTTP", "state": "CRITICAL"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_an_emptied_tokens_file_keeps_the_old_tokens_on_reload(
    make_client: MakeClient, tmp_path: Path
) -> None:
    """A rotation script truncates the tokens file and a SIGHUP arrives before it writes: the
    reload is refused with an error, the old token still works, and no token is still a 401."""
    tokens = tmp_path / "tokens"
    tokens.write_text("old-tok\n")
    client = await make_client(f'[auth]\ntokens_file = "{tokens}"\n')
    tokens.write_text("")  # truncated, not yet rewritten
    with structlog.testing.capture_logs() as logs:
        report = await reload.reload(client.app, tmp_path / "alertd.toml", env={})

    assert not report.applied
    assert any("no API token" in p for p in report.problems)
    assert {e["log_level"] for e in logs if e["event"].startswith("config_")} == {"error"}
    assert (await client.post("/api/v1/results", json=CRIT)).status == 401
    assert (await client.post("/api/v1/outbox/retry")).status == 401
    kept = await client.post("/api/v1/results", json=CRIT, headers=bearer("old-tok"))
    assert kept.status == 202


def test_the_daemon_refuses_to_start_with_no_token_at_all(tmp_path: Path) -> None:
    """`alertd run` with a config that yields no token exits 1 naming auth.tokens, and never
    listens; `auth.disabled = true` is the only way to an open API."""
    port = free_port()
    config = tmp_path / "alertd.toml"
    (tmp_path / "tokens").write_text("# rotated monthly; nothing here yet\n")
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n[store]\npath = "a.db"\n'
        '[auth]\ntokens_file = "tokens"\n'
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "alertd.cli", "run", "--config", str(config)],
        capture_output=True, text=True, timeout=30, env=env,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "auth.tokens" in done.stderr and "auth.disabled = true" in done.stderr
    assert not (tmp_path / "a.db").exists()


async def _status(client: Any, method: str, path: str, token: str, **kw: Any) -> int:
    response = await client.request(method, path, headers=bearer(token), **kw)
    return int(response.status)


async def test_each_scope_allows_its_routes_only(make_client: MakeClient, tmp_path: Path) -> None:
    """ingest posts results and beats; read lists; operate acks, escalates, silences and
    re-drives; a plain token does everything; the refusal is a 403 naming the scope."""
    (tmp_path / "tokens").write_text(
        "sender-tok:ingest\nviewer-tok:read\nops-tok:read+operate\nlegacy-tok\n"
    )
    client = await make_client(
        '[auth]\ntokens_file = "tokens"\n[nrdp]\ntokens = ["nrdp-tok"]\n'
    )
    assert await _status(client, "POST", "/api/v1/results", "sender-tok", json=CRIT) == 202
    incident_id = (
        await (await client.get("/api/v1/incidents", headers=bearer("viewer-tok"))).json()
    )["incidents"][0]["id"]
    silence = {"host": "web-01", "duration": "1h", "author": "a", "comment": "c"}
    routes: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", "/api/v1/results", {"json": CRIT}, "ingest"),
        ("POST", "/api/v1/heartbeats/nightly", {"json": {"interval": "1h"}}, "ingest"),
        ("GET", "/api/v1/incidents", {}, "read"),
        ("GET", f"/api/v1/incidents/{incident_id}", {}, "read"),
        ("GET", "/api/v1/outbox", {}, "read"),
        ("GET", "/api/v1/silences", {}, "read"),
        ("POST", f"/api/v1/incidents/{incident_id}/ack", {"json": {}}, "operate"),
        ("POST", f"/api/v1/incidents/{incident_id}/escalate", {"json": {"reason": "r"}}, "operate"),
        ("POST", "/api/v1/silences", {"json": silence}, "operate"),
        ("POST", "/api/v1/outbox/retry", {}, "operate"),
        ("DELETE", "/api/v1/heartbeats/nightly", {}, "operate"),
    ]
    granted = {
        "sender-tok": {"ingest"},
        "viewer-tok": {"read"},
        "ops-tok": {"read", "operate"},
        "legacy-tok": {"ingest", "read", "operate"},
    }
    for method, path, kw, scope in routes:
        for token, scopes in granted.items():
            response = await client.request(method, path, headers=bearer(token), **kw)
            if scope in scopes:
                # Allowed: whatever the route answers (a second DELETE is a 404), never 401/403.
                assert response.status not in (401, 403), (token, method, path)
            else:
                assert response.status == 403, (token, method, path, await response.text())
                assert scope in (await response.json())["error"]
                assert "insufficient_scope" in response.headers["WWW-Authenticate"]
        # An NRDP token is for NRDP's form field only.
        assert await _status(client, method, path, "nrdp-tok", **kw) == 401


def test_scoped_tokens_are_validated_and_never_shown(tmp_path: Path) -> None:
    """An unknown scope or an NRDP token with more than ingest is a config error that names the
    key, never the token."""
    from alertd.config import load_config
    from alertd.errors import ConfigError

    path = tmp_path / "alertd.toml"
    path.write_text(
        '[auth]\ntokens = ["s3cret-a:ingest+admin"]\n[nrdp]\ntokens = ["s3cret-b:operate"]\n'
    )
    try:
        load_config(path, {})
    except ConfigError as exc:
        text = str(exc)
    else:
        raise AssertionError("accepted")
    assert "auth.tokens[1]" in text and "'admin' is not one" in text
    assert "nrdp.tokens[1]" in text and "only have the scope ingest" in text
    assert "s3cret" not in text
