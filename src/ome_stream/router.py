"""Acquisition order → storage: which array a frame belongs to and where it goes.

The router does arithmetic only; it never touches storage.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ome_stream.settings import AcquisitionSettings

__all__ = ["FrameRouter"]


class FrameRouter:
    """Maps the n-th acquired frame to ``(array index, storage index)``.

    The storage index covers the non-frame axes of the array, in storage order.
    The first axis may be unbounded: it then simply keeps counting.

    Examples
    --------
    >>> from ome_stream import AcquisitionSettings, Dimension
    >>> s = AcquisitionSettings(root_path="a.ome.zarr", dtype="uint8", dimensions=[
    ...     Dimension(name="t", count=2), Dimension(name="z", count=3),
    ...     Dimension(name="c", count=2), Dimension(name="y", count=4),
    ...     Dimension(name="x", count=4)])
    >>> FrameRouter(s).route(1)   # t=0, z=0, c=1 is stored at t, c, z = 0, 1, 0
    (0, (0, 1, 0))

    """

    def __init__(self, settings: AcquisitionSettings) -> None:
        acquisition_dims = settings.dimensions[:-2]
        counts = [d.count for d in acquisition_dims]
        self.num_frames: int | None = settings.num_frames
        self._position_axis = next(
            (i for i, d in enumerate(acquisition_dims) if d.type == "position"),
            None,
        )
        # Strides of each acquisition axis in frames; the first axis needs none.
        self._counts = [c or 0 for c in counts]
        self._strides = [math.prod(self._counts[i + 1 :]) for i in range(len(counts))]
        index_axes = [i for i in range(len(counts)) if i != self._position_axis]
        self._storage_axes = tuple(index_axes[p] for p in settings.storage_permutation)
        self.frames_per_first_index = self._strides[0] if counts else 1

    def acquisition_index(self, frame: int) -> tuple[int, ...]:
        """The acquisition-order index (including any position axis) of frame ``frame``."""
        if frame < 0 or (self.num_frames is not None and frame >= self.num_frames):
            raise IndexError(
                f"frame {frame} is outside the acquisition of {self.num_frames} frames"
            )
        index = []
        rest = frame
        for axis, stride in enumerate(self._strides):
            if axis == 0:
                index.append(rest // stride)
            else:
                index.append(rest // stride % self._counts[axis])
        return tuple(index)

    def frame_number(self, index: tuple[int, ...]) -> int:
        """Inverse of :meth:`acquisition_index`: the frame number at an acquisition index."""
        return sum(i * s for i, s in zip(index, self._strides, strict=True))

    def route(self, frame: int) -> tuple[int, tuple[int, ...]]:
        """Return ``(array index, storage index)`` of frame ``frame``."""
        index = self.acquisition_index(frame)
        array = index[self._position_axis] if self._position_axis is not None else 0
        return array, tuple(index[axis] for axis in self._storage_axes)
