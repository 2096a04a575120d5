"""Where paths point: a relative path in the file means next to the file, and the data directory
defaults to systemd's StateDirectory=, XDG's state directory or ~/.local/state/alertd."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def default_data_dir(env: Mapping[str, str]) -> Path:
    """systemd's StateDirectory=, else the XDG state directory, else ~/.local/state/alertd."""
    state = env.get("STATE_DIRECTORY", "")
    if state:
        # systemd joins several StateDirectory= entries with colons; ours is the first.
        return Path(state.split(":")[0])
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg and Path(xdg).is_absolute():  # the XDG spec says to ignore relative values
        return Path(xdg) / "alertd"
    home = env.get("HOME")
    return (Path(home) if home else Path.home()) / ".local" / "state" / "alertd"


def _beside(base: Path | None, given: str) -> Path:
    path = Path(given)
    return path if base is None or path.is_absolute() else base / path
