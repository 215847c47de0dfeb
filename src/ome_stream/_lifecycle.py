"""Lifecycle helpers: the stream's service task and the warnings for unclosed streams.

A stream's writer tasks must not live in a task group of the caller's task: a stream
entered and never exited would leave that task group open in the caller's task (trio
then fails with ``TrioInternalError``). They run in a service task of the event loop
itself (asyncio: a task of the loop; trio: a system task), which closes the stream, with
a warning, when the loop ends while the stream is still open.
"""

from __future__ import annotations

import sys
import warnings
from typing import TYPE_CHECKING, Any

import anyio

from ome_stream._log import logger
from ome_stream.errors import UnclosedStreamWarning

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable, Callable

__all__ = ["spawn_service", "warn_unclosed"]


_SERVICES: set[asyncio.Task[None]] = set()  # asyncio keeps only weak references to tasks


def spawn_service(func: Callable[..., Awaitable[None]], *args: Any) -> None:
    """Run ``func(*args)`` in a task owned by the running event loop, not by the caller."""
    trio = sys.modules.get("trio")
    if trio is not None and _in_trio(trio):
        trio.lowlevel.spawn_system_task(_guard, func, *args, name="ome-stream service")
        return
    import asyncio

    task = asyncio.get_running_loop().create_task(_guard(func, *args), name="ome-stream service")
    _SERVICES.add(task)
    task.add_done_callback(_SERVICES.discard)


def _in_trio(trio: Any) -> bool:
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


async def _guard(func: Callable[..., Awaitable[None]], *args: Any) -> None:
    # a service task must never raise: trio turns that into TrioInternalError
    try:
        await func(*args)
    except (KeyboardInterrupt, SystemExit):
        raise
    except anyio.get_cancelled_exc_class():
        pass
    except BaseException as err:
        if not _only_cancellations(err):
            logger.error("the ome-stream service task failed", exc_info=err)


def _only_cancellations(err: BaseException) -> bool:
    cancelled = anyio.get_cancelled_exc_class()
    if isinstance(err, BaseExceptionGroup):
        return all(_only_cancellations(e) for e in err.exceptions)
    return isinstance(err, cancelled)


def warn_unclosed(stream: Any, what: str) -> None:
    """Warn (and log) that ``stream`` was not closed by its user, saying what happens."""
    stats = stream.stats
    message = (
        f"{type(stream).__name__} for {stream.settings.output_path!r} was not closed: "
        f"{what} ({stats.frames_accepted} frames accepted, {stats.frames_written} written)"
    )
    logger.warning("%s", message)
    try:
        warnings.warn(message, UnclosedStreamWarning, stacklevel=2)
    except Warning as err:  # warnings turned into errors must not break the closing
        logger.warning("the warning was raised as an error: %r", err)
