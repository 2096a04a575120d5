"""The notification spool of `alertd notify`: a directory of files waiting for the daemon.

One file per notification, written atomically (temporary file, fsync, rename) so a crash
never leaves half a notification; names sort by creation time, so delivery is oldest first.
Every notification passes through here, even when the daemon is up: that is what keeps order.
A file the daemon refuses as malformed moves to `rejected/` rather than blocking the queue.
Standard library only: this runs in every notification command.

The spool is trusted: what is in it is sent with our token. So a directory that is not owned
by the running user, or that others may write to, is refused (anyone could plant notifications
there, or swap a file for a symlink), and temporary files get unpredictable names, created
exclusively (`mkstemp`), so nothing prepared in advance can be written through.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from alertd.errors import SpoolError

SYSTEM_DIR = Path("/var/spool/alertd")
# How often a run waiting for another run's delivery looks again (flock has no timeout).
LOCK_POLL_SECONDS = 0.02


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def open(cls, given: Path | None, env: Mapping[str, str]) -> Spool:
        """`given`, else /var/spool/alertd if usable, else the user's state directory."""
        candidates = [given] if given is not None else [SYSTEM_DIR, _user_dir(env)]
        problems = []
        for path in candidates:
            try:
                path.mkdir(parents=True, exist_ok=True, mode=0o700)
                unsafe = _unsafe(path)
                if unsafe:
                    problems.append(f"{path}: {unsafe}")
                elif os.access(path, os.W_OK | os.X_OK):
                    return cls(path)
                else:
                    problems.append(f"{path}: not writable")
            except OSError as exc:
                problems.append(f"{path}: {exc.strerror or exc}")
        raise SpoolError("no usable spool directory: " + "; ".join(problems))

    def put(self, body: bytes) -> Path:
        name = f"{time.time_ns():020d}-{os.getpid()}.json"
        # A random name, created with O_EXCL and mode 0600: never a file or link made before.
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=self.path)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            final = self.path / name
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return final

    def pending(self) -> list[Path]:
        return sorted(p for p in self.path.glob("*.json") if not p.name.startswith("."))

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def reject(self, path: Path) -> None:
        rejected = self.path / "rejected"
        rejected.mkdir(exist_ok=True, mode=0o700)
        os.replace(path, rejected / path.name)

    def was_rejected(self, path: Path) -> bool:
        return (self.path / "rejected" / path.name).exists()

    @contextlib.contextmanager
    def locked(self, deadline: float) -> Iterator[bool]:
        """Whether this run got the spool (one sender at a time, so nothing goes twice and
        the order holds), waiting for another run to finish until `deadline` (monotonic)."""
        with open(self.path / ".lock", "a") as lock:
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(LOCK_POLL_SECONDS)
            try:
                yield True
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _unsafe(path: Path) -> str | None:
    """Why `path` must not be the spool (None if it may): not a real directory, owned by
    another user, or writable by others."""
    info = os.lstat(path)  # a symlink is refused, not followed to wherever it points
    if not stat.S_ISDIR(info.st_mode):
        return "not a directory (a symlink or a file)"
    if info.st_uid != os.geteuid():
        return f"owned by uid {info.st_uid}, not by this user (uid {os.geteuid()}): refused"
    if info.st_mode & stat.S_IWOTH:
        return f"writable by others (mode {stat.S_IMODE(info.st_mode):o}): refused"
    return None


def _user_dir(env: Mapping[str, str]) -> Path:
    """The XDG state directory, as alertd.config.default_data_dir finds it (not imported from
    there: config pulls in far more than a notification command should load)."""
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "alertd" / "spool"
    home = env.get("HOME")
    return (Path(home) if home else Path.home()) / ".local" / "state" / "alertd" / "spool"
