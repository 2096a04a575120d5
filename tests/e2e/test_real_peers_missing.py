"""A real peer that is not installed: skipped with a one-line reason on a developer's machine,
a failure under CI=true (tests/support/peers.py)."""

from __future__ import annotations

import pytest

from tests.support.peers import require_binary

MISSING = "/nonexistent/sbin/nagios4"


def test_a_missing_peer_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without CI the test is skipped, and the reason names the program and its package."""
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_binary(MISSING, "nagios4-core")
    assert str(skipped.value) == f"{MISSING} not found: apt-get install nagios4-core"


@pytest.mark.parametrize("value", ["true", "1", "TRUE"])
def test_a_missing_peer_fails_under_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """Under CI=true the same test fails: CI installs every peer, so a skip would hide a gap."""
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="CI=true needs every real peer"):
        require_binary(MISSING, "nagios4-core")


def test_an_installed_program_is_found() -> None:
    assert require_binary("sh", "dash").name == "sh"
