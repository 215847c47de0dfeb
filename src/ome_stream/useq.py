"""useq-schema integration (extra ``useq``): an MDASequence becomes settings in one call.

The dimensions follow the sequence's ``axis_order`` — the order in which
``for event in sequence`` yields frames — so frames can be appended as the events come.
Stage positions and grid points become one :class:`PositionDimension` (grid points nested
in positions); a well-plate plan becomes a :class:`Plate` with one position per field.
"""

from __future__ import annotations

import string
from typing import TYPE_CHECKING, Any

from ome_stream.settings import (
    AcquisitionSettings,
    Channel,
    Dimension,
    Plate,
    Position,
    PositionDimension,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["dims_from_useq", "useq_to_acquisition_settings"]


def _useq() -> Any:
    try:
        import useq
    except ImportError:
        raise ImportError(
            "useq-schema is not installed; run pip install 'ome-stream[useq]'"
        ) from None
    return useq


def _axis(key: Any) -> str:
    return str(getattr(key, "value", key))


def _positions(sequence: Any) -> list[Position]:
    """Stage positions x grid points (in iteration order), named and located."""
    useq = _useq()
    stage = sequence.stage_positions
    plate_plan = stage if isinstance(stage, useq.WellPlatePlan) else None
    points = list(plate_plan) if plate_plan is not None else list(stage or [])
    for point in points:
        if getattr(point, "sequence", None) is not None:
            raise ValueError(
                f"position {point.name or point!r} has a sub-sequence: its frames cannot share "
                "one rectangular layout with the others; write each sub-sequence separately"
            )
    grid = list(sequence.grid_plan.iter_grid_positions()) if sequence.grid_plan else [None]
    if not points:
        points = [None]
    positions = []
    for index, point in enumerate(points):
        base = (point.name if point is not None and point.name else None) or f"p{index:03d}"
        for g_index, cell in enumerate(grid):
            name = base if cell is None or len(grid) == 1 else f"{base}_g{g_index:03d}"
            x = getattr(point, "x", None)
            y = getattr(point, "y", None)
            z = getattr(point, "z", None)
            if cell is not None and getattr(cell, "is_relative", True):
                x = (x or 0.0) + cell.x
                y = (y or 0.0) + cell.y
            kwargs: dict[str, Any] = {"name": name, "x": x, "y": y, "z": z}
            if plate_plan is not None:
                kwargs["name"] = f"fov{_field(point.name)}"
                kwargs["plate_row"] = _row_name(point.plate_row)
                kwargs["plate_column"] = str(point.plate_col + 1)
            positions.append(Position(**kwargs))
    return positions


def _field(name: str) -> int:
    suffix = name.rsplit("_", 1)[-1]
    return int(suffix) if suffix.isdigit() else 0


def _row_name(index: int) -> str:
    letters = string.ascii_uppercase
    return letters[index] if index < 26 else letters[index // 26 - 1] + letters[index % 26]


def dims_from_useq(
    sequence: Any,
    image_width: int,
    image_height: int,
    *,
    pixel_size_um: float | None = None,
    chunk_shapes: Mapping[str, int] | None = None,
) -> list[Dimension | PositionDimension]:
    """The dimensions of ``sequence`` (a ``useq.MDASequence``), in its acquisition order.

    Parameters
    ----------
    sequence
        The MDA sequence; axes of size 0 or 1... are omitted when unused.
    image_width, image_height
        Frame size in pixels.
    pixel_size_um
        Physical pixel size, recorded as the y/x scale.
    chunk_shapes
        Axis name to chunk size (default: whole frames, 1 along other axes).

    Examples
    --------
    >>> import useq                                     # doctest: +SKIP
    >>> seq = useq.MDASequence(time_plan={"interval": 1, "loops": 3}, channels=["DAPI"])
    >>> [d.name for d in dims_from_useq(seq, 512, 512)]  # doctest: +SKIP
    ['t', 'c', 'y', 'x']

    """
    useq = _useq()
    if not isinstance(sequence, useq.MDASequence):
        sequence = useq.MDASequence.model_validate(sequence)
    sizes = {_axis(k): v for k, v in sequence.sizes.items()}
    chunks = dict(chunk_shapes or {})
    order = [_axis(a) for a in sequence.axis_order if sizes.get(_axis(a), 0) > 0]
    position_axes = [a for a in order if a in ("p", "g")]
    if len(position_axes) == 2 and abs(order.index("p") - order.index("g")) != 1:
        raise ValueError(
            f"axis_order {''.join(order)!r} separates positions (p) and grid points (g); "
            "they must be adjacent to form one position dimension"
        )
    dims: list[Dimension | PositionDimension] = []
    positions_added = False
    for axis in order:
        if axis in ("p", "g"):
            if not positions_added:
                dims.append(PositionDimension(positions=_positions(sequence)))
                positions_added = True
            continue
        size = sizes[axis]
        if axis == "t":
            interval = (
                sequence.time_plan.interval.total_seconds()
                if hasattr(sequence.time_plan, "interval")
                else None
            )
            dims.append(
                Dimension(
                    name="t",
                    count=size,
                    type="time",
                    unit="second",
                    scale=interval or None,
                    chunk_size=chunks.get("t"),
                )
            )
        elif axis == "c":
            dims.append(
                Dimension(
                    name="c",
                    count=size,
                    type="channel",
                    coords=[Channel(name=c.config) for c in sequence.channels],
                    chunk_size=chunks.get("c"),
                )
            )
        elif axis == "z":
            step = getattr(sequence.z_plan, "step", None)
            dims.append(
                Dimension(
                    name="z",
                    count=size,
                    type="space",
                    unit="micrometer",
                    scale=step or None,
                    chunk_size=chunks.get("z"),
                )
            )
        else:
            raise ValueError(f"useq axis {axis!r} has no OME dimension")
    for name, size in (("y", image_height), ("x", image_width)):
        dims.append(
            Dimension(
                name=name,
                count=size,
                type="space",
                unit="micrometer",
                scale=pixel_size_um,
                chunk_size=chunks.get(name),
            )
        )
    return dims


def useq_to_acquisition_settings(
    sequence: Any,
    *,
    root_path: str,
    dtype: str,
    image_width: int,
    image_height: int,
    pixel_size_um: float | None = None,
    chunk_shapes: Mapping[str, int] | None = None,
    **settings: Any,
) -> AcquisitionSettings:
    """AcquisitionSettings for ``sequence``; extra keywords go to AcquisitionSettings.

    A well-plate plan adds the ``plate`` (all rows and columns of the plate definition).
    """
    useq = _useq()
    if not isinstance(sequence, useq.MDASequence):
        sequence = useq.MDASequence.model_validate(sequence)
    dims = dims_from_useq(
        sequence, image_width, image_height, pixel_size_um=pixel_size_um, chunk_shapes=chunk_shapes
    )
    plan = sequence.stage_positions
    if isinstance(plan, useq.WellPlatePlan) and "plate" not in settings:
        settings["plate"] = Plate(
            name=plan.plate.name or None,
            row_names=[_row_name(i) for i in range(plan.plate.rows)],
            column_names=[str(i + 1) for i in range(plan.plate.columns)],
        )
    return AcquisitionSettings(root_path=root_path, dtype=dtype, dimensions=dims, **settings)
