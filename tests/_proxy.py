"""A loopback TCP proxy that can swallow requests: a stalled endpoint, for real.

It forwards every connection to an upstream server (the S3 server of the tests) until
:meth:`SwallowingProxy.swallow` is called; from then on it keeps accepting connections
and reading what clients send, but forwards nothing and answers nothing, like an endpoint
whose backend hangs. No mock: clients talk TCP to it exactly as to the real server.
"""

from __future__ import annotations

import contextlib
import socket
import threading

__all__ = ["SwallowingProxy"]


class SwallowingProxy:
    """Forward ``127.0.0.1:<port>`` to ``127.0.0.1:<upstream_port>``, or swallow."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._swallowing = threading.Event()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._start(self._accept)

    def swallow(self) -> None:
        """From now on, forward nothing and answer nothing (connections stay open)."""
        self._swallowing.set()

    def close(self) -> None:
        """Close every connection and stop the threads."""
        with self._lock:
            self._closed.set()
            sockets = list(self._sockets)
        with contextlib.suppress(OSError):
            self._listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> SwallowingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
    def _start(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _track(self, sock: socket.socket) -> bool:
        """Remember ``sock`` for :meth:`close`; after it, close ``sock`` at once."""
        with self._lock:
            if not self._closed.is_set():
                self._sockets.append(sock)
                return True
        sock.close()
        return False

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._track(client):
                return
            if self._swallowing.is_set():
                self._start(self._pump, client, None)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            if not self._track(upstream):
                return
            self._start(self._pump, client, upstream)
            self._start(self._pump, upstream, client, False)

    def _pump(
        self, source: socket.socket, sink: socket.socket | None, request: bool = True
    ) -> None:
        """Copy ``source`` to ``sink``; requests are dropped once swallowing started."""
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                if sink is not None:
                    with contextlib.suppress(OSError):
                        sink.shutdown(socket.SHUT_WR)
                return
            if sink is None or (request and self._swallowing.is_set()):
                sink = None  # this connection never forwards again
                continue
            try:
                sink.sendall(data)
            except OSError:
                return
