"""The CLI's HTTP client (`incidents`, `silences`, `outbox`) sends the bearer token to the given
URL only, like `alertd notify`: no proxy from the environment, no redirect followed."""

from __future__ import annotations

import asyncio

import pytest

from alertd.cli.main import main
from tests.support import MakeClient
from tests.support.proc import listener

TOKEN = "s3cret-cli-T0KEN"


async def test_the_cli_token_goes_to_the_given_url_only(
    make_client: MakeClient, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With http_proxy set, `incidents list` still talks to alertd directly; a URL that
    redirects gets exit 1 and a clear message, and the Location target never sees the token."""
    client = await make_client(f'[auth]\ntokens = ["{TOKEN}"]\n')
    daemon = str(client.make_url("")).rstrip("/")
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    elsewhere, elsewhere_url, stolen = await listener(ok)
    moved = f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {elsewhere_url}/steal\r\n"
    moved += "Content-Length: 0\r\nConnection: close\r\n\r\n"
    redirector, redirector_url, asked = await listener(moved.encode())
    async with elsewhere, redirector:
        for name in ("http_proxy", "HTTP_PROXY"):
            monkeypatch.setenv(name, elsewhere_url)
        for name in ("no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        env = {"ALERTD_TOKEN": TOKEN}
        monkeypatch.setenv("ALERTD_TOKEN", TOKEN)  # the commands that read os.environ
        capsys.readouterr()
        for argv in (["incidents", "list"], ["silences", "list"], ["outbox", "list"]):
            code = await asyncio.to_thread(main, [*argv, "--url", daemon], env)
            assert code == 0, capsys.readouterr().err
        assert stolen == []  # straight to alertd, not through the proxy
        code = await asyncio.to_thread(main, ["incidents", "list", "--url", redirector_url], env)
        err = capsys.readouterr().err
        assert code == 1 and "redirect" in err and "not followed" in err
    assert len(asked) == 1 and f"Bearer {TOKEN}".encode() in asked[0]
    assert stolen == []
