"""Serving an ASGI app (FastAPI) with uvicorn on a socket bound before anything slow happens.

Binding first means a busy port is reported in one line at once, before minutes of model loading, and a
caller that picked port 0 learns the real port before the server runs.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from typing import Any


class PortUnavailable(OSError):
    """The address cannot be bound (in use, or not an address of this machine)."""


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0 picks a free one); PortUnavailable with a readable message."""
    if not 0 <= port <= 65535:
        raise ValueError(f"port must lie in 0..65535, got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restarted server need not wait for TIME_WAIT
    # Accepted connections inherit this: a response written as headers then body must not wait for the client's
    # delayed ACK (40 ms per keep-alive request otherwise).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as error:
        sock.close()
        reason = "is already in use" if error.errno == errno.EADDRINUSE else f"cannot be bound ({error.strerror})"
        raise PortUnavailable(f"{host}:{port} {reason}; pick another with --port (or --host)") from None
    sock.set_inheritable(True)
    return sock


def uvicorn_server(app: Any, log_level: str = "warning"):
    import uvicorn

    # No lifespan events: the apps here keep no per-process resources that need them.
    return uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="off", access_log=False))


def serve_forever(app: Any, sock: socket.socket, log_level: str = "warning") -> None:
    """Run `app` on the bound socket in this thread until Ctrl-C or SIGTERM."""
    uvicorn_server(app, log_level).run(sockets=[sock])


class BackgroundServer:
    """`app` served from a daemon thread on 127.0.0.1 (tests, benchmarks); `stop()` shuts it down."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0):
        self.socket = bind_socket(host, port)
        self.host, self.port = self.socket.getsockname()[:2]
        self.url = f"http://{self.host}:{self.port}"
        self._server = uvicorn_server(app)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self.socket]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the background server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self.socket.close()

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
