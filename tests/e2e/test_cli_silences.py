"""`alertd silences add|list|expire` against a real alertd app on loopback."""

from __future__ import annotations

import asyncio

import pytest

from alertd.cli.main import main
from tests.support import MakeClient


async def test_add_list_and_expire_a_silence_from_the_command_line(
    make_client: MakeClient, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI adds a weekly window with the token from the environment, lists it, and
    expires it; a refused silence exits 1 naming the field."""
    client = await make_client('[auth]\ntokens = ["s3cret"]')
    monkeypatch.setenv("ALERTD_TOKEN", "s3cret")
    url = str(client.make_url("")).rstrip("/")

    async def run(*argv: str) -> int:
        return await asyncio.to_thread(main, ["silences", "--url", url, *argv])

    capsys.readouterr()  # the app's start-up log
    assert await run("add", "--host", "db-*", "--weekly", "sun@02:00/2h", "--timezone",
                     "Europe/Berlin", "--comment", "backups", "--author", "carol") == 0  # fmt: skip
    assert capsys.readouterr().out == "silence 1 added (pending)\n"
    assert await run("list") == 0
    line = capsys.readouterr().out
    assert "pending" in line and "host=db-*" in line and "weekly sun 02:00 for 2h" in line
    assert "by carol: backups" in line
    assert await run("expire", "1") == 0
    assert capsys.readouterr().out.startswith("silence 1 expired (ended ")
    assert await run("add", "--host", "x", "--comment", "no end") == 1
    assert "ends_at: required" in capsys.readouterr().err
    monkeypatch.setenv("ALERTD_TOKEN", "wrong")
    assert await run("list") == 1
    assert "refused the token" in capsys.readouterr().err
