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
            block = Block(
                origin=tuple(c * b for c, b in zip(coord, self.block, strict=True)),
                pixels=np.zeros((*extent, *self.frame_shape), self.dtype),
                expected=math.prod(extent),
            )
            self.open[coord] = block
        if pixels is not None:
            block.pixels[block.offset(index)] = pixels
        block.received += 1
        if block.received >= block.expected:
            del self.open[coord]
            return block, True
        return block, False
