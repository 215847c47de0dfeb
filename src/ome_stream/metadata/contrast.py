"""Display windows from the pixels written: a few strided frame samples per channel.

The OME-Zarr ``omero`` window tells viewers (napari, ome-zarr-py, OMERO) the contrast
limits to show. The full dtype range shows a 12-bit camera's uint16 frames as black, so
the window's ``start``/``end`` come from the data: backends hand each block they write to
:meth:`ContrastSampler.observe`, which keeps a small strided copy of a few frames per
channel (the first written of each image and channel, and one at the middle of every
other axis — the middle of a z-stack is where the focus usually is) for the first few
images. Observing costs an index check per block and a copy of about 128x128 pixels
for the few frames sampled; the percentiles are computed when the metadata is written,
in a worker thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ome_stream.settings.dimensions import effective_type

if TYPE_CHECKING:
    from ome_stream.layout import Layout

__all__ = ["ContrastSampler"]

#: Images (positions) sampled; the others reuse their channels' windows.
MAX_IMAGES = 4
#: Pixels per side of a frame sample (frames are subsampled with a stride to this size).
SAMPLE_SIDE = 128
#: Percentiles of the sampled pixels that become the window's start and end.
PERCENTILES = (0.1, 99.9)


class ContrastSampler:
    """Samples of the frames written, per channel, and the display window they give.

    Parameters
    ----------
    layout
        The layout of the acquisition; only its full-resolution arrays are sampled.

    """

    def __init__(self, layout: Layout) -> None:
        self._layout = layout
        dims = layout.images[0].dims[:-2] if layout.images else ()
        self._channel_axis = next(
            (i for i, d in enumerate(dims) if effective_type(d) == "channel"), None
        )
        self._picks = tuple(
            (d.count // 2 if d.count else 0) if i != self._channel_axis else -1
            for i, d in enumerate(dims)
        )
        y, x = layout.frame_shape
        self._stride = (max(1, y // SAMPLE_SIDE), max(1, x // SAMPLE_SIDE))
        self._samples: dict[int, list[np.ndarray]] = {}
        self._first_seen: set[tuple[int, int]] = set()
        self._cache: tuple[int, dict[int, tuple[float, float]]] | None = None

    def observe(self, array_index: int, origin: tuple[int, ...], block: np.ndarray) -> None:
        """Keep samples of the frames in ``block`` (written at ``origin``) worth sampling.

        Called by a backend for every block it writes, on the event loop: cheap unless a
        frame of the block is sampled.
        """
        array = self._layout.arrays[array_index]
        if array.level != 0 or array.position_index >= MAX_IMAGES:
            return
        index_shape = block.shape[:-2]
        axis_c = self._channel_axis
        at_pick = all(
            axis == axis_c or origin[axis] <= pick < origin[axis] + size
            for axis, (pick, size) in enumerate(zip(self._picks, index_shape, strict=True))
        )
        channels = (
            range(1)
            if axis_c is None
            else range(origin[axis_c], origin[axis_c] + index_shape[axis_c])
        )
        if not at_pick and all((array.position_index, c) in self._first_seen for c in channels):
            return
        sy, sx = self._stride
        for local in np.ndindex(*index_shape):
            channel = 0 if axis_c is None else origin[axis_c] + local[axis_c]
            first = (array.position_index, channel) not in self._first_seen
            picked = at_pick and all(
                axis == axis_c or origin[axis] + i == self._picks[axis]
                for axis, i in enumerate(local)
            )
            if first or picked:
                self._first_seen.add((array.position_index, channel))
                sample = np.array(block[(*local, slice(None, None, sy), slice(None, None, sx))])
                self._samples.setdefault(channel, []).append(sample)

    def windows(self) -> dict[int, tuple[float, float]]:
        """Per channel index, the window ``(start, end)`` of the samples taken so far.

        Channels without a sample are absent. Blocking (percentiles over the samples):
        run it in a worker thread when the samples are many.
        """
        count = sum(len(s) for s in self._samples.values())
        if self._cache is not None and self._cache[0] == count:
            return self._cache[1]
        result = {}
        for channel, samples in list(self._samples.items()):
            pixels = np.concatenate([s.ravel() for s in samples])
            low, high = (float(v) for v in np.percentile(pixels, PERCENTILES))
            if np.issubdtype(pixels.dtype, np.integer):
                low, high = float(np.floor(low)), float(np.ceil(high))
                if high <= low:
                    high = low + 1
            elif high <= low:
                high = low + 1.0
            result[channel] = (low, high)
        self._cache = (count, result)
        return result

    def value_range(self) -> tuple[float, float]:
        """The window's ``min``/``max``: the dtype's range (for floats, the samples')."""
        dtype = self._layout.dtype
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            return float(info.min), float(info.max)
        windows: list[Any] = list(self.windows().values())
        if not windows:
            return 0.0, 1.0
        return min(w[0] for w in windows), max(w[1] for w in windows)
