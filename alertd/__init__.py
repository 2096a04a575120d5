"""alertd: monitoring check results in, deduplicated and prioritised incidents out."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version


def version() -> str:
    """The installed distribution's version ("unknown" when run from an uninstalled tree)."""
    try:
        return _dist_version("alertd")
    except PackageNotFoundError:
        return "unknown"
