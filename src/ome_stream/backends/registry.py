"""The registry of backends: what each one writes and can do, known without importing it.

The settings ask these capability flags, so a request a backend cannot honour is rejected
when the settings are created. This module imports nothing of the stream machinery (layout,
router), so the settings can use it without an import cycle.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ome_stream.backends.base import Backend

__all__ = [
    "BACKENDS",
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
    rejected when the settings are created. ``format`` is ``"scratch"`` for the in-memory
    (optionally spilled to disk) arrays of ``ScratchFormat``.
    """

    name: str
    format: Literal["ome-zarr", "ome-tiff", "scratch"]
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
            name="zarrs-python",
            format="ome-zarr",
            module="ome_stream.backends.zarrs_python",
            requires=("zarr", "zarrs"),
            extra="zarrs",
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
        ),
        BackendInfo(
            name="tifffile",
            format="ome-tiff",
            module="ome_stream.backends.tifffile",
            requires=("tifffile",),
            extra=None,
            compressions=("none", "zlib", "zstd", "lzw"),
        ),
        BackendInfo(
            name="scratch",
            format="scratch",
            module="ome_stream.backends.scratch",
            requires=(),
            extra=None,
            compressions=("none",),
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
