"""What ``append`` and ``skip`` check before anything is queued, and runs of pixels."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ome_stream._log import logger
from ome_stream._metadata_api import check_frame_metadata

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from ome_stream.layout import Layout

__all__ = ["PixelRuns", "check_frame", "check_room"]


def check_room(total: int | None, next_frame: int, operation: str, frames: int = 1) -> None:
    """IndexError (ome-writers' text) if ``frames`` more frames exceed a bounded total."""
    if total is not None and next_frame + frames > total:
        tried = f" (tried to skip {frames})" if frames > 1 else ""
        raise IndexError(
            f"Cannot {operation}: would exceed total of {total} frames{tried}. Check "
            "your AcquisitionSettings.dimensions. If you need to write an unbounded "
            "number of frames, set the count of your first dimension to None."
        )


def check_frame(
    layout: Layout,
    frame: ArrayLike,
    metadata: dict[str, Any] | None,
    frame_metadata: dict[str, Any] | None,
) -> tuple[np.ndarray, dict[str, Any] | None]:
    """The frame as an array and a JSON-safe copy of its metadata, or a typed error."""
    pixels = np.asarray(frame)
    if pixels.shape != layout.frame_shape:
        names = [d.name for d in layout.settings.frame_dimensions]
        raise ValueError(
            f"frame shape {pixels.shape} does not match the frame shape "
            f"{layout.frame_shape} of dimensions {names}"
        )
    if pixels.dtype != layout.dtype:
        raise TypeError(
            f"frame dtype {pixels.dtype} does not match the acquisition dtype "
            f"{layout.dtype}; convert it first (e.g. frame.astype('{layout.dtype}'))"
        )
    if metadata is not None and frame_metadata is not None:
        raise TypeError("give either metadata= or frame_metadata=, not both")
    extra = metadata if metadata is not None else frame_metadata
    if extra is None:
        return pixels, None
    if not isinstance(extra, dict):
        raise TypeError(f"metadata must be a dict, got {type(extra).__name__}")
    return pixels, check_frame_metadata(extra)


class PixelRuns:
    """Whole frames cut from 1-D runs of pixels in acquisition order.

    ome-writers' acquire-zarr backend takes buffers of any length and concatenates their
    C-ordered pixels. Here a run's pixels join those left over from the previous run, and
    every whole frame they complete is appended as a frame, so frame numbers, events and
    the view stay exact on every backend. Pixels short of a whole frame wait for the next
    run; :attr:`pending` says how many.
    """

    def __init__(self, layout: Layout) -> None:
        self._layout = layout
        self._frame_pixels = math.prod(layout.frame_shape)
        self._partial = np.empty(0, layout.dtype)

    @property
    def pending(self) -> int:
        """Pixels waiting for the rest of their frame."""
        return int(self._partial.size)

    def log_incomplete(self, where: str) -> None:
        """At close: log the pixels that never made a whole frame (they are not written)."""
        if self._partial.size:
            logger.warning(
                "closing %s: the last %d pixels appended do not make a whole frame and "
                "were not written",
                where,
                self._partial.size,
            )

    def cut(
        self,
        run: np.ndarray,
        metadata: dict[str, Any] | None,
        total: int | None,
        next_frame: int,
    ) -> np.ndarray:
        """The whole frames ``run`` completes, shape ``(n, *frame_shape)`` (new memory).

        Raises, taking nothing, if the run has the wrong dtype, carries metadata (which
        frame would it describe?), or would exceed a bounded acquisition.
        """
        layout = self._layout
        if metadata is not None:
            raise TypeError(
                "frame metadata needs a whole frame: append a frame of shape "
                f"{layout.frame_shape} to attach metadata, not a run of {run.size} pixels"
            )
        if run.dtype != layout.dtype:
            raise TypeError(
                f"pixel dtype {run.dtype} does not match the acquisition dtype "
                f"{layout.dtype}; convert it first (e.g. run.astype('{layout.dtype}'))"
            )
        pixels = np.concatenate((self._partial, run))
        count, rest = divmod(pixels.size, self._frame_pixels)
        needed = count + (1 if rest else 0)
        if needed:
            check_room(total, next_frame + needed - 1, "append frame")
        whole = count * self._frame_pixels
        self._partial = pixels[whole:].copy()
        return pixels[:whole].reshape(count, *layout.frame_shape)
