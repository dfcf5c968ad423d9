"""Serving the app with uvicorn, with its connections bounded (`flopcast serve`).

- a connection must send a complete request line and headers within HEAD_TIMEOUT_S of opening, or
  of its previous response: idle sockets and slow senders are closed (uvicorn's own keep-alive timer
  starts only after a first response, and any byte restarts it);
- an idle keep-alive connection is closed after KEEP_ALIVE_S;
- request line and headers at most MAX_HEAD_BYTES (h11's incomplete-event limit: 400 beyond);
- at most MAX_CONNECTIONS open connections or running requests per process (503 beyond);
- the process's soft limit of open files is raised towards its hard limit, so that accepting sockets
  does not fail before MAX_CONNECTIONS is reached.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from flopcast import web
from flopcast.web.app import create_app

DATA_DIRS_ENV = "FLOPCAST_SERVE_DATA_DIRS"   # --data-dir for worker processes (os.pathsep-separated)


class HeadTimeoutH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request's head (see the module docstring)."""

    _head_timer: Any = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self._head_timer = self.loop.call_later(web.HEAD_TIMEOUT_S, self._head_timeout)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        """Close the connection unless a request is being answered: no request head yet, or the
        answer is sent (a client still sending the body of a refused request)."""
        self._head_timer = None
        waiting = self.conn.their_state is h11.IDLE or self.conn.our_state in (h11.DONE, h11.MUST_CLOSE, h11.ERROR)
        if waiting and not self.transport.is_closing():
            self.transport.close()


def uvicorn_settings() -> dict[str, Any]:
    """The uvicorn.Config keywords of every `flopcast serve` (one process or several)."""
    return {"http": HeadTimeoutH11, "timeout_keep_alive": web.KEEP_ALIVE_S, "limit_concurrency": web.MAX_CONNECTIONS,
            "h11_max_incomplete_event_size": web.MAX_HEAD_BYTES, "backlog": 2048, "log_level": "warning",
            "access_log": False, "lifespan": "off"}


def raise_open_files_limit(want: int = 2 * web.MAX_CONNECTIONS) -> None:
    """Raise this process's soft RLIMIT_NOFILE to `want` (at most the hard limit); no-op elsewhere."""
    try:
        import resource
    except ImportError:      # not POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass


class Server:
    """uvicorn serving the app on a socket bound now (port 0 picks a free one); the interface of
    socketserver's servers: serve_forever / shutdown / server_close / server_address."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8000, *, backlog: int = 2048,
                 data_dirs: Iterable[str | Path] = ()):
        app = create_app(data_dirs)     # refuses a bad --data-dir before the socket is bound
        raise_open_files_limit()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, port))
        self.socket.listen(backlog)
        self.server_address = self.socket.getsockname()
        self._server = uvicorn.Server(uvicorn.Config(app, **(uvicorn_settings() | {"backlog": backlog})))
        self._running = threading.Event()

    def serve_forever(self) -> None:
        self._running.set()
        try:
            self._server.run(sockets=[self.socket])
        finally:
            self._running.clear()

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Stop serving; returns when serve_forever has returned (or after timeout_s)."""
        self._server.should_exit = True
        end = time.monotonic() + timeout_s
        while self._running.is_set() and time.monotonic() < end:
            time.sleep(0.01)

    def server_close(self) -> None:
        self.socket.close()


def make_server(host: str = "127.0.0.1", port: int = 8000, *, data_dirs: Iterable[str | Path] = ()) -> Server:
    """A ready server (call serve_forever); port 0 picks a free port (server.server_address)."""
    return Server(host, port, data_dirs=data_dirs)


def app_from_env() -> Any:
    """The app of one worker process of `flopcast serve --workers N` (its --data-dir from the environment)."""
    dirs = [d for d in os.environ.get(DATA_DIRS_ENV, "").split(os.pathsep) if d]
    return create_app(dirs)


def serve_workers(host: str, port: int, workers: int, data_dirs: Iterable[str | Path] = ()) -> None:
    """`flopcast serve --workers N`: uvicorn's process manager, each worker with the same settings."""
    dirs = [str(Path(d).expanduser().resolve()) for d in data_dirs]
    create_app(dirs)                   # a bad --data-dir is refused here, once, with one line
    os.environ[DATA_DIRS_ENV] = os.pathsep.join(dirs)
    raise_open_files_limit()
    uvicorn.run("flopcast.web.server:app_from_env", factory=True, host=host, port=port, workers=workers,
                **(uvicorn_settings() | {"http": "flopcast.web.server:HeadTimeoutH11"}))
