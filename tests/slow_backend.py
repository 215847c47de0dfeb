"""A tensorstore backend behind a slow link: the real backend, each write delayed.

Used to show backpressure: storage slower than the camera must make ``append`` wait.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import anyio
import numpy as np

from ome_stream.backends.registry import BACKENDS, BackendInfo
from ome_stream.backends.tensorstore import TensorStoreBackend

if TYPE_CHECKING:
    import pytest

NAME = "slow-tensorstore"


class SlowTensorStoreBackend(TensorStoreBackend):
    delay = 0.02
    observations: ClassVar[list[tuple[int, int]]] = []  # (accepted - written, capacity)
    stream = None

    async def write(self, array_index: int, origin: tuple[int, ...], block: np.ndarray) -> None:
        stream = type(self).stream
        if stream is not None:
            stats = stream.stats
            type(self).observations.append(
                (stats.frames_accepted - stats.frames_written, stream.capacity)
            )
        await anyio.sleep(self.delay)
        await super().write(array_index, origin, block)


BACKEND = SlowTensorStoreBackend


def register(monkeypatch: pytest.MonkeyPatch) -> type[SlowTensorStoreBackend]:
    """Make ``format="slow-tensorstore"`` available for one test; fresh observations."""
    monkeypatch.setitem(
        BACKENDS,
        NAME,
        BackendInfo(
            name=NAME,
            format="ome-zarr",
            module="slow_backend",
            requires=("tensorstore",),
            extra=None,
            compressions=("none",),
        ),
    )
    monkeypatch.setattr(SlowTensorStoreBackend, "observations", [])
    return SlowTensorStoreBackend
