"""Running the app: uvicorn in the foreground (``mmalign serve``), or on a thread of this process."""

from __future__ import annotations

import time

from mmalign.plugin.serve.service import Service


def run(
    service: Service,
    *,
    host: str,
    port: int,
    log_level: str = "info",
    access_log: bool = True,
    watch_interval_s: float = 5.0,
) -> None:
    """Serve ``service`` with uvicorn until interrupted."""
    import uvicorn

    from mmalign.plugin.serve.app import create_app as _create_app

    uvicorn.run(
        _create_app(service, watch_interval_s=watch_interval_s),
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=5,
    )


class BackgroundServer:
    """The app served by uvicorn on a thread of this process (tests, notebooks, benchmarks)::

        with BackgroundServer(create_app(service)) as server:
            httpx.get(server.url + "/healthz")

    ``port=0`` takes a free port; ``url`` says which.
    """

    def __init__(self, app, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        import socket

        import uvicorn

        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
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
