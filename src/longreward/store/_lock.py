"""One run directory, one process.

Two processes on one run directory both skip the same finished items, both run the rest, and
both append every row: the output holds each row twice and every judge call is paid twice.
So a stage takes an exclusive lock on ``<run_dir>/lock`` before it touches the store, and a
second process stops at once, naming the holder.

``flock`` is released by the kernel when its holder exits, ``kill -9`` included, so a crashed
run never leaves a stale lock behind. Within one process the lock is re-entrant (``run`` holds
it while its stages open the same directory).
"""

from __future__ import annotations

import json
import os
import socket
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
    from ..judge._redact import MASK, redact

    def header(value: str) -> str:
        name, sep, _ = value.partition("=") if "=" in value else value.partition(":")
        return f"{name}{sep}{MASK}" if sep else MASK

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


def _holder_text(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return "another process"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
    return (f"process {info.get('pid', '?')} on {info.get('host', '?')} "
            f"({info.get('command', '?')}, started {started})")


class RunLock:
    """``with RunLock(run_dir): ...`` — exclusive use of ``run_dir`` by this process."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.path = (Path(run_dir) / LOCK_FILENAME).resolve()

    def acquire(self) -> None:
        key = str(self.path)
        with _guard:
            if key in _held:
                fd, depth = _held[key]
                _held[key] = (fd, depth + 1)
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                import fcntl
            except ImportError:  # Windows: no flock; run without the guard rather than not at all
                fcntl = None  # type: ignore[assignment]
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    raise RunLockedError(
                        f"the run directory {self.path.parent} is in use by "
                        f"{_holder_text(self.path)}. Two runs on one directory would write "
                        "every row twice. Fix: wait for it to finish (or stop it), or give "
                        "this run another output and --run-dir."
                    ) from None
            info = {"pid": os.getpid(), "host": socket.gethostname(),
                    "command": command_line(sys.argv), "started": time.time()}
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(info).encode("utf-8"))
            _held[key] = (fd, 1)

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
