"""The scratch backend: every position as a numpy array in memory, or memory-mapped files.

Without a ``root_path`` the arrays live in memory; the whole acquisition must fit in the
format's ``max_memory_bytes`` (4 GiB by default), otherwise the arrays spill to
memory-mapped files in a temporary directory (removed when the process exits) with a
``UserWarning``, or, with ``spill_to_disk=False``, the stream refuses with ``MemoryError``.
With a ``root_path`` the arrays are memory-mapped files from the start, laid out as
ome-writers' scratch format: ``pos_<i>.dat`` (raw C-order pixels of position ``i``),
``manifest.json`` (the settings, ``position_shapes`` and ``global_metadata``) and
``frame_metadata.jsonl`` (one JSON line per frame that carried metadata, with its
position ``_pos`` and storage index ``_idx``).

Frames arrive one at a time and are copied into place: on the event loop for memory
(a memcpy), in a worker thread for files. Reading a frame back is a copy of it, which
makes this the cheapest backend for checking an acquisition from a test harness:
:meth:`ScratchBackend.get_arrays` gives live, read-only arrays.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import numpy as np

from ome_stream.backends.base import Backend
from ome_stream.settings import ScratchFormat

if TYPE_CHECKING:
    from collections.abc import Callable

    from ome_stream.layout import AcquisitionRecord, Layout
    from ome_stream.settings import AcquisitionSettings

__all__ = [
    "FRAME_METADATA",
    "MANIFEST",
    "ScratchArray",
    "ScratchBackend",
]

MANIFEST = "manifest.json"
FRAME_METADATA = "frame_metadata.jsonl"
#: An unbounded axis grows by at least this factor, so growing costs amortised O(1).
_GROWTH = 1.5


def _data_file(root: Path, position: int) -> Path:
    return root / f"pos_{position}.dat"


def _nbytes(shape: tuple[int, ...], dtype: np.dtype[Any]) -> int:
    return math.prod(shape) * dtype.itemsize


def _manifest_settings(settings: AcquisitionSettings) -> dict[str, Any]:
    """The settings as ome-writers records them in the manifest.

    What the user set, plus each dimension's ``name``, ``type`` and ``count``.
    """
    from ome_stream import __version__

    dump: dict[str, Any] = settings.model_dump(mode="json", exclude_unset=True)
    dump.setdefault("dtype", settings.dtype)
    for dim, entry in zip(settings.dimensions, dump.get("dimensions", []), strict=False):
        entry.setdefault("name", dim.name)
        entry.setdefault("type", dim.type)
        entry.setdefault("count", dim.count)
    return {"version": __version__, **dump}


def _frame_lines(layout: Layout, record: AcquisitionRecord) -> list[str]:
    """One JSON line per frame that carried metadata, in acquisition order."""
    rows: list[tuple[int, int, str]] = []
    for position, entries in enumerate(record.frame_metadata):
        numbers = record.frame_numbers[position]
        for frame, original in zip(numbers, entries, strict=True):
            entry = dict(original)
            index = entry.pop("storage_index", ())
            line = json.dumps({"_pos": position, "_idx": list(index), **entry})
            rows.append((frame, position, line))
    rows.sort(key=lambda row: row[:2])
    return [line for _, _, line in rows]


def _prepare_root(root: Path, overwrite: bool) -> None:
    """ome-writers' overwrite rule, without deleting anything but a scratch dataset."""
    if root.exists() or root.is_symlink():
        if not overwrite:
            raise FileExistsError(
                f"{str(root)!r} already exists; pass overwrite=True to replace it"
            )
        if root.is_symlink() or not root.is_dir():
            raise FileExistsError(
                f"{str(root)!r} is not a directory; refusing to replace it with scratch arrays"
            )
        if any(root.iterdir()) and not (root / MANIFEST).is_file():
            raise FileExistsError(
                f"{str(root)!r} is not a scratch dataset (no {MANIFEST}) or an empty "
                "directory; refusing to delete it even with overwrite=True"
            )
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)


def _memmap(path: Path, dtype: np.dtype[Any], shape: tuple[int, ...], mode: str) -> np.ndarray:
    """A memory map of ``path``; an empty array for a shape without elements.

    (mmap cannot map zero bytes.)
    """
    if math.prod(shape) == 0:
        return np.zeros(shape, dtype)
    mapped: np.ndarray = np.memmap(path, dtype=dtype, mode=mode, shape=shape)  # type: ignore[call-overload]
    return mapped


def _nothing() -> None:
    return None


class ScratchArray:
    """A live, read-only view of one position's array, clipped to what was acquired.

    Its ``shape`` grows with an unbounded first axis (it counts 1 before any frame, as
    ome-writers does). Indexing returns read-only numpy arrays: views of memory, copies of
    memory-mapped files (so no caller holds a map that a resize replaces).
    """

    __slots__ = ("_backend", "_position")

    def __init__(self, backend: ScratchBackend, position: int) -> None:
        self._backend = backend
        self._position = position

    @property
    def shape(self) -> tuple[int, ...]:
        """The acquired shape."""
        self._backend.settle()
        return tuple(self._backend.logical_shapes[self._position])

    @property
    def dtype(self) -> np.dtype[Any]:
        """The pixel type."""
        return self._backend.layout.dtype

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __setitem__(self, key: Any, value: Any) -> None:
        raise TypeError("scratch arrays are read-only; append frames to the stream instead")

    def __getitem__(self, key: Any) -> Any:
        shape = self.shape
        backing = self._backend.backing(self._position)
        clipped = backing[tuple(slice(0, n) for n in shape)]
        result = clipped[key]
        if isinstance(result, np.ndarray):
            result = result.copy() if self._backend.on_disk else result.view()
            result.flags.writeable = False
        return result

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        data = np.array(self[...], dtype=dtype)
        return data

    def __repr__(self) -> str:
        return f"ScratchArray(position={self._position}, shape={self.shape}, dtype={self.dtype})"


class ScratchBackend(Backend):
    """Holds each position as one numpy array (storage order); see the module docstring."""

    frame_blocks = True
    max_inflight = 4

    def __init__(self, layout: Layout) -> None:
        super().__init__(layout)
        settings = layout.settings
        fmt = settings.format
        if not isinstance(fmt, ScratchFormat):
            raise TypeError(f"the scratch backend writes format='scratch', not {fmt.name!r}")
        self.max_memory_bytes = fmt.max_memory_bytes
        """Bytes the in-memory arrays may take before they spill (or MemoryError)."""
        self.spill_to_disk = fmt.spill_to_disk
        """Whether exceeding ``max_memory_bytes`` moves the arrays to a temporary directory."""
        self.root: Path | None = Path(settings.root_path) if settings.root_path else None
        """Directory of the memory-mapped files; None while the arrays are in memory."""
        self.temporary = False
        """Whether ``root`` is a temporary spill directory (removed at process exit)."""
        self.unbounded = settings.is_unbounded
        self._arrays: list[np.ndarray] = []
        self.logical_shapes: list[list[int]] = [
            [max(1, n) for n in array.shape] for array in layout.arrays
        ]
        """Per position, the shape acquired so far."""
        self._global_metadata: dict[str, Any] = {}
        self._settings = _manifest_settings(settings)
        self._finalized = False
        self.settle: Callable[[], None] = _nothing
        """Called before a :class:`ScratchArray` is read: the synchronous stream sets it
        to wait until every accepted frame is stored, so that, as in ome-writers, an
        array from :meth:`get_arrays` shows each frame as soon as ``append`` returns."""

    # ------------------------------------------------------------------ storage
    @property
    def on_disk(self) -> bool:
        """Whether the arrays are memory-mapped files."""
        return self.root is not None

    def backing(self, position: int) -> np.ndarray:
        """The array holding ``position`` (after close, a read-only map of its file)."""
        if self._arrays:
            return self._arrays[position]
        if self.root is None:
            raise RuntimeError("the scratch arrays were released")
        shape = tuple(self.logical_shapes[position])
        return _memmap(_data_file(self.root, position), self.layout.dtype, shape, "r")

    def stored_frame(self, array_index: int, index: tuple[int, ...]) -> np.ndarray | None:
        """After close, a copy of the frame at ``index`` (None beyond the acquired shape)."""
        array = self.backing(array_index)
        if any(i >= n for i, n in zip(index, array.shape, strict=False)):
            return None
        frame: np.ndarray = np.array(array[index])
        return frame

    def get_arrays(self) -> list[ScratchArray]:
        """Live, read-only arrays of every position (ome-writers' ``get_arrays``)."""
        return [ScratchArray(self, i) for i in range(len(self.layout.arrays))]

    def _total_bytes(self, shapes: list[tuple[int, ...]]) -> int:
        return sum(_nbytes(shape, self.layout.dtype) for shape in shapes)

    def _too_big(self, total: int) -> str:
        return (
            f"Scratch arrays would require ~{total / 1e9:.1f} GB, exceeding "
            f"max_memory_bytes={self.max_memory_bytes / 1e9:.1f} GB. Set root_path to use "
            "disk-backed storage, or increase max_memory_bytes."
        )

    async def open(self) -> None:
        """Allocate the arrays: in memory, or as files (root_path, or spilled)."""
        shapes = [tuple(shape) for shape in self.logical_shapes]
        if self.root is None:
            total = self._total_bytes(shapes)
            if total > self.max_memory_bytes:
                if not self.spill_to_disk:
                    raise MemoryError(self._too_big(total))
                await self._use_temporary_root(total)
            else:
                self._arrays = [np.zeros(shape, self.layout.dtype) for shape in shapes]
                return
        else:
            await anyio.to_thread.run_sync(_prepare_root, self.root, self.layout.settings.overwrite)
        await anyio.to_thread.run_sync(self._create_files, shapes)

    async def _use_temporary_root(self, total: int) -> None:
        root = Path(await anyio.to_thread.run_sync(lambda: tempfile.mkdtemp(prefix="ome_scratch_")))
        atexit.register(shutil.rmtree, root, True)
        self.root, self.temporary = root, True
        warnings.warn(
            f"Scratch arrays would require ~{total / 1e9:.1f} GB in memory. "
            f"Using disk-backed storage at {root}",
            UserWarning,
            stacklevel=2,
        )

    def _create_files(self, shapes: list[tuple[int, ...]]) -> None:
        """Create the data files, the manifest and the (empty) frame-metadata file."""
        assert self.root is not None
        dtype = self.layout.dtype
        arrays = []
        for position, shape in enumerate(shapes):
            path = _data_file(self.root, position)
            path.touch()
            os.truncate(path, _nbytes(shape, dtype))
            arrays.append(_memmap(path, dtype, shape, "r+"))
        self._arrays = arrays
        (self.root / FRAME_METADATA).touch()
        self._write_manifest()

    def _write_manifest(self) -> None:
        assert self.root is not None
        manifest = {
            **self._settings,
            "position_shapes": [list(shape) for shape in self.logical_shapes],
            "global_metadata": self._global_metadata,
        }
        (self.root / MANIFEST).write_text(json.dumps(manifest))

    def set_global_metadata(self, namespace: str, metadata: dict[str, Any]) -> None:
        """Keep acquisition-level metadata at once (ome-writers' scratch backend does).

        The stream hands the final metadata over at close in any case; this lets a
        caller see it on the backend during the acquisition.
        """
        self._global_metadata[namespace] = json.loads(json.dumps(metadata))

    # ------------------------------------------------------------------ frames
    async def write(self, array_index: int, origin: tuple[int, ...], block: np.ndarray) -> None:
        """Copy one frame into place (memory: on the loop; files: in a worker thread)."""
        frame = block.reshape(block.shape[-2:])
        target = self._arrays[array_index]
        if self.on_disk:
            await anyio.to_thread.run_sync(target.__setitem__, origin, frame)
        else:
            target[origin] = frame
        self._grow_logical(array_index, origin)

    async def skip(self, array_index: int, index: tuple[int, ...]) -> None:
        """A skipped frame stays zero; the acquired shape still covers it."""
        if self.unbounded and index[0] >= self._arrays[array_index].shape[0]:
            await self.resize(array_index, index[0] + 1)
        self._grow_logical(array_index, index)

    def _grow_logical(self, array_index: int, index: tuple[int, ...]) -> None:
        logical = self.logical_shapes[array_index]
        if self.unbounded and index[0] >= logical[0]:
            logical[0] = index[0] + 1

    async def read_frame(self, array_index: int, index: tuple[int, ...]) -> np.ndarray:
        """A copy of the frame at ``index``."""
        frame: np.ndarray = self._arrays[array_index][index].copy()
        return frame

    async def resize(self, array_index: int, first_extent: int) -> None:
        """Make room along the unbounded first axis (growing by at least 1.5x)."""
        current = self._arrays[array_index]
        if first_extent <= current.shape[0]:
            return
        extent = max(first_extent, int(current.shape[0] * _GROWTH))
        if self.on_disk:
            await anyio.to_thread.run_sync(self._resize_file, array_index, extent)
            return
        shapes = [a.shape for a in self._arrays]
        shapes[array_index] = (extent, *current.shape[1:])
        if self._total_bytes(shapes) > self.max_memory_bytes:
            shapes[array_index] = (first_extent, *current.shape[1:])
            extent = first_extent
            total = self._total_bytes(shapes)
            if total > self.max_memory_bytes:
                if not self.spill_to_disk:
                    raise MemoryError(self._too_big(total))
                await self._spill(total)
                await anyio.to_thread.run_sync(self._resize_file, array_index, extent)
                return
        grown = np.zeros((extent, *current.shape[1:]), current.dtype)
        grown[: current.shape[0]] = current
        self._arrays[array_index] = grown

    def _resize_file(self, array_index: int, extent: int) -> None:
        """Grow a data file in place (the OS zero-fills) and map it again."""
        assert self.root is not None
        current = self._arrays[array_index]
        shape = (extent, *current.shape[1:])
        if isinstance(current, np.memmap):
            current.flush()
        path = _data_file(self.root, array_index)
        os.truncate(path, _nbytes(shape, current.dtype))
        # writes in flight keep their reference to the old map: it maps the same pages
        self._arrays[array_index] = _memmap(path, current.dtype, shape, "r+")

    async def _spill(self, total: int) -> None:
        """Move the in-memory arrays to files in a temporary directory."""
        await self._use_temporary_root(total)
        in_memory = self._arrays

        def copy_out() -> None:
            self._create_files([a.shape for a in in_memory])
            for source, target in zip(in_memory, self._arrays, strict=True):
                target[...] = source

        await anyio.to_thread.run_sync(copy_out)

    # ------------------------------------------------------------------ close
    async def finalize(self, record: AcquisitionRecord) -> None:
        """Fix the acquired shapes; for files, trim them and write the metadata files.

        The writable maps are released; afterwards the arrays are read from the files.
        """
        if self._finalized:
            return
        self._finalized = True
        self._global_metadata = dict(record.global_metadata)
        for position, shape in enumerate(record.final_shapes):
            self.logical_shapes[position] = list(shape)
            if self.unbounded and shape[0] > self._arrays[position].shape[0]:
                await self.resize(position, shape[0])
        if self.root is not None:
            lines = _frame_lines(self.layout, record)
            await anyio.to_thread.run_sync(self._close_files, lines)

    def _close_files(self, lines: list[str]) -> None:
        assert self.root is not None
        for position, array in enumerate(self._arrays):
            if isinstance(array, np.memmap):
                array.flush()
            shape = tuple(self.logical_shapes[position])
            os.truncate(_data_file(self.root, position), _nbytes(shape, self.layout.dtype))
        self._arrays = []
        with (self.root / FRAME_METADATA).open("w") as fh:
            fh.writelines(line + "\n" for line in lines)
        self._write_manifest()

    async def rewrite_metadata(self, record: AcquisitionRecord) -> None:
        """After close: keep the new global metadata (and rewrite the manifest)."""
        self._global_metadata = dict(record.global_metadata)
        if self.root is not None:
            await anyio.to_thread.run_sync(self._write_manifest)


BACKEND = ScratchBackend
