"""The backend interface (the registry lives in :mod:`ome_stream.backends.registry`).

A backend turns whole blocks of pixels into storage. It never sees acquisition order:
the stream routes each frame to its storage index and assembles blocks (whole chunks or
shards) before it calls :meth:`Backend.write`, so every storage object is written once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Protocol

from ome_stream.backends.registry import (
    BACKENDS,
    BackendInfo,
    available_backends,
    backend_info,
    first_available_backend,
    load_backend,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from ome_stream.layout import AcquisitionRecord, Layout

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendInfo",
    "WriteFuture",
    "available_backends",
    "backend_info",
    "first_available_backend",
    "load_backend",
]


class WriteFuture(Protocol):
    """A write started by :meth:`Backend.start_write` (tensorstore's or concurrent's)."""

    def done(self) -> bool:
        """Whether the write has ended."""

    def exception(self) -> BaseException | None:
        """The failure of an ended write, or None."""

    def result(self) -> Any:
        """The outcome of an ended write (raises its failure)."""

    def add_done_callback(self, callback: Callable[[Any], object]) -> None:
        """Call ``callback(future)`` once the write has ended (from any thread)."""


class Backend(ABC):
    """Writes the arrays of a :class:`~ome_stream.layout.Layout` to storage.

    All methods are called from the stream's event loop, one call per block; a backend
    must never block the loop (run blocking work in a thread, await native futures).
    ``write`` may be called concurrently for distinct blocks.
    """

    #: Maximum number of block writes the stream keeps in flight for this backend.
    max_inflight: int = 4
    #: Formats written frame by frame (TIFF pages, native streams) take one-frame blocks.
    frame_blocks: bool = False

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def block_shape(self, array_index: int) -> tuple[int, ...]:
        """Shape of the unit ``write`` receives.

        One shard (or chunk) deep along every non-frame axis and the whole frame in y/x;
        one frame with ``frame_blocks``.
        """
        array = self.layout.arrays[array_index]
        if self.frame_blocks:
            return (*([1] * (len(array.shape) - 2)), *array.shape[-2:])
        return (*array.shard_shape[:-2], *array.shape[-2:])

    @abstractmethod
    async def open(self) -> None:
        """Create every array and group (the target has been checked and cleared)."""

    @abstractmethod
    async def write(self, array_index: int, origin: tuple[int, ...], block: np.ndarray) -> None:
        """Write ``block`` at ``origin`` (storage order) of array ``array_index``."""

    def start_write(
        self, array_index: int, origin: tuple[int, ...], block: np.ndarray
    ) -> WriteFuture | None:
        """Start writing ``block`` without a task; return the write's future, or None.

        A backend whose engine completes writes on its own threads may start the write
        here and return its future (``done``, ``exception``, ``add_done_callback``): the
        stream then spends no task per block and collects ended writes in order, with one
        wake-up for many. The default returns None: the stream awaits :meth:`write`.
        """
        return None

    async def skip(self, array_index: int, index: tuple[int, ...]) -> None:  # noqa: B027
        """A frame at storage ``index`` was skipped (only for one-frame blocks).

        Chunked stores need nothing (missing chunks read as the fill value); formats that
        write frames in sequence write a blank one.
        """

    async def read_frame(self, array_index: int, index: tuple[int, ...]) -> np.ndarray:
        """Read back the frame at storage ``index`` (non-frame axes) during acquisition.

        Only frames whose writes have completed are asked for; the live view serves the
        others from memory.
        """
        raise TypeError(f"the {type(self).__name__} backend cannot read frames back")

    async def resize(self, array_index: int, first_extent: int) -> None:
        """Set the extent of the first (unbounded) axis of array ``array_index``."""
        raise ValueError(f"{type(self).__name__} cannot resize arrays")  # pragma: no cover

    def stored_frame(self, array_index: int, index: tuple[int, ...]) -> np.ndarray | None:
        """After close, the frame at ``index`` from what this backend keeps, if it keeps it.

        None (the default) means: read it from the dataset (the stream opens it with an
        independent reader). The scratch backend, whose data may live only in memory,
        answers itself.
        """
        return None

    def set_global_metadata(self, namespace: str, metadata: dict[str, Any]) -> None:  # noqa: B027
        """Hear of global metadata as soon as it is set (optional; most place it at close)."""

    async def flush(self) -> None:  # noqa: B027 - optional hook
        """Make sure what has been written is in storage; raise if it cannot be.

        Called by the stream's ``flush()`` after every block write has completed.
        """

    @abstractmethod
    async def finalize(self, record: AcquisitionRecord) -> None:
        """Place the final metadata, after every write has completed."""

    @abstractmethod
    async def rewrite_metadata(self, record: AcquisitionRecord) -> None:
        """Place the metadata again after the stream closed (``update_metadata``)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release resources; called once, after ``finalize`` or after a failure."""
