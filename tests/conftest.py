"""Shared fixtures: both anyio backends, a temporary output directory, camera-like frames."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every ``@pytest.mark.anyio`` test on asyncio and on trio."""
    return request.param


def make_frames(n: int, shape: tuple[int, int], dtype: str = "uint16", seed: int = 0) -> np.ndarray:
    """``n`` distinct pseudo-random frames; each frame's first pixel is its number."""
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    high = min(info.max, 60000) if info else 1.0
    frames = rng.integers(0, high, size=(n, *shape)).astype(dtype)
    flat = frames.reshape(n, -1)
    flat[:, 0] = np.arange(n) % (int(high) or 1)
    return frames


def read_scratch(root, position: int = 0) -> np.ndarray:
    """The pixels of one position of a scratch dataset on disk, read without the backend.

    ``manifest.json`` names the dtype and each position's shape; ``pos_<i>.dat`` holds
    the raw pixels, C order.
    """
    import json
    from pathlib import Path

    manifest = json.loads((Path(root) / "manifest.json").read_text())
    shape = tuple(manifest["position_shapes"][position])
    data = np.fromfile(Path(root) / f"pos_{position}.dat", dtype=manifest["dtype"])
    return data[: int(np.prod(shape))].reshape(shape)
