"""A wall clock a test can step: how the tests set a real daemon's clock forward and back.

Honoured only when `ALERTD_TEST_WALL_OFFSET_FILE` names a file, which then holds the offset in
seconds added to the system's wall clock (re-read when the file changes). Nothing else reads
that variable, and a daemon started with it fails closed: the file must be a regular file owned
by the user alertd runs as and writable by nobody else, or alertd refuses to start; and it logs
a warning at start that its clock is shifted. A bad offset in the file is an error at start, and
later keeps the last good one.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path

from alertd.clock import wall_time
from alertd.errors import ConfigError, ConfigProblem

ENV = "ALERTD_TEST_WALL_OFFSET_FILE"


class ShiftedWall:
    """The wall clock plus the offset in `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None
        self._offset = timedelta(0)
        self._read(strict=True)

    def _read(self, *, strict: bool) -> None:
        info = os.stat(self.path)
        if (
            not stat.S_ISREG(info.st_mode)
            or info.st_uid != os.getuid()
            or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        ):
            raise _error(self.path, "must be a file of this user, writable by nobody else")
        seen = (info.st_mtime_ns, info.st_size)
        if seen == self._seen:
            return
        try:
            self._offset = timedelta(seconds=float(self.path.read_text().strip() or 0))
        except (ValueError, OverflowError) as exc:
            if strict:
                raise _error(self.path, "holds no offset in seconds") from exc
            return
        self._seen = seen

    def __call__(self) -> datetime:
        with contextlib.suppress(OSError, ConfigError):  # keep the last good offset
            self._read(strict=False)
        return wall_time() + self._offset


def wall_from_env(environ: Mapping[str, str] = os.environ) -> Callable[[], datetime] | None:
    """The shifted wall clock the environment asks for, or None (the plain one)."""
    name = environ.get(ENV)
    if not name:
        return None
    try:
        return ShiftedWall(Path(name))
    except OSError as exc:
        raise _error(Path(name), f"cannot be read: {exc.strerror}") from exc


def _error(path: Path, message: str) -> ConfigError:
    return ConfigError([ConfigProblem(str(path), ENV, message)])
