"""The model process: one copy of the query encoders, in a process of its own.

The HTTP process parses requests, runs the event loop and queries the store; with the models in the
same process, every torch operation of an encode has to take Python's GIL back from that work, and
a batch gets several times slower under load (measured in docs/serve.md). The model process has its
own GIL. The service talks to it over a socket pair: ``load`` a bundle (encoders built once per
encoder id, one warm-up query per modality), ``embed`` a batch (texts, or paths of decoded-later media
files), ``stop``. One call at a time (the service's model thread makes them). If the process dies, the
next call starts a new one and loads the bundles again.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import traceback
from collections import OrderedDict
from typing import Any

log = logging.getLogger(__name__)

#: Bundles kept loaded in the model process (the live one, and the one before a swap).
KEEP_BUNDLES = 2


class ModelProcessError(RuntimeError):
    """The model process failed a call, or died."""


class ModelProcess:
    def __init__(self, device: str = "auto", threads: int | None = None, runtime: str | None = None):
        """``runtime`` (torch, onnx, auto; None: this process's ``$MMALIGN_RUNTIME``) reaches the model process
        as its ``$MMALIGN_RUNTIME``."""
        self.device = device
        self.threads = threads
        self.runtime = runtime
        self._proc: subprocess.Popen | None = None
        self._conn = None
        self._lock = threading.Lock()
        self._loaded: OrderedDict[str, str] = OrderedDict()  # bundle id -> bundle folder

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def _start(self) -> None:
        from multiprocessing.connection import Connection

        parent, child = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in [*sys.path, env.get("PYTHONPATH", "")] if p)
        if self.threads:
            env.setdefault("MMALIGN_CT2_THREADS", str(self.threads))
            env.setdefault("MMALIGN_ONNX_THREADS", str(self.threads))
        if self.runtime:
            env["MMALIGN_RUNTIME"] = self.runtime
        command = [
            sys.executable,
            "-c",
            "from mmalign.plugin.serve.worker import main; main()",
            str(child.fileno()),
            self.device,
            str(self.threads or 0),
        ]
        try:
            self._proc = subprocess.Popen(command, pass_fds=[child.fileno()], env=env)
        finally:
            child.close()
        self._conn = Connection(parent.detach())
        log.info("model process %d started", self._proc.pid)

    def _send(self, *message) -> Any:
        """Send one request and wait for its answer (the caller holds the lock)."""
        if self._proc is None or self._proc.poll() is not None:
            if self._proc is not None:
                log.error("the model process exited (%s); starting a new one", self._proc.returncode)
            self._start()
            for bundle_id, path in list(self._loaded.items()):
                try:
                    self._request("load", path, bundle_id)
                except ModelProcessError:  # logged; a bundle that no longer loads is forgotten
                    self._loaded.pop(bundle_id, None)
        return self._request(*message)

    def _request(self, *message) -> Any:
        if self._conn is None:
            raise ModelProcessError("the model process is not running")
        try:
            self._conn.send(message)
            status, *payload = self._conn.recv()
        except (EOFError, OSError) as exc:
            self._kill()
            raise ModelProcessError(f"the model process died ({type(exc).__name__})") from None
        if status == "ok":
            return payload[0]
        kind, text, trace = payload
        log.error("model process: %s: %s\n%s", kind, text, trace)
        raise ModelProcessError(f"{kind}: {text}")

    def load(self, path: str, bundle_id: str) -> list[str]:
        """Load (and warm up) the bundle in ``path``; returns its modalities."""
        with self._lock:
            modalities = self._send("load", str(path), bundle_id)
            self._loaded[bundle_id] = str(path)
            self._loaded.move_to_end(bundle_id)
            while len(self._loaded) > KEEP_BUNDLES:
                old, _ = self._loaded.popitem(last=False)
                self._request("unload", old)
            return modalities

    def embed(self, bundle_id: str, modality: str, values: list) -> list:
        with self._lock:
            return self._send("embed", bundle_id, modality, values)

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                try:
                    self._conn.send(("stop",))
                    self._proc.wait(timeout=10)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            self._kill()
            self._proc = None


def main() -> None:
    """The model process: requests in, answers out, until ``stop`` or the socket closes."""
    from concurrent.futures import ThreadPoolExecutor
    from multiprocessing.connection import Connection

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is for the service, which stops this process
    conn = Connection(int(sys.argv[1]))
    device, threads = sys.argv[2], int(sys.argv[3])
    if threads:
        import torch

        torch.set_num_threads(threads)
    from mmalign.plugin.align.bundle import load_bundle
    from mmalign.plugin.index.query_encoder import QueryEncoder

    pool: dict = {}
    encoders: dict[str, QueryEncoder] = {}
    decode = ThreadPoolExecutor(4, thread_name_prefix="mmalign-decode")
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        op = message[0]
        try:
            if op == "stop":
                return
            if op == "load":
                _, path, bundle_id = message
                if bundle_id not in encoders:
                    bundle = load_bundle(path, with_teacher=False)
                    if bundle.bundle_id != bundle_id:
                        raise ValueError(f"the bundle in that folder is {bundle.bundle_id}, not {bundle_id}")
                    encoder = QueryEncoder(bundle, device=device, encoder_pool=pool)
                    encoder.load()
                    encoder.warm_up()
                    encoders[bundle_id] = encoder
                answer: Any = [m.value for m in encoders[bundle_id].modalities]
            elif op == "unload":
                encoders.pop(message[1], None)
                answer = None
            elif op == "embed":
                _, bundle_id, modality, values = message
                answer = encoders[bundle_id].embed_batch(modality, values, decode)
            else:
                raise ValueError(f"unknown request {op!r}")
            conn.send(("ok", answer))
        except Exception as exc:  # noqa: BLE001 - reported to the service, which logs it
            conn.send(("error", type(exc).__name__, str(exc), traceback.format_exc()))
