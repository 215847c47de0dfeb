"""Block assembly: the frames of one array, collected into whole chunks or shards."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Assembler", "Block"]


@dataclass
class Block:
    """One block being filled: its origin (storage index), pixels and frame count."""

    origin: tuple[int, ...]
    pixels: np.ndarray
    expected: int
    received: int = 0
    seen: np.ndarray | None = None
    """Which frames were filed, when ``pixels`` is a reused buffer (else it was zeroed)."""

    def zero_missing(self, pixels: np.ndarray) -> None:
        """Zero, in ``pixels`` (the block or a copy), the frames never filed."""
        if self.seen is not None and self.received < self.expected:
            pixels[~self.seen[: pixels.shape[0]]] = 0

    def offset(self, index: tuple[int, ...]) -> tuple[int, ...]:
        """Position of the frame at storage ``index`` inside this block."""
        return tuple(i - o for i, o in zip(index, self.origin, strict=True))


class Assembler:
    """Collects the frames of one array into blocks and says when a block is complete.

    ``block_shape`` is the backend's unit of write (non-frame axes, then the frame);
    ``shape`` the array's storage shape; ``unbounded`` whether its first axis grows.
    """

    def __init__(
        self,
        block_shape: tuple[int, ...],
        shape: tuple[int, ...],
        unbounded: bool,
        dtype: np.dtype[Any],
    ) -> None:
        self.block = block_shape[:-2]
        self.frame_shape = block_shape[-2:]
        self.shape = shape[:-2]
        self.unbounded = unbounded
        self.dtype = dtype
        self.direct = math.prod(self.block) == 1
        """One frame per block: frames go to storage as they come."""
        self.open: dict[tuple[int, ...], Block] = {}
        # buffers of written blocks, by shape: reused instead of freshly zeroed memory
        self._spare: dict[tuple[int, ...], list[np.ndarray]] = {}

    def recycle(self, pixels: np.ndarray) -> None:
        """Take back the buffer of a block whose write has completed."""
        self._spare.setdefault(pixels.shape, []).append(pixels)

    def _extent(self, coord: tuple[int, ...]) -> tuple[int, ...]:
        extent = []
        for axis, (c, b, n) in enumerate(zip(coord, self.block, self.shape, strict=True)):
            extent.append(b if axis == 0 and self.unbounded else min(b, n - c * b))
        return tuple(extent)

    def add(self, index: tuple[int, ...], pixels: np.ndarray | None) -> tuple[Block, bool]:
        """File one frame; return its block and whether that block is now complete."""
        coord = tuple(i // b for i, b in zip(index, self.block, strict=True))
        block = self.open.get(coord)
        if block is None:
            extent = self._extent(coord)
            shape = (*extent, *self.frame_shape)
            spare = self._spare.get(shape)
            reused = spare.pop() if spare else None
            block = Block(
                origin=tuple(c * b for c, b in zip(coord, self.block, strict=True)),
                pixels=reused if reused is not None else np.zeros(shape, self.dtype),
                expected=math.prod(extent),
                seen=np.zeros(extent, bool) if reused is not None else None,
            )
            self.open[coord] = block
        offset = block.offset(index)
        if pixels is not None:
            block.pixels[offset] = pixels
        elif block.seen is not None:  # a skipped frame in a reused buffer
            block.pixels[offset] = 0
        if block.seen is not None:
            block.seen[offset] = True
        block.received += 1
        if block.received >= block.expected:
            del self.open[coord]
            return block, True
        return block, False
