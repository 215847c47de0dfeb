"""Awaiting futures completed on foreign threads (tensorstore, executors) through anyio.

A completion is handed back to the event loop without waiting for it: the thread that
completed the future (a tensorstore worker, a writer thread) only schedules the wake-up
(asyncio ``call_soon_threadsafe``, trio ``TrioToken.run_sync_soon``) and goes on working.
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.lowlevel

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["call_soon", "hand_back", "outcome", "wait_future"]


class _Future(Protocol):
    def done(self) -> bool: ...
    def result(self) -> Any: ...
    def exception(self) -> BaseException | None: ...
    def add_done_callback(self, callback: Any) -> None: ...


def call_soon(token: anyio.lowlevel.EventLoopToken, callback: Callable[[], object]) -> None:
    """Run ``callback`` on the loop of ``token`` soon; never waits, from any thread.

    Does nothing when that loop has ended (nobody is waiting any more).
    """
    native: Any = token.native_token
    schedule = getattr(native, "call_soon_threadsafe", None) or native.run_sync_soon
    with contextlib.suppress(RuntimeError):  # asyncio: loop closed; trio: RunFinishedError
        schedule(callback)


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
        else:
            call_soon(token, event.set)

    future.add_done_callback(on_done)
    await event.wait()
    return future.result()


def outcome(future: _Future) -> BaseException | None:
    """The failure of an ended ``future`` (its cancellation included), or None."""
    try:
        error: BaseException | None = future.exception()
    except BaseException as err:  # cancelled
        error = err
    return error


def hand_back(
    future: _Future,
    token: anyio.lowlevel.EventLoopToken,
    on_done: Callable[[BaseException | None], None],
) -> None:
    """Call ``on_done(error)`` on the loop of ``token`` once ``future`` has ended.

    ``error`` is None on success, else the future's exception (or the cancellation).
    No task waits: the completing thread only schedules the call.
    """
    future.add_done_callback(lambda done: call_soon(token, lambda: on_done(outcome(done))))
