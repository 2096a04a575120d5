"""`alertd check-config --online` against the sandbox helpdesk on loopback: what the account
says about the config, in the offline form (file: key: reason), and exit 0 or 1."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from alertd.cli.main import main
from alertd.sandbox import Sandbox
from tests.support import KEY

GOOD = """
group_id = 7
custom_fields = { cf_origin = "monitoring" }
[[helpdesk.rules]]
name = "dba"
service = "Postgres*"
responder_id = 12
[[escalation.urgent]]
after = "30m"
group_id = 7
"""

BAD = """
type = "Incidnet"
group_id = 8
rate_limit_per_minute = 2000
custom_fields = { origin = "monitoring" }
[[helpdesk.rules]]
name = "dba"
service = "Postgres*"
custom_fields = { cf_origin = "robot" }
[[escalation.high]]
after = "1h"
responder_id = 99
"""


def _config(tmp_path: Path, url: str, extra: str, key: str = KEY) -> Path:
    (tmp_path / "helpdesk.key").write_text(key)
    path = tmp_path / "alertd.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "alertd.db"}"\n[auth]\ndisabled = true\n'
        f'[helpdesk]\nurl = "{url}"\n'
        f'requester_email = "noc@example.com"\napi_key_file = "helpdesk.key"\n{extra}'
    )
    return path


async def _check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, ["check-config", "--config", str(path), "--online"], {})
    out, err = capsys.readouterr()
    return code, out, err


# The Freshdesk account: its /ticket_fields carries the choices and required flags checked here.
# The Freshservice sandbox's /ticket_form_fields lists statuses and custom fields only, so the
# Freshservice side of the check is not covered by these tests yet.
pytestmark = pytest.mark.parametrize("flavour", ["freshdesk"])


@pytest.fixture
def account(sandbox: tuple[Sandbox, str]) -> tuple[Sandbox, str]:
    helpdesk, url = sandbox
    options = helpdesk.options
    options.groups, options.agents = (7,), (12,)
    options.custom_fields = ("cf_origin", "cf_root_cause")
    options.custom_field_choices = {"cf_origin": ("monitoring", "manual")}
    return helpdesk, url


async def test_a_config_the_account_takes_passes_and_says_who_the_key_is(
    account: tuple[Sandbox, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 0; the key's agent and the account's rate limit are shown; only GETs were sent,
    and the key never appears."""
    helpdesk, url = account
    code, out, err = await _check(_config(tmp_path, url, GOOD), capsys)
    assert (code, err) == (0, "")
    assert "online: API key OK: agent Sandbox Agent <agent@sandbox.example> (id 1)" in out
    assert "online: rate limit: 1000 calls a minute for the whole account" in out
    assert {r.method for r in helpdesk.requests} == {"GET"}
    assert {r.path for r in helpdesk.requests} >= {
        "/api/v2/agents/me", "/api/v2/ticket_fields", "/api/v2/groups/7", "/api/v2/agents/12"
    }
    assert KEY not in out + err


async def test_every_problem_the_account_reveals_is_named_by_its_key(
    account: tuple[Sandbox, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A misspelt type, a custom field that does not exist, a value that is no choice, a group
    and an agent that do not exist, a field required for closure that alertd never sends, a
    share above the account's limit: each on its own line, file: key: reason; exit 1."""
    helpdesk, url = account
    helpdesk.options.required_for_closure = ("custom_fields.cf_root_cause",)
    path = _config(tmp_path, url, BAD)
    code, _, err = await _check(path, capsys)
    assert code == 1
    problems = dict(line.removeprefix(f"{path}: ").split(": ", 1) for line in err.splitlines())
    assert set(problems) == {
        "helpdesk.type", "helpdesk.group_id", "helpdesk.rate_limit_per_minute",
        "helpdesk.custom_fields.origin", "helpdesk.rules[1].custom_fields.cf_origin",
        "escalation.high[1].responder_id", "helpdesk.custom_fields",
    }  # fmt: skip
    assert problems["helpdesk.type"].startswith("ticket type 'Incidnet' is not one of")
    assert "no custom field named 'origin'" in problems["helpdesk.custom_fields.origin"]
    assert "'robot' is not a choice of 'cf_origin': monitoring, manual" in problems[
        "helpdesk.rules[1].custom_fields.cf_origin"
    ]
    assert problems["helpdesk.group_id"] == "groups 8 does not exist in the helpdesk"
    assert problems["escalation.high[1].responder_id"] == "agents 99 does not exist in the helpdesk"
    assert "'cf_root_cause'" in problems["helpdesk.custom_fields"]
    assert "required to resolve or close" in problems["helpdesk.custom_fields"]
    assert "more than the account's whole limit of 1000" in problems[
        "helpdesk.rate_limit_per_minute"
    ]


async def test_a_refused_key_is_one_problem_naming_where_the_key_comes_from(
    account: tuple[Sandbox, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The helpdesk refuses the key: one problem on the key's source, nothing else asked."""
    helpdesk, url = account
    path = _config(tmp_path, url, GOOD, key="wrong-key-4567")
    code, out, err = await _check(path, capsys)
    assert code == 1
    assert err.startswith(f"{path}: helpdesk.api_key_file: the helpdesk refused the API key (401)")
    assert len(err.splitlines()) == 1 and "wrong-key" not in out + err
    assert [r.path for r in helpdesk.requests] == ["/api/v2/agents/me"]
