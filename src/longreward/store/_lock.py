"""One run directory, one writer.

Two processes on one run directory both skip the same finished items, both run the rest, and
both append every row: the output holds each row twice and every judge call is paid twice.
So a stage takes an exclusive lock on ``<run_dir>/lock`` before it touches the store, and a
second process stops at once, naming the holder.

Reward services are the exception (``ServiceLock``): they write no output rows, only
judge calls (first write wins, the same key means the same answer), registrations and the
rewards they have seen, all safe for concurrent writers in SQLite's WAL mode. So any number
of them share a run directory (the reward workers of one trainer), while a stage, which does
write outputs, still excludes them and they it.

``flock`` is released by the kernel when its holder exits, ``kill -9`` included, so a crashed
run never leaves a stale lock behind. Within one process the lock is re-entrant (``run`` holds
it while its stages open the same directory).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

from ..errors import RunLockedError

LOCK_FILENAME = "lock"

_held: dict[str, tuple[int, int]] = {}  # resolved lock path -> (fd, depth)
_guard = threading.Lock()


def command_line(argv: list[str]) -> str:
    """The command as the lock file records it and a second process prints it: without
    secrets (``--header`` values, anything credential-shaped), since both end up in logs."""
    from .._util.redact import MASK, redact, split_header

    def header(value: str) -> str:
        pair = split_header(value)
        return f"{pair[0]}={MASK}" if pair else MASK

    parts: list[str] = []
    for i, arg in enumerate(argv):
        if i == 0:
            arg = os.path.basename(arg)
        elif parts and parts[-1] == "--header":
            arg = header(arg)
        elif arg.startswith("--header="):
            arg = "--header=" + header(arg.removeprefix("--header="))
        parts.append(arg)
    return redact(" ".join(parts))[:300]


def _holder(path: Path) -> tuple[str, str]:
    """Who holds the lock, as the lock file says, and how (writing, reading, serving)."""
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return "another process", "writing"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
    return (f"process {info.get('pid', '?')} on {info.get('host', '?')} "
            f"({info.get('command', '?')}, started {started})", info.get("mode", "writing"))


class RunLock:
    """``with RunLock(run_dir): ...`` — exclusive use of ``run_dir`` by this process."""

    #: an output lock lives outside the user's tree; where it cannot be made, the run goes
    #: on with the run-directory lock alone
    required = True
    #: readers share the lock with each other, never with a writer
    shared = False
    #: what a blocked writer is told when another writer holds the lock
    fix = "give this run another output and --run-dir"
    #: how the lock file names this holder's use
    mode = "writing"

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.path = (Path(run_dir) / LOCK_FILENAME).resolve()
        self.what = f"the run directory {self.path.parent}"

    def _busy(self, holder_mode: str) -> str:
        if holder_mode == "serving":
            return ("A reward service (longreward serve, or a trainer's reward workers) uses "
                    "it. Fix: stop it, or give this run another --run-dir.")
        if self.shared:
            return ("It is still being written: what is read now would miss its unfinished "
                    "rows. Fix: wait for that run to finish.")
        if holder_mode == "reading":
            return "It is being read. Fix: wait for that run to finish."
        return ("Two runs on it would write every row twice. Fix: wait for it to finish (or "
                f"stop it), or {self.fix}.")

    def acquire(self) -> None:
        key = str(self.path)
        with _guard:
            if key in _held:
                fd, depth = _held[key]
                _held[key] = (fd, depth + 1)
                return
            try:
                self._make_parent()
                # never through a symlink planted at the lock's name
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0),
                             0o644)
            except OSError:
                if self.required:
                    raise
                return
            try:
                import fcntl
            except ImportError:  # Windows: no flock; run without the guard rather than not at all
                fcntl = None  # type: ignore[assignment]
            if fcntl is not None:
                try:
                    mode = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
                    fcntl.flock(fd, mode | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    holder, holder_mode = _holder(self.path)
                    raise RunLockedError(
                        f"{self.what} is in use by {holder}. {self._busy(holder_mode)}"
                    ) from None
            # A blocked process names the holder from this file (readers too: the last one
            # to start is named).
            info = {"pid": os.getpid(), "host": socket.gethostname(),
                    "command": command_line(sys.argv), "started": time.time(),
                    "mode": self.mode}
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps(info).encode("utf-8"))
            _held[key] = (fd, 1)

    def _make_parent(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def release(self) -> None:
        key = str(self.path)
        with _guard:
            if key not in _held:
                return
            fd, depth = _held[key]
            if depth > 1:
                _held[key] = (fd, depth - 1)
                return
            del _held[key]
            os.close(fd)  # closing the descriptor drops the flock

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


class OutputLock(RunLock):
    """Exclusive use of one output file, whatever run directory each writer uses: two runs
    with different run directories on one output would also write every row twice. With
    ``reading=True``, a stage that reads the file (``pairs`` reading scored answers) holds
    it shared, so that it cannot read a file another process is still writing (readers do
    not exclude each other).

    The lock files live outside the user's tree, keyed by the file's absolute path, in a
    directory private to the user (``$XDG_RUNTIME_DIR`` or the temp directory): in a shared
    temp directory another user could otherwise create it first, or plant symlinks where
    our lock files will be written. Where that directory cannot be had, the output goes
    unlocked (the run directory's lock still holds)."""

    required = False
    fix = "give this run another output"

    def __init__(self, output: str | os.PathLike[str], *, reading: bool = False) -> None:
        import hashlib
        import tempfile

        target = Path(output).resolve()
        digest = hashlib.sha256(str(target).encode("utf-8", "surrogatepass")).hexdigest()[:24]
        base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
        user = getattr(os, "getuid", lambda: "")()
        self.path = Path(base) / f"longreward-locks-{user}" / f"{digest}.lock"
        self.shared = reading
        self.mode = "reading" if reading else "writing"
        self.what = f"{'the input' if reading else 'the output'} {target}"

    def _make_parent(self) -> None:
        directory = self.path.parent
        directory.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(directory)
        uid = getattr(os, "getuid", lambda: st.st_uid)()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o077:
            raise PermissionError(f"{directory} is not a private directory of this user")


class ServiceLock(RunLock):
    """A reward service's hold on ``run_dir``: shared with other reward services (every
    process of a trainer's reward workers, several servers), exclusive of stages, which
    write outputs there (module doc)."""

    shared = True
    mode = "serving"

    def _busy(self, holder_mode: str) -> str:
        return ("A stage is writing its outputs there, which a reward service must not "
                "interleave with. Fix: give the service another run_dir, or wait for that run "
                "to finish.")
