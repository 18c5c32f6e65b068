"""Running the app with uvicorn: in the foreground (``longreward serve``) or in a background
thread of this process (next to a trainer, or in tests).

The socket is bound here rather than by uvicorn, so ``port: 0`` picks a free port and the
URL is known before the first request.

uvicorn has no header-read timeout: a client that trickles its request line and headers a
byte at a time holds its connection for ever, and a few hundred such clients hold the server
(slowloris). ``_header_timeout_protocol`` closes a connection whose request headers have not
all arrived ``read_timeout`` seconds after it opened, or after the first byte of a later
request on a kept-alive connection; the app's guard bounds a stalled body the same way.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import MissingDependencyError


def _uvicorn() -> Any:
    try:
        import uvicorn
    except ModuleNotFoundError:
        raise MissingDependencyError("longreward serve", "uvicorn", "serve") from None
    return uvicorn


# a trainer opens one connection per sample of a step (1,000 at once is usual)
BACKLOG = 4096


def bind(host: str, port: int) -> socket.socket:
    """A listening socket. It listens before the URL is announced: a client that connects
    as soon as it reads the URL waits in the kernel's queue until uvicorn has started and
    accepts, instead of being refused (seen in CI, where startup takes a while)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _header_timeout_protocol(read_timeout: float) -> type:
    """uvicorn's h11 protocol with a header-read timeout (module doc)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutProtocol(H11Protocol):  # type: ignore[misc]
        _header_timer: Any = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            idle = self.cycle is None or self.cycle.response_complete
            if self._header_timer is None and idle:
                self._arm()  # the first bytes of another request on a kept-alive connection
            scope = self.scope
            super().data_received(data)
            if self.scope is not scope:  # a request's headers are complete
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(read_timeout, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol


def _config(app: Any, *, access_log: bool, log_level: str, read_timeout: float = 10.0) -> Any:
    uvicorn = _uvicorn()
    return uvicorn.Config(app, lifespan="on", access_log=access_log, log_level=log_level,
                          timeout_graceful_shutdown=5, backlog=BACKLOG, timeout_keep_alive=30,
                          http=_header_timeout_protocol(read_timeout))


def _read_timeout(app: Any) -> float:
    options = getattr(app, "options", None)
    return float(getattr(options, "read_timeout", 10.0))


def serve_forever(app: Any, host: str, port: int, *,
                  on_ready: Callable[[str], None] | None = None,
                  access_log: bool = True, log_level: str = "info") -> None:
    """Serve ``app`` until interrupted (Ctrl-C / SIGTERM end it gracefully)."""
    uvicorn = _uvicorn()
    sock = bind(host, port)
    server = uvicorn.Server(_config(app, access_log=access_log, log_level=log_level,
                                    read_timeout=_read_timeout(app)))
    if on_ready is not None:
        on_ready(url_of(sock))
    server.run(sockets=[sock])


class ServerThread:
    """``with ServerThread(app) as url: ...`` — the app on 127.0.0.1 (a free port by
    default) in a daemon thread; stopped, with the app's shutdown run, on exit."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, *,
                 log_level: str = "warning") -> None:
        self.app = app
        self.host, self.port = host, port
        self.log_level = log_level
        self.url = ""
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> str:
        uvicorn = _uvicorn()
        sock = bind(self.host, self.port)
        self.url = url_of(sock)
        self._server = uvicorn.Server(_config(self.app, access_log=False,
                                              log_level=self.log_level,
                                              read_timeout=_read_timeout(self.app)))
        # uvicorn installs signal handlers only in the main thread; this one is not
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="longreward-serve", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the reward service did not start (see the log above)")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the reward service did not start within {timeout:g}s")
            time.sleep(0.01)
        return self.url

    def stop(self, timeout: float = 30.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        self._server = self._thread = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
