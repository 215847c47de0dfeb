"""A simulated camera: camera-like frames served at a target rate.

Frames are pre-generated (a smooth background, bright blobs, Poisson shot noise and a
camera offset), so producing them costs nothing during the acquisition and compression
sees realistic, never-zero content.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import anyio
import numpy as np

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["SimulatedCamera", "camera_frames"]


def camera_frames(
    count: int, shape: tuple[int, int], dtype: str = "uint16", seed: int = 0
) -> np.ndarray:
    """``count`` distinct camera-like frames of ``shape``.

    Examples
    --------
    >>> camera_frames(2, (64, 64)).shape
    (2, 64, 64)

    """
    rng = np.random.default_rng(seed)
    height, width = shape
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    background = 100 + 40 * np.exp(
        -(((yy - height / 2) / height) ** 2 + ((xx - width / 2) / width) ** 2) * 4
    )
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    top = float(min(info.max, 4000)) if info else 4000.0
    frames = np.empty((count, height, width), dtype=dtype)
    for index in range(count):
        image = background.copy()
        for _ in range(12):
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            radius = rng.uniform(2, max(3, min(shape) / 20))
            image += rng.uniform(200, 1500) * np.exp(
                -((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2)
            )
        noisy = rng.poisson(np.clip(image, 0, top * 0.9)).astype(np.float32) + 10
        frames[index] = np.clip(noisy, 0, top).astype(dtype)
    return frames


class SimulatedCamera:
    """Serves pre-generated frames at ``fps`` (0: as fast as the consumer takes them).

    Use ``async for frame in camera.frames(n)``. Frames are reused cyclically; the camera
    never waits on its consumer, it only paces itself, so a slow consumer shows up as
    achieved fps below the target.
    """

    def __init__(
        self, shape: tuple[int, int], dtype: str = "uint16", fps: float = 0.0, distinct: int = 8
    ) -> None:
        self.shape = shape
        self.dtype = dtype
        self.fps = fps
        self._frames = camera_frames(distinct, shape, dtype)

    async def frames(self, count: int | None) -> AsyncIterator[np.ndarray]:
        """Yield ``count`` frames (forever when None) at the camera's rate."""
        period = 1.0 / self.fps if self.fps > 0 else 0.0
        start = time.perf_counter()
        index = 0
        while count is None or index < count:
            if period:
                delay = start + index * period - time.perf_counter()
                if delay > 0:
                    await anyio.sleep(delay)
            yield self._frames[index % len(self._frames)]
            index += 1
