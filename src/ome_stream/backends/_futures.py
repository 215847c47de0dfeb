"""Awaiting futures completed on foreign threads (tensorstore, executors) through anyio."""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Protocol

import anyio
import anyio.from_thread
import anyio.lowlevel

__all__ = ["wait_future"]


class _Future(Protocol):
    def done(self) -> bool: ...
    def result(self) -> Any: ...
    def add_done_callback(self, callback: Any) -> None: ...


async def wait_future(future: _Future) -> Any:
    """Wait for ``future`` without blocking the event loop (asyncio or trio)."""
    if future.done():
        return future.result()
    event = anyio.Event()
    token = anyio.lowlevel.current_token()
    loop_thread = threading.get_ident()

    def on_done(_: object) -> None:
        if threading.get_ident() == loop_thread:
            event.set()
            return
        with contextlib.suppress(RuntimeError):  # the loop has gone: nobody is waiting
            anyio.from_thread.run_sync(event.set, token=token)

    future.add_done_callback(on_done)
    await event.wait()
    return future.result()
