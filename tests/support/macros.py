"""Nagios macro sets as `alertd notify` posts them, built for a given time and state: the
obsessive-compulsive processors' (every check result, a stream) and notifications' (changes)."""

from __future__ import annotations

from datetime import datetime

from tests.support import Client


def macros(
    host: str,
    service: str | None,
    state: str,
    at: datetime,
    *,
    notification: str = "",
    state_type: str = "HARD",
    attempt: int = 1,
    max_attempts: int = 1,
    output: str = "",
) -> dict[str, str]:
    """One macro set: OCSP/OCHP without `notification`, else that notification type."""
    obj = "HOST" if service is None else "SERVICE"
    epoch = str(int(at.timestamp()))
    found = {
        "NAGIOS_HOSTNAME": host,
        "NAGIOS_NOTIFICATIONTYPE": notification,
        f"NAGIOS_{obj}STATE": state,
        f"NAGIOS_{obj}STATETYPE": state_type,
        f"NAGIOS_{obj}ATTEMPT": str(attempt),
        f"NAGIOS_MAX{obj}ATTEMPTS": str(max_attempts),
        f"NAGIOS_{obj}OUTPUT": output or f"{state.lower()} at {at:%H:%M:%S}",
        f"NAGIOS_LAST{obj}CHECK": epoch,
        "NAGIOS_TIMET": epoch,
    }
    if service is not None:
        found["NAGIOS_SERVICEDESC"] = service
    return found


async def send(client: Client, *sets: dict[str, str]) -> None:
    """Post macro sets to /api/v1/nagios in one request, as a spool drain would."""
    response = await client.post("/api/v1/nagios", json=list(sets))
    assert response.status == 202, await response.text()
