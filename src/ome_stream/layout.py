"""Settings → the concrete arrays to write: paths, shapes, chunks and shards.

The layout is computed once per stream and shared by the router, the stream and the
backend, so every part agrees on where each array lives and how it is tiled.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from ome_stream.metadata.contrast import ContrastSampler
from ome_stream.pyramid import level_shape, plan_levels

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ome_stream.settings import AcquisitionSettings, Dimension, Position, Pyramid

__all__ = [
    "AcquisitionRecord",
    "ArraySpec",
    "Layout",
    "series_name",
    "stage_coordinate",
]


def series_name(position: Position) -> str:
    """The group name of a position's image in a multi-position OME-Zarr.

    The position's name, made unique for grid positions as ``<name>_<row>_<column>``
    (the name ome-writers gives them).
    """
    row, column = position.grid_row, position.grid_column
    if row is not None and column is not None:
        return f"{position.name}_{row}_{column}"
    return position.name


def stage_coordinate(position: Position, axis: str) -> float | None:
    """The stage coordinate of ``position`` along ``axis`` ('x', 'y' or 'z'), if known."""
    value = getattr(position, f"{axis}_coord")
    return None if value is None else float(value)


@dataclass(frozen=True)
class ArraySpec:
    """One array (one image: a position, or a field of a well), in storage order."""

    position_index: int
    position: Position
    image_path: str
    """Key of the image group below the root ('' when the root is the image)."""
    dims: tuple[Dimension, ...]
    shape: tuple[int, ...]
    """Storage shape; an unbounded first axis starts at 0 and grows."""
    chunk_shape: tuple[int, ...]
    shard_shape: tuple[int, ...]
    """Equal to ``chunk_shape`` when the array is not sharded."""
    sharded: bool
    dtype: np.dtype[Any]
    level: int = 0
    """Multiscale level: 0 is the full resolution, level l is binned by 2**l."""
    scale_factors: tuple[int, ...] = ()
    """Per storage axis, how many full-resolution elements one element spans."""

    @property
    def array_path(self) -> str:
        """Key of this array below the root (``<image>/<level>``)."""
        return f"{self.image_path}/{self.level}" if self.image_path else str(self.level)

    def frame_number(self, index: tuple[int, ...]) -> int:
        """Position of the frame at storage ``index`` in storage order (page number).

        The first axis may be unbounded: its extent does not enter the computation (it
        multiplies 0). A 2-D acquisition (y, x only) has one frame, number 0.
        """
        number = 0
        for i, size in zip(index, self.shape[:-2], strict=True):
            number = number * size + i
        return number

    @property
    def dim_names(self) -> tuple[str, ...]:
        """Dimension names in storage order."""
        return tuple(d.name for d in self.dims)

    @property
    def metadata_key(self) -> str:
        """The image's key in ``get_metadata`` for OME-Zarr ('.' when it is the root)."""
        return self.image_path or "."


@dataclass
class AcquisitionRecord:
    """What the acquisition produced, handed to the backend's ``finalize``."""

    final_shapes: list[tuple[int, ...]]
    """Final storage shape of each array (an unbounded axis trimmed to what was written)."""
    frame_metadata: list[list[dict[str, Any]]]
    """Per image, one entry per frame that carried metadata, in the order appended: the
    metadata given to ``append`` plus ``"storage_index"``, the frame's index (non-frame
    axes, storage order) as a list — the entry ome-writers stores."""
    global_metadata: dict[str, Any] = field(default_factory=dict)
    """Namespace → JSON mapping, from ``set_global_metadata``."""
    overrides: dict[Any, Any] = field(default_factory=dict)
    """From ``update_metadata``: OME-Zarr group path → attributes, or OME-TIFF position
    index → ``ome_types.OME``; these replace what would be generated."""
    frame_numbers: list[list[int]] = field(default_factory=list)
    """Per image, the acquisition frame number of each ``frame_metadata`` entry (for
    backends that keep frame metadata in acquisition order across images)."""

    def __post_init__(self) -> None:
        if not self.frame_numbers:  # a record built without them: the order appended
            self.frame_numbers = [list(range(len(frames))) for frames in self.frame_metadata]


class Layout:
    """The arrays an acquisition writes, derived from its settings.

    Examples
    --------
    >>> from ome_stream import AcquisitionSettings, dims_from_standard_axes
    >>> s = AcquisitionSettings(root_path="a.ome.zarr", dtype="uint8",
    ...     dimensions=dims_from_standard_axes({"p": 2, "t": 3, "y": 8, "x": 8}))
    >>> [a.array_path for a in Layout(s).arrays]
    ['0/0', '1/0']

    """

    def __init__(self, settings: AcquisitionSettings) -> None:
        self.settings = settings
        self.dtype: np.dtype[Any] = np.dtype(settings.dtype)
        self.frame_shape = settings.frame_shape
        dims = (*settings.storage_index_dimensions, *settings.frame_dimensions)
        chunks = tuple(_chunk(d, i >= len(dims) - 2) for i, d in enumerate(dims))
        self.sharded = any(d.shard_size_chunks is not None for d in dims)
        shards = tuple(c * (d.shard_size_chunks or 1) for c, d in zip(chunks, dims, strict=True))
        shape = tuple(d.count or 0 for d in dims)
        self.is_plate = settings.plate is not None
        self.acquisition_date = datetime.now(UTC)
        """When the stream was opened: the OME-XML AcquisitionDate of every image."""
        # one position is the root image, as in ome-writers; several, one image each
        self.multi_position = len(settings.positions) > 1
        self.arrays = [
            ArraySpec(
                position_index=index,
                position=position,
                image_path=path,
                dims=dims,
                shape=shape,
                chunk_shape=chunks,
                shard_shape=shards if self.sharded else chunks,
                sharded=self.sharded,
                dtype=self.dtype,
                scale_factors=(1,) * len(dims),
            )
            for index, (position, path) in enumerate(self._image_paths(settings.positions))
        ]
        self.images = list(self.arrays)
        """The full-resolution array of each image (position), by position index."""
        self.levels = 1
        self.z_axis: int | None = None
        """Storage axis binned in z by the pyramid, if any."""
        if settings.pyramid is not None:
            self._add_levels(settings.pyramid, dims)
        self.file_uuids = [f"urn:uuid:{uuid.uuid4()}" for _ in range(len(self.images) + 1)]
        """OME-TIFF: the UUID of each image's file, then of the companion file; fixed for
        the stream's lifetime so every rewrite of the OME-XML keeps the references."""
        self.contrast = ContrastSampler(self)
        """Samples of the pixels written, for the display window of each channel."""

    def _image_paths(self, positions: Sequence[Position]) -> list[tuple[Position, str]]:
        if self.is_plate:
            return [(pos, f"{pos.plate_row}/{pos.plate_column}/{pos.name}") for pos in positions]
        if self.multi_position:
            return [(pos, series_name(pos)) for pos in positions]
        return [(positions[0], "")]

    def _add_levels(self, pyramid: Pyramid, dims: tuple[Dimension, ...]) -> None:
        self.levels = plan_levels(pyramid, self.frame_shape)
        if pyramid.downsample_z:
            self.z_axis = next(i for i, d in enumerate(dims[:-2]) if d.name == "z")
        binned = {len(dims) - 2, len(dims) - 1} | (
            {self.z_axis} if self.z_axis is not None else set()
        )
        for level in range(1, self.levels):
            for base in self.images:
                factors = tuple((1 << level) if axis in binned else 1 for axis in range(len(dims)))
                shape = tuple(
                    level_shape(n, level) if f > 1 else n
                    for n, f in zip(base.shape, factors, strict=True)
                )
                chunks = tuple(
                    min(c, n) if f > 1 else c
                    for c, n, f in zip(base.chunk_shape, shape, factors, strict=True)
                )
                per_shard = tuple(
                    s // c for s, c in zip(base.shard_shape, base.chunk_shape, strict=True)
                )
                self.arrays.append(
                    replace(
                        base,
                        shape=shape,
                        chunk_shape=chunks,
                        shard_shape=tuple(c * k for c, k in zip(chunks, per_shard, strict=True)),
                        level=level,
                        scale_factors=factors,
                    )
                )

    def level_array(self, position_index: int, level: int) -> int:
        """Index in :attr:`arrays` of ``level`` of the image at ``position_index``."""
        return level * len(self.images) + position_index

    @property
    def frame_nbytes(self) -> int:
        """Bytes in one frame."""
        return math.prod(self.frame_shape) * self.dtype.itemsize

    def wells(self) -> dict[tuple[str, str], list[ArraySpec]]:
        """Plate wells in first-visit order, each with its fields in acquisition order."""
        wells: dict[tuple[str, str], list[ArraySpec]] = {}
        for array in self.images:
            row, column = array.position.plate_row, array.position.plate_column
            assert row is not None and column is not None
            wells.setdefault((row, column), []).append(array)
        return wells


def _chunk(dim: Dimension, in_frame: bool) -> int:
    size = dim.chunk_size or (dim.count if in_frame else 1) or 1
    return min(size, dim.count) if dim.count else size
