"""The fake account: what a test can configure (`SandboxOptions`) and what it cannot, the fixed
ids, paths and limits of Freshdesk API v2 and of Freshservice's (docs/protocols.md section 1)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

API: Final = "/api/v2"
STATUSES: Final = (2, 3, 4, 5)
PRIORITIES: Final = (1, 2, 3, 4)
SOURCES: Final = (1, 2, 3, 7, 9, 10)
# Freshservice numbers its sources 1-10 with other meanings (4 Chat, 7 AWS Cloudwatch, 10 Slack).
SERVICE_SOURCES: Final = tuple(range(1, 11))
SERVICE_LEVELS: Final = (1, 2, 3)  # Freshservice impact and urgency
REQUESTER_FIELDS: Final = (
    "requester_id",
    "email",
    "phone",
    "twitter_id",
    "facebook_id",
    "unique_external_id",
)
FLAVOURS: Final = ("freshdesk", "freshservice")
AGENT_ID: Final = 1  # owner of the API key: the default author of notes
WINDOW_SECONDS: Final = 60
LIST_DAYS: Final = 30
MAX_PER_PAGE: Final = 100
MAX_LIST_PAGE: Final = 300  # a list walks at most 300 pages of 100
MAX_TAG_LENGTH: Final = 32
MAX_TAGS: Final = 30  # tags on one ticket
SEARCH_PAGE_SIZE: Final = 30
SEARCH_MAX_PAGE: Final = 10
SEARCH_MAX_QUERY: Final = 512
# [U] A Priority Matrix as an admin might set it: (impact, urgency) -> priority, 1 Low .. 4 Urgent.
PRIORITY_MATRIX: Final = {
    (1, 1): 1, (1, 2): 1, (2, 1): 1,
    (1, 3): 2, (2, 2): 2, (3, 1): 2,
    (2, 3): 3, (3, 2): 3,
    (3, 3): 4,
}  # fmt: skip
# The operation classes that have their own per-minute limit within the total (1.9).
LIMIT_CLASSES: Final = ("create", "update", "list", "view")


@dataclass(slots=True)
class SandboxOptions:
    """How this fake account is configured; the defaults match a new Freshdesk account."""

    api_key: str = "sandbox-key"
    rate_limit_per_minute: int = 200
    ticket_types: tuple[str, ...] = ("Question", "Incident", "Problem", "Feature Request")
    custom_fields: tuple[str, ...] = ()
    flavour: str = "freshdesk"
    search_lag_seconds: float = 0.0
    groups: tuple[int, ...] = ()
    # [U] Accounts can add their own status ids beyond 2-5.
    custom_statuses: tuple[int, ...] = ()
    # [U] Accounts can make ticket fields mandatory. The default enforces alertd's own rule (always
    # send these five), so a client that leaves one out fails here. Use () to get the API's
    # documented defaults (status 2, priority 1, source 2) instead.
    required_fields: tuple[str, ...] = ("subject", "description", "status", "priority", "source")
    # [U] Extra credits for each `include=` item (sources say 1 or 2).
    include_cost: int = 1
    # Per-minute sub-limits within the total, by operation class ("create", "update", "list",
    # "view"); a class left out has none. Freshdesk Growth: create 80, update 80, list 20.
    sub_limits: Mapping[str, int] = field(default_factory=dict)
    # [U] Fields an account makes mandatory to resolve or close (status 4 or 5), e.g.
    # ("custom_fields.cf_root_cause",); a PUT that resolves with one still empty is a 400.
    required_for_closure: tuple[str, ...] = ()
    # Freshservice: workspace ids, the primary first. List and filter without `workspace_id`
    # see only the primary one; `workspace_id=0` sees all (docs/protocols.md 1.10).
    workspaces: tuple[int, ...] = (2,)
    # Freshservice: the Priority Matrix, (impact, urgency) -> priority, as the admin set it; when
    # on, it overrules the priority a create or update sends with impact or urgency. None: off.
    priority_matrix: Mapping[tuple[int, int], int] | None = None
    # The first ticket id. A long-running `alertd sandbox` starts from the clock (see
    # `ids_from_clock`), so a restart never hands out an id a daemon already links to.
    first_ticket_id: int = 1
    # The account's directory (alertd.sandbox.directory): agents besides the key's own
    # (AGENT_ID), and dropdown choices of custom fields.
    agents: tuple[int, ...] = ()
    custom_field_choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # A slow helpdesk: every create, update and note takes effect this many seconds after it
    # arrived, then is answered; it takes effect even if the client gave up or died meanwhile.
    act_late: float = 0.0

    @staticmethod
    def ids_from_clock(now: float) -> int:
        """A first ticket id no earlier run handed out: milliseconds since 2020. A run creates at
        most one ticket per millisecond (`alertd sandbox --rate-limit` is at most 60,000), so
        its ids stay behind the clock and the next run starts beyond them."""
        return int((now - 1_577_836_800) * 1000)

    def __post_init__(self) -> None:
        if self.flavour not in FLAVOURS:
            raise ValueError(f"flavour must be one of {FLAVOURS}, not {self.flavour!r}")
        if self.rate_limit_per_minute < 1:
            raise ValueError("rate_limit_per_minute must be at least 1")
        unknown = set(self.sub_limits) - set(LIMIT_CLASSES)
        if unknown or any(limit < 1 for limit in self.sub_limits.values()):
            raise ValueError(f"sub_limits takes {LIMIT_CLASSES} with limits >= 1")
        if not 0 <= self.act_late <= 3600:
            raise ValueError("act_late must be 0-3600 seconds")
        if not self.workspaces:
            raise ValueError("workspaces needs at least the primary workspace")

    @property
    def service(self) -> bool:
        """Whether this account is a Freshservice one."""
        return self.flavour == "freshservice"

    @property
    def sources(self) -> tuple[int, ...]:
        return SERVICE_SOURCES if self.service else SOURCES
