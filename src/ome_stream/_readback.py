"""Reading a finished dataset back, frame by frame, for views used after close.

Independent of the backend that wrote it (which has released its resources): OME-Zarr
arrays are opened read-only with tensorstore, OME-TIFF pages with tifffile.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from ome_stream.layout import Layout

__all__ = ["StoredFrames"]


class StoredFrames:
    """Frames of a closed stream's dataset, by array and storage index (thread-safe)."""

    def __init__(self, layout: Layout) -> None:
        self._layout = layout
        self._lock = threading.Lock()
        self._arrays: dict[int, Any] = {}

    def read(self, array_index: int, index: tuple[int, ...]) -> np.ndarray | None:
        """The frame at storage ``index`` of array ``array_index`` (None: not stored)."""
        settings = self._layout.settings
        array = self._layout.arrays[array_index]
        if settings.file_format == "ome-tiff":
            import tifffile

            number = array.frame_number(index)
            with tifffile.TiffFile(settings.tiff_file_paths()[array_index]) as tif:
                if number >= len(tif.pages):
                    return None
                page: np.ndarray = tif.pages[number].asarray()
                return page
        store = self._open_zarr(array_index)
        if any(i >= n for i, n in zip(index, store.shape, strict=False)):
            return None  # beyond an unbounded axis' final extent
        frame: np.ndarray = store[index].read().result()
        return frame

    def _open_zarr(self, array_index: int) -> Any:
        with self._lock:
            store = self._arrays.get(array_index)
            if store is None:
                import tensorstore as ts

                from ome_stream.backends.tensorstore import kvstore_spec

                settings = self._layout.settings
                kvstore = kvstore_spec(settings.output_path, settings.storage_options)
                kvstore["path"] = (
                    kvstore["path"] + self._layout.arrays[array_index].array_path + "/"
                )
                spec = {"driver": "zarr3", "kvstore": kvstore}
                store = ts.open(spec, read=True, open=True).result()
                self._arrays[array_index] = store
            return store
