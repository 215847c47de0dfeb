"""What ``append`` and ``skip`` check before anything is queued."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ome_stream._metadata_api import check_frame_metadata

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from ome_stream.layout import Layout

__all__ = ["check_frame", "check_room"]


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
