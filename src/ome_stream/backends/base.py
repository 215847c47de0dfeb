"""The backend interface and the registry of backends.

A backend turns whole blocks of pixels into storage. It never sees acquisition order:
the stream routes each frame to its storage index and assembles blocks (whole chunks or
shards) before it calls :meth:`Backend.write`, so every storage object is written once.
"""

from __future__ import annotations

import importlib
import importlib.util
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import numpy as np

    from ome_stream.layout import AcquisitionRecord, Layout

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendInfo",
    "available_backends",
    "backend_info",
    "first_available_backend",
    "load_backend",
]


@dataclass(frozen=True)
class BackendInfo:
    """What a backend is and what it can do, known without importing it.

    The settings ask these capability flags, so a request a backend cannot honour is
    rejected when the settings are created.
    """

    name: str
    format: Literal["ome-zarr", "ome-tiff"]
    module: str
    requires: tuple[str, ...]
    extra: str | None
    compressions: tuple[str, ...]
    supports_unbounded: bool = True
    supports_storage_order: bool = True
    supports_object_storage: bool = False
    supports_pyramids: bool = False

    def is_available(self) -> bool:
        """Whether every module this backend needs is importable."""
        return all(
            importlib.util.find_spec(mod) is not None for mod in (*self.requires, self.module)
        )

    def install_hint(self) -> str:
        """The pip command that makes this backend available."""
        extra = f"[{self.extra}]" if self.extra else ""
        return f"pip install 'ome-stream{extra}'"


_ZARR_CODECS = ("none", "blosc-zstd", "blosc-lz4", "zstd")

# In order of preference: the first available backend of a format is its default.
BACKENDS: dict[str, BackendInfo] = {
    info.name: info
    for info in (
        BackendInfo(
            name="tensorstore",
            format="ome-zarr",
            module="ome_stream.backends.tensorstore",
            requires=("tensorstore",),
            extra=None,
            compressions=_ZARR_CODECS,
            supports_object_storage=True,
            supports_pyramids=True,
        ),
        BackendInfo(
            name="zarr-python",
            format="ome-zarr",
            module="ome_stream.backends.zarr_python",
            requires=("zarr",),
            extra=None,
            compressions=_ZARR_CODECS,
            supports_object_storage=True,
            supports_pyramids=True,
        ),
        BackendInfo(
            name="acquire-zarr",
            format="ome-zarr",
            module="ome_stream.backends.acquire_zarr",
            requires=("acquire_zarr",),
            extra="acquire-zarr",
            compressions=("none", "blosc-zstd", "blosc-lz4"),
            supports_storage_order=False,
        ),
        BackendInfo(
            name="tifffile",
            format="ome-tiff",
            module="ome_stream.backends.tifffile",
            requires=("tifffile",),
            extra=None,
            compressions=("none", "zlib", "zstd", "lzw"),
        ),
    )
}


def backend_info(name: str) -> BackendInfo:
    """Return the registry entry for backend ``name``; ValueError names the known ones."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(
            f"unknown backend {name!r}; known backends: {', '.join(BACKENDS)}"
        ) from None


def available_backends(file_format: str | None = None) -> list[str]:
    """List the installed backends, in order of preference, optionally for one format.

    Examples
    --------
    >>> "tensorstore" in available_backends("ome-zarr")
    True

    """
    return [
        info.name
        for info in BACKENDS.values()
        if (file_format is None or info.format == file_format) and info.is_available()
    ]


def first_available_backend(file_format: str) -> str:
    """The default backend for ``file_format``: the first installed one."""
    names = available_backends(file_format)
    if not names:
        candidates = [i for i in BACKENDS.values() if i.format == file_format]
        hint = candidates[0].install_hint() if candidates else "pip install ome-stream"
        raise ImportError(f"no backend for {file_format!r} is installed; run {hint}")
    return names[0]


def load_backend(name: str) -> type[Backend]:
    """Import backend ``name``; ImportError says which extra to install when missing."""
    info = backend_info(name)
    if not info.is_available():
        raise ImportError(
            f"the {name!r} backend needs {', '.join(info.requires)}; run {info.install_hint()}"
        )
    module = importlib.import_module(info.module)
    backend: type[Backend] = module.BACKEND
    return backend


class Backend(ABC):
    """Writes the arrays of a :class:`~ome_stream.layout.Layout` to storage.

    All methods are called from the stream's event loop, one call per block; a backend
    must never block the loop (run blocking work in a thread, await native futures).
    ``write`` may be called concurrently for distinct blocks.
    """

    #: Maximum number of block writes the stream keeps in flight for this backend.
    max_inflight: int = 4
    #: Formats written frame by frame (TIFF pages, native streams) take one-frame blocks.
    frame_blocks: bool = False

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def block_shape(self, array_index: int) -> tuple[int, ...]:
        """Shape of the unit ``write`` receives.

        One shard (or chunk) deep along every non-frame axis and the whole frame in y/x;
        one frame with ``frame_blocks``.
        """
        array = self.layout.arrays[array_index]
        if self.frame_blocks:
            return (*([1] * (len(array.shape) - 2)), *array.shape[-2:])
        return (*array.shard_shape[:-2], *array.shape[-2:])

    @abstractmethod
    async def open(self) -> None:
        """Create every array and group (the target has been checked and cleared)."""

    @abstractmethod
    async def write(self, array_index: int, origin: tuple[int, ...], block: np.ndarray) -> None:
        """Write ``block`` at ``origin`` (storage order) of array ``array_index``."""

    async def skip(self, array_index: int, index: tuple[int, ...]) -> None:  # noqa: B027
        """A frame at storage ``index`` was skipped (only for one-frame blocks).

        Chunked stores need nothing (missing chunks read as the fill value); formats that
        write frames in sequence write a blank one.
        """

    async def read_frame(self, array_index: int, index: tuple[int, ...]) -> np.ndarray:
        """Read back the frame at storage ``index`` (non-frame axes) during acquisition.

        Only frames whose writes have completed are asked for; the live view serves the
        others from memory.
        """
        raise TypeError(f"the {type(self).__name__} backend cannot read frames back")

    async def resize(self, array_index: int, first_extent: int) -> None:
        """Set the extent of the first (unbounded) axis of array ``array_index``."""
        raise ValueError(f"{type(self).__name__} cannot resize arrays")  # pragma: no cover

    async def flush(self) -> None:  # noqa: B027 - optional hook
        """Make sure what has been written is in storage; raise if it cannot be.

        Called by the stream's ``flush()`` after every block write has completed.
        """

    @abstractmethod
    async def finalize(self, record: AcquisitionRecord) -> None:
        """Place the final metadata, after every write has completed."""

    @abstractmethod
    async def rewrite_metadata(self, record: AcquisitionRecord) -> None:
        """Place the metadata again after the stream closed (``update_metadata``)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release resources; called once, after ``finalize`` or after a failure."""
