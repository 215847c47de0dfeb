"""The declarative settings model: what to acquire and where to put it.

Everything here is validated when it is constructed, so a mistake in the settings is
reported before a single frame is acquired.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal, TypeAlias

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveInt,
    field_validator,
    model_validator,
)

from ome_stream.backends.base import BACKENDS, backend_info, first_available_backend

__all__ = [
    "AcquisitionSettings",
    "Channel",
    "Compression",
    "Dimension",
    "DimensionType",
    "FileFormat",
    "OutputFormat",
    "Plate",
    "Position",
    "PositionDimension",
    "Pyramid",
    "StandardAxis",
    "dims_from_standard_axes",
]

DimensionType: TypeAlias = Literal["space", "time", "channel", "other"]
FileFormat: TypeAlias = Literal["ome-zarr", "ome-tiff"]
Compression: TypeAlias = Literal["blosc-zstd", "blosc-lz4", "zstd", "zlib", "lzw", "none"]

_SUFFIXES: dict[FileFormat, str] = {"ome-zarr": ".ome.zarr", "ome-tiff": ".ome.tiff"}

# NGFF 0.5 unit names, and the OME-XML abbreviations we accept for them.
_SPACE_UNITS = frozenset(
    [
        "angstrom",
        "attometer",
        "centimeter",
        "decimeter",
        "exameter",
        "femtometer",
        "foot",
        "gigameter",
        "hectometer",
        "inch",
        "kilometer",
        "megameter",
        "meter",
        "micrometer",
        "mile",
        "millimeter",
        "nanometer",
        "parsec",
        "petameter",
        "picometer",
        "terameter",
        "yard",
        "yoctometer",
        "yottameter",
        "zeptometer",
        "zettameter",
    ]
)
_TIME_UNITS = frozenset(
    [
        "attosecond",
        "centisecond",
        "day",
        "decisecond",
        "exasecond",
        "femtosecond",
        "gigasecond",
        "hectosecond",
        "hour",
        "kilosecond",
        "megasecond",
        "microsecond",
        "millisecond",
        "minute",
        "nanosecond",
        "petasecond",
        "picosecond",
        "second",
        "terasecond",
        "yoctosecond",
        "yottasecond",
        "zeptosecond",
        "zettasecond",
    ]
)
_UNIT_ALIASES = {
    "Å": "angstrom", "am": "attometer", "cm": "centimeter", "dm": "decimeter",
    "fm": "femtometer", "ft": "foot", "in": "inch", "km": "kilometer", "m": "meter",
    "um": "micrometer", "µm": "micrometer", "μm": "micrometer", "micron": "micrometer",
    "mm": "millimeter", "nm": "nanometer", "pm": "picometer", "s": "second", "sec": "second",
    "ms": "millisecond", "us": "microsecond", "µs": "microsecond", "μs": "microsecond",
    "ns": "nanosecond", "ps": "picosecond", "fs": "femtosecond", "min": "minute", "h": "hour",
    "d": "day",
}  # fmt: skip

_STANDARD_TYPES: dict[str, DimensionType] = {
    "x": "space", "y": "space", "z": "space", "t": "time", "c": "channel",
}  # fmt: skip

# Characters that must never reach a file or object name: path separators, NUL and the
# other control characters, and the characters Windows forbids in names.
_UNSAFE_NAME = re.compile(r'[/\\\x00-\x1f\x7f<>:"|?*]')


def _safe_name(value: str, what: str) -> str:
    """Return ``value`` if it can be used as one path component, else raise ValueError."""
    if not value or not value.strip():
        raise ValueError(f"{what} must not be empty, got {value!r}")
    if value in {".", ".."} or _UNSAFE_NAME.search(value):
        raise ValueError(
            f"{what} {value!r} is not a safe name: it must not be '.' or '..' and must not "
            "contain '/', '\\', control characters or any of <>:\"|?*"
        )
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class StandardAxis(StrEnum):
    """The standard axis names of OME: position, time, channel, z, y, x.

    Used by :func:`dims_from_standard_axes`; each name implies a dimension type and, for
    time and space, a unit.
    """

    POSITION = "p"
    TIME = "t"
    CHANNEL = "c"
    Z = "z"
    Y = "y"
    X = "x"

    @property
    def dimension_type(self) -> DimensionType:
        """The dimension type this axis implies (``"other"`` for positions)."""
        return _STANDARD_TYPES.get(self.value, "other")

    @property
    def default_unit(self) -> str | None:
        """The NGFF unit this axis uses by default, or None."""
        return {"space": "micrometer", "time": "second"}.get(self.dimension_type)


class Channel(_Model):
    """One channel's display information: its name and, optionally, its colour.

    Give a list of these as the ``coords`` of a ``type="channel"`` dimension.

    Examples
    --------
    >>> Channel(name="GFP", color="00FF00")
    Channel(name='GFP', color='00FF00')

    """

    name: str = Field(description="Channel name, e.g. a fluorophore or filter name.")
    color: str | None = Field(
        default=None, description="Display colour as 6 hex digits RRGGBB, e.g. 'FF00FF'."
    )

    @field_validator("color")
    @classmethod
    def _check_color(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.removeprefix("#").upper()
        if not re.fullmatch(r"[0-9A-F]{6}", value):
            raise ValueError(f"color must be 6 hex digits RRGGBB, got {value!r}")
        return value


class Dimension(_Model):
    """One axis of the acquisition, in acquisition order.

    Examples
    --------
    >>> Dimension(name="z", count=32, chunk_size=16, type="space", unit="um", scale=0.5)
    ... # doctest: +ELLIPSIS
    Dimension(name='z', count=32, chunk_size=16, ...)

    """

    name: str = Field(description="Axis name, unique in the acquisition; prefer t, c, z, y, x.")
    count: PositiveInt | None = Field(
        default=None,
        description="Number of elements; None makes the axis unbounded (first axis only).",
    )
    chunk_size: PositiveInt | None = Field(
        default=None,
        description="Elements per chunk. Default: the full frame for the last two axes, "
        "1 for the others.",
    )
    shard_size_chunks: PositiveInt | None = Field(
        default=None,
        description="Chunks per shard along this axis (zarr v3 sharding). If no dimension "
        "sets it, chunks are stored unsharded.",
    )
    type: DimensionType | None = Field(
        default=None,
        description="'space', 'time', 'channel' or 'other'; inferred from standard names "
        "(x, y, z, t, c) or from the unit when omitted.",
    )
    unit: str | None = Field(
        default=None,
        description="Physical unit; NGFF names ('micrometer') or abbreviations ('um').",
    )
    scale: float | None = Field(
        default=None, description="Physical size of one element (pixel size, time interval)."
    )
    translation: float | None = Field(
        default=None, description="Physical coordinate of the first element."
    )
    coords: list[str | float | Channel] | None = Field(
        default=None,
        description="Label of each index (e.g. Channel objects or names for a channel axis).",
    )

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return _safe_name(value, "Dimension name")

    @model_validator(mode="after")
    def _infer_and_check(self) -> Dimension:
        unit = self.unit
        if unit is not None:
            unit = _UNIT_ALIASES.get(unit, unit)
        kind = self.type
        if kind is None:
            kind = _STANDARD_TYPES.get(self.name.lower())
        if kind is None and unit is not None:
            kind = "space" if unit in _SPACE_UNITS else "time" if unit in _TIME_UNITS else None
        if unit is not None and kind == "space" and unit not in _SPACE_UNITS:
            raise ValueError(
                f"Dimension {self.name!r}: unit {self.unit!r} is not a unit of length "
                f"(e.g. 'micrometer', 'um', 'nm')"
            )
        if unit is not None and kind == "time" and unit not in _TIME_UNITS:
            raise ValueError(
                f"Dimension {self.name!r}: unit {self.unit!r} is not a unit of time "
                f"(e.g. 'second', 's', 'ms')"
            )
        if self.coords is not None and self.count is not None and len(self.coords) != self.count:
            raise ValueError(
                f"Dimension {self.name!r}: {len(self.coords)} coords given for count={self.count}"
            )
        # Bypass validate_assignment recursion by writing the fields directly.
        self.__dict__["unit"] = unit
        self.__dict__["type"] = kind
        return self

    @property
    def channels(self) -> list[Channel] | None:
        """The coords of a channel axis as Channel objects, or None."""
        if self.coords is None:
            return None
        return [c if isinstance(c, Channel) else Channel(name=str(c)) for c in self.coords]


class Position(_Model):
    """A stage position visited during the acquisition; in a plate, a field of a well.

    A plain string is accepted wherever a Position is expected and becomes its name.
    """

    name: str = Field(description="Position name; unique (within its well, for plates).")
    plate_row: str | None = Field(default=None, description="Row name of the well, e.g. 'A'.")
    plate_column: str | None = Field(default=None, description="Column name of the well, e.g. '1'.")
    x: float | None = Field(default=None, description="Stage X coordinate, if known.")
    y: float | None = Field(default=None, description="Stage Y coordinate, if known.")
    z: float | None = Field(default=None, description="Stage Z coordinate, if known.")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return _safe_name(value, "Position name")

    @field_validator("plate_row", "plate_column")
    @classmethod
    def _check_well(cls, value: str | None) -> str | None:
        return None if value is None else _safe_name(value, "Plate row/column name")


class PositionDimension(_Model):
    """The positions visited, as a meta-axis: each position becomes its own image.

    Its place in ``dimensions`` says when, in the acquisition, the stage moves.
    """

    positions: list[Position] = Field(description="Positions in the order they are visited.")
    name: str = Field(default="p", description="Axis name, 'p' by default.")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return _safe_name(value, "PositionDimension name")

    @field_validator("positions")
    @classmethod
    def _check_positions(cls, positions: list[Position]) -> list[Position]:
        if not positions:
            raise ValueError("PositionDimension needs at least one position")
        seen: dict[tuple[str | None, str | None, str], int] = {}
        for index, pos in enumerate(positions):
            key = (pos.plate_row, pos.plate_column, pos.name)
            if key in seen:
                where = (
                    f" in well ({pos.plate_row}, {pos.plate_column})"
                    if pos.plate_row is not None or pos.plate_column is not None
                    else ""
                )
                raise ValueError(
                    f"Duplicate position name {pos.name!r}{where}: positions {seen[key]} "
                    f"and {index}"
                )
            seen[key] = index
        return positions

    @property
    def count(self) -> int:
        """Number of positions."""
        return len(self.positions)


class Plate(_Model):
    """The geometry of a multi-well plate, for HCS metadata.

    Which wells are imaged, and in which order, comes from the positions.
    """

    row_names: list[str] = Field(description="All row names of the plate, e.g. ['A', 'B'].")
    column_names: list[str] = Field(description="All column names, e.g. ['1', '2', '3'].")
    name: str | None = Field(default=None, description="Plate name.")

    @field_validator("row_names", "column_names")
    @classmethod
    def _check_names(cls, names: list[str]) -> list[str]:
        for name in names:
            _safe_name(name, "Plate row/column name")
        if len(set(names)) != len(names):
            raise ValueError(f"Plate row/column names must be unique, got {names}")
        return names


class Pyramid(_Model):
    """Multiscale levels written during the acquisition (OME-Zarr only).

    Each level halves y and x (and z, with ``downsample_z``) of the level before it.
    Give ``levels`` (the full resolution counts as one) or let ``min_size`` decide: levels
    are added until the larger of y and x is at most ``min_size``.

    Examples
    --------
    >>> Pyramid(levels=3, method="mean")
    Pyramid(levels=3, min_size=256, method='mean', downsample_z=False)

    """

    levels: PositiveInt | None = Field(
        default=None, description="Number of levels, full resolution included."
    )
    min_size: PositiveInt = Field(
        default=256, description="Without `levels`: add levels until y and x are this small."
    )
    method: Literal["mean", "max", "nearest"] = Field(
        default="mean", description="How 2x2 (x2) bins are reduced."
    )
    downsample_z: bool = Field(
        default=False, description="Also bin the 'z' dimension by 2 per level."
    )


class OutputFormat(_Model):
    """A resolved output format and the backend that writes it."""

    name: FileFormat = Field(description="'ome-zarr' or 'ome-tiff'.")
    backend: str = Field(description="Backend name, e.g. 'tensorstore' or 'tifffile'.")


def _parse_dtype(value: Any) -> str:
    try:
        dtype = np.dtype(value)
    except TypeError as err:
        raise ValueError(f"dtype {value!r} is not a numpy dtype: {err}") from None
    if dtype.kind not in "biuf" or dtype.itemsize > 8:
        raise ValueError(f"dtype {value!r} is not a supported pixel type (bool, int, uint, float)")
    return str(dtype.name)


def _format_from_suffix(root_path: str) -> FileFormat | None:
    lower = root_path.lower().rstrip("/")
    if lower.endswith(".zarr"):
        return "ome-zarr"
    if lower.endswith((".tif", ".tiff")):
        return "ome-tiff"
    return None


class AcquisitionSettings(_Model):
    """Everything ome-stream needs to know to write an acquisition.

    Examples
    --------
    >>> settings = AcquisitionSettings(
    ...     root_path="run1.ome.zarr",
    ...     dimensions=dims_from_standard_axes({"t": 10, "y": 64, "x": 64}),
    ...     dtype="uint16",
    ... )
    >>> settings.format.backend
    'tensorstore'

    """

    root_path: Annotated[str, BeforeValidator(str)] = Field(
        description="Where to write: a path, or an s3:// URL for OME-Zarr."
    )
    dimensions: list[Dimension | PositionDimension] = Field(
        description="Axes in acquisition order, slowest first; the last two are the frame."
    )
    dtype: Annotated[str, BeforeValidator(_parse_dtype)] = Field(
        description="Pixel type, e.g. 'uint16'."
    )
    format: OutputFormat | None = Field(
        default=None,
        description="'ome-zarr', 'ome-tiff', a backend name, or {'name': ..., 'backend': ...}; "
        "inferred from the root_path suffix when omitted.",
    )
    storage_order: Literal["ome", "acquisition"] | list[str] = Field(
        default="ome",
        description="'ome' (spec-compliant), 'acquisition', or a list of dimension names.",
    )
    compression: Compression | None = Field(
        default=None, description="Compression codec; None or 'none' stores raw bytes."
    )
    plate: Plate | None = Field(default=None, description="Plate geometry for HCS datasets.")
    overwrite: bool = Field(
        default=False, description="Replace an existing dataset at the output path."
    )
    pyramid: Pyramid | None = Field(
        default=None, description="Multiscale levels to write during the acquisition."
    )
    storage_options: dict[str, str] | None = Field(
        default=None,
        description="For s3:// roots: 'endpoint' and 'region' (default: the standard AWS "
        "environment variables), 'timeout' (seconds one storage request may take, default "
        "30). Credentials come from the AWS environment or profile.",
    )
    max_buffer_bytes: PositiveInt | None = Field(
        default=None,
        description="Byte budget for accepted-but-unwritten frames (default 256 MiB, and "
        "always room for at least 2 frames).",
    )

    # ----------------------------------------------------------------- validation
    @field_validator("format", mode="before")
    @classmethod
    def _parse_format(cls, value: Any) -> Any:
        if value is None or isinstance(value, OutputFormat):
            return value
        if isinstance(value, Mapping):
            name = value.get("name")
            backend = value.get("backend")
            if name not in _SUFFIXES:
                raise ValueError(f"format name must be 'ome-zarr' or 'ome-tiff', got {name!r}")
            if backend is None:
                backend = first_available_backend(name)
            info = backend_info(backend)
            if info.format != name:
                raise ValueError(f"backend {backend!r} writes {info.format!r}, not {name!r}")
            return {"name": name, "backend": backend}
        if isinstance(value, str):
            if value in _SUFFIXES:
                return {"name": value, "backend": first_available_backend(value)}
            if value in BACKENDS:
                return {"name": BACKENDS[value].format, "backend": value}
            raise ValueError(
                f"format {value!r} is neither a format ('ome-zarr', 'ome-tiff') nor a "
                f"backend ({', '.join(BACKENDS)})"
            )
        raise ValueError(f"format must be a string or a mapping, got {value!r}")

    @model_validator(mode="after")
    def _validate(self) -> AcquisitionSettings:
        self._check_dimensions()
        suffix_format = _format_from_suffix(self.root_path)
        if self.format is None:
            if suffix_format is None:
                fmt, backend = "ome-zarr", first_available_backend("ome-zarr")
                warnings.warn(
                    f"\n\nOutput format could not be inferred from root_path "
                    f"{self.root_path!r}. \n"
                    f"Picking the first available format/backend: {fmt!r}/{backend!r}. \n"
                    "This may not be what you want, and may be an error in future versions.\n"
                    "Please specify the desired format explicitly (e.g. format='ome-zarr')\n"
                    "or via the extension of `root_path`.",
                    UserWarning,
                    stacklevel=2,
                )
            else:
                fmt, backend = suffix_format, first_available_backend(suffix_format)
            self.__dict__["format"] = OutputFormat(name=fmt, backend=backend)
        elif suffix_format is not None and suffix_format != self.format.name:
            raise ValueError(
                f"root_path {self.root_path!r} has a {suffix_format} suffix but format is "
                f"{self.format.name!r}"
            )
        self._check_storage_order()
        self._check_plate()
        self._check_backend()
        return self

    def _check_dimensions(self) -> None:
        dims = self.dimensions
        if len(dims) < 2:
            raise ValueError(f"dimensions: at least 2 (the frame, e.g. y and x) needed, got {dims}")
        names = [d.name for d in dims]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"dimensions: names must be unique, duplicated: {dupes}")
        n_position = sum(isinstance(d, PositionDimension) for d in dims)
        if n_position > 1:
            raise ValueError("dimensions: at most one PositionDimension is allowed")
        for index, dim in enumerate(dims):
            if isinstance(dim, Dimension) and dim.count is None and index != 0:
                raise ValueError(
                    f"dimensions: only the first dimension may be unbounded (count=None); "
                    f"{dim.name!r} is dimension {index}"
                )
        for dim in dims[-2:]:
            if not isinstance(dim, Dimension):
                raise ValueError("dimensions: the last two dimensions must be the frame (y, x)")
            if dim.count is None:
                raise ValueError(f"dimensions: frame dimension {dim.name!r} needs a count")
            if dim.type not in (None, "space"):
                raise ValueError(
                    f"dimensions: frame dimension {dim.name!r} must have type 'space', "
                    f"got {dim.type!r}"
                )
            dim.__dict__["type"] = "space"
        array_dims = [d for d in dims if isinstance(d, Dimension)]
        if len(array_dims) > 5:
            raise ValueError(
                f"dimensions: OME-TIFF and OME-Zarr allow at most 5 dimensions per image, got "
                f"{len(array_dims)}: {[d.name for d in array_dims]}"
            )

    def _check_storage_order(self) -> None:
        order = self.storage_order
        if isinstance(order, list):
            index_names = [d.name for d in self.index_dimensions]
            frame_names = [d.name for d in self.frame_dimensions]
            given = [n for n in order if n not in frame_names]
            if sorted(given) != sorted(index_names) or len(set(order)) != len(order):
                raise ValueError(
                    f"storage_order {order!r} must name each non-frame dimension "
                    f"{index_names} exactly once"
                )
            if any(n in frame_names for n in order) and order[-2:] != frame_names:
                raise ValueError(
                    f"storage_order {order!r}: the frame dimensions {frame_names} must stay last"
                )
        if self.is_unbounded:
            first = self.dimensions[0].name
            stored = [d.name for d in self.storage_index_dimensions]
            if stored[0] != first:
                raise ValueError(
                    f"storage_order {order!r} stores the dimensions as {stored}, but the "
                    f"unbounded dimension {first!r} must stay first; use "
                    "storage_order='acquisition' or an order that starts with it"
                )

    def _check_plate(self) -> None:
        positions = self.position_dimension
        if self.plate is None:
            return
        if positions is None:
            raise ValueError("plate requires a PositionDimension in dimensions")
        for pos in positions.positions:
            if pos.plate_row is None or pos.plate_column is None:
                raise ValueError(f"plate: position {pos.name!r} needs plate_row and plate_column")
            if pos.plate_row not in self.plate.row_names:
                raise ValueError(
                    f"plate: position {pos.name!r} has plate_row {pos.plate_row!r}, not one of "
                    f"{self.plate.row_names}"
                )
            if pos.plate_column not in self.plate.column_names:
                raise ValueError(
                    f"plate: position {pos.name!r} has plate_column {pos.plate_column!r}, not "
                    f"one of {self.plate.column_names}"
                )

    def _check_backend(self) -> None:
        assert self.format is not None
        info = backend_info(self.format.backend)
        codec = self.compression or "none"
        if codec not in info.compressions:
            raise ValueError(
                f"compression {codec!r} is not supported by the {info.name!r} backend "
                f"({self.format.name}); choose one of {list(info.compressions)}"
            )
        if self.dimensions[0].count is None and not info.supports_unbounded:
            raise ValueError(f"the {info.name!r} backend cannot write an unbounded first dimension")
        if self.pyramid is not None and not info.supports_pyramids:
            raise ValueError(
                f"pyramid: the {info.name!r} backend ({self.format.name}) cannot write "
                "multiscale levels; use an OME-Zarr backend such as 'tensorstore'"
            )
        if (
            self.pyramid is not None
            and self.pyramid.downsample_z
            and not any(d.name == "z" for d in self.index_dimensions)
        ):
            raise ValueError("pyramid: downsample_z needs a non-frame dimension named 'z'")
        if self.storage_options is not None:
            if not self.root_path.startswith("s3://"):
                raise ValueError("storage_options apply only to s3:// roots")
            if unknown := sorted(set(self.storage_options) - {"endpoint", "region", "timeout"}):
                raise ValueError(
                    f"storage_options: unknown keys {unknown}; use 'endpoint', 'region' and "
                    "'timeout' (credentials come from the AWS environment variables)"
                )
            timeout = self.storage_options.get("timeout", "30")
            try:
                seconds = float(timeout)
            except ValueError:
                seconds = math.nan
            if not (seconds > 0 and math.isfinite(seconds)):
                raise ValueError(
                    f"storage_options: timeout must be a positive number of seconds, "
                    f"got {timeout!r}"
                )
        if "://" in self.root_path and not self.root_path.startswith("s3://"):
            raise ValueError(
                f"root_path {self.root_path!r}: only local paths and s3:// URLs are supported"
            )
        if self.root_path.startswith("s3://") and not info.supports_object_storage:
            raise ValueError(
                f"root_path {self.root_path!r}: the {info.name!r} backend "
                f"({self.format.name}) cannot write to object storage; use OME-Zarr"
            )
        if self.storage_permutation != tuple(range(len(self.index_dimensions))) and (
            not info.supports_storage_order
        ):
            able = [
                b.name
                for b in BACKENDS.values()
                if b.format == info.format and b.supports_storage_order
            ]
            raise ValueError(
                f"storage_order {self.storage_order!r} stores "
                f"{[d.name for d in self.storage_index_dimensions]} but the acquisition order "
                f"is {[d.name for d in self.index_dimensions]}; the {info.name!r} backend "
                "only appends frames in acquisition order. Use storage_order='acquisition' "
                f"or a backend that can reorder: {', '.join(able)}"
            )

    # ----------------------------------------------------------------- derived views
    @property
    def file_format(self) -> FileFormat:
        """The resolved output format, 'ome-zarr' or 'ome-tiff'."""
        assert self.format is not None
        return self.format.name

    @property
    def backend(self) -> str:
        """The resolved backend name."""
        assert self.format is not None
        return self.format.backend

    @property
    def position_dimension(self) -> PositionDimension | None:
        """The PositionDimension, if the acquisition visits several positions."""
        for dim in self.dimensions:
            if isinstance(dim, PositionDimension):
                return dim
        return None

    @property
    def positions(self) -> list[Position]:
        """Positions in acquisition order (one unnamed position when none are declared)."""
        dim = self.position_dimension
        return list(dim.positions) if dim is not None else [Position(name="0")]

    @property
    def frame_dimensions(self) -> tuple[Dimension, Dimension]:
        """The two in-frame dimensions (usually y, x)."""
        y, x = self.dimensions[-2:]
        assert isinstance(y, Dimension) and isinstance(x, Dimension)
        return y, x

    @property
    def frame_shape(self) -> tuple[int, int]:
        """Shape of one frame."""
        y, x = self.frame_dimensions
        assert y.count is not None and x.count is not None
        return y.count, x.count

    @property
    def index_dimensions(self) -> list[Dimension]:
        """Non-frame array dimensions (no positions), in acquisition order."""
        return [d for d in self.dimensions[:-2] if isinstance(d, Dimension)]

    @property
    def storage_index_dimensions(self) -> list[Dimension]:
        """Non-frame array dimensions in storage order."""
        dims = self.index_dimensions
        order = self.storage_order
        if order == "acquisition" or (self.file_format == "ome-tiff" and order == "ome"):
            # OME-TIFF stores any T/C/Z permutation as acquired (DimensionOrder says which).
            return dims
        if order == "ome":
            rank = {"time": 0, "channel": 1, "other": 1, None: 1, "space": 2}
            return sorted(dims, key=lambda d: rank[d.type])
        by_name = {d.name: d for d in dims}
        return [by_name[n] for n in order if n in by_name]

    @property
    def storage_permutation(self) -> tuple[int, ...]:
        """For each storage axis, the acquisition axis it comes from (non-frame axes)."""
        names = [d.name for d in self.index_dimensions]
        return tuple(names.index(d.name) for d in self.storage_index_dimensions)

    @property
    def num_frames(self) -> int | None:
        """Total number of frames, or None when the first dimension is unbounded."""
        total = 1
        for dim in self.dimensions[:-2]:
            if dim.count is None:
                return None
            total *= dim.count
        return total

    @property
    def is_unbounded(self) -> bool:
        """Whether the first dimension is unbounded."""
        return self.dimensions[0].count is None

    @property
    def output_path(self) -> str:
        """The root container of the data actually written.

        A zarr group for OME-Zarr; for OME-TIFF one file, or, with several positions, a
        directory holding one file per position. A ``root_path`` without a suffix gets the
        format's suffix.
        """
        root = self.root_path.rstrip("/") or self.root_path
        if _format_from_suffix(root) is None:
            root += _SUFFIXES[self.file_format]
        if self.file_format == "ome-tiff" and self.position_dimension is not None:
            return _strip_tiff_suffix(root)
        return root

    def tiff_file_paths(self) -> list[str]:
        """The OME-TIFF file written for each position, in position order."""
        root = self.output_path
        if self.position_dimension is None:
            return [root]
        stem = PurePosixPath(root.replace("\\", "/")).name
        width = max(3, len(str(len(self.positions) - 1)))
        sep = "/" if "\\" not in root else "\\"
        return [f"{root}{sep}{stem}_p{i:0{width}d}.ome.tiff" for i in range(len(self.positions))]


def _strip_tiff_suffix(path: str) -> str:
    lower = path.lower()
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if lower.endswith(suffix):
            return path[: -len(suffix)]
    return path


def dims_from_standard_axes(
    sizes: Mapping[str, int | Sequence[str | Position] | None],
    chunk_shapes: Mapping[str, int] | None = None,
    shard_shapes: Mapping[str, int] | None = None,
    scales: Mapping[str, float] | None = None,
) -> list[Dimension | PositionDimension]:
    """Build dimensions from standard axis names (``"p", "t", "c", "z", "y", "x"``).

    Parameters
    ----------
    sizes
        Axis name to size, in acquisition order. ``"p"`` may map to a count or to a list
        of position names or Position objects; the first axis may map to None (unbounded).
    chunk_shapes
        Axis name to chunk size; defaults to the full frame for y/x and 1 otherwise.
    shard_shapes
        Axis name to shard size, in chunks.
    scales
        Axis name to physical size of one element (in micrometers or seconds).

    Examples
    --------
    >>> dims = dims_from_standard_axes({"t": 2, "c": 3, "y": 64, "x": 64},
    ...                                chunk_shapes={"y": 32, "x": 32})
    >>> [d.name for d in dims]
    ['t', 'c', 'y', 'x']

    """
    allowed = [axis.value for axis in StandardAxis]
    for key in [*sizes, *(chunk_shapes or {}), *(shard_shapes or {}), *(scales or {})]:
        if key not in allowed:
            raise ValueError(f"{key!r} is not a standard axis name; use one of {allowed}")
    chunk_shapes = chunk_shapes or {}
    shard_shapes = shard_shapes or {}
    scales = scales or {}
    dims: list[Dimension | PositionDimension] = []
    for key, size in sizes.items():
        axis = StandardAxis(key)
        if axis is StandardAxis.POSITION:
            if isinstance(size, int):
                names: Sequence[str | Position] = [str(i) for i in range(size)]
            elif isinstance(size, Sequence) and not isinstance(size, str):
                names = size
            else:
                raise ValueError(f"'p' must be a count or a list of positions, got {size!r}")
            dims.append(PositionDimension(positions=[Position.model_validate(n) for n in names]))
            continue
        if size is not None and not isinstance(size, int):
            raise ValueError(f"size of {key!r} must be an integer or None, got {size!r}")
        default_chunk = size if axis in (StandardAxis.X, StandardAxis.Y) else 1
        dims.append(
            Dimension(
                name=key,
                count=size,
                chunk_size=chunk_shapes.get(key, default_chunk),
                shard_size_chunks=shard_shapes.get(key),
                type=axis.dimension_type,
                unit=axis.default_unit,
                scale=scales.get(key),
            )
        )
    return dims
