"""Multiscale levels computed while the frames stream in.

Level ``l`` bins ``2**l`` x ``2**l`` pixels in y/x (and, optionally, ``2**l`` planes in z)
of the full-resolution data. Levels are cascaded on exact intermediate values — float64
sums with their pixel counts for ``mean``, maxima for ``max``, picks for ``nearest`` — so
every level equals a direct downsampling of level 0, not a re-rounded copy of the level
above. Partial bins at odd edges reduce over the pixels that exist.

A :class:`PyramidBuilder` is fed one frame at a time (in a worker thread, off the event
loop) and returns the level frames that became complete.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ome_stream.settings import Pyramid

__all__ = ["PyramidBuilder", "bin_frame", "level_shape"]


def level_shape(size: int, level: int) -> int:
    """Extent of an axis of ``size`` elements at ``level`` (binned by ``2**level``)."""
    return -(-size // (1 << level))


def bin_frame(values: np.ndarray, method: str, accumulator: Any = None) -> np.ndarray:
    """Bin a 2-D array 2x2 (``sum`` or ``max``); odd edges contribute nothing extra.

    Sums are accumulated in ``accumulator`` (default: the input's dtype).
    """
    height, width = values.shape
    pad_y, pad_x = height % 2, width % 2
    if pad_y or pad_x:
        if method == "max":
            fill = np.iinfo(values.dtype).min if values.dtype.kind in "iu" else -np.inf
        else:
            fill = 0
        values = np.pad(values, ((0, pad_y), (0, pad_x)), constant_values=fill)
    # four strided views combined element-wise: much faster than a reshape-and-reduce
    a, b = values[0::2, 0::2], values[1::2, 0::2]
    c, d = values[0::2, 1::2], values[1::2, 1::2]
    if method == "max":
        largest: np.ndarray = np.maximum(np.maximum(a, b), np.maximum(c, d))
        return largest
    total: np.ndarray = a.astype(accumulator or values.dtype)
    total += b
    total += c
    total += d
    return total


@dataclass
class _Bin:
    """A z-bin under construction: the planes of one level frame received so far."""

    value: np.ndarray | None
    received: int
    expected: int


@dataclass
class PyramidBuilder:
    """Turns full-resolution frames of one image into the frames of its other levels.

    Parameters
    ----------
    pyramid
        The settings' pyramid options.
    levels
        Number of levels including the full resolution.
    frame_shape
        (y, x) of a full-resolution frame.
    z_axis
        Position of the binned z axis in the storage index, or None.
    z_size
        Full-resolution z extent (when ``z_axis`` is set).
    dtype
        Pixel type of every level.

    """

    pyramid: Pyramid
    levels: int
    frame_shape: tuple[int, int]
    z_axis: int | None
    z_size: int
    dtype: np.dtype[Any]
    _counts: list[np.ndarray] = field(default_factory=list)
    _bins: dict[tuple[int, tuple[int, ...]], _Bin] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Exact sums in the narrowest type that cannot overflow: uint32/int64 for integer
        # pixels (uint16 with a few levels fits uint32), float64 otherwise.
        self._accumulator: Any = np.float64
        if self.dtype.kind in "iu":
            planes = (1 << (self.levels - 1)) if self.z_axis is not None else 1
            bound = int(np.iinfo(self.dtype).max) * 4 ** (self.levels - 1) * planes
            unsigned = self.dtype.kind == "u"
            self._accumulator = np.uint32 if unsigned and bound < 2**32 else np.int64
        if self.pyramid.method == "mean":
            counts = np.ones(self.frame_shape)
            self._counts = [counts]
            for _ in range(1, self.levels):
                counts = bin_frame(counts, "sum")
                self._counts.append(counts)

    def _planes(self, level: int, target: int) -> int:
        """How many full-resolution planes fall in z-bin ``target`` of ``level``."""
        step = 1 << level
        return min(step, self.z_size - target * step)

    def add(
        self, index: tuple[int, ...], frame: np.ndarray | None
    ) -> list[tuple[int, tuple[int, ...], np.ndarray]]:
        """Feed the full-resolution frame at storage ``index``.

        ``None`` stands for a skipped frame, which reads as zeros. Returns
        ``(level, level index, level frame)`` for every frame of levels >= 1 that is now
        complete.
        """
        method = self.pyramid.method
        ready: list[tuple[int, tuple[int, ...], np.ndarray]] = []
        if frame is None:
            frame = np.zeros(self.frame_shape, self.dtype)
        current: np.ndarray = frame
        for level in range(1, self.levels):
            if method == "nearest":
                current = current[::2, ::2]
            else:
                current = bin_frame(current, method, self._accumulator)
            if self.z_axis is None:
                ready.append((level, index, self._finish(level, current, 1)))
                continue
            z = index[self.z_axis]
            step = 1 << level
            target_index = (*index[: self.z_axis], z // step, *index[self.z_axis + 1 :])
            if method == "nearest":
                if z % step == 0:
                    ready.append((level, target_index, self._finish(level, current, 1)))
                continue
            key = (level, target_index)
            bin_ = self._bins.get(key)
            if bin_ is None:
                bin_ = _Bin(None, 0, self._planes(level, z // step))
                self._bins[key] = bin_
            if bin_.value is None:
                bin_.value = current.astype(
                    self._accumulator if method == "mean" else current.dtype, copy=True
                )
            elif method == "max":
                np.maximum(bin_.value, current, out=bin_.value)
            else:
                bin_.value += current
            bin_.received += 1
            if bin_.received == bin_.expected:
                del self._bins[key]
                ready.append((level, target_index, self._finish(level, bin_.value, bin_.expected)))
        return ready

    def drain(self) -> list[tuple[int, tuple[int, ...], np.ndarray]]:
        """Finish every incomplete z-bin.

        Planes never acquired count as zeros, as they read in level 0.
        """
        ready = []
        for (level, index), bin_ in self._bins.items():
            assert bin_.value is not None
            value = bin_.value
            if self.pyramid.method == "max" and bin_.received < bin_.expected:
                value = np.maximum(value, 0)
            ready.append((level, index, self._finish(level, value, bin_.expected)))
        self._bins.clear()
        return ready

    def _finish(self, level: int, value: np.ndarray, planes: int) -> np.ndarray:
        if self.pyramid.method == "mean":
            value = value / (self._counts[level] * planes)
            if np.issubdtype(self.dtype, np.integer):
                value = np.rint(value)
        return np.ascontiguousarray(value, dtype=self.dtype)


def plan_levels(pyramid: Pyramid, frame_shape: tuple[int, int]) -> int:
    """Number of levels (full resolution included) the pyramid options ask for."""
    if pyramid.levels is not None:
        return pyramid.levels
    size = max(frame_shape)
    return (
        max(1, math.ceil(math.log2(size / pyramid.min_size)) + 1) if size > pyramid.min_size else 1
    )
