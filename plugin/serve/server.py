"""Running the app: uvicorn in the foreground (``mmalign serve``), or on a thread of this process."""

from __future__ import annotations

import time
from collections.abc import Callable


def serve_app(
    app,
    *,
    host: str,
    port: int,
    log_level: str = "info",
    access_log: bool = True,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Serve ``app`` with uvicorn until interrupted. ``on_listening(url)`` is called once the socket
    listens (``port=0`` takes a free port: the url says which)."""
    import uvicorn

    sock = _bind(host, port)
    if on_listening is not None:
        bound = sock.getsockname()[1]
        local = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
        on_listening(f"http://{f'[{local}]' if ':' in local else local}:{bound}")
    config = uvicorn.Config(app, log_level=log_level, access_log=access_log, timeout_graceful_shutdown=5)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


def _bind(host: str, port: int):
    import socket

    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and without it a
    # response written as headers then body waited for the client's delayed ACK: +40 ms on every request
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)  # connections made before uvicorn accepts wait in the backlog instead of being refused
    return sock


class BackgroundServer:
    """The app served by uvicorn on a thread of this process (tests, notebooks, benchmarks)::

        with BackgroundServer(create_app(service)) as server:
            httpx.get(server.url + "/healthz")

    ``port=0`` takes a free port; ``url`` says which.
    """

    def __init__(self, app, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        import uvicorn

        self.sock = _bind(host, port)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        config = uvicorn.Config(app, log_level=log_level, access_log=False, timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = None

    def start(self, timeout_s: float = 60.0) -> BackgroundServer:
        import threading

        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="mmalign-serve", daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the service did not start (see the log)")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=30)
        self.sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
