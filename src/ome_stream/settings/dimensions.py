"""Dimensions (the axes of the acquisition, in acquisition order) and the standard axes."""

from __future__ import annotations

import warnings
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from pydantic import Field, PositiveInt, TypeAdapter, field_validator, model_validator

from ome_stream.settings._base import NonEmptyStr, SettingsModel, check_path_name
from ome_stream.settings.channels import Channel, ChannelList
from ome_stream.settings.positions import Position, PositionList
from ome_stream.settings.units import cast_unit_to_ngff, infer_dim_type_from_unit

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "Dimension",
    "DimensionType",
    "PositionDimension",
    "StandardAxis",
    "check_dimension_list",
    "dims_from_standard_axes",
    "effective_type",
]

DimensionType: TypeAlias = Literal["space", "time", "channel", "position", "other"]

_as_channels = TypeAdapter(ChannelList).validate_python
_as_positions = TypeAdapter(PositionList).validate_python


class Dimension(SettingsModel):
    """One axis of the acquisition, in acquisition order (slowest first).

    ``type`` is taken from ``coords`` (Channel or Position objects) or from ``unit`` (a
    length or a time) when it is not given; it is never guessed from the name. A
    ``type="position"`` dimension is not an array axis: each position is its own image.

    Examples
    --------
    >>> Dimension(name="z", count=32, chunk_size=16, type="space", unit="um").unit
    'micrometer'
    >>> Dimension(name="p", type="position", count=2).coords[1].name
    '1'

    """

    name: NonEmptyStr = Field(description="Axis name, unique in the acquisition.")
    count: PositiveInt | None = Field(
        default=None,
        description="Number of elements; None makes the axis unbounded (first axis only). "
        "Inferred from coords when omitted.",
    )
    type: DimensionType | None = Field(
        default=None,
        description="'space', 'time', 'channel', 'position' or 'other'; inferred from "
        "coords or unit when omitted.",
    )
    coords: list[str | float | Channel | Position] | None = Field(
        default=None,
        description="Label of each element: Channel objects or names on a channel axis, "
        "Position objects or names on a position axis, or values.",
    )
    chunk_size: PositiveInt | None = Field(
        default=None,
        description="Elements per chunk. Default: the full frame for the last two axes, "
        "1 for the others.",
    )
    shard_size_chunks: PositiveInt | None = Field(
        default=None,
        description="Chunks (not elements) per shard along this axis (zarr v3 sharding). If "
        "no dimension sets it, chunks are stored unsharded.",
    )
    unit: str | None = Field(
        default=None,
        description="Physical unit: an NGFF name ('micrometer') or an OME-XML symbol or "
        "abbreviation ('µm', 'um'); stored as the NGFF name.",
    )
    scale: float | None = Field(
        default=None, description="Physical size of one element (pixel size, time interval)."
    )
    translation: float | None = Field(
        default=None, description="Physical coordinate of the first element."
    )

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return check_path_name(value, "Dimension name")

    @model_validator(mode="before")
    @classmethod
    def _infer_and_cast(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        coords = data.get("coords")
        if coords is not None:
            try:
                coords = list(coords)
            except TypeError:
                raise ValueError("`coords` must be an iterable type.") from None
        count = data.get("count")
        unit = data.get("unit")
        kind = data.get("type")
        if kind is None:
            kind = _infer_type(coords, unit)
        if kind == "position":
            if coords is None:
                if count is None:
                    raise NotImplementedError(
                        "Unbounded position dimensions (count=None) are not yet implemented. "
                        "Please provide explicit coords or a finite count."
                    )
                coords = [Position(name=str(i)) for i in range(count)]
            elif not coords:
                raise NotImplementedError(
                    "Empty coords for position dimensions are not yet implemented. Please "
                    "provide explicit position names or use count to auto-generate."
                )
        if coords is not None:
            if count is None:
                data["count"] = len(coords)
            elif len(coords) != count:
                raise ValueError(
                    f"Length of coords ({len(coords)}) does not match count ({count})."
                )
            data["coords"] = _cast_coords(coords, kind)
        if unit is not None:
            data["unit"] = cast_unit_to_ngff(unit, kind)
        if kind is not None:
            data["type"] = kind
        return data

    @model_validator(mode="after")
    def _normalise_unit(self) -> Dimension:
        # an assigned unit (dim.unit = "um") is checked and named as a constructed one
        if self.unit is not None:
            self.__dict__["unit"] = cast_unit_to_ngff(self.unit, self.type)
        return self

    @property
    def channels(self) -> list[Channel] | None:
        """The coords of a channel axis as Channel objects, or None."""
        if self.coords is None:
            return None
        return [c if isinstance(c, Channel) else Channel(name=str(c)) for c in self.coords]


def _infer_type(coords: list[Any] | None, unit: str | None) -> DimensionType | None:
    from_unit = infer_dim_type_from_unit(unit)
    from_coords: DimensionType | None = None
    if coords:
        if any(isinstance(c, Channel) for c in coords):
            from_coords = "channel"
        elif any(isinstance(c, Position) for c in coords):
            from_coords = "position"
    if from_coords and from_unit and from_coords != from_unit:
        raise ValueError(
            f"Conflicting dimension type inference: coords suggests type='{from_coords}' but "
            f"unit suggests type='{from_unit}'. Please specify an explicit `type` or remove "
            "the conflicting field."
        )
    return from_coords or from_unit


def _cast_coords(coords: list[Any], kind: str | None) -> list[Any]:
    for model, wanted in ((Channel, "channel"), (Position, "position")):
        if any(isinstance(c, model) for c in coords):
            if not all(isinstance(c, str | model) for c in coords):
                raise ValueError(f"May not mix {model.__name__} objects with other coord types.")
            if kind and kind != wanted:
                raise ValueError(
                    f"{model.__name__} objects in coords require type='{wanted}', got type='{kind}'"
                )
    if kind == "channel":
        return list(_as_channels(coords))
    if kind == "position":
        return list(_as_positions(coords))
    return coords


def PositionDimension(
    positions: Sequence[str | Position] | None = None, **fields: Any
) -> Dimension:
    """Deprecated: use ``Dimension(name="p", type="position", coords=[...])``.

    Returns that Dimension (``name`` defaults to ``"p"``), equal to one built directly.
    """
    warnings.warn(
        "PositionDimension is deprecated. "
        "Use Dimension(name='p', type='position', coords=[...]) instead.",
        DeprecationWarning,
        stacklevel=2,
    )
    if positions is not None:
        fields["coords"] = list(positions)
    fields.setdefault("name", "p")
    fields["type"] = "position"
    return Dimension(**fields)


def check_dimension_list(dims: tuple[Dimension, ...]) -> tuple[Dimension, ...]:
    """Apply the rules of a whole acquisition's dimensions; return them unchanged.

    At most one position dimension; 2 to 5 array (non-position) dimensions; unique names;
    only the first dimension unbounded; the last two are the frame (space, with a count).
    """
    names = [d.name for d in dims]
    if sum(d.type == "position" for d in dims) > 1:
        raise ValueError("Only one position dimension is allowed.")
    if any(d.count is None for d in dims[1:]):
        raise ValueError("Only the first dimension may be unbounded (count=None).")
    n_array = sum(d.type != "position" for d in dims)
    if n_array < 2:
        raise ValueError("At least 2 non-position dimensions are required (usually Y and X).")
    if n_array > 5:
        raise ValueError(
            "At most 5 non-position dimensions are allowed for both OME-Zarr and OME-TIFF, "
            f"got {n_array}: {[d.name for d in dims if d.type != 'position']}"
        )
    if duplicated := sorted({n for n in names if names.count(n) > 1}):
        raise ValueError(f"Dimension names must be unique, duplicates: {duplicated}")
    for dim in dims[-2:]:
        if dim.type not in (None, "space"):
            raise ValueError(
                "The last two dimensions must be spatial dimensions (type='space'); "
                f"{dim.name!r} has type={dim.type!r}."
            )
        if dim.count is None:
            raise ValueError(f"Frame dimension {dim.name!r} needs a count (pixels per frame).")
        if dim.type is None:
            if dim.name.lower() not in ("x", "y"):
                warnings.warn(
                    "The last two dimensions are expected to have type='space'. Setting "
                    f"type='space' for non-standard dimension name {dim.name!r}.",
                    UserWarning,
                    stacklevel=2,
                )
            dim.__dict__["type"] = "space"
    return dims


class StandardAxis(StrEnum):
    """The standard axis names: each implies a dimension type and, for space and time, a unit.

    Used by :func:`dims_from_standard_axes`.

    Examples
    --------
    >>> StandardAxis("z").dimension_type(), StandardAxis.TIME.unit()
    ('space', 'second')

    """

    X = "x"
    Y = "y"
    Z = "z"
    CHANNEL = "c"
    TIME = "t"
    POSITION = "p"

    def dimension_type(self) -> DimensionType:
        """The dimension type this axis implies."""
        return _AXIS_TYPES[self.value]

    def unit(self) -> str | None:
        """The NGFF unit of this axis (micrometer for x/y/z, second for t), or None."""
        return {"space": "micrometer", "time": "second"}.get(self.dimension_type())

    def to_dimension(
        self,
        *,
        count: int | None = None,
        coords: Sequence[str | Position] | None = None,
        chunk_size: int | None = None,
        shard_size_chunks: int | None = None,
        scale: float | None = None,
    ) -> Dimension:
        """A Dimension of this axis: its name, type and unit with the given size."""
        return Dimension(
            name=self.value,
            count=count,
            coords=list(coords) if coords is not None else None,
            type=self.dimension_type(),
            unit=self.unit(),
            chunk_size=chunk_size,
            shard_size_chunks=shard_size_chunks,
            scale=scale,
        )


_AXIS_TYPES: dict[str, DimensionType] = {
    "x": "space", "y": "space", "z": "space", "c": "channel", "t": "time", "p": "position",
}  # fmt: skip


def dims_from_standard_axes(
    sizes: Mapping[str, int | Sequence[str | Position] | None],
    chunk_shapes: Mapping[str | StandardAxis, int] | None = None,
    shard_shapes: Mapping[str | StandardAxis, int] | None = None,
    scales: Mapping[str | StandardAxis, float] | None = None,
) -> list[Dimension]:
    """Build dimensions from standard axis names (``"x", "y", "z", "c", "t", "p"``).

    Parameters
    ----------
    sizes
        Axis name to size, in acquisition order. ``"p"`` maps to a count (positions
        ``"0".."n-1"``) or to position names / Position objects; the first axis may map
        to None (unbounded).
    chunk_shapes
        Axis name to chunk size; default the full frame for y/x and 1 otherwise.
    shard_shapes
        Axis name to shard size, in chunks.
    scales
        Axis name to physical size of one element (micrometers, seconds).

    Raises
    ------
    ValueError
        A name that is not a standard axis, in ``sizes`` or in the other mappings.

    Examples
    --------
    >>> dims = dims_from_standard_axes({"t": 2, "p": ["A1", "B2"], "y": 64, "x": 64})
    >>> [d.name for d in dims], dims[1].type
    (['t', 'p', 'y', 'x'], 'position')

    """
    allowed = [axis.value for axis in StandardAxis]
    if any(_axis_key(key) not in allowed for key in sizes):
        raise ValueError(f"Standard axes names must be one of {allowed}. Got: {list(sizes)}")
    options = {"chunk_shapes": chunk_shapes, "shard_shapes": shard_shapes, "scales": scales}
    by_axis: dict[str, dict[str, Any]] = {}
    for option, mapping in options.items():
        keys = {_axis_key(key) for key in mapping or {}}
        if unknown := sorted(keys - set(allowed)):
            raise ValueError(
                f"{option}: standard axes names must be one of {allowed}. Got: {unknown}"
            )
        by_axis[option] = {_axis_key(k): v for k, v in (mapping or {}).items()}
    dims = []
    for key, size in sizes.items():
        axis = StandardAxis(_axis_key(key))
        key = axis.value
        frame = axis in (StandardAxis.X, StandardAxis.Y)
        if axis is StandardAxis.POSITION:
            chunk = None
        else:
            default = size if frame and isinstance(size, int) else 1
            chunk = by_axis["chunk_shapes"].get(key, default)
        sized: dict[str, Any] = (
            {"count": size} if size is None or isinstance(size, int) else {"coords": size}
        )
        dims.append(
            axis.to_dimension(
                chunk_size=chunk,
                shard_size_chunks=by_axis["shard_shapes"].get(key),
                scale=by_axis["scales"].get(key),
                **sized,
            )
        )
    return dims


def effective_type(dim: Dimension) -> DimensionType | None:
    """``dim.type``, or for an untyped dimension with a standard name, that name's type.

    ``type`` is never guessed from the name; storage order and metadata still treat an
    untyped ``t``, ``c``, ``z``, ``y`` or ``x`` as what its name says.
    """
    if dim.type is not None:
        return dim.type
    kind = _AXIS_TYPES.get(dim.name.lower())
    return kind if kind != "position" else None


def _axis_key(key: str | StandardAxis) -> str:
    return key.value if isinstance(key, StandardAxis) else str(key)
