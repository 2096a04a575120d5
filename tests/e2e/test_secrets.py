"""No secret in any log line or error message, whichever path it comes through.

Tokens arrive from the config file, a tokens file and the environment; clients send right,
wrong and malformed credentials; config files with broken tokens are loaded and reloaded.
Every log event (with request context) and every answer body is searched for each secret.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient

from alertd import reload
from alertd.app import build_app
from alertd.config import load_config
from alertd.errors import ConfigError

IN_FILE = "cfg-Secret-111aaa"
IN_TOKENS_FILE = "file-Secret-222bbb"
IN_ENV = "env-Secret-333ccc"
BROKEN = "broken-Secret-444ddd"
SECRETS = (IN_FILE, IN_TOKENS_FILE, IN_ENV, BROKEN)
RESULT = {"host": "web-01", "service": "HTTP", "state": "CRITICAL"}


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text or s[:-3] in text]


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    (tmp_path / "tokens").write_text(f"# rotated monthly\n{IN_TOKENS_FILE}\n")
    path = tmp_path / "alertd.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "a.db"}"\n'
        f'[auth]\ntokens = ["{IN_FILE}"]\ntokens_file = "tokens"\n'
    )
    return path


async def test_no_secret_reaches_logs_or_answers(
    aiohttp_client: Any, config_path: Path, tmp_path: Path
) -> None:
    """Right, wrong and malformed credentials, bad config and reloads: no secret anywhere."""
    env = {"ALERTD_TOKENS": IN_ENV}
    answers: list[str] = []
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as logs:
        config = load_config(config_path, env)
        assert len(config.auth.tokens) == 3
        answers.append(repr(config))
        client: TestClient[web.Request, web.Application] = await aiohttp_client(build_app(config))
        basic = base64.b64encode(f"admin:{IN_FILE}".encode()).decode()
        for header in (
            f"Bearer {IN_FILE}",
            f"Bearer {IN_TOKENS_FILE}",
            f"bearer {IN_ENV}",
            f"Bearer {IN_FILE}x",  # near misses: must not be echoed either
            f"Bearer {IN_ENV[:-1]}",
            f"Basic {basic}",
            f"Token {IN_FILE}",
            f"{IN_FILE}",
            f"Bearer {IN_FILE} {IN_ENV}",
        ):
            for path in ("/api/v1/results", f"/api/v1/incidents?token={IN_FILE}", "/readyz"):
                method = client.post if path.endswith("results") else client.get
                kwargs = {"json": RESULT} if path.endswith("results") else {}
                response = await method(path, headers={"Authorization": header}, **kwargs)
                body = await response.text()
                answers.append(f"{response.status} {dict(response.headers)} {body}")
        answers.append(await (await client.get("/metrics")).text())

        # A config whose tokens are broken: the problems describe them, never show them.
        bad = tmp_path / "bad.toml"
        bad.write_text(f'[auth]\ntokens = ["{BROKEN} x", 7]\ntokens_file = "missing-tokens"\n')
        with pytest.raises(ConfigError) as exc_info:
            load_config(bad, env)
        answers.append(str(exc_info.value))
        answers.extend(str(p) for p in exc_info.value.problems)
        await reload.reload(client.app, bad, env)
        (tmp_path / "tokens").write_text(f"{BROKEN} spaced\n")
        await reload.reload(client.app, config_path, env)
        (tmp_path / "tokens").write_text(f"{BROKEN}\n")
        await reload.reload(client.app, config_path, env)  # good: rotates to BROKEN
        answers.append(str(exc_info.value))

    assert len(logs) > 20  # auth failures, config problems, reloads: the paths did run
    assert {"auth_failed", "config_problem", "config_reloaded"} <= {e["event"] for e in logs}
    everything = "\n".join([repr(logs), *answers])
    assert leaks(everything) == []
