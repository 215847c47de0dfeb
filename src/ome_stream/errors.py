"""The exceptions ome-stream raises beyond Python's built-in ones.

Bad input raises built-in types (``ValueError`` for a frame of the wrong shape,
``TypeError`` for the wrong dtype, ``IndexError`` past the end of a bounded acquisition,
``FileExistsError`` for an existing target); use after close raises
``anyio.ClosedResourceError``; storage failures raise :class:`WriterError`.
"""

from __future__ import annotations

__all__ = ["DatasetLockedError", "OMEStreamError", "UnclosedStreamWarning", "WriterError"]


class OMEStreamError(Exception):
    """Base class of the exceptions specific to ome-stream."""


class WriterError(OMEStreamError, RuntimeError):
    """Storage failed while writing accepted frames; the cause is chained.

    Raised from the producer's next ``append``, ``flush`` or from the exit of the stream,
    never at an arbitrary ``await``. Frames written before the failure stay readable.
    """


class DatasetLockedError(OMEStreamError, FileExistsError):
    """Another stream, in this or another process, is writing the dataset.

    A ``FileExistsError``, raised when a stream opens, with or without ``overwrite``; the
    message names the process holding the lock. The lock dies with its process.
    """


class UnclosedStreamWarning(UserWarning):
    """A stream was not closed by its user: garbage-collected, or left open at exit.

    ome-stream then closes it itself (writing what it can within ``drain_timeout``); the
    message says how many frames were accepted and written.
    """
